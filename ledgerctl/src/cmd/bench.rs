//! `ledgerctl bench`: N concurrent clients, flat out or at a target rate, for a count and a
//! duration (whichever ends first: never unbounded), in one of three shapes of load over fresh
//! deals, one request per `Submit` or `--batch` requests per `SubmitBatch`. Every request goes
//! through the client library, so a leader change costs retries with the same request id,
//! not errors. Reports throughput, latency percentiles of the decided requests (HDR histogram,
//! per request: a batch's latency counts once for each of its requests) and of the failed
//! ones, decisions by outcome and errors by code with a few of their messages; `--out` writes
//! the report as JSON.
//! `--open-loop` sends at the rate whatever the answers, to see an overload as it is.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use ledger_client::{pb, ClientError, Decision, Submission};

use serde_json::json;
use tokio::sync::Semaphore;

use crate::cli::Cli;
use crate::load::{create_deals, histogram};
use crate::output::reject_reason;
use crate::peers::{self, PeerConn, PeerKind};

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
    /// Where requests go. `spread`: round robin over --deals deals (filled, then rejected).
    /// `reject`: one deal, filled at once, then every request is rejected. `hot`: deals launched
    /// one after another, every client on the current deal until it is full, so that most
    /// requests are admitted (the shape the peers were measured with, docs/performance.md).
    #[arg(long, value_enum, default_value_t = Shape::Spread)]
    shape: Shape,
    /// Requests per call: 1 sends `Submit`, more sends `SubmitBatch` (at most 1000).
    #[arg(long, default_value_t = 1)]
    batch: u64,
    /// Deals to create and spread the load over (`--shape spread`).
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
    /// Also append the report as one row of a Markdown table to this file (the header first,
    /// if the file is new): what `scripts/bench.sh` collects into docs/performance.md.
    #[arg(long)]
    table: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Also write every call slower than --slow-ms to this file, one line each: seconds since
    /// the start when it was sent, its latency in ms, the client's number. For finding what a
    /// tail is made of (when, how often, on which client).
    #[arg(long)]
    slow_log: Option<PathBuf>,
    /// The threshold of --slow-log, in milliseconds.
    #[arg(long, default_value_t = 20)]
    slow_ms: u64,
    /// With --rate: send each call when it is due whatever the answers (open loop), as many at
    /// once as that takes, latency counted from when the call was due. The load then does not
    /// slow down with the cluster, which is what an overload looks like. --clients is then the
    /// number of separate client connections the calls are spread over.
    #[arg(long, conflicts_with = "peer")]
    open_loop: bool,
    /// --open-loop: most calls outstanding at once; a call due beyond it is not sent, counted
    /// as the error NOT_SENT (the generator's own bound, not the cluster's answer).
    #[arg(long, default_value_t = 20_000)]
    max_outstanding: usize,
    /// Attempts per call (0: retry until --deadline-s, as the client library does by default).
    /// 1 shows an overload's refusals (RESOURCE_EXHAUSTED) rather than the client's retries.
    #[arg(long, default_value_t = 0, conflicts_with = "peer")]
    attempts: u32,
    /// Drive a peer instead of the ledger, with the same shapes and clients (one connection
    /// each): what a team would build instead (docs/performance.md, `scripts/bench.sh --peers`).
    #[arg(long, value_enum, requires = "peer_addr")]
    peer: Option<PeerKind>,
    /// The peer's `host:port` (PostgreSQL: user `postgres`, database `postgres`, no password).
    #[arg(long, requires = "peer")]
    peer_addr: Option<String>,
}

/// Where one bench client sends its requests.
enum Target {
    Ledger(ledger_client::Client),
    Peer(PeerConn, i64),
}

impl Target {
    /// Submits `(deal, investor)` requests of `amount` each (one `Submit`, or one `SubmitBatch`,
    /// or the peer's equivalent): each request's answer, or the code of its error.
    async fn submit(
        &mut self,
        requests: &[(String, String)],
        amount: &str,
    ) -> Vec<Result<Answer, Failed>> {
        match self {
            Target::Ledger(client) => {
                let calls: Vec<Submission> = requests
                    .iter()
                    .map(|(deal, investor)| {
                        Submission::new(deal.clone(), investor.clone(), amount.to_owned())
                    })
                    .collect();
                if let [call] = calls.as_slice() {
                    vec![client
                        .submit(call)
                        .await
                        .map(Answer::of)
                        .map_err(Failed::of)]
                } else {
                    match client.submit_batch(&calls).await {
                        Ok(results) => results
                            .into_iter()
                            .map(|result| result.map(Answer::of).map_err(Failed::of))
                            .collect(),
                        Err(error) => vec![Err(Failed::of(error)); calls.len()],
                    }
                }
            }
            Target::Peer(conn, cents) => match peers::submit(conn, requests, *cents).await {
                Ok(decisions) => decisions
                    .into_iter()
                    .map(|reject| {
                        Ok(Answer {
                            reject,
                            attempts: 1,
                        })
                    })
                    .collect(),
                Err(error) => {
                    vec![Err(Failed::new("PEER_ERROR", format!("{error:#}"))); requests.len()]
                }
            },
        }
    }
}

/// A request that ended in an error: its code name, and the message, which the report keeps a
/// few samples of per code (an unknown outcome's cause is in its message).
#[derive(Clone)]
struct Failed {
    code: &'static str,
    message: String,
}

impl Failed {
    fn new(code: &'static str, message: impl Into<String>) -> Failed {
        Failed {
            code,
            message: message.into(),
        }
    }

    fn of(error: ClientError) -> Failed {
        Failed::new(error.code_name(), error.to_string())
    }
}

/// Distinct messages kept per error code.
const ERROR_SAMPLES: usize = 3;

/// Adds `message` to `samples` unless it is there or `samples` is full.
fn keep_sample(samples: &mut Vec<String>, message: &str) {
    if samples.len() < ERROR_SAMPLES && !samples.iter().any(|m| m == message) {
        samples.push(message.to_owned());
    }
}

/// One request's decision, as the bench counts it.
#[derive(Clone)]
struct Answer {
    /// `None`: admitted; else the reject reason's name.
    reject: Option<&'static str>,
    /// Calls it took (retries with the same request id).
    attempts: u32,
}

impl Answer {
    fn of(decision: Decision) -> Answer {
        Answer {
            reject: decision
                .reject_reason()
                .map(|_| reject_reason(&decision.investment)),
            attempts: decision.attempts,
        }
    }
}

/// The shape of the load (`--shape`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    Spread,
    Reject,
    Hot,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Spread => "spread",
            Shape::Reject => "reject",
            Shape::Hot => "hot",
        }
    }
}

/// Which deal the next requests go to.
struct Deals {
    shape: Shape,
    prefix: String,
    /// Deals created (`{prefix}-0..count`).
    count: u64,
    /// `hot`: the deal being filled.
    current: AtomicU64,
}

impl Deals {
    /// The deal of request `n`.
    fn pick(&self, n: u64) -> u64 {
        match self.shape {
            Shape::Spread => n % self.count,
            Shape::Reject => 0,
            Shape::Hot => self.current.load(Ordering::Relaxed),
        }
    }

    fn id(&self, deal: u64) -> String {
        format!("{}-{deal}", self.prefix)
    }

    /// `hot`: deal `deal` turned a request away for lack of room; the next deal opens (once,
    /// whichever client saw it first).
    fn full(&self, deal: u64) {
        if self.shape == Shape::Hot {
            let _ = self.current.compare_exchange(
                deal,
                (deal + 1).min(self.count - 1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

/// What one client task saw.
struct Tally {
    /// Of decided requests.
    latency: Histogram<u64>,
    /// Of requests that ended in an error.
    error_latency: Histogram<u64>,
    /// `--open-loop`: how late each call left the generator (when sent, less when due): the
    /// generator's own lag, which the latencies include.
    send_lag: Histogram<u64>,
    outcomes: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    /// Up to [`ERROR_SAMPLES`] distinct messages per error code.
    error_samples: BTreeMap<String, Vec<String>>,
    retried: u64,
    max_attempts: u32,
    /// When its last answer came (the run's duration ends at the last answer of all, not when
    /// the last client, waiting for a tick of the rate, found nothing left to send).
    last_answer: Option<Instant>,
    /// Calls slower than --slow-ms: (sent, seconds since the start; latency in µs).
    slow: Vec<(f64, u64)>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: histogram(),
            error_latency: histogram(),
            send_lag: histogram(),
            outcomes: BTreeMap::new(),
            errors: BTreeMap::new(),
            error_samples: BTreeMap::new(),
            retried: 0,
            max_attempts: 0,
            last_answer: None,
            slow: Vec::new(),
        }
    }

    /// Counts one request's result, answered after `micros` (0: never sent); `full` runs when
    /// its deal had no room left for it.
    fn count(
        &mut self,
        result: Result<Answer, Failed>,
        micros: u64,
        errors_seen: &AtomicU64,
        full: impl FnOnce(),
    ) {
        // Zero: never sent, no latency to count.
        if micros > 0 {
            let _ = match result {
                Ok(_) => self.latency.record(micros),
                Err(_) => self.error_latency.record(micros),
            };
        }
        match result {
            Ok(answer) => {
                if answer.attempts > 1 {
                    self.retried += 1;
                }
                self.max_attempts = self.max_attempts.max(answer.attempts);
                let key = match answer.reject {
                    Some(reason) => {
                        if reason == pb::RejectReason::InvestorLimitReached.as_str_name()
                            || reason == pb::RejectReason::AmountExceedsRemaining.as_str_name()
                        {
                            full();
                        }
                        format!("REJECTED {reason}")
                    }
                    None => "ADMITTED".to_owned(),
                };
                *self.outcomes.entry(key).or_default() += 1;
            }
            Err(failed) => {
                errors_seen.fetch_add(1, Ordering::Relaxed);
                *self.errors.entry(failed.code.to_owned()).or_default() += 1;
                keep_sample(
                    self.error_samples
                        .entry(failed.code.to_owned())
                        .or_default(),
                    &failed.message,
                );
            }
        }
    }
}

pub async fn run(cli: &Cli, args: &BenchArgs) -> Result<()> {
    if args.clients == 0 || args.deals == 0 || args.count == 0 || args.duration_s == 0 {
        bail!("--clients, --deals, --count and --duration-s must be at least 1");
    }
    if !(1..=1000).contains(&args.batch) {
        bail!("--batch must be between 1 and 1000");
    }
    if args.open_loop && (args.rate == 0 || args.max_outstanding == 0) {
        bail!("--open-loop needs --rate and a --max-outstanding of at least 1");
    }
    let prefix = args
        .deal_prefix
        .clone()
        .unwrap_or_else(|| format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let deal_count = match args.shape {
        Shape::Spread => args.deals as u64,
        Shape::Reject => 1,
        // Enough for every request to be admitted, and one more.
        Shape::Hot => args.count.div_ceil(u64::from(args.max_investors.max(1))) + 1,
    };
    // One connection per client to a peer, as its benchmarks do; the ledger's client library
    // shares its channels.
    let mut targets = Vec::with_capacity(args.clients);
    match (args.peer, &args.peer_addr) {
        (Some(kind), Some(addr)) => {
            let cents = peers::cents(&args.amount)?;
            for _ in 0..args.clients {
                targets.push(Target::Peer(peers::connect(kind, addr).await?, cents));
            }
            if let Some(Target::Peer(conn, _)) = targets.first_mut() {
                peers::create_deals(conn, &prefix, deal_count as usize, args.max_investors).await?;
            }
        }
        _ => {
            let mut config = cli.config()?;
            config.max_attempts = (args.attempts > 0).then_some(args.attempts);
            let connect = || async {
                ledger_client::Client::connect(config.clone())
                    .await
                    .with_context(|| format!("connecting to {}", cli.endpoints.join(",")))
            };
            // The deals with the usual retries, whatever --attempts says of the load.
            create_deals(
                &cli.client().await?,
                &prefix,
                deal_count as usize,
                args.max_investors,
            )
            .await?;
            let client = connect().await?;
            // Closed loop: the clients share the library's channels, as one application would.
            // Open loop: a client (its own connections) each, so that the calls outstanding are
            // not capped by one connection's streams (--max-streams-per-connection).
            targets.push(Target::Ledger(client.clone()));
            for _ in 1..args.clients {
                targets.push(Target::Ledger(if args.open_loop {
                    connect().await?
                } else {
                    client.clone()
                }));
            }
        }
    }
    let deals = Arc::new(Deals {
        shape: args.shape,
        prefix: prefix.clone(),
        count: deal_count,
        current: AtomicU64::new(0),
    });

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
        // One tick per call, so that calls of `batch` requests make `rate` requests a second.
        let period = Duration::from_secs_f64(args.batch as f64 / args.rate as f64);
        let mut interval = tokio::time::interval(period);
        // After a stall, catch up at most a little: the target is a rate, not a backlog.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Arc::new(tokio::sync::Mutex::new(interval))
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_s);
    let mut tasks = Vec::new();
    let slow_micros = args.slow_log.as_ref().map(|_| args.slow_ms * 1000);
    if args.open_loop {
        let clients = targets
            .into_iter()
            .filter_map(|target| match target {
                Target::Ledger(client) => Some(client),
                Target::Peer(..) => None,
            })
            .collect();
        let run = OpenLoop {
            clients,
            deals: deals.clone(),
            progress: progress.clone(),
            errors_seen: errors_seen.clone(),
            started,
            deadline,
            slow_micros,
        };
        tasks.push(tokio::spawn(run.run(
            args.count,
            args.batch,
            args.rate,
            args.max_outstanding,
            args.amount.clone(),
        )));
        targets = Vec::new();
    }
    for mut target in targets {
        let (next, errors_seen, ticker, progress, deals) = (
            next.clone(),
            errors_seen.clone(),
            ticker.clone(),
            progress.clone(),
            deals.clone(),
        );
        let (count, batch, amount) = (args.count, args.batch, args.amount.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            loop {
                if let Some(ticker) = &ticker {
                    ticker.lock().await.tick().await;
                }
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= count || Instant::now() >= deadline {
                    break;
                }
                let last = (first + batch).min(count);
                let picked: Vec<u64> = (first..last).map(|n| deals.pick(n)).collect();
                let requests: Vec<(String, String)> = (first..last)
                    .zip(&picked)
                    .map(|(n, &deal)| (deals.id(deal), format!("investor-{n}")))
                    .collect();
                let sent = Instant::now();
                let results = target.submit(&requests, &amount).await;
                tally.last_answer = Some(Instant::now());
                let micros = sent.elapsed().as_micros().max(1) as u64;
                if slow_micros.is_some_and(|slow| micros >= slow) {
                    let at = sent.saturating_duration_since(started).as_secs_f64();
                    tally.slow.push((at, micros));
                }
                for (deal, result) in picked.iter().zip(results) {
                    tally.count(result, micros, &errors_seen, || deals.full(*deal));
                }
                progress.inc(last - first);
                progress.set_message(format!("errors {}", errors_seen.load(Ordering::Relaxed)));
            }
            tally
        }));
    }
    let mut latency = histogram();
    let mut error_latency = histogram();
    let mut send_lag = histogram();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut error_samples: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut retried, mut max_attempts) = (0, 0);
    let mut last_answer = started;
    let mut slow = Vec::new();
    for (client, task) in tasks.into_iter().enumerate() {
        let tally = task.await?;
        slow.extend(tally.slow.iter().map(|&(at, micros)| (at, micros, client)));
        latency.add(&tally.latency)?;
        error_latency.add(&tally.error_latency)?;
        send_lag.add(&tally.send_lag)?;
        for (k, v) in tally.outcomes {
            *outcomes.entry(k).or_default() += v;
        }
        for (k, v) in tally.errors {
            *errors.entry(k).or_default() += v;
        }
        for (code, messages) in tally.error_samples {
            let kept = error_samples.entry(code).or_default();
            for message in &messages {
                keep_sample(kept, message);
            }
        }
        retried += tally.retried;
        last_answer = last_answer.max(tally.last_answer.unwrap_or(started));
        max_attempts = max_attempts.max(tally.max_attempts);
    }
    progress.finish_and_clear();
    let elapsed = last_answer
        .saturating_duration_since(started)
        .as_secs_f64()
        .max(1e-6);
    let requests = latency.len() + error_latency.len();
    let decisions: u64 = outcomes.values().sum();
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let error_ms = |q: f64| error_latency.value_at_quantile(q) as f64 / 1000.0;
    let lag_ms = |q: f64| send_lag.value_at_quantile(q) as f64 / 1000.0;
    let admitted = outcomes.get("ADMITTED").copied().unwrap_or(0);
    let report = json!({
        "system": args.peer.map_or("ledger", PeerKind::name),
        "shape": args.shape.name(), "batch": args.batch,
        "requests": requests, "decisions": decisions, "seconds": elapsed,
        "per_second": requests as f64 / elapsed, "clients": args.clients,
        "decisions_per_second": decisions as f64 / elapsed,
        "admitted_fraction": if decisions > 0 { admitted as f64 / decisions as f64 } else { 0.0 },
        "target_rate": args.rate, "deal_prefix": prefix,
        "endpoints": match &args.peer_addr {
            Some(addr) if args.peer.is_some() => vec![addr.clone()],
            _ => cli.endpoints.clone(),
        },
        "deals": (0..deal_count).map(|d| deals.id(d)).collect::<Vec<_>>(),
        "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": latency.max() as f64 / 1000.0},
        "error_latency_ms": {"p50": error_ms(0.5), "p99": error_ms(0.99), "max": error_latency.max() as f64 / 1000.0},
        "open_loop": args.open_loop, "attempts": args.attempts,
        "send_lag_ms": {"p50": lag_ms(0.5), "p99": lag_ms(0.99), "max": send_lag.max() as f64 / 1000.0},
        "outcomes": outcomes, "errors": errors, "error_samples": error_samples,
        "retried_requests": retried, "max_attempts": max_attempts,
    });
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.table {
        append_table_row(path, args, &report)?;
    }
    if let Some(path) = &args.slow_log {
        slow.sort_by(|a, b| a.0.total_cmp(&b.0));
        let lines: String = slow
            .iter()
            .map(|(at, micros, client)| {
                format!("{at:.6} {:.3} {client}\n", *micros as f64 / 1000.0)
            })
            .collect();
        std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{requests} requests in {elapsed:.2} s: {:.0}/s with {} clients, shape {}, {} ({})",
        requests as f64 / elapsed,
        args.clients,
        args.shape.name(),
        match args.batch {
            1 => "Submit".to_owned(),
            n => format!("SubmitBatch of {n}"),
        },
        match (args.peer, &args.peer_addr) {
            (Some(kind), Some(addr)) => format!("{} at {addr}", kind.name()),
            _ => format!("leader found from {}", cli.endpoints.join(",")),
        }
    );
    println!(
        "latency ms of decided requests: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        latency.max() as f64 / 1000.0
    );
    if args.open_loop {
        println!(
            "open loop: calls left the generator late by p50 {:.2}  p99 {:.2}  max {:.2} ms \
             (included above)",
            lag_ms(0.5),
            lag_ms(0.99),
            send_lag.max() as f64 / 1000.0
        );
    }
    println!("decisions: {decisions}");
    for (outcome, n) in &outcomes {
        println!("  {outcome:<40} {n:>9}");
    }
    println!("retried (same request id): {retried} requests, at most {max_attempts} attempts");
    if errors.is_empty() {
        println!("errors: none");
    } else {
        println!(
            "errors (latency ms: p50 {:.2}  p99 {:.2}  max {:.2}):",
            error_ms(0.5),
            error_ms(0.99),
            error_latency.max() as f64 / 1000.0
        );
        for (code, n) in &errors {
            println!("  {code:<40} {n:>9}");
            for message in error_samples.get(code).into_iter().flatten() {
                println!("    e.g. {message}");
            }
        }
    }
    Ok(())
}

/// `--open-loop`: calls sent when due, whatever the answers.
struct OpenLoop {
    clients: Vec<ledger_client::Client>,
    deals: Arc<Deals>,
    progress: ProgressBar,
    errors_seen: Arc<AtomicU64>,
    started: Instant,
    deadline: Instant,
    slow_micros: Option<u64>,
}

impl OpenLoop {
    /// Sends call k (requests `k * batch ..`) at `k * batch / rate` seconds from the start, on
    /// client k mod N, until `count` requests or the deadline; each call's latency runs from
    /// when it was due, so a generator that falls behind counts its own lag too.
    async fn run(
        self,
        count: u64,
        batch: u64,
        rate: u64,
        max_outstanding: usize,
        amount: String,
    ) -> Tally {
        let tally = Arc::new(std::sync::Mutex::new(Tally::new()));
        let outstanding = Arc::new(Semaphore::new(max_outstanding));
        let period = Duration::from_secs_f64(batch as f64 / rate as f64);
        let mut calls = tokio::task::JoinSet::new();
        let mut call = 0u32;
        loop {
            let first = u64::from(call) * batch;
            let due = self.started + period * call;
            if first >= count || due >= self.deadline || self.clients.is_empty() {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            let last = (first + batch).min(count);
            self.progress.inc(last - first);
            let Ok(permit) = outstanding.clone().try_acquire_owned() else {
                let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
                for _ in first..last {
                    tally.count(
                        Err(Failed::new(
                            "NOT_SENT",
                            "--max-outstanding calls were waiting",
                        )),
                        0,
                        &self.errors_seen,
                        || {},
                    );
                }
                call += 1;
                continue;
            };
            let mut target =
                Target::Ledger(self.clients[call as usize % self.clients.len()].clone());
            let picked: Vec<u64> = (first..last).map(|n| self.deals.pick(n)).collect();
            let requests: Vec<(String, String)> = (first..last)
                .zip(&picked)
                .map(|(n, &deal)| (self.deals.id(deal), format!("investor-{n}")))
                .collect();
            let (tally, deals, errors_seen, amount) = (
                tally.clone(),
                self.deals.clone(),
                self.errors_seen.clone(),
                amount.clone(),
            );
            let (started, slow_micros) = (self.started, self.slow_micros);
            calls.spawn(async move {
                let lag = Instant::now().saturating_duration_since(due);
                let results = target.submit(&requests, &amount).await;
                drop(permit);
                let answered = Instant::now();
                let micros = answered.saturating_duration_since(due).as_micros().max(1) as u64;
                let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
                tally.last_answer = Some(answered);
                let _ = tally.send_lag.record(lag.as_micros().max(1) as u64);
                if slow_micros.is_some_and(|slow| micros >= slow) {
                    let at = due.saturating_duration_since(started).as_secs_f64();
                    tally.slow.push((at, micros));
                }
                for (deal, result) in picked.iter().zip(results) {
                    tally.count(result, micros, &errors_seen, || deals.full(*deal));
                }
            });
            // Reap what has ended, so the set holds only the calls outstanding.
            while calls.try_join_next().is_some() {}
            call += 1;
        }
        while calls.join_next().await.is_some() {}
        let tally = std::mem::replace(
            &mut *tally.lock().unwrap_or_else(PoisonError::into_inner),
            Tally::new(),
        );
        tally
    }
}

/// Appends `report` as a row of the Markdown table in `path`.
fn append_table_row(
    path: &std::path::Path,
    args: &BenchArgs,
    report: &serde_json::Value,
) -> Result<()> {
    use std::io::Write;
    let new = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if new {
        writeln!(
            file,
            "| shape | calls | target rate | clients | requests | decisions/s | admitted | p50 ms | p99 ms | p99.9 ms | max ms | errors |"
        )?;
        writeln!(file, "|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    }
    let number = |key: &str| report[key].as_f64().unwrap_or(0.0);
    let latency = |key: &str| report["latency_ms"][key].as_f64().unwrap_or(0.0);
    let errors: u64 = report["errors"]
        .as_object()
        .map_or(0, |errors| errors.values().filter_map(|n| n.as_u64()).sum());
    writeln!(
        file,
        "| {} | {} | {} | {} | {} | {:.0} | {:.1}% | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
        match args.peer {
            Some(kind) => format!("{} ({})", args.shape.name(), kind.name()),
            None => args.shape.name().to_owned(),
        },
        match args.batch {
            1 => "Submit".to_owned(),
            n => format!("SubmitBatch × {n}"),
        },
        match args.rate {
            0 => "flat out".to_owned(),
            rate => format!("{rate}/s"),
        },
        args.clients,
        report["requests"],
        number("decisions_per_second"),
        number("admitted_fraction") * 100.0,
        latency("p50"),
        latency("p99"),
        latency("p999"),
        latency("max"),
        errors
    )?;
    Ok(())
}
