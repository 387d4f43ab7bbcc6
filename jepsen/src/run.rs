//! One Jepsen run, from start to report:
//!
//! 1. remove leftovers of earlier runs, check the machine, build the world (network, partners,
//!    nodes) and open the first deals;
//! 2. for `time`: workers load the cluster and record every operation, the observer samples
//!    every node's status, the nemesis applies the seeded schedule of fault windows;
//! 3. heal everything, then liveness (I8): within 120 s one leader, a fresh submit answered,
//!    every saga terminal;
//! 4. final reads (W2) from every member at one applied index, the partners' audit (W3);
//! 5. the checker's verdicts, and the report folder: seed, schedule, applied faults, counts,
//!    latencies, history, the checker's input, verdicts, plot, node logs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ledger_client::pb;
use ledger_client::pb::admission_client::AdmissionClient;
use ledger_client::{Client, ClientConfig};
use serde::Serialize;
use tonic::transport::Channel;

use crate::check;
use crate::history::{
    CheckInput, DealRead, DealTerms, FinalDeal, FinalInvestment, InvStatus, Liveness, NodeFinal,
};
use crate::nemesis::{self, Family, Window};
use crate::observer::{self, Observations};
use crate::report::{self, FaultRecord, Stats};
use crate::rng::Rng;
use crate::workload::{self, cents, money, DealBook, Recorder, WorkloadConfig};
use crate::world::{self, Settings, World};

/// Deals opened per batch, and how many stay open to submits.
const DEALS_PER_BATCH: usize = 10;
const DEALS_ACTIVE: usize = 15;
/// A new batch of deals this often (the old ones fill within seconds).
const DEAL_BATCH_EVERY: Duration = Duration::from_secs(20);
/// How long the deal manager tries to close one retired deal.
const CLOSE_DEAL_FOR: Duration = Duration::from_secs(5);
/// The deal that liveness probes submit to.
const PROBE_DEAL: &str = "probe";

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    /// The nemesis family.
    pub family: Family,
    /// How long the workload and the nemesis run.
    pub time: Duration,
    /// Seed of the schedule and of every random choice.
    pub seed: u64,
    /// Voters at start.
    pub voters: usize,
    /// Client operations per second.
    pub rate: f64,
    /// Concurrent client workers.
    pub workers: usize,
    /// Where run folders go.
    pub out: PathBuf,
    /// `ledger-node`.
    pub node_bin: PathBuf,
    /// `ledger-partners`.
    pub partners_bin: PathBuf,
    /// Run saga executors (W3).
    pub executors: bool,
    /// How long liveness may take after healing (I8).
    pub liveness_timeout: Duration,
}

/// What a run ended with.
pub struct RunOutcome {
    /// The report folder.
    pub dir: PathBuf,
    /// The checker's verdicts.
    pub verdicts: check::Verdicts,
    /// Report statistics.
    pub stats: Stats,
}

fn tag_of(seed: u64) -> (String, u8) {
    let mixed = seed ^ u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let tag = format!("{:04x}", mixed & 0xffff);
    let subnet = 20 + (mixed >> 16) as u8 % 200;
    (tag, subnet)
}

fn log(started: Instant, message: impl AsRef<str>) {
    eprintln!(
        "[{:>7.1}s] {}",
        started.elapsed().as_secs_f64(),
        message.as_ref()
    );
}

/// Runs it all; the world is torn down before this returns, whatever happened.
pub async fn run(config: RunConfig) -> Result<RunOutcome> {
    let started = Instant::now();
    let removed = crate::net::cleanup_leftovers()?;
    if !removed.is_empty() {
        log(
            started,
            format!("removed leftovers of earlier runs: {removed:?}"),
        );
    }
    crate::net::preflight()?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dir = config
        .out
        .join(format!("{stamp}-{:?}-{}", config.family, config.seed).to_lowercase());
    std::fs::create_dir_all(&dir)?;
    let schedule = nemesis::schedule(config.family, config.seed, config.time);
    std::fs::write(dir.join("seed.txt"), format!("{}\n", config.seed))?;
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    std::fs::write(
        dir.join("schedule.json"),
        serde_json::to_string_pretty(&schedule)?,
    )?;
    log(
        started,
        format!(
            "seed {} (replay with --seed {}), nemesis {:?}, {} windows over {:?}; report in {}",
            config.seed,
            config.seed,
            config.family,
            schedule.len(),
            config.time,
            dir.display()
        ),
    );
    let (snapshot_every, log_keep) = config.family.snapshot_policy();
    let settings = Settings {
        node_bin: config.node_bin.clone(),
        partners_bin: config.partners_bin.clone(),
        dir: dir.clone(),
        voters: config.voters,
        spares: if config.family.needs_spares() { 2 } else { 0 },
        executors: config.executors,
        snapshot_every,
        log_keep,
        fake_clocks: matches!(config.family, Family::Clock | Family::Mixed),
        slow_disks: matches!(config.family, Family::Disk | Family::Mixed),
    };
    let (tag, subnet) = tag_of(config.seed);
    let mut world = World::start(settings, &tag, subnet).await?;
    log(
        started,
        format!("{} nodes up in network {}", config.voters, world.net().tag),
    );
    let outcome = drive(&config, &mut world, &schedule, &dir, started).await;
    world.stop_all();
    drop(world);
    log(started, "processes stopped, network removed");
    outcome
}

async fn drive(
    config: &RunConfig,
    world: &mut World,
    schedule: &[Window],
    dir: &std::path::Path,
    started: Instant,
) -> Result<RunOutcome> {
    nemesis::partners_faults(world.partners_url(), &nemesis::partners_base(), true).await?;
    let operator = operator_client(world)?;
    let mut rng = Rng::new(config.seed);
    let deals = Arc::new(DealBook::default());
    let probe = DealTerms {
        deal_id: PROBE_DEAL.into(),
        amount_cents: 100_000_000_000,
        max_investors: 100_000,
        min_ticket_cents: None,
        max_ticket_cents: None,
    };
    create_deals(&operator, std::slice::from_ref(&probe)).await?;
    let first = workload::deal_batch(0, DEALS_PER_BATCH, &mut rng);
    create_deals(&operator, &first).await?;
    // Nothing is retired yet: fewer deals than DEALS_ACTIVE.
    let _ = deals.open(first, DEALS_ACTIVE);
    log(started, "first deals open; load starts");

    let run_start = Instant::now();
    let recorder = Arc::new(Recorder::new(tokio::time::Instant::from_std(run_start)));
    let observations = Arc::new(Observations::default());
    let stop = Arc::new(AtomicBool::new(false));
    let observer = tokio::spawn(observer::observe(
        world.targets.clone(),
        recorder.clone(),
        observations.clone(),
        stop.clone(),
    ));
    let workers = tokio::spawn(workload::run_workers(
        WorkloadConfig {
            workers: config.workers,
            rate: config.rate,
            duration: config.time,
            max_ops: (config.rate * config.time.as_secs_f64() * 1.2) as u64 + 1_000,
            seed: config.seed,
        },
        world.targets.clone(),
        workload::Channels::default(),
        deals.clone(),
        recorder.clone(),
        stop.clone(),
    ));
    let dealer = tokio::spawn(open_deals_periodically(
        operator.clone(),
        deals.clone(),
        config.seed,
        stop.clone(),
    ));
    let faults = run_schedule(world, schedule, &recorder, config.seed, started).await;
    let _ = workers.await;
    stop.store(true, Ordering::Relaxed);
    let _ = dealer.await;
    log(started, "load over; healing everything");

    // Heal, and bring every member back.
    world.heal_all()?;
    nemesis::partners_faults(world.partners_url(), &nemesis::partners_base(), true).await?;
    for i in 0..world.slots.len() {
        if world.slots[i].child.is_none() && world.slots[i].starts > 0 && is_member(world, i).await
        {
            world.spawn(i)?;
            world.await_serving(i, Duration::from_secs(60)).await?;
        }
    }
    world.refresh_targets();
    let liveness = liveness(world, &operator, &recorder, &deals, config).await;
    log(
        started,
        format!(
            "liveness: leader after {:?} s, probe after {:?} s, sagas terminal after {:?} s, {} stuck",
            liveness.leader_us.map(|t| (t - liveness.healed_us) / 1_000_000),
            liveness.probe_ok_us.map(|t| (t - liveness.healed_us) / 1_000_000),
            liveness.sagas_terminal_us.map(|t| (t - liveness.healed_us) / 1_000_000),
            liveness.stuck.len()
        ),
    );
    let mut all_deals = vec![probe];
    all_deals.extend(deals.all());
    let finals = final_reads(world, &all_deals).await?;
    stop.store(true, Ordering::Relaxed);
    let _ = observer.await;
    let audit = if config.executors {
        Some(audit(world.partners_url()).await?)
    } else {
        None
    };
    let history = recorder.history();
    let input = CheckInput {
        deals: all_deals,
        history,
        finals,
        digests: observations.digests(),
        audit,
        liveness,
        log_times: observations.log_times(),
    };
    log(
        started,
        format!(
            "checking {} operations, {} final reads",
            input.history.len(),
            input.finals.len()
        ),
    );
    let verdicts = check::check(&input);
    let stats = report::stats(&input.history, &faults, &observations.samples(), dir);
    write_report(
        dir,
        config,
        &input,
        &faults,
        &stats,
        &verdicts,
        &observations,
    )?;
    Ok(RunOutcome {
        dir: dir.to_path_buf(),
        verdicts,
        stats,
    })
}

fn operator_client(world: &World) -> Result<Client> {
    let seeds: Vec<String> = world.slots.iter().map(|s| s.addr()).collect();
    let mut config = ClientConfig::new(seeds);
    config.deadline = Duration::from_secs(30);
    config.attempt_timeout = Duration::from_secs(3);
    Ok(Client::unconnected(config)?)
}

async fn create_deals(client: &Client, deals: &[DealTerms]) -> Result<()> {
    for deal in deals {
        let request = pb::CreateDealRequest {
            deal_id: deal.deal_id.clone(),
            amount: money(deal.amount_cents),
            max_investors: deal.max_investors,
            min_ticket: deal.min_ticket_cents.map(money),
            max_ticket: deal.max_ticket_cents.map(money),
            opens_at_ms: None,
            closes_at_ms: None,
            max_waitlist: 0,
        };
        // Creating a deal again with the same terms answers it unchanged: retry until definite.
        let mut last = None;
        for _ in 0..10 {
            match client.create_deal(request.clone()).await {
                Ok(_) => {
                    last = None;
                    break;
                }
                Err(error) if error.is_outcome_unknown() || error.code_name() == "UNAVAILABLE" => {
                    last = Some(error)
                }
                Err(error) => bail!("create deal {}: {error}", deal.deal_id),
            }
        }
        if let Some(error) = last {
            bail!("create deal {}: {error}", deal.deal_id);
        }
    }
    Ok(())
}

/// Opens a new batch of deals every [`DEAL_BATCH_EVERY`]; a batch whose creation does not
/// complete (no leader for 10 attempts) is skipped: only created deals are ever submitted to.
async fn open_deals_periodically(
    client: Client,
    deals: Arc<DealBook>,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(seed ^ 0xdea1);
    let mut batch = 1u64;
    while !stop.load(Ordering::Relaxed) {
        let tick = tokio::time::sleep(DEAL_BATCH_EVERY);
        tokio::pin!(tick);
        // Pacing, not synchronisation: a new batch every so often.
        loop {
            tokio::select! {
                _ = &mut tick => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
            }
        }
        let next = workload::deal_batch(batch, DEALS_PER_BATCH, &mut rng);
        if create_deals(&client, &next).await.is_ok() {
            let retired = deals.open(next, DEALS_ACTIVE);
            close_deals(&client, &retired).await;
        }
        batch += 1;
    }
}

/// Closes deals no longer offered to the workers, which ends their waitlists. Best effort,
/// each bounded: a closing whose outcome is unknown may still land, and the checker reads where
/// each deal closed from the final state, not from here.
async fn close_deals(client: &Client, deals: &[DealTerms]) {
    for deal in deals {
        let _ = tokio::time::timeout(CLOSE_DEAL_FOR, client.close_deal(&deal.deal_id)).await;
    }
}

/// Applies each window at its start and heals it at its end.
async fn run_schedule(
    world: &mut World,
    schedule: &[Window],
    recorder: &Recorder,
    seed: u64,
    started: Instant,
) -> Vec<FaultRecord> {
    let mut rng = Rng::new(seed ^ 0xfa17);
    let mut records = Vec::new();
    for window in schedule {
        wait_until_us(recorder, window.start_us).await;
        let start_us = recorder.now_us();
        let applied = nemesis::apply(world, &window.fault, &mut rng).await;
        let (description, error, applied) = match applied {
            Ok(applied) => (applied.description.clone(), None, Some(applied)),
            Err(error) => (String::new(), Some(format!("{error:#}")), None),
        };
        log(
            started,
            match &error {
                None => format!("fault {:?}: {description}", window.fault),
                Some(error) => format!("fault {:?} not applied: {error}", window.fault),
            },
        );
        wait_until_us(recorder, window.end_us).await;
        if let Some(applied) = applied {
            if let Err(error) = nemesis::heal(world, applied).await {
                log(
                    started,
                    format!("heal of {:?} failed: {error:#}", window.fault),
                );
            }
        }
        records.push(FaultRecord {
            start_us,
            end_us: recorder.now_us(),
            fault: window.fault.clone(),
            description,
            error,
        });
    }
    records
}

async fn wait_until_us(recorder: &Recorder, at_us: u64) {
    let now = recorder.now_us();
    if at_us > now {
        // The schedule's clock: windows open and close at their times.
        tokio::time::sleep(Duration::from_micros(at_us - now)).await;
    }
}

async fn is_member(world: &World, slot: usize) -> bool {
    let id = world.slots[slot].id;
    for i in world.running() {
        if let Ok(status) = world::status(&world.slots[i].addr(), false).await {
            if status.role == "leader" {
                return status.members.iter().any(|m| m.node_id == id);
            }
        }
    }
    // No leader visible: assume it is, so that it comes back and helps elect one.
    true
}

/// I8 after healing: one leader agreed on, a fresh submit answered, every saga terminal.
async fn liveness(
    world: &World,
    operator: &Client,
    recorder: &Recorder,
    deals: &DealBook,
    config: &RunConfig,
) -> Liveness {
    let healed_us = recorder.now_us();
    let deadline = Instant::now() + config.liveness_timeout;
    let mut live = Liveness {
        healed_us,
        ..Liveness::default()
    };
    let mut probe_rng = Rng::new(config.seed ^ 0x9e0be);
    let mut stuck = Vec::new();
    while Instant::now() < deadline {
        if live.leader_us.is_none() && agreed_leader(world).await.is_some() {
            live.leader_us = Some(recorder.now_us());
        }
        if live.leader_us.is_some() && live.probe_ok_us.is_none() {
            let submission = ledger_client::Submission::new(
                PROBE_DEAL,
                format!("probe-{}", probe_rng.range(0, 1 << 40)),
                "1.00",
            );
            if probe_submit(world, recorder, &submission).await {
                live.probe_ok_us = Some(recorder.now_us());
            }
        }
        if live.leader_us.is_some() && live.sagas_terminal_us.is_none() && !config.executors {
            // No executors, no sagas run: admissions stay PENDING by design.
            live.sagas_terminal_us = live.leader_us;
        }
        if live.leader_us.is_some() && live.sagas_terminal_us.is_none() {
            match pending(operator, deals).await {
                Ok(list) if list.is_empty() => live.sagas_terminal_us = Some(recorder.now_us()),
                Ok(list) => stuck = list,
                Err(_) => {}
            }
        }
        if live.leader_us.is_some()
            && live.probe_ok_us.is_some()
            && (live.sagas_terminal_us.is_some() || !config.executors)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if live.sagas_terminal_us.is_none() && config.executors {
        live.stuck = stuck;
    }
    live.waited_us = recorder.now_us() - healed_us;
    live
}

/// The probe goes through the workload's recorder, as any submit: it is an operation of the
/// history like the others.
async fn probe_submit(
    world: &World,
    recorder: &Recorder,
    submission: &ledger_client::Submission,
) -> bool {
    let targets = world.targets.read().map(|t| t.clone()).unwrap_or_default();
    let Some(target) = targets.first() else {
        return false;
    };
    let channels = workload::Channels::default();
    let Some(client) = channels.admission(&target.addr) else {
        return false;
    };
    let op = workload::submit_probe(recorder, target.id, client, submission).await;
    let ok = matches!(op.result, crate::history::OpResult::Ok(_));
    recorder.record(op);
    ok
}

async fn agreed_leader(world: &World) -> Option<u64> {
    let mut leader = None;
    for i in world.running() {
        let status = world::status(&world.slots[i].addr(), false).await.ok()?;
        match (leader, status.leader_id) {
            (_, None) => return None,
            (None, Some(id)) => leader = Some(id),
            (Some(a), Some(b)) if a != b => return None,
            _ => {}
        }
    }
    leader
}

/// Request ids still PENDING in any deal (linearizable reads through the leader).
/// The PENDING investments of every deal, the probe's included: the final reads must not race
/// a probe saga still running (its deal's counters and its investment read at two moments).
async fn pending(operator: &Client, deals: &DealBook) -> Result<Vec<String>> {
    let mut stuck = Vec::new();
    let ids = deals.all().into_iter().map(|deal| deal.deal_id);
    for deal_id in std::iter::once(PROBE_DEAL.to_owned()).chain(ids) {
        let counters = operator.deal(&deal_id).await?;
        if counters.investor_count == counters.confirmed_count {
            continue;
        }
        for inv in operator.deal_investments(&deal_id).await? {
            if inv.status == pb::InvestmentStatus::Pending as i32 {
                stuck.push(inv.request_id);
            }
        }
    }
    Ok(stuck)
}

/// W2: every running member's state, read (STALE, from that node) once all of them report the
/// same applied index.
async fn final_reads(world: &World, deals: &[DealTerms]) -> Result<Vec<NodeFinal>> {
    let members: Vec<usize> = world.running();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Heartbeats keep appending entries; wait for a moment when every node is at one index.
    let statuses = loop {
        let mut statuses = Vec::new();
        for &i in &members {
            if let Ok(status) = world::status(&world.slots[i].addr(), true).await {
                statuses.push((i, status));
            }
        }
        let indexes: std::collections::BTreeSet<u64> =
            statuses.iter().map(|(_, s)| s.applied_index).collect();
        if statuses.len() == members.len() && indexes.len() == 1 {
            break statuses;
        }
        if Instant::now() >= deadline {
            break statuses;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut finals = Vec::new();
    for (i, status) in statuses {
        let addr = world.slots[i].addr();
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await?;
        finals.push(node_final(channel, &status, deals).await?);
    }
    Ok(finals)
}

/// What the node behind `channel`, whose `Status` was `status`, holds of `deals` (read STALE).
pub async fn node_final(
    channel: Channel,
    status: &pb::StatusResponse,
    deals: &[DealTerms],
) -> Result<NodeFinal> {
    let mut client =
        AdmissionClient::new(channel).max_decoding_message_size(ledger_client::MESSAGE_BYTES_MAX);
    let mut node = NodeFinal {
        node_id: status.node_id,
        applied_index: status.applied_index,
        digest: status.state_digest.clone(),
        deals: Vec::new(),
        investments: Vec::new(),
    };
    for deal in deals {
        let read = client
            .get_deal(pb::GetDealRequest {
                deal_id: deal.deal_id.clone(),
                consistency: pb::Consistency::Stale as i32,
            })
            .await
            .with_context(|| {
                format!(
                    "final read of deal {} on node {}",
                    deal.deal_id, status.node_id
                )
            })?
            .into_inner();
        node.deals.push(FinalDeal {
            terms: deal.clone(),
            counters: DealRead {
                investor_count: read.investor_count,
                reserved_cents: cents(&read.reserved_amount).unwrap_or(u64::MAX),
                confirmed_count: read.confirmed_count,
                confirmed_cents: cents(&read.confirmed_amount).unwrap_or(u64::MAX),
            },
            closed_at: position(read.closed_log_index, read.closed_offset),
        });
        node.investments
            .extend(list_stale(&mut client, &deal.deal_id).await?);
    }
    Ok(node)
}

async fn list_stale(
    client: &mut AdmissionClient<Channel>,
    deal_id: &str,
) -> Result<Vec<FinalInvestment>> {
    let all = list_investments(client, deal_id, pb::Consistency::Stale).await?;
    Ok(all.into_iter().map(final_investment).collect())
}

/// Every investment of `deal_id`, page after page, read with `consistency`.
pub async fn list_investments(
    client: &mut AdmissionClient<Channel>,
    deal_id: &str,
    consistency: pb::Consistency,
) -> Result<Vec<pb::Investment>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_investments(pb::ListInvestmentsRequest {
                deal_id: deal_id.to_owned(),
                page_size: 1_000,
                page_token: token.clone(),
                consistency: consistency as i32,
            })
            .await?
            .into_inner();
        out.extend(page.investments);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

fn name<E: Copy>(
    value: i32,
    unspecified: i32,
    to_name: impl Fn(i32) -> Option<E>,
    text: impl Fn(E) -> &'static str,
) -> Option<String> {
    (value != unspecified)
        .then(|| to_name(value).map_or_else(|| value.to_string(), |e| text(e).to_owned()))
}

/// A log position the API gives as an index and an offset, index 0 meaning none.
fn position(log_index: u64, offset: u32) -> Option<(u64, u32)> {
    (log_index > 0).then_some((log_index, offset))
}

fn final_investment(inv: pb::Investment) -> FinalInvestment {
    let status = match pb::InvestmentStatus::try_from(inv.status) {
        Ok(pb::InvestmentStatus::Pending) => InvStatus::Pending,
        Ok(pb::InvestmentStatus::Confirmed) => InvStatus::Confirmed,
        Ok(pb::InvestmentStatus::Cancelled) => InvStatus::Cancelled,
        Ok(pb::InvestmentStatus::Waitlisted) => InvStatus::Waitlisted,
        _ => InvStatus::Rejected,
    };
    FinalInvestment {
        amount_cents: cents(&inv.amount).unwrap_or(u64::MAX),
        status,
        reject_reason: name(
            inv.reject_reason,
            0,
            |v| pb::RejectReason::try_from(v).ok(),
            |r| r.as_str_name(),
        ),
        log_index: inv.log_index,
        offset: inv.offset,
        cancelled_at: position(inv.cancelled_log_index, inv.cancelled_offset),
        saga_step: name(
            inv.saga_step,
            0,
            |v| pb::SagaStep::try_from(v).ok(),
            |s| s.as_str_name(),
        ),
        cancel_cause: name(
            inv.cancel_cause,
            0,
            |v| pb::CancelCause::try_from(v).ok(),
            |c| c.as_str_name(),
        ),
        refunded: inv.refunded,
        waitlist: inv.waitlist,
        waitlisted: inv.waitlisted,
        admitted_at: position(inv.admitted_log_index, inv.admitted_offset),
        waitlist_ended_at: position(inv.waitlist_ended_log_index, inv.waitlist_ended_offset),
        request_id: inv.request_id,
        deal_id: inv.deal_id,
        user_id: inv.user_id,
    }
}

async fn audit(url: &str) -> Result<ledger_partners::AuditLog> {
    let reply = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?
        .get(format!("{url}/v1/audit"))
        .send()
        .await?;
    Ok(reply.error_for_status()?.json().await?)
}

fn write_report(
    dir: &std::path::Path,
    config: &RunConfig,
    input: &CheckInput,
    faults: &[FaultRecord],
    stats: &Stats,
    verdicts: &check::Verdicts,
    observations: &Observations,
) -> Result<()> {
    use std::io::Write;
    let mut history = std::io::BufWriter::new(std::fs::File::create(dir.join("history.jsonl"))?);
    for op in &input.history {
        serde_json::to_writer(&mut history, op)?;
        history.write_all(b"\n")?;
    }
    history.flush()?;
    std::fs::write(dir.join("check-input.json"), serde_json::to_vec(input)?)?;
    std::fs::write(
        dir.join("faults.json"),
        serde_json::to_string_pretty(faults)?,
    )?;
    std::fs::write(
        dir.join("verdicts.json"),
        serde_json::to_string_pretty(verdicts)?,
    )?;
    std::fs::write(dir.join("stats.json"), serde_json::to_string_pretty(stats)?)?;
    std::fs::write(
        dir.join("status-samples.json"),
        serde_json::to_vec(&observations.samples())?,
    )?;
    let title = format!(
        "ledger-jepsen: nemesis {:?}, seed {}, {:?}",
        config.family, config.seed, config.time
    );
    if let Err(error) = report::plot(&dir.join("plot.svg"), &title, &input.history, faults) {
        eprintln!("plot not written: {error:#}");
    }
    let mut md = String::new();
    md.push_str(&format!("# {title}\n\n"));
    md.push_str(&format!(
        "Replay: `scripts/jepsen.sh --nemesis {} --time {} --seed {}`\n\n",
        format!("{:?}", config.family).to_lowercase(),
        config.time.as_secs(),
        config.seed
    ));
    md.push_str("## Verdicts\n\n```\n");
    md.push_str(&check::render_text(verdicts));
    md.push_str(
        "```\n\n## Operations\n\n| | invoked | ok | fail | info |\n|---|---|---|---|---|\n",
    );
    for (name, c) in [
        ("submit", &stats.submits),
        ("read deal", &stats.reads),
        ("withdraw", &stats.withdraws),
    ] {
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            c.invoked, c.ok, c.fail, c.info
        ));
    }
    md.push_str("\n## Submit latency (ok), ms\n\n| | count | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|\n");
    for (name, l) in [
        ("inside fault windows", &stats.latency_in_faults),
        ("outside", &stats.latency_healthy),
    ] {
        md.push_str(&format!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
        ));
    }
    md.push_str(&format!(
        "\n## Cluster\n\n- terms with a leader: {}; leader changes seen: {}\n- membership changes: {}\n- snapshots built: {}, installed: {}\n- faults that could not be applied: {}\n- largest distance between a node's log time and the real clock: {:.1} s\n- liveness after healing: {}\n\n",
        stats.leader_terms,
        stats.leader_changes,
        stats.membership_changes,
        stats.snapshot_builds,
        stats.snapshot_installs,
        stats.faults_failed,
        stats.log_time_drift_max_ms as f64 / 1_000.0,
        liveness_text(&input.liveness),
    ));
    md.push_str("## Faults applied\n\n| from s | to s | fault | what |\n|---|---|---|---|\n");
    for f in faults {
        md.push_str(&format!(
            "| {:.1} | {:.1} | {:?} | {} |\n",
            f.start_us as f64 / 1e6,
            f.end_us as f64 / 1e6,
            f.fault,
            f.error
                .as_ref()
                .map_or_else(|| f.description.clone(), |e| format!("NOT APPLIED: {e}"))
        ));
    }
    md.push_str("\n![throughput and latency](plot.svg)\n");
    std::fs::write(dir.join("report.md"), md)?;
    Ok(())
}

fn liveness_text(live: &Liveness) -> String {
    let after = |t: Option<u64>| {
        t.map_or_else(
            || "never".to_owned(),
            |t| format!("{:.1} s", (t - live.healed_us) as f64 / 1e6),
        )
    };
    format!(
        "leader {}, probe answered {}, sagas terminal {}, {} stuck",
        after(live.leader_us),
        after(live.probe_ok_us),
        after(live.sagas_terminal_us),
        live.stuck.len()
    )
}
