//! `ledgerctl`: the operator CLI of the admission ledger.
//!
//! Today: cluster status and bootstrap, deals, investments, and a bounded load generator
//! (`bench`). Membership, leader transfer, sagas and the demo arrive with issue #5.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ledger_client::{connect, NodeClients};
use ledger_proto::pb;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "ledgerctl",
    version,
    about = "Operate an admission-ledger cluster"
)]
struct Cli {
    /// Nodes to talk to, comma separated (`host:port`).
    #[arg(
        long,
        env = "LEDGER_ENDPOINTS",
        default_value = "127.0.0.1:7801",
        value_delimiter = ',',
        global = true
    )]
    endpoints: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Cluster status and bootstrap.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Deals.
    #[command(subcommand)]
    Deal(DealCmd),
    /// Investments.
    #[command(subcommand)]
    Invest(InvestCmd),
    /// Drive a bounded load of `Submit`s and report throughput and latency.
    Bench(BenchArgs),
    /// Submit at a fixed rate, watch every admitted investment to its final status, and report
    /// admission latency, time to the final status, and saga overhead beyond the partners.
    SagaBench(SagaBenchArgs),
}

#[derive(clap::Args)]
struct SagaBenchArgs {
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
    /// Longest wait for one investment to reach its final status.
    #[arg(long, default_value_t = 120)]
    watch_timeout_s: u64,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Role, term, indexes and digest of every endpoint.
    Status,
    /// Initialize a new cluster: `--members 1=127.0.0.1:7801,2=127.0.0.1:7802`.
    Init {
        /// `id=host:port` of every initial voter.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<String>,
    },
}

#[derive(Subcommand)]
enum DealCmd {
    /// Open a deal.
    Create {
        /// The deal id.
        deal_id: String,
        /// The deal amount, e.g. 1000000.00.
        #[arg(long)]
        amount: String,
        /// Seats (0 = 200).
        #[arg(long, default_value_t = 0)]
        max_investors: u32,
        /// Smallest ticket.
        #[arg(long)]
        min_ticket: Option<String>,
        /// Largest ticket.
        #[arg(long)]
        max_ticket: Option<String>,
    },
    /// Show a deal.
    Show {
        /// The deal id.
        deal_id: String,
    },
}

#[derive(Subcommand)]
enum InvestCmd {
    /// Submit an investment request.
    Submit {
        /// The deal.
        #[arg(long)]
        deal: String,
        /// The investor.
        #[arg(long)]
        user: String,
        /// The ticket.
        #[arg(long)]
        amount: String,
        /// Idempotency key; a new UUID if absent.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Show an investment.
    Show {
        /// The request id.
        request_id: String,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Concurrent clients, spread over the endpoints.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Total `Submit`s to send (the run stops at whichever of count and duration comes first).
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Longest run.
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
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
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ledgerctl: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Top::Cluster(ClusterCmd::Status) => cluster_status(cli).await,
        Top::Cluster(ClusterCmd::Init { members }) => cluster_init(cli, members).await,
        Top::Deal(cmd) => deal(cli, cmd).await,
        Top::Invest(cmd) => invest(cli, cmd).await,
        Top::Bench(args) => bench(cli, args).await,
        Top::SagaBench(args) => saga_bench(cli, args).await,
    }
}

async fn first(cli: &Cli) -> Result<NodeClients> {
    let mut last_error = None;
    for endpoint in &cli.endpoints {
        match connect(endpoint).await {
            Ok(clients) => return Ok(clients),
            Err(error) => last_error = Some(anyhow::anyhow!("{endpoint}: {error}")),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no endpoints given")))
}

async fn cluster_status(cli: &Cli) -> Result<()> {
    let mut rows = Vec::new();
    for endpoint in &cli.endpoints {
        let status = match connect(endpoint).await {
            Ok(mut clients) => clients
                .cluster
                .status(pb::StatusRequest {})
                .await
                .map(|r| r.into_inner())
                .map_err(|s| s.message().to_owned()),
            Err(error) => Err(error.to_string()),
        };
        rows.push((endpoint.clone(), status));
    }
    if cli.json {
        let items: Vec<_> = rows
            .iter()
            .map(|(endpoint, status)| match status {
                Ok(s) => json!({
                    "endpoint": endpoint, "node_id": s.node_id, "role": s.role, "leader_id": s.leader_id,
                    "term": s.term, "last_log_index": s.last_log_index, "applied_index": s.applied_index,
                    "snapshot_index": s.snapshot_index, "state_digest": s.state_digest,
                    "members": s.members.iter().map(|m| json!({"node_id": m.node_id, "addr": m.addr, "role": pb::MemberRole::try_from(m.role).map(|r| r.as_str_name()).unwrap_or("?"), "matched_index": m.matched_index})).collect::<Vec<_>>(),
                }),
                Err(error) => json!({"endpoint": endpoint, "error": error}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    println!(
        "{:<22} {:>4} {:<10} {:>6} {:>5} {:>9} {:>9}  digest",
        "endpoint", "id", "role", "leader", "term", "applied", "snapshot"
    );
    for (endpoint, status) in rows {
        match status {
            Ok(s) => println!(
                "{endpoint:<22} {:>4} {:<10} {:>6} {:>5} {:>9} {:>9}  {}",
                s.node_id,
                s.role,
                s.leader_id.map_or("-".to_owned(), |l| l.to_string()),
                s.term,
                s.applied_index,
                s.snapshot_index,
                &s.state_digest[..16.min(s.state_digest.len())]
            ),
            Err(error) => println!("{endpoint:<22} unreachable: {error}"),
        }
    }
    Ok(())
}

async fn cluster_init(cli: &Cli, members: &[String]) -> Result<()> {
    let mut parsed = Vec::new();
    for member in members {
        let (id, addr) = member
            .split_once('=')
            .with_context(|| format!("{member:?} is not id=host:port"))?;
        parsed.push(pb::MemberAddr {
            node_id: id.parse().with_context(|| format!("node id {id:?}"))?,
            addr: addr.to_owned(),
        });
    }
    let mut clients = first(cli).await?;
    clients
        .cluster
        .init(pb::InitRequest { members: parsed })
        .await?;
    println!("initialized");
    Ok(())
}

fn print_deal(cli: &Cli, deal: &pb::Deal) {
    if cli.json {
        println!(
            "{}",
            json!({"deal_id": deal.deal_id, "amount": deal.amount, "max_investors": deal.max_investors, "status": pb::DealStatus::try_from(deal.status).map(|s| s.as_str_name()).unwrap_or("?"), "investor_count": deal.investor_count, "reserved_amount": deal.reserved_amount, "confirmed_count": deal.confirmed_count, "confirmed_amount": deal.confirmed_amount})
        );
    } else {
        println!(
            "{} amount={} seats={}/{} reserved={} confirmed={}/{}",
            deal.deal_id,
            deal.amount,
            deal.investor_count,
            deal.max_investors,
            deal.reserved_amount,
            deal.confirmed_count,
            deal.confirmed_amount
        );
    }
}

fn print_investment(cli: &Cli, inv: &pb::Investment) {
    let status = pb::InvestmentStatus::try_from(inv.status)
        .map(|s| s.as_str_name())
        .unwrap_or("?");
    let reason = pb::RejectReason::try_from(inv.reject_reason)
        .map(|s| s.as_str_name())
        .unwrap_or("?");
    if cli.json {
        println!(
            "{}",
            json!({"request_id": inv.request_id, "deal_id": inv.deal_id, "user_id": inv.user_id, "amount": inv.amount, "status": status, "reject_reason": reason, "log_index": inv.log_index, "offset": inv.offset})
        );
    } else {
        println!(
            "{} {} deal={} user={} amount={} at {}:{}{}",
            inv.request_id,
            status,
            inv.deal_id,
            inv.user_id,
            inv.amount,
            inv.log_index,
            inv.offset,
            if inv.reject_reason != 0 {
                format!(" reason={reason}")
            } else {
                String::new()
            }
        );
    }
}

async fn deal(cli: &Cli, cmd: &DealCmd) -> Result<()> {
    let mut clients = first(cli).await?;
    let deal = match cmd {
        DealCmd::Create {
            deal_id,
            amount,
            max_investors,
            min_ticket,
            max_ticket,
        } => clients
            .admission
            .create_deal(pb::CreateDealRequest {
                deal_id: deal_id.clone(),
                amount: amount.clone(),
                max_investors: *max_investors,
                min_ticket: min_ticket.clone(),
                max_ticket: max_ticket.clone(),
            })
            .await?
            .into_inner(),
        DealCmd::Show { deal_id } => clients
            .admission
            .get_deal(pb::GetDealRequest {
                deal_id: deal_id.clone(),
                consistency: 0,
            })
            .await?
            .into_inner(),
    };
    print_deal(cli, &deal);
    Ok(())
}

async fn invest(cli: &Cli, cmd: &InvestCmd) -> Result<()> {
    let mut clients = first(cli).await?;
    let investment = match cmd {
        InvestCmd::Submit {
            deal,
            user,
            amount,
            request_id,
        } => {
            let request_id = request_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let response = clients
                .admission
                .submit(pb::SubmitRequest {
                    request_id,
                    deal_id: deal.clone(),
                    user_id: user.clone(),
                    amount: amount.clone(),
                })
                .await?
                .into_inner();
            response
                .investment
                .context("the node returned no investment")?
        }
        InvestCmd::Show { request_id } => clients
            .admission
            .get_investment(pb::GetInvestmentRequest {
                request_id: request_id.clone(),
                consistency: 0,
            })
            .await?
            .into_inner(),
    };
    print_investment(cli, &investment);
    Ok(())
}

/// Creates `count` bench deals `{prefix}-0..`, each with `max_investors` seats and room for
/// every ticket.
async fn create_deals(
    admin: &mut NodeClients,
    prefix: &str,
    count: usize,
    max_investors: u32,
) -> Result<()> {
    for d in 0..count {
        admin
            .admission
            .create_deal(pb::CreateDealRequest {
                deal_id: format!("{prefix}-{d}"),
                amount: "1000000000000".into(),
                max_investors,
                min_ticket: None,
                max_ticket: None,
            })
            .await
            .with_context(|| format!("creating deal {prefix}-{d}"))?;
    }
    Ok(())
}

/// One connection per endpoint; load is spread over them round robin.
async fn connect_all(cli: &Cli) -> Result<Vec<NodeClients>> {
    let mut connections = Vec::new();
    for endpoint in &cli.endpoints {
        connections.push(
            connect(endpoint)
                .await
                .with_context(|| format!("connecting to {endpoint}"))?,
        );
    }
    Ok(connections)
}

#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

async fn bench(cli: &Cli, args: &BenchArgs) -> Result<()> {
    if args.clients == 0 || args.deals == 0 {
        bail!("--clients and --deals must be at least 1");
    }
    let prefix = args
        .deal_prefix
        .clone()
        .unwrap_or_else(|| format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let mut admin = first(cli).await?;
    create_deals(&mut admin, &prefix, args.deals, args.max_investors).await?;
    let connections = connect_all(cli).await?;
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.duration_s);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let mut clients = connections[c % connections.len()].clone();
        let next = next.clone();
        let (count, deals, amount, prefix) = (
            args.count,
            args.deals as u64,
            args.amount.clone(),
            prefix.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("valid bounds");
            let mut tally = Tally::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count || Instant::now() >= deadline {
                    break;
                }
                let request = pb::SubmitRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    deal_id: format!("{prefix}-{}", n % deals),
                    user_id: format!("investor-{n}"),
                    amount: amount.clone(),
                };
                let sent = Instant::now();
                // Retry UNAVAILABLE with the same request id: the decision is made at most once.
                let mut attempts = 0;
                let result = loop {
                    attempts += 1;
                    match clients.admission.submit(request.clone()).await {
                        Err(status)
                            if status.code() == tonic::Code::Unavailable
                                && attempts < 50
                                && Instant::now() < deadline =>
                        {
                            tokio::time::sleep(Duration::from_millis(20 * attempts.min(10))).await;
                        }
                        other => break other,
                    }
                };
                let _ = histogram.record(sent.elapsed().as_micros() as u64);
                match result {
                    Ok(response) => {
                        let inv = response.into_inner().investment.unwrap_or_default();
                        let key = if inv.reject_reason != 0 {
                            format!(
                                "REJECTED {}",
                                pb::RejectReason::try_from(inv.reject_reason)
                                    .map(|r| r.as_str_name())
                                    .unwrap_or("?")
                            )
                        } else {
                            pb::InvestmentStatus::try_from(inv.status)
                                .map(|s| s.as_str_name())
                                .unwrap_or("?")
                                .to_owned()
                        };
                        *tally.outcomes.entry(key).or_default() += 1;
                    }
                    Err(status) => {
                        *tally
                            .errors
                            .entry(format!("{:?}", status.code()))
                            .or_default() += 1
                    }
                }
            }
            (histogram, tally)
        }));
    }
    let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut tally = Tally::default();
    for task in tasks {
        let (h, t) = task.await?;
        histogram.add(h)?;
        for (k, v) in t.outcomes {
            *tally.outcomes.entry(k).or_default() += v;
        }
        for (k, v) in t.errors {
            *tally.errors.entry(k).or_default() += v;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = histogram.len();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let report = json!({
        "requests": total, "seconds": elapsed, "per_second": total as f64 / elapsed,
        "clients": args.clients, "endpoints": cli.endpoints, "deals": args.deals,
        "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": histogram.max() as f64 / 1000.0},
        "outcomes": tally.outcomes, "errors": tally.errors, "deal_prefix": prefix,
    });
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{total} submits in {elapsed:.2} s: {:.0}/s with {} clients over {} endpoint(s)",
            total as f64 / elapsed,
            args.clients,
            cli.endpoints.len()
        );
        println!(
            "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            histogram.max() as f64 / 1000.0
        );
        println!("outcomes: {:?}", tally.outcomes);
        println!("errors: {:?}", tally.errors);
    }
    Ok(())
}

/// What one watched investment ended as.
struct Watched {
    /// Seconds from the start of the run to the submit.
    sent_at_s: f64,
    admission_us: u64,
    to_final_us: Option<u64>,
    status: String,
}

async fn saga_bench(cli: &Cli, args: &SagaBenchArgs) -> Result<()> {
    if args.rate == 0 || args.deals == 0 {
        bail!("--rate and --deals must be at least 1");
    }
    let prefix = format!("saga-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut admin = first(cli).await?;
    // Measure sagas, not start-up: wait (bounded) until the executors hold their leases.
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        let status = admin
            .cluster
            .status(pb::StatusRequest {})
            .await?
            .into_inner();
        if status.executors.iter().any(|e| e.live) {
            break;
        }
        if Instant::now() > ready_by {
            bail!("no live saga executor after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    create_deals(&mut admin, &prefix, args.deals, args.max_investors).await?;
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
        };
        tasks.push(tokio::spawn(async move {
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
            let watch = async {
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
            };
            match tokio::time::timeout(watch_timeout, watch).await {
                Ok(Ok(Some(status))) if status != pb::InvestmentStatus::Pending as i32 => Watched {
                    sent_at_s,
                    admission_us,
                    to_final_us: Some(replied.elapsed().as_micros() as u64),
                    status: pb::InvestmentStatus::try_from(status)
                        .map(|s| s.as_str_name())
                        .unwrap_or("?")
                        .to_owned(),
                },
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
        }));
        if started.elapsed() > Duration::from_secs(args.duration_s + 5) {
            break;
        }
    }
    let submitted_in = started.elapsed().as_secs_f64();
    let new_histogram = || hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3);
    let (mut admission, mut to_final, mut overhead) =
        (new_histogram()?, new_histogram()?, new_histogram()?);
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let partner_us = args.partner_latency_ms * 1_000;
    // Investments whose overhead passed 50 ms, by the second of the run they were submitted in.
    let mut slow_by_second: BTreeMap<u64, u64> = BTreeMap::new();
    for task in tasks {
        let watched = task.await?;
        let _ = admission.record(watched.admission_us.max(1));
        if let Some(us) = watched.to_final_us {
            let _ = to_final.record(us.max(1));
            if watched.status == "CONFIRMED" {
                let over = us.saturating_sub(partner_us).max(1);
                let _ = overhead.record(over);
                if over > 50_000 {
                    *slow_by_second.entry(watched.sent_at_s as u64).or_default() += 1;
                }
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
        "saga_overhead_ms": summary(&overhead), "partner_latency_ms_subtracted": args.partner_latency_ms,
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
