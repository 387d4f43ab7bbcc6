//! `ledgerctl bench`: N concurrent clients, flat out or at a target rate, for a count and a
//! duration (whichever ends first: never unbounded), over M fresh deals. Every request goes
//! through the client library, so a leader change costs retries with the same request id,
//! not errors. Reports throughput, latency percentiles (HDR histogram), decisions by outcome
//! and errors by code; `--out` writes the report as JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use ledger_client::Submission;
use serde_json::json;

use crate::cli::Cli;
use crate::load::{create_deals, histogram};
use crate::output::reject_reason;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Requests to send (the run ends at whichever of count and duration comes first).
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Longest run, in seconds.
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// Target requests per second over all clients (0: as fast as they go).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Deals to create and spread the load over.
    #[arg(long, default_value_t = 10)]
    deals: usize,
    /// Seats per deal.
    #[arg(long, default_value_t = 200)]
    max_investors: u32,
    /// Ticket of every request.
    #[arg(long, default_value = "1000.00")]
    amount: String,
    /// Prefix of the deal ids (a fresh one per run by default).
    #[arg(long)]
    deal_prefix: Option<String>,
    /// Also write the report to this file, as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// What one client task saw.
struct Tally {
    latency: Histogram<u64>,
    outcomes: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    retried: u64,
    max_attempts: u32,
}

pub async fn run(cli: &Cli, args: &BenchArgs) -> Result<()> {
    if args.clients == 0 || args.deals == 0 || args.count == 0 || args.duration_s == 0 {
        bail!("--clients, --deals, --count and --duration-s must be at least 1");
    }
    let client = cli.client().await?;
    let prefix = args
        .deal_prefix
        .clone()
        .unwrap_or_else(|| format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    create_deals(&client, &prefix, args.deals, args.max_investors).await?;

    let progress = if args.quiet || cli.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.count)
    };
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = Arc::new(AtomicU64::new(0));
    let errors_seen = Arc::new(AtomicU64::new(0));
    let ticker = (args.rate > 0).then(|| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
        // After a stall, catch up at most a little: the target is a rate, not a backlog.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Arc::new(tokio::sync::Mutex::new(interval))
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_s);
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, next, errors_seen, ticker, progress) = (
            client.clone(),
            next.clone(),
            errors_seen.clone(),
            ticker.clone(),
            progress.clone(),
        );
        let (count, deals, amount, prefix) = (
            args.count,
            args.deals as u64,
            args.amount.clone(),
            prefix.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally {
                latency: histogram(),
                outcomes: BTreeMap::new(),
                errors: BTreeMap::new(),
                retried: 0,
                max_attempts: 0,
            };
            loop {
                if let Some(ticker) = &ticker {
                    ticker.lock().await.tick().await;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count || Instant::now() >= deadline {
                    break;
                }
                let submission = Submission::new(
                    format!("{prefix}-{}", n % deals),
                    format!("investor-{n}"),
                    amount.clone(),
                );
                let sent = Instant::now();
                let result = client.submit(&submission).await;
                let _ = tally
                    .latency
                    .record(sent.elapsed().as_micros().max(1) as u64);
                match result {
                    Ok(decision) => {
                        if decision.attempts > 1 {
                            tally.retried += 1;
                        }
                        tally.max_attempts = tally.max_attempts.max(decision.attempts);
                        let key = match decision.reject_reason() {
                            Some(_) => format!("REJECTED {}", reject_reason(&decision.investment)),
                            None => "ADMITTED".to_owned(),
                        };
                        *tally.outcomes.entry(key).or_default() += 1;
                    }
                    Err(error) => {
                        errors_seen.fetch_add(1, Ordering::Relaxed);
                        *tally
                            .errors
                            .entry(error.code_name().to_owned())
                            .or_default() += 1;
                    }
                }
                progress.inc(1);
                progress.set_message(format!("errors {}", errors_seen.load(Ordering::Relaxed)));
            }
            tally
        }));
    }
    let mut latency = histogram();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let (mut retried, mut max_attempts) = (0, 0);
    for task in tasks {
        let tally = task.await?;
        latency.add(&tally.latency)?;
        for (k, v) in tally.outcomes {
            *outcomes.entry(k).or_default() += v;
        }
        for (k, v) in tally.errors {
            *errors.entry(k).or_default() += v;
        }
        retried += tally.retried;
        max_attempts = max_attempts.max(tally.max_attempts);
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let requests = latency.len();
    let decisions: u64 = outcomes.values().sum();
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let report = json!({
        "requests": requests, "decisions": decisions, "seconds": elapsed,
        "per_second": requests as f64 / elapsed, "clients": args.clients,
        "target_rate": args.rate, "endpoints": cli.endpoints, "deal_prefix": prefix,
        "deals": (0..args.deals).map(|d| format!("{prefix}-{d}")).collect::<Vec<_>>(),
        "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": latency.max() as f64 / 1000.0},
        "outcomes": outcomes, "errors": errors,
        "retried_requests": retried, "max_attempts": max_attempts,
    });
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{requests} requests in {elapsed:.2} s: {:.0}/s with {} clients (leader found from {})",
        requests as f64 / elapsed,
        args.clients,
        cli.endpoints.join(",")
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        latency.max() as f64 / 1000.0
    );
    println!("decisions: {decisions}");
    for (outcome, n) in &outcomes {
        println!("  {outcome:<40} {n:>9}");
    }
    println!("retried (same request id): {retried} requests, at most {max_attempts} attempts");
    if errors.is_empty() {
        println!("errors: none");
    } else {
        println!("errors:");
        for (code, n) in &errors {
            println!("  {code:<40} {n:>9}");
        }
    }
    Ok(())
}
