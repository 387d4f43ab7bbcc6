//! `ledgerctl saga-bench`: submits at a fixed rate, watches every admitted investment to its
//! final status, and reports saga overhead beyond the partners' own latency (issue #4's
//! measurement; `scripts/saga-load.sh` runs it on a fresh cluster).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ledger_client::{connect_with, pb, NodeClients};
use serde_json::json;

use crate::cli::Cli;
use crate::load::{create_deals, histogram, wait_for_executors};

#[derive(clap::Args)]
pub struct SagaBenchArgs {
    /// Submits per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// How long to submit.
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// Deals to spread the load over (each with --max-investors seats).
    #[arg(long, default_value_t = 160)]
    deals: usize,
    /// Seats per deal.
    #[arg(long, default_value_t = 200)]
    max_investors: u32,
    /// Ticket of every request.
    #[arg(long, default_value = "1000.00")]
    amount: String,
    /// The partners' own latency on the path to CONFIRMED (payment + documents), subtracted to
    /// get the saga overhead; run the partners without jitter for an exact figure.
    #[arg(long, default_value_t = 250)]
    partner_latency_ms: u64,
    /// The partners' base URL (e.g. `http://127.0.0.1:7900`): subtract each investment's own
    /// payment and documents latency, read from their `GET /v1/audit`, instead of
    /// `--partner-latency-ms`; exact with the latency jitter on.
    #[arg(long)]
    partners: Option<String>,
    /// Longest wait for one investment to reach its final status.
    #[arg(long, default_value_t = 120)]
    watch_timeout_s: u64,
}

/// One connection per endpoint; load is spread over them round robin.
async fn connect_all(cli: &Cli) -> Result<Vec<NodeClients>> {
    let mut connections = Vec::new();
    let credentials = cli.credentials()?;
    for endpoint in &cli.endpoints {
        connections.push(
            connect_with(endpoint, &credentials)
                .await
                .with_context(|| format!("connecting to {endpoint}"))?,
        );
    }
    Ok(connections)
}

/// What one watched investment ended as.
struct Watched {
    /// Seconds from the start of the run to the submit.
    sent_at_s: f64,
    admission_us: u64,
    to_final_us: Option<u64>,
    status: String,
}

pub async fn saga_bench(cli: &Cli, args: &SagaBenchArgs) -> Result<()> {
    if args.rate == 0 || args.deals == 0 {
        bail!("--rate and --deals must be at least 1");
    }
    let prefix = format!("saga-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let admin = cli.client().await?;
    // Measure sagas, not start-up.
    wait_for_executors(&admin).await?;
    create_deals(&admin, &prefix, args.deals, args.max_investors).await?;
    // The load itself goes round robin over the endpoints, one connection each, without the
    // client library's routing: followers forwarding is part of what is measured.
    let connections = connect_all(cli).await?;
    let total = args.rate * args.duration_s;
    let period = Duration::from_secs_f64(1.0 / args.rate as f64);
    let watch_timeout = Duration::from_secs(args.watch_timeout_s);
    let args_duration_s = args.duration_s;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    // The load generator shares the cores with the cluster: note when it was itself stalled,
    // so that a latency spike can be told apart from a stall of the cluster.
    let stalls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let client_stalls = tokio::spawn({
        let stalls = stalls.clone();
        async move {
            while started.elapsed() < Duration::from_secs(args_duration_s + 300) {
                let before = Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                let late = before.elapsed().saturating_sub(Duration::from_millis(10));
                if late > Duration::from_millis(50) {
                    if let Ok(mut stalls) = stalls.lock() {
                        stalls.push((
                            started.elapsed().as_secs_f64() as u64,
                            late.as_millis() as u64,
                        ));
                    }
                }
            }
        }
    });
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        ticker.tick().await;
        let mut clients = connections[n as usize % connections.len()].clone();
        let request = pb::SubmitRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            deal_id: format!("{prefix}-{}", n % args.deals as u64),
            user_id: format!("investor-{n}"),
            amount: args.amount.clone(),
            waitlist: false,
            waitlist_ttl_ms: None,
        };
        tasks.push((
            request.request_id.clone(),
            tokio::spawn(async move {
                let sent = Instant::now();
                let sent_at_s = sent.duration_since(started).as_secs_f64();
                let reply = clients.admission.submit(request.clone()).await;
                let admission_us = sent.elapsed().as_micros() as u64;
                let replied = Instant::now();
                let investment = match reply {
                    Ok(reply) => reply.into_inner().investment.unwrap_or_default(),
                    Err(status) => {
                        return Watched {
                            sent_at_s,
                            admission_us,
                            to_final_us: None,
                            status: format!("error {:?}", status.code()),
                        }
                    }
                };
                if investment.status != pb::InvestmentStatus::Pending as i32 {
                    return Watched {
                        sent_at_s,
                        admission_us,
                        to_final_us: None,
                        status: "REJECTED".into(),
                    };
                }
                // A stream that breaks with UNAVAILABLE (a node's read barrier timing out while the
                // cluster is slow) is opened again, as the client library does: the investment's
                // fate is what is measured, not one stream's.
                let watch = async {
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        let opened = async {
                            let mut stream = clients
                                .admission
                                .watch_investment(pb::WatchInvestmentRequest {
                                    request_id: request.request_id.clone(),
                                })
                                .await?
                                .into_inner();
                            let mut last = None;
                            while let Some(update) = stream.message().await? {
                                last = Some(update.status);
                            }
                            Ok::<_, tonic::Status>(last)
                        }
                        .await;
                        match opened {
                            Err(status)
                                if status.code() == tonic::Code::Unavailable && attempts < 10 =>
                            {
                                tokio::time::sleep(Duration::from_millis(50 * attempts)).await
                            }
                            other => return other,
                        }
                    }
                };
                match tokio::time::timeout(watch_timeout, watch).await {
                    Ok(Ok(Some(status))) if status != pb::InvestmentStatus::Pending as i32 => {
                        Watched {
                            sent_at_s,
                            admission_us,
                            to_final_us: Some(replied.elapsed().as_micros() as u64),
                            status: pb::InvestmentStatus::try_from(status)
                                .map(|s| s.as_str_name())
                                .unwrap_or("?")
                                .to_owned(),
                        }
                    }
                    Ok(Ok(_)) => Watched {
                        sent_at_s,
                        admission_us,
                        to_final_us: None,
                        status: "watch ended while PENDING".into(),
                    },
                    Ok(Err(status)) => Watched {
                        sent_at_s,
                        admission_us,
                        to_final_us: None,
                        status: format!("watch error {:?}", status.code()),
                    },
                    Err(_) => Watched {
                        sent_at_s,
                        admission_us,
                        to_final_us: None,
                        status: "not final within the watch timeout".into(),
                    },
                }
            }),
        ));
        if started.elapsed() > Duration::from_secs(args.duration_s + 5) {
            break;
        }
    }
    let submitted_in = started.elapsed().as_secs_f64();
    let (mut admission, mut to_final, mut overhead) = (histogram(), histogram(), histogram());
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut finished = Vec::with_capacity(tasks.len());
    for (request_id, task) in tasks {
        finished.push((request_id, task.await?));
    }
    // Read once every investment is final, so that the audit holds all of their calls.
    let partner_ms = match &args.partners {
        Some(url) => Some(partner_latencies(url).await?),
        None => None,
    };
    let mut partner_latency_unknown = 0u64;
    // Investments whose overhead passed 50 ms, by the second of the run they were submitted in.
    let mut slow_by_second: BTreeMap<u64, u64> = BTreeMap::new();
    for (request_id, watched) in finished {
        let _ = admission.record(watched.admission_us.max(1));
        if let Some(us) = watched.to_final_us {
            let _ = to_final.record(us.max(1));
            let partner_us = match &partner_ms {
                Some(of) => of.get(&request_id).map(|ms| ms * 1_000),
                None => Some(args.partner_latency_ms * 1_000),
            };
            match partner_us {
                Some(partner_us) if watched.status == "CONFIRMED" => {
                    let over = us.saturating_sub(partner_us).max(1);
                    let _ = overhead.record(over);
                    if over > 50_000 {
                        *slow_by_second.entry(watched.sent_at_s as u64).or_default() += 1;
                    }
                }
                None if watched.status == "CONFIRMED" => partner_latency_unknown += 1,
                _ => {}
            }
        }
        *statuses.entry(watched.status).or_default() += 1;
    }
    client_stalls.abort();
    let client_stalls = stalls.lock().map(|s| s.clone()).unwrap_or_default();
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let summary = |h: &hdrhistogram::Histogram<u64>| json!({"count": h.len(), "p50": ms(h, 0.5), "p90": ms(h, 0.9), "p99": ms(h, 0.99), "max": h.max() as f64 / 1000.0});
    let report = json!({
        "submitted": admission.len(), "submit_seconds": submitted_in, "rate_per_second": admission.len() as f64 / submitted_in,
        "endpoints": cli.endpoints, "statuses": statuses,
        "admission_ms": summary(&admission), "reply_to_final_ms": summary(&to_final),
        "saga_overhead_ms": summary(&overhead), "partner_latency_ms_subtracted": if args.partners.is_some() { json!("per investment, from the partners' audit") } else { json!(args.partner_latency_ms) },
        "confirmed_without_partner_latency": partner_latency_unknown,
        "over_50ms_by_submit_second": slow_by_second, "client_stalls_s_ms": client_stalls,
    });
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} submits in {submitted_in:.1} s ({:.0}/s) over {} endpoint(s)",
            admission.len(),
            admission.len() as f64 / submitted_in,
            cli.endpoints.len()
        );
        println!("statuses: {statuses:?}");
        println!("overhead > 50 ms, by second of submission: {slow_by_second:?}");
        match &args.partners {
            Some(_) => println!(
                "partners' latency subtracted per investment, from their audit \
                 ({partner_latency_unknown} CONFIRMED without one)"
            ),
            None => println!(
                "partners' latency subtracted: {} ms per investment",
                args.partner_latency_ms
            ),
        }
        println!("load generator stalls (second, ms late): {client_stalls:?}");
        for (name, h) in [
            ("admission", &admission),
            ("reply to final status", &to_final),
            ("saga overhead (CONFIRMED, minus partners)", &overhead),
        ] {
            println!(
                "{name:<42} ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (n={})",
                ms(h, 0.5),
                ms(h, 0.9),
                ms(h, 0.99),
                h.max() as f64 / 1000.0,
                h.len()
            );
        }
    }
    Ok(())
}

/// Each request's own partner latency on the path to CONFIRMED (its charge plus its documents),
/// in ms, from the partners' audit.
async fn partner_latencies(url: &str) -> Result<std::collections::HashMap<String, u64>> {
    // The partners run beside the cluster: straight there, never through a proxy.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building an HTTP client")?;
    let audit: serde_json::Value = http
        .get(format!("{}/v1/audit", url.trim_end_matches('/')))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("reading the partners' audit")?
        .json()
        .await
        .context("decoding the partners' audit")?;
    let mut latencies = std::collections::HashMap::new();
    for event in audit["events"].as_array().into_iter().flatten() {
        let (Some(kind), Some(key), Some(latency_ms)) = (
            event["kind"].as_str(),
            event["key"].as_str(),
            event["latency_ms"].as_u64(),
        ) else {
            continue;
        };
        let step = match kind {
            "charge" => ":payment",
            "document" => ":documents",
            _ => continue,
        };
        if let Some(request_id) = key.strip_suffix(step) {
            *latencies.entry(request_id.to_owned()).or_default() += latency_ms;
        }
    }
    Ok(latencies)
}
