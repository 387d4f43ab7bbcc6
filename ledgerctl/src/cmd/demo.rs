//! `ledgerctl demo`: the rush. Thousands of simulated investors hit one deal of 200 seats at a
//! steady rate; every admitted one is followed to CONFIRMED or CANCELLED; then the summary, the
//! invariants checked against the ledger and the partners' audit, and a plot.
//! `scripts/demo.sh` starts a cluster with partners around it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use ledger_client::{is_final, pb, status_of, Client, Submission};
use ledger_partners::AuditLog;
use rand::Rng;
use rust_decimal::Decimal;
use serde_json::json;

use crate::cli::Cli;
use crate::load::{histogram, wait_for_executors};
use crate::output::reject_reason;
use crate::plot::{write_timeline_svg, Second};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Investors rushing the deal.
    #[arg(long, default_value_t = 5_000)]
    investors: u64,
    /// Requests per second.
    #[arg(long, default_value_t = 600)]
    rate: u64,
    /// Seats in the deal.
    #[arg(long, default_value_t = 200)]
    seats: u32,
    /// The deal's amount.
    #[arg(long, default_value = "1000000.00")]
    amount: String,
    /// The simulated partners (for the money check against their audit).
    #[arg(long, default_value = "http://127.0.0.1:7700")]
    partners_url: String,
    /// Where to write the plot.
    #[arg(long, default_value = "demo.svg")]
    plot: PathBuf,
    /// Longest wait for one investment's saga to end, in seconds.
    #[arg(long, default_value_t = 120)]
    saga_timeout_s: u64,
    /// Share of investors who ask for the waitlist.
    #[arg(long, default_value_t = 0.5)]
    waitlist_share: f64,
    /// Second of the rush at which the documents partner goes down, for
    /// --documents-outage-s seconds (0: no outage).
    #[arg(long, default_value_t = 2)]
    documents_outage_at_s: u64,
    /// How long the documents outage lasts, in seconds.
    #[arg(long, default_value_t = 3)]
    documents_outage_s: u64,
}

/// What happened to one investor's request.
struct Outcome {
    /// Seconds from the start to the decision.
    decided_s: u64,
    submit_us: u64,
    decision: Result<pb::Investment, String>,
    /// The request had been decided before (an investor retrying with the same id).
    replayed: bool,
    /// For admitted ones: the final investment and the second it was seen.
    finished: Option<(u64, Result<pb::Investment, String>)>,
}

pub async fn run(cli: &Cli, args: &DemoArgs) -> Result<()> {
    if args.investors == 0 || args.rate == 0 || args.seats == 0 {
        bail!("--investors, --rate and --seats must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.waitlist_share) {
        bail!("--waitlist-share must be between 0 and 1");
    }
    let client = cli.client().await?;
    wait_for_executors(&client).await?;
    let deal_id = format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let deal = client
        .create_deal(pb::CreateDealRequest {
            deal_id: deal_id.clone(),
            amount: args.amount.clone(),
            max_investors: args.seats,
            min_ticket: Some("1000.00".into()),
            max_ticket: Some("25000.00".into()),
            opens_at_ms: None,
            closes_at_ms: None,
            max_waitlist: 0,
        })
        .await?;
    println!(
        "deal {deal_id}: {} seats, {} in all, tickets 1,000-25,000, waitlist of {}; {} investors \
         at {}/s, {:.0}% of them asking for the waitlist",
        deal.max_investors,
        deal.amount,
        deal.max_waitlist,
        args.investors,
        args.rate,
        args.waitlist_share * 100.0
    );
    if args.documents_outage_s > 0 {
        println!(
            "the documents partner goes down at second {} for {} s",
            args.documents_outage_at_s, args.documents_outage_s
        );
    }

    let requests = investors(&deal_id, args.investors, args.waitlist_share);
    let progress = if cli.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(requests.len() as u64)
    };
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} decided  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let counters = Arc::new(Mutex::new(BTreeMap::<&'static str, u64>::new()));
    let saga_timeout = Duration::from_secs(args.saga_timeout_s);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_waitlist(
        client.clone(),
        deal_id.clone(),
        started,
        stop_sampling.clone(),
    ));
    let decided_count = Arc::new(AtomicU64::new(0));
    let outage = (args.documents_outage_s > 0).then(|| {
        tokio::spawn(documents_outage(
            args.partners_url.clone(),
            Duration::from_secs(args.documents_outage_at_s),
            Duration::from_secs(args.documents_outage_s),
        ))
    });
    // Waitlisted requests wait until the deal closes, after every admitted saga ended.
    let waitlist_timeout = saga_timeout * 4;
    let mut tasks = Vec::with_capacity(requests.len());
    for submission in requests {
        ticker.tick().await;
        let (client, progress, counters) = (client.clone(), progress.clone(), counters.clone());
        let decided_count = decided_count.clone();
        tasks.push(tokio::spawn(async move {
            let bump = |key: &'static str| {
                let mut c = counters.lock().unwrap_or_else(|e| e.into_inner());
                *c.entry(key).or_default() += 1;
                format!(
                    "admitted {}  waitlisted {}  rejected {}  confirmed {}  cancelled {}  errors {}",
                    c.get("admitted").unwrap_or(&0),
                    c.get("waitlisted").unwrap_or(&0),
                    c.get("rejected").unwrap_or(&0),
                    c.get("confirmed").unwrap_or(&0),
                    c.get("cancelled").unwrap_or(&0),
                    c.get("errors").unwrap_or(&0)
                )
            };
            let sent = Instant::now();
            let decided = client.submit(&submission).await;
            let submit_us = sent.elapsed().as_micros() as u64;
            let decided_s = started.elapsed().as_secs();
            decided_count.fetch_add(1, Ordering::Relaxed);
            progress.inc(1);
            let (decision, replayed) = match decided {
                Ok(d) => (d.investment, d.replayed),
                Err(error) => {
                    progress.set_message(bump("errors"));
                    return Outcome {
                        decided_s,
                        submit_us,
                        decision: Err(error.to_string()),
                        replayed: false,
                        finished: None,
                    };
                }
            };
            if is_final(&decision) || replayed {
                progress.set_message(bump(if replayed { "replayed" } else { "rejected" }));
                return Outcome {
                    decided_s,
                    submit_us,
                    decision: Ok(decision),
                    replayed,
                    finished: None,
                };
            }
            let waitlisted = status_of(&decision) == pb::InvestmentStatus::Waitlisted;
            progress.set_message(bump(if waitlisted { "waitlisted" } else { "admitted" }));
            let wait = if waitlisted {
                waitlist_timeout
            } else {
                saga_timeout
            };
            let waited = client
                .wait_final(&submission.request_id, wait)
                .await
                .map_err(|e| e.to_string());
            progress.set_message(bump(match &waited {
                Ok(inv) if status_of(inv) == pb::InvestmentStatus::Confirmed => "confirmed",
                Ok(inv) if status_of(inv) == pb::InvestmentStatus::Cancelled => "cancelled",
                Ok(_) => "rejected",
                Err(_) => "errors",
            }));
            Outcome {
                decided_s,
                submit_us,
                decision: Ok(decision),
                replayed,
                finished: Some((started.elapsed().as_secs(), waited)),
            }
        }));
    }
    let submitted_in = started.elapsed().as_secs_f64();
    let sent = tasks.len() as u64;
    if let Some(outage) = outage {
        outage.await??;
    }
    wait_decided(&decided_count, sent, saga_timeout).await?;
    // Once no admitted saga is running, no seat can free up: what still waits waits for good.
    let waiting_at_close = close_when_settled(&client, &deal_id, saga_timeout * 2).await?;
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await?);
    }
    progress.finish_and_clear();
    let total_s = started.elapsed().as_secs_f64();
    stop_sampling.store(true, Ordering::Relaxed);
    let samples = sampler.await.unwrap_or_default();

    let mut summary = summarize(&outcomes, submitted_in, total_s);
    let mut checks = check_invariants(&client, &deal_id, &outcomes, &args.partners_url).await;
    let (fill, fill_checks) = fill_report(&client, &deal_id, waiting_at_close).await;
    summary["fill"] = fill;
    checks.extend(fill_checks);
    let mut seconds = timeline(&outcomes);
    for (t, length) in samples {
        if let Some(second) = seconds.get_mut(t as usize) {
            second.waitlist_length = Some(length);
        }
    }
    let plotted = write_timeline_svg(
        &args.plot,
        &format!(
            "{} investors rushing {} seats, {:.0}% asking for the waitlist ({deal_id})",
            args.investors,
            args.seats,
            args.waitlist_share * 100.0
        ),
        &seconds,
    );
    let all_hold = checks.iter().all(|(_, result)| result.is_ok());
    if cli.json {
        let report = json!({
            "deal_id": deal_id, "summary": summary,
            "invariants": checks.iter().map(|(name, r)| json!({"name": name, "holds": r.is_ok(), "detail": match r { Ok(d) | Err(d) => d }})).collect::<Vec<_>>(),
            "plot": plotted.as_ref().map(|()| args.plot.display().to_string()).map_err(|e| e.to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&summary);
        println!("\ninvariants:");
        for (name, result) in &checks {
            match result {
                Ok(detail) => println!("  holds   {name}: {detail}"),
                Err(detail) => println!("  BROKEN  {name}: {detail}"),
            }
        }
        match &plotted {
            Ok(()) => println!("\nplot: {}", args.plot.display()),
            Err(error) => println!("\nplot not written: {error}"),
        }
    }
    if !all_hold {
        bail!("an invariant does not hold");
    }
    Ok(())
}

/// The crowd: mostly one request per investor with a ticket of 1,000-7,500 in steps of 250
/// (so that the seats run out just before the amount does);
/// about 2% come back with a second request (a new id: refused as a duplicate investor while
/// the first is active), 1% retry their own request (same id: the first decision again), and
/// 1% ask for less than the minimum ticket. A `waitlist_share` of them ask for the waitlist.
fn investors(deal_id: &str, count: u64, waitlist_share: f64) -> Vec<Submission> {
    let mut rng = rand::rng();
    let mut out = Vec::with_capacity(count as usize + count as usize / 25);
    for n in 0..count {
        let user = format!("investor-{n:05}");
        let amount = if rng.random_bool(0.01) {
            "500.00".to_owned()
        } else {
            format!("{}.00", 1000 + 250 * rng.random_range(0..=26u32))
        };
        let waitlist = rng.random_bool(waitlist_share);
        let ask = |submission: Submission| match waitlist {
            true => submission.waitlisted(None),
            false => submission,
        };
        let submission = ask(Submission::new(deal_id, user.clone(), amount.clone()));
        out.push(submission.clone());
        if rng.random_bool(0.02) {
            out.push(ask(Submission::new(deal_id, user, amount)));
        } else if rng.random_bool(0.01) {
            out.push(submission);
        }
    }
    out
}

fn summarize(outcomes: &[Outcome], submitted_in: f64, total_s: f64) -> serde_json::Value {
    let mut decisions: BTreeMap<String, u64> = BTreeMap::new();
    let mut finals: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors = 0;
    let (mut submit, mut to_final) = (histogram(), histogram());
    for outcome in outcomes {
        let _ = submit.record(outcome.submit_us.max(1));
        match &outcome.decision {
            Ok(_) if outcome.replayed => {
                *decisions
                    .entry("REPLAYED (same request id again)".into())
                    .or_default() += 1
            }
            Ok(inv) if status_of(inv) == pb::InvestmentStatus::Rejected => {
                *decisions
                    .entry(format!("REJECTED {}", reject_reason(inv)))
                    .or_default() += 1
            }
            Ok(inv) if status_of(inv) == pb::InvestmentStatus::Waitlisted => {
                *decisions.entry("WAITLISTED".into()).or_default() += 1
            }
            Ok(_) => *decisions.entry("ADMITTED".into()).or_default() += 1,
            Err(_) => errors += 1,
        }
        if let Some((at_s, finished)) = &outcome.finished {
            match finished {
                Ok(inv) => {
                    let name = match status_of(inv) {
                        pb::InvestmentStatus::Rejected => {
                            format!("REJECTED {}", reject_reason(inv))
                        }
                        status if inv.admitted_log_index > 0 => {
                            format!("{} (admitted from the waitlist)", status.as_str_name())
                        }
                        status => status.as_str_name().to_owned(),
                    };
                    *finals.entry(name).or_default() += 1;
                    let _ = to_final.record(((at_s - outcome.decided_s) * 1_000_000).max(1));
                }
                Err(_) => *finals.entry("NOT FINAL".into()).or_default() += 1,
            }
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "requests": outcomes.len(), "submitted_in_s": submitted_in,
        "rate_per_s": outcomes.len() as f64 / submitted_in, "total_s": total_s,
        "decisions": decisions, "finals": finals, "client_errors": errors,
        "submit_ms": {"p50": ms(&submit, 0.5), "p90": ms(&submit, 0.9), "p99": ms(&submit, 0.99), "p999": ms(&submit, 0.999), "max": submit.max() as f64 / 1000.0},
    })
}

fn print_summary(summary: &serde_json::Value) {
    println!(
        "\n{} requests in {:.1} s ({:.0}/s); all sagas over after {:.1} s",
        summary["requests"],
        summary["submitted_in_s"].as_f64().unwrap_or(0.0),
        summary["rate_per_s"].as_f64().unwrap_or(0.0),
        summary["total_s"].as_f64().unwrap_or(0.0)
    );
    println!("decisions:");
    if let Some(map) = summary["decisions"].as_object() {
        for (k, v) in map {
            println!("  {k:<40} {v:>6}");
        }
    }
    println!("admitted and waitlisted requests ended:");
    if let Some(map) = summary["finals"].as_object() {
        for (k, v) in map {
            println!("  {k:<40} {v:>6}");
        }
    }
    println!("client errors: {}", summary["client_errors"]);
    let fill = &summary["fill"];
    if fill.is_object() {
        println!(
            "deal closed with {} of {} seats and {} of {} confirmed; {} admitted from the \
             waitlist; {} still waiting when it closed",
            fill["confirmed_count"],
            fill["max_investors"],
            fill["confirmed_amount"].as_str().unwrap_or("?"),
            fill["amount"].as_str().unwrap_or("?"),
            fill["admitted_from_waitlist"],
            fill["waitlist_at_close"]
        );
        println!(
            "receipt head {}; deal verify on its export: {}",
            fill["receipt_head"].as_str().unwrap_or("?"),
            fill["verify"].as_str().unwrap_or("?")
        );
    }
    let s = &summary["submit_ms"];
    println!(
        "Submit latency ms: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        s["p50"], s["p90"], s["p99"], s["p999"], s["max"]
    );
}

fn timeline(outcomes: &[Outcome]) -> Vec<Second> {
    let last = outcomes
        .iter()
        .map(|o| {
            o.finished
                .as_ref()
                .map_or(o.decided_s, |(s, _)| *s)
                .max(o.decided_s)
        })
        .max()
        .unwrap_or(0);
    let mut seconds: Vec<Second> = (0..=last)
        .map(|t| Second {
            t,
            ..Second::default()
        })
        .collect();
    let mut latencies: Vec<Histogram<u64>> = (0..=last).map(|_| histogram()).collect();
    for outcome in outcomes {
        let second = &mut seconds[outcome.decided_s as usize];
        match &outcome.decision {
            Ok(_) if outcome.replayed => {}
            Ok(inv) if status_of(inv) == pb::InvestmentStatus::Rejected => second.rejected += 1,
            Ok(inv) if status_of(inv) == pb::InvestmentStatus::Waitlisted => second.waitlisted += 1,
            Ok(_) => second.admitted += 1,
            Err(_) => {}
        }
        let _ = latencies[outcome.decided_s as usize].record(outcome.submit_us.max(1));
        if let Some((at, Ok(inv))) = &outcome.finished {
            match status_of(inv) {
                pb::InvestmentStatus::Confirmed => seconds[*at as usize].confirmed += 1,
                pb::InvestmentStatus::Cancelled => seconds[*at as usize].cancelled += 1,
                _ => {}
            }
        }
    }
    for (second, h) in seconds.iter_mut().zip(&latencies) {
        if !h.is_empty() {
            second.p50_ms = Some(h.value_at_quantile(0.5) as f64 / 1000.0);
            second.p99_ms = Some(h.value_at_quantile(0.99) as f64 / 1000.0);
            second.max_ms = Some(h.max() as f64 / 1000.0);
        }
    }
    seconds
}

type Check = (&'static str, Result<String, String>);

/// The deal and all its investments (linearizable reads).
async fn read_deal(
    client: &Client,
    deal_id: &str,
) -> Result<(pb::Deal, Vec<pb::Investment>), String> {
    let deal = client.deal(deal_id).await.map_err(|e| e.to_string())?;
    let list = client
        .deal_investments(deal_id)
        .await
        .map_err(|e| e.to_string())?;
    Ok((deal, list))
}

/// The invariants of DESIGN §4.5 that one run without faults can show, checked against the
/// ledger's own lists and the payment partner's audit.
async fn check_invariants(
    client: &Client,
    deal_id: &str,
    outcomes: &[Outcome],
    partners_url: &str,
) -> Vec<Check> {
    let mut checks: Vec<Check> = Vec::new();
    let (deal, list) = match read_deal(client, deal_id).await {
        Ok(read) => read,
        Err(e) => {
            checks.push(("ledger readable", Err(e)));
            return checks;
        }
    };
    let dec = |s: &str| s.parse::<Decimal>().unwrap_or(Decimal::MAX);
    let active: Vec<&pb::Investment> = list
        .iter()
        .filter(|i| {
            matches!(
                status_of(i),
                pb::InvestmentStatus::Pending | pb::InvestmentStatus::Confirmed
            )
        })
        .collect();
    let active_sum: Decimal = active.iter().map(|i| dec(&i.amount)).sum();
    checks.push((
        "I1 seats: active investors = counter <= max_investors",
        if active.len() as u32 == deal.investor_count && deal.investor_count <= deal.max_investors {
            Ok(format!("{} of {}", deal.investor_count, deal.max_investors))
        } else {
            Err(format!(
                "{} active, counter {}, max {}",
                active.len(),
                deal.investor_count,
                deal.max_investors
            ))
        },
    ));
    checks.push((
        "I2 amount: active amounts = reserved <= deal amount",
        if active_sum == dec(&deal.reserved_amount) && active_sum <= dec(&deal.amount) {
            Ok(format!("{} of {}", deal.reserved_amount, deal.amount))
        } else {
            Err(format!(
                "active sum {active_sum}, reserved {}, amount {}",
                deal.reserved_amount, deal.amount
            ))
        },
    ));
    let mut users = HashSet::new();
    let doubled: Vec<&str> = active
        .iter()
        .filter(|i| !users.insert(i.user_id.as_str()))
        .map(|i| i.user_id.as_str())
        .collect();
    checks.push((
        "I3 one active investment per investor",
        if doubled.is_empty() {
            Ok(format!("{} investors", users.len()))
        } else {
            Err(format!("investors with two: {doubled:?}"))
        },
    ));
    // I4: every decision the clients saw is the ledger's, and a resubmission returns it.
    let recorded: HashMap<&str, &pb::Investment> =
        list.iter().map(|i| (i.request_id.as_str(), i)).collect();
    let mut mismatched = Vec::new();
    for outcome in outcomes {
        if let Ok(seen) = &outcome.decision {
            match recorded.get(seen.request_id.as_str()) {
                Some(r) if r.log_index == seen.log_index && r.offset == seen.offset => {}
                _ => mismatched.push(seen.request_id.clone()),
            }
        }
    }
    let sample: Vec<&pb::Investment> = list.iter().step_by((list.len() / 50).max(1)).collect();
    for inv in &sample {
        let again = Submission {
            request_id: inv.request_id.clone(),
            deal_id: inv.deal_id.clone(),
            user_id: inv.user_id.clone(),
            amount: inv.amount.clone(),
            waitlist: inv.waitlist,
            waitlist_ttl_ms: inv.waitlist_ttl_ms,
        };
        match client.submit(&again).await {
            Ok(d) if d.replayed && d.log_index == inv.log_index && d.offset == inv.offset => {}
            other => mismatched.push(format!(
                "{} resubmitted: {:?}",
                inv.request_id,
                other.map(|d| d.log_index)
            )),
        }
    }
    checks.push((
        "I4 each request decided once (client view = ledger; resubmissions replay)",
        if mismatched.is_empty() {
            Ok(format!(
                "{} decisions, {} resubmitted",
                list.len(),
                sample.len()
            ))
        } else {
            Err(format!(
                "{} mismatches: {:?}",
                mismatched.len(),
                &mismatched[..mismatched.len().min(5)]
            ))
        },
    ));
    let open: Vec<&str> = list
        .iter()
        .filter(|i| !is_final(i))
        .map(|i| i.request_id.as_str())
        .collect();
    checks.push((
        "I8 every admitted investment CONFIRMED or CANCELLED",
        if open.is_empty() {
            Ok(format!(
                "{} confirmed, {} cancelled",
                list.iter()
                    .filter(|i| status_of(i) == pb::InvestmentStatus::Confirmed)
                    .count(),
                list.iter()
                    .filter(|i| status_of(i) == pb::InvestmentStatus::Cancelled)
                    .count()
            ))
        } else {
            Err(format!(
                "{} still open, e.g. {:?}",
                open.len(),
                &open[..open.len().min(5)]
            ))
        },
    ));
    checks.push((
        "I7 money matches the partner's audit",
        check_money(&list, partners_url).await,
    ));
    checks.push((
        "I9 replicas agree (same digest at the same index)",
        check_digests(client).await,
    ));
    checks
}

/// Every second until `stop`: the deal's waitlist length, as `(second of the run, length)`.
async fn sample_waitlist(
    client: Client,
    deal_id: String,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<(u64, u64)> {
    let mut samples = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    // Bounded: a demo run lasts minutes, not a day.
    for _ in 0..86_400 {
        ticker.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Ok(deal) = client.deal(&deal_id).await {
            samples.push((started.elapsed().as_secs(), u64::from(deal.waitlist_length)));
        }
    }
    samples
}

/// Takes the documents partner down `at` into the run, for `lasting` (`POST /v1/faults` merges
/// the knobs it names).
async fn documents_outage(partners_url: String, at: Duration, lasting: Duration) -> Result<()> {
    let url = format!("{}/v1/faults", partners_url.trim_end_matches('/'));
    let http = reqwest::Client::new();
    let set = |outage: bool| {
        http.post(&url)
            .json(&json!({"documents": {"outage": outage}}))
            .send()
    };
    tokio::time::sleep(at).await;
    set(true).await?.error_for_status()?;
    tokio::time::sleep(lasting).await;
    set(false).await?.error_for_status()?;
    Ok(())
}

/// Waits (bounded) until every request sent has its first decision.
async fn wait_decided(decided: &AtomicU64, sent: u64, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    while decided.load(Ordering::Relaxed) < sent {
        if Instant::now() >= deadline {
            bail!(
                "{} of {sent} requests decided after {wait:?}",
                decided.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Waits (bounded) until no admitted investment of the deal is PENDING, so that no seat can
/// free up any more, then closes the deal; returns how many requests were still waiting.
async fn close_when_settled(client: &Client, deal_id: &str, wait: Duration) -> Result<u32> {
    let deadline = Instant::now() + wait;
    loop {
        let deal = client.deal(deal_id).await?;
        if deal.investor_count == deal.confirmed_count {
            let waiting = deal.waitlist_length;
            client.close_deal(deal_id).await?;
            return Ok(waiting);
        }
        if Instant::now() >= deadline {
            bail!(
                "{} investments still PENDING after {wait:?}",
                deal.investor_count - deal.confirmed_count
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How the deal filled, and two checks: that it filled to its limit while investors still
/// waited, and that an export of it passes `deal verify` with an investor's receipt.
async fn fill_report(
    client: &Client,
    deal_id: &str,
    waiting_at_close: u32,
) -> (serde_json::Value, Vec<Check>) {
    let mut checks: Vec<Check> = Vec::new();
    let (deal, list) = match read_deal(client, deal_id).await {
        Ok(read) => read,
        Err(e) => {
            checks.push(("deal readable after closing", Err(e)));
            return (serde_json::Value::Null, checks);
        }
    };
    let dec = |s: &str| s.parse::<Decimal>().unwrap_or(Decimal::MAX);
    let from_waitlist = list.iter().filter(|i| i.admitted_log_index > 0).count();
    let closed_out: Vec<&pb::Investment> = list
        .iter()
        .filter(|i| i.reject_reason == pb::RejectReason::WaitlistClosed as i32)
        .collect();
    let remaining = dec(&deal.amount) - dec(&deal.confirmed_amount);
    let smallest_waiting = closed_out.iter().map(|i| dec(&i.amount)).min();
    let seats_full = deal.confirmed_count == deal.max_investors;
    checks.push((
        "I10 filled to its limit while investors waited",
        match smallest_waiting {
            None => Ok("nobody was left waiting".to_owned()),
            Some(_) if seats_full => Ok(format!(
                "every seat taken ({} of {}); {} left waiting",
                deal.confirmed_count,
                deal.max_investors,
                closed_out.len()
            )),
            Some(smallest) if smallest > remaining => Ok(format!(
                "{remaining} left, less than the smallest waiting ticket ({smallest})"
            )),
            Some(smallest) => Err(format!(
                "{} of {} seats and {remaining} left, yet a waiting ticket of {smallest} fit",
                deal.confirmed_count, deal.max_investors
            )),
        },
    ));
    let head = deal.receipt_head.clone().unwrap_or_default();
    let head_text = format!("{}:{}", head.deal_seq, crate::export::hex(&head.hash));
    let verify = verify_export(client, deal_id, &list).await;
    checks.push(("deal verify on an export of the deal", verify.clone()));
    let fill = json!({
        "max_investors": deal.max_investors, "confirmed_count": deal.confirmed_count,
        "amount": deal.amount, "confirmed_amount": deal.confirmed_amount,
        "admitted_from_waitlist": from_waitlist, "waitlist_at_close": waiting_at_close,
        "receipt_head": head_text,
        "verify": match &verify { Ok(v) => v.clone(), Err(e) => format!("FAILED: {e}") },
    });
    (fill, checks)
}

/// Exports the deal as `ledgerctl deal export` does, and verifies the files as `deal verify`
/// does, with the receipt of one investor admitted from the waitlist (or any).
async fn verify_export(
    client: &Client,
    deal_id: &str,
    list: &[pb::Investment],
) -> Result<String, String> {
    let (deal, decisions) = client
        .export_deal(deal_id)
        .await
        .map_err(|e| format!("export: {e}"))?;
    let dir = std::env::temp_dir().join(format!("ledger-demo-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let file = dir.join(format!("{deal_id}.jsonl"));
    let held = list
        .iter()
        .find(|i| i.admitted_log_index > 0)
        .or(list.first())
        .and_then(|i| i.receipt.clone())
        .map(|r| (r.deal_seq, crate::export::hex(&r.hash)));
    let verified = crate::export::write(&file, &deal, &decisions)
        .and_then(|_| crate::export::verify(&file, held.clone()));
    let _ = std::fs::remove_dir_all(&dir);
    let verified = verified.map_err(|e| format!("{e:#}"))?;
    Ok(format!(
        "verified: {} decisions, the chain ends at the head{}; all decided again by the rules \
         as recorded, {} admissions from the waitlist where recorded",
        verified.decisions,
        held.map(|(seq, _)| format!(", investor receipt {seq} in it"))
            .unwrap_or_default(),
        verified.redecided.admitted_from_waitlist
    ))
}

async fn check_money(list: &[pb::Investment], partners_url: &str) -> Result<String, String> {
    let url = format!("{}/v1/audit", partners_url.trim_end_matches('/'));
    let audit: AuditLog = reqwest::get(&url)
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("reading {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("decoding {url}: {e}"))?;
    let net = audit.net_charged();
    let mut wrong = Vec::new();
    let mut kept = Decimal::ZERO;
    for inv in list {
        let charged = net
            .get(&format!("{}:payment", inv.request_id))
            .copied()
            .unwrap_or_default();
        let expected = if status_of(inv) == pb::InvestmentStatus::Confirmed {
            inv.amount.parse::<Decimal>().unwrap_or_default()
        } else {
            Decimal::ZERO
        };
        kept += charged;
        if charged != expected {
            wrong.push(format!(
                "{} {} charged {charged}, expected {expected}",
                inv.request_id,
                status_of(inv).as_str_name()
            ));
        }
    }
    if wrong.is_empty() {
        Ok(format!(
            "{kept} kept in all; refunds and voids balance every cancellation"
        ))
    } else {
        Err(format!(
            "{} wrong: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        ))
    }
}

/// Waits (bounded) until every member has applied the same index, then compares digests.
async fn check_digests(client: &Client) -> Result<String, String> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let statuses: Vec<pb::StatusResponse> = client
            .statuses()
            .await
            .into_iter()
            .filter_map(|(_, s)| s.ok())
            .collect();
        let indexes: HashSet<u64> = statuses.iter().map(|s| s.applied_index).collect();
        if statuses.len() >= 2 && indexes.len() == 1 {
            let digests: HashSet<&str> = statuses.iter().map(|s| s.state_digest.as_str()).collect();
            return if digests.len() == 1 {
                Ok(format!(
                    "{} nodes at index {}",
                    statuses.len(),
                    statuses[0].applied_index
                ))
            } else {
                Err(format!("different digests at the same index: {digests:?}"))
            };
        }
        if Instant::now() > until {
            return Err(format!("nodes did not reach the same index: {indexes:?}"));
        }
        // Heartbeats keep appending entries; a quiet moment comes within a few polls.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
