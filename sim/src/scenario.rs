//! One simulated run: the cluster, the client, the fault schedule, and the verdicts.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use clap::Parser as _;
use ledger_jepsen::check::{self, Overall, Verdicts};
use ledger_jepsen::history::{CheckInput, DealTerms, DigestSample, Liveness, NodeFinal};
use ledger_jepsen::rng::Rng as JepsenRng;
use ledger_jepsen::workload::{self, Channels, DealBook, Recorder, WorkloadConfig};
use ledger_jepsen::world::{Target, Targets};
use ledger_node::raft::mem_log::MemDisk;
use ledger_node::saga::sim::SimPartners;
use ledger_node::Seams;
use ledger_partners::{FaultConfig, Latency};
use ledger_proto::pb;
use ledger_proto::pb::admission_client::AdmissionClient;
use ledger_proto::pb::cluster_client::ClusterClient;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::clock::SimClock;
use crate::net::{self, MessageFaults, SimTransport};

/// Whether a seed changes the membership while the load runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MembershipChanges {
    /// Drawn from the seed (half of the seeds).
    Auto,
    /// Always.
    On,
    /// Never: the cluster keeps its first voters (what seeds replayed before membership
    /// changes existed ran).
    Off,
}

/// What a run simulates.
#[derive(Clone, Debug)]
pub struct Options {
    /// Voters at the start.
    pub nodes: u64,
    /// Hosts beside them that a run with membership changes adds (as learners, then voters).
    pub spares: u64,
    /// Whether the membership changes during the load.
    pub membership: MembershipChanges,
    /// How long the client load runs (simulated time); faults strike within it.
    pub load: Duration,
    /// Concurrent client workers.
    pub workers: usize,
    /// Client operations per second, all workers together.
    pub rate: f64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            nodes: 3,
            spares: 2,
            membership: MembershipChanges::Auto,
            load: Duration::from_secs(10),
            workers: 6,
            rate: 60.0,
        }
    }
}

/// What one seed produced.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// BLAKE3 of the client history and every node's final state: equal for equal seeds.
    pub history_hash: String,
    /// The checker's verdicts.
    pub verdicts: Verdicts,
    /// Operations in the history.
    pub ops: usize,
    /// The faults the seed drew, in order.
    pub faults: Vec<String>,
    /// Simulated time the run took, in ms.
    pub simulated_ms: u64,
}

impl Outcome {
    /// Whether a check found a violation.
    pub fn failed(&self) -> bool {
        self.verdicts.overall == Overall::Invalid
    }
}

/// A fault, at a simulated time.
#[derive(Clone, Debug)]
enum Fault {
    /// Cut the links between the two sides.
    Partition(Vec<u64>, Vec<u64>),
    /// Restore every link.
    Repair,
    /// Stop the node; its disk loses what it had not synced.
    Crash(u64),
    /// Start a crashed node again on its disk.
    Restart(u64),
    /// Move the node's wall clock, in ms.
    ClockJump(u64, i64),
    /// Give the node's disk this fsync delay.
    SlowDisk(u64, Duration),
}

/// Draws the fault schedule: windows of one fault each, healed before the next.
fn schedule(rng: &mut SmallRng, nodes: u64, load: Duration) -> Vec<(Duration, Fault)> {
    let mut at = Duration::from_millis(rng.random_range(500..1_500));
    let mut faults = Vec::new();
    while at < load {
        let node = rng.random_range(1..=nodes);
        let window = Duration::from_millis(rng.random_range(300..3_000));
        let (start, end) = match rng.random_range(0..4) {
            0 => {
                let (side, rest): (Vec<u64>, Vec<u64>) = if rng.random_bool(0.5) {
                    (1..=nodes).partition(|&n| n == node)
                } else {
                    (1..=nodes).partition(|&n| n == node || n == node % nodes + 1)
                };
                (Fault::Partition(side, rest), Fault::Repair)
            }
            1 => (Fault::Crash(node), Fault::Restart(node)),
            2 => {
                let jump = rng.random_range(-3_600_000..3_600_000);
                (Fault::ClockJump(node, jump), Fault::ClockJump(node, 0))
            }
            _ => {
                let delay = Duration::from_millis(rng.random_range(20..300));
                (
                    Fault::SlowDisk(node, delay),
                    Fault::SlowDisk(node, Duration::from_millis(1)),
                )
            }
        };
        faults.push((at, start));
        faults.push((at + window, end));
        at += window + Duration::from_millis(rng.random_range(200..2_000));
    }
    faults
}

/// Simulated time, for the client's progress lines.
fn sim_ms() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
}

fn host(id: u64) -> String {
    format!("n{id}")
}

/// The node's flags, as `ledger-node` would parse them.
fn node_config(id: u64, seed: u64) -> Result<ledger_node::config::Config> {
    let args = [
        "ledger-node".to_owned(),
        format!("--id={id}"),
        format!("--listen=0.0.0.0:{}", net::PORT),
        format!("--advertise={}", net::addr(id)),
        "--data-dir=/nonexistent/simulated".to_owned(),
        "--insecure".to_owned(),
        "--executor=true".to_owned(),
        "--cluster-id=sim".to_owned(),
        "--heartbeat-ms=50".to_owned(),
        "--election-timeout-ms=300".to_owned(),
        "--snapshot-every-entries=200".to_owned(),
        "--log-keep-entries=50".to_owned(),
        format!("--hash-seed={seed}"),
    ];
    let flags = ledger_node::config::Flags::try_parse_from(args)?;
    flags.validate().map_err(|e| anyhow!("{e}"))
}

/// The partners' faults a seed draws: declines, unknown outcomes, errors; charges slow enough
/// that seats freed by declines find investors waiting.
fn partner_faults(rng: &mut SmallRng) -> FaultConfig {
    let mut faults = FaultConfig::default();
    faults.payment.latency = Latency::new(rng.random_range(100..1_000), 100);
    faults.payment.unknown_rate = rng.random_range(0.0..0.05);
    faults.payment.error_rate = rng.random_range(0.0..0.05);
    faults.documents.error_rate = rng.random_range(0.0..0.1);
    faults.email.error_rate = rng.random_range(0.0..0.1);
    faults.decline_rate = rng.random_range(0.0..0.15);
    faults.unknown_delay_ms = rng.random_range(100..3_000);
    faults
}

/// The deal of the liveness probe, apart from the workload's.
const PROBE_DEAL: &str = "probe";

/// What the client hands back to the driver.
#[derive(Default)]
struct Shared {
    load_done: AtomicBool,
    healed: AtomicBool,
    input: Mutex<Option<CheckInput>>,
    /// Nodes removed from the membership, for the driver to stop for good (a removed voter of
    /// openraft 0.9 would go on campaigning).
    retire: Mutex<Vec<u64>>,
    /// What the membership changes did, for the report.
    changes: Mutex<Vec<String>>,
}

/// Whether `seed` changes the membership: drawn apart from every other draw of the seed, so a
/// seed without changes runs exactly as before they existed.
fn changes_membership(seed: u64, options: &Options) -> bool {
    match options.membership {
        MembershipChanges::On => true,
        MembershipChanges::Off => false,
        MembershipChanges::Auto => {
            SmallRng::seed_from_u64(seed ^ 0x6d65_6d62_6572_7368).random_bool(0.5)
        }
    }
}

/// Runs one seed to its verdicts.
pub fn run_seed(seed: u64, options: &Options) -> Result<Outcome> {
    let mut rng = SmallRng::seed_from_u64(seed);
    // openraft's election timeouts: every host runs on this thread.
    ledger_node::raft::runtime::seed_thread_rng(rng.random());
    let mut sim = turmoil::Builder::new()
        .rng_seed(rng.random())
        // The load, the checker's liveness window after healing, the wait for one applied
        // index: a run that still goes on is stuck in the harness, not judged by the checker.
        .simulation_duration(options.load + Duration::from_secs(200))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_micros(100))
        .max_message_latency(Duration::from_millis(rng.random_range(1..30)))
        .build();
    let faults = MessageFaults::draw(&mut rng);
    let partners = SimPartners::new(
        partner_faults(&mut rng),
        rng.random(),
        Duration::from_secs(2),
    )
    .map_err(|e| anyhow!("partner faults: {e}"))?;
    let jitter_seed: u64 = rng.random();
    let changes = changes_membership(seed, options);
    // Hosts: the first voters, and the spares a run with membership changes adds.
    let nodes = options.nodes + if changes { options.spares } else { 0 };
    let disks: Vec<MemDisk> = (0..nodes)
        .map(|_| MemDisk::new(Duration::from_millis(1)))
        .collect();
    let offsets: Vec<Arc<AtomicI64>> = (0..nodes).map(|_| Arc::default()).collect();
    for id in 1..=nodes {
        let disk = disks[(id - 1) as usize].clone();
        let offset = offsets[(id - 1) as usize].clone();
        let transport_seed: u64 = rng.random();
        let partners = partners.clone();
        sim.host(host(id), move || {
            let (disk, offset, partners) = (disk.clone(), offset.clone(), partners.clone());
            async move {
                let config = node_config(id, seed)?;
                let seams = Seams {
                    clock: Arc::new(SimClock::new(offset)),
                    transport: Some(Arc::new(SimTransport::new(faults, transport_seed))),
                    disk: Some(disk),
                    partners: Some(Arc::new(partners)),
                    jitter_seed: Some(jitter_seed),
                    watchdog: false,
                };
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", net::PORT)).await?;
                ledger_node::run_with(
                    config,
                    seams,
                    |_| net::incoming(listener),
                    std::future::pending(),
                )
                .await
                .map_err(|e| -> Box<dyn std::error::Error> { format!("node {id}: {e}").into() })
            }
        });
    }
    let shared = Arc::new(Shared::default());
    let workload_seed: u64 = rng.random();
    sim.client(
        "client",
        client(shared.clone(), options.clone(), workload_seed, changes),
    );

    let mut plan = schedule(&mut rng, nodes, options.load);
    plan.reverse();
    let mut drawn = Vec::new();
    let mut crashed = BTreeSet::new();
    let mut retired = BTreeSet::new();
    loop {
        let now = sim.elapsed();
        let retiring =
            std::mem::take(&mut *shared.retire.lock().unwrap_or_else(PoisonError::into_inner));
        for id in retiring {
            if retired.insert(id) {
                drawn.push(format!("{} ms: Retire({id})", now.as_millis()));
                if !crashed.remove(&id) {
                    sim.crash(host(id));
                }
            }
        }
        while plan.last().is_some_and(|(at, _)| *at <= now) {
            let (at, fault) = plan.pop().expect("checked");
            if shared.load_done.load(Ordering::Acquire) {
                continue;
            }
            let on_retired = match &fault {
                Fault::Crash(id) | Fault::Restart(id) => retired.contains(id),
                _ => false,
            };
            if on_retired {
                continue;
            }
            drawn.push(format!("{} ms: {fault:?}", at.as_millis()));
            apply(&mut sim, &fault, &disks, &offsets, &mut crashed, nodes);
        }
        if shared.load_done.load(Ordering::Acquire) && !shared.healed.load(Ordering::Acquire) {
            apply(
                &mut sim,
                &Fault::Repair,
                &disks,
                &offsets,
                &mut crashed,
                nodes,
            );
            for id in std::mem::take(&mut crashed) {
                sim.bounce(host(id));
            }
            for disk in &disks {
                disk.set_fsync_delay(Duration::from_millis(1));
            }
            shared.healed.store(true, Ordering::Release);
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => {
                return Err(anyhow!(
                    "seed {seed}: {error}; faults: {}",
                    drawn.join("; ")
                ))
            }
        }
    }
    let mut input = shared
        .input
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .ok_or_else(|| anyhow!("seed {seed}: the client ended without a history"))?;
    input.audit = Some(partners.partners().audit());
    drawn.extend(
        shared
            .changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..),
    );
    if let Ok(path) = std::env::var("LEDGER_SIM_DUMP") {
        std::fs::write(
            format!("{path}.{seed}"),
            serde_json::to_vec_pretty(&(&input.history, &input.finals, &input.audit))?,
        )?;
    }
    let history_hash = blake3::hash(&serde_json::to_vec(&(&input.history, &input.finals))?)
        .to_hex()
        .to_string();
    Ok(Outcome {
        seed,
        history_hash,
        ops: input.history.len(),
        verdicts: check::check(&input),
        faults: drawn,
        simulated_ms: sim.elapsed().as_millis() as u64,
    })
}

fn apply(
    sim: &mut turmoil::Sim<'_>,
    fault: &Fault,
    disks: &[MemDisk],
    offsets: &[Arc<AtomicI64>],
    crashed: &mut BTreeSet<u64>,
    nodes: u64,
) {
    let index = |id: u64| (id - 1) as usize;
    match fault {
        Fault::Partition(a, b) => {
            for &x in a {
                for &y in b {
                    sim.partition(host(x), host(y));
                }
            }
        }
        Fault::Repair => {
            for x in 1..=nodes {
                for y in x + 1..=nodes {
                    sim.repair(host(x), host(y));
                }
            }
        }
        Fault::Crash(id) => {
            if crashed.insert(*id) {
                sim.crash(host(*id));
                disks[index(*id)].crash();
            }
        }
        Fault::Restart(id) => {
            if crashed.remove(id) {
                sim.bounce(host(*id));
            }
        }
        Fault::ClockJump(id, ms) => offsets[index(*id)].store(*ms, Ordering::Relaxed),
        Fault::SlowDisk(id, delay) => disks[index(*id)].set_fsync_delay(*delay),
    }
}

fn targets(nodes: u64) -> Targets {
    Arc::new(std::sync::RwLock::new(
        (1..=nodes)
            .map(|id| Target {
                id,
                addr: net::addr(id),
            })
            .collect(),
    ))
}

/// Retries `call` every 100 ms (simulated) until it succeeds, at most `attempts` times.
async fn retried<T, F, Fut>(attempts: usize, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut last = anyhow!("never tried");
    for _ in 0..attempts {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) => last = error,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

async fn create_deal(deal: &DealTerms) -> Result<()> {
    retried(300, || async {
        let leader = status(1, false)
            .await?
            .leader_id
            .ok_or_else(|| anyhow!("no leader yet"))?;
        let mut admission =
            AdmissionClient::new(net::channel(&net::addr(leader)).map_err(|e| anyhow!(e))?);
        admission
            .create_deal(pb::CreateDealRequest {
                deal_id: deal.deal_id.clone(),
                amount: workload::money(deal.amount_cents),
                max_investors: deal.max_investors,
                min_ticket: deal.min_ticket_cents.map(workload::money),
                max_ticket: deal.max_ticket_cents.map(workload::money),
                ..Default::default()
            })
            .await?;
        Ok(())
    })
    .await
}

/// The request ids of the PENDING investments of `deals` and of the probe's deal, as the leader
/// holds them. The probe's too: the final reads must not race its saga (a deal's counters and
/// its investments are read at two moments).
async fn pending(leader: u64, deals: &DealBook) -> Result<Vec<String>> {
    let mut admission =
        AdmissionClient::new(net::channel(&net::addr(leader)).map_err(|e| anyhow!(e))?);
    let mut stuck = Vec::new();
    let ids = deals.all().into_iter().map(|deal| deal.deal_id);
    for deal_id in std::iter::once(PROBE_DEAL.to_owned()).chain(ids) {
        let all = ledger_jepsen::run::list_investments(
            &mut admission,
            &deal_id,
            pb::Consistency::Linearizable,
        )
        .await?;
        stuck.extend(
            all.into_iter()
                .filter(|i| i.status == pb::InvestmentStatus::Pending as i32)
                .map(|i| i.request_id),
        );
    }
    Ok(stuck)
}

/// I8 after healing, as the real-process harness observes it: one leader agreed on, a fresh
/// submit answered, every saga terminal, within the checker's window.
async fn liveness(ids: &[u64], recorder: &Recorder, deals: &DealBook, seed: u64) -> Liveness {
    let healed_us = recorder.now_us();
    let mut live = Liveness {
        healed_us,
        ..Liveness::default()
    };
    let deadline = tokio::time::Instant::now()
        + Duration::from_micros(ledger_jepsen::check::LIVENESS_WINDOW_US);
    let mut stuck = Vec::new();
    let mut probes = 0u64;
    while tokio::time::Instant::now() < deadline {
        let mut leaders = BTreeSet::new();
        for &id in ids {
            leaders.insert(status(id, false).await.ok().and_then(|s| s.leader_id));
        }
        let leader = match (leaders.len(), leaders.first()) {
            (1, Some(Some(leader))) => Some(*leader),
            _ => None,
        };
        if let Some(leader) = leader {
            live.leader_us.get_or_insert(recorder.now_us());
            if live.probe_ok_us.is_none() {
                probes += 1;
                let submission = ledger_client::Submission {
                    request_id: uuid::Uuid::from_u64_pair(seed, probes).to_string(),
                    deal_id: PROBE_DEAL.into(),
                    user_id: format!("prober-{probes}"),
                    amount: "1.00".into(),
                    waitlist: false,
                    waitlist_ttl_ms: None,
                };
                if let Ok(channel) = net::channel(&net::addr(leader)) {
                    let op = workload::submit_probe(
                        recorder,
                        leader,
                        AdmissionClient::new(channel),
                        &submission,
                    )
                    .await;
                    tracing::debug!(result = ?op.result, "probe");
                    if matches!(op.result, ledger_jepsen::history::OpResult::Ok(_)) {
                        live.probe_ok_us = Some(recorder.now_us());
                    }
                    recorder.record(op);
                }
            }
            if live.sagas_terminal_us.is_none() {
                match pending(leader, deals).await {
                    Ok(list) if list.is_empty() => live.sagas_terminal_us = Some(recorder.now_us()),
                    Ok(list) => stuck = list,
                    Err(_) => {}
                }
            }
        }
        tracing::info!(
            sim_ms = sim_ms(),
            ?leader,
            probe = live.probe_ok_us.is_some(),
            pending = stuck.len(),
            "liveness"
        );
        if live.leader_us.is_some()
            && live.probe_ok_us.is_some()
            && live.sagas_terminal_us.is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if live.sagas_terminal_us.is_none() {
        live.stuck = stuck;
    }
    live.waited_us = recorder.now_us() - healed_us;
    live
}

async fn status(id: u64, with_digest: bool) -> Result<pb::StatusResponse> {
    let mut client = ClusterClient::new(net::channel(&net::addr(id)).map_err(|e| anyhow!(e))?);
    let mut request = tonic::Request::new(pb::StatusRequest { with_digest });
    request.set_timeout(Duration::from_secs(1));
    Ok(client.status(request).await?.into_inner())
}

/// The client: starts the cluster, creates the deals, runs the workload, waits for the driver
/// to heal every fault, then reads every node's final state into `shared.input`.
async fn client(
    shared: Arc<Shared>,
    options: Options,
    seed: u64,
    changes: bool,
) -> turmoil::Result {
    let nodes = options.nodes;
    let recorder = Arc::new(Recorder::new(tokio::time::Instant::now()));
    let members: Vec<pb::MemberAddr> = (1..=nodes)
        .map(|id| pb::MemberAddr {
            node_id: id,
            addr: net::addr(id),
        })
        .collect();
    retried(100, || {
        let members = members.clone();
        async move {
            let mut cluster =
                ClusterClient::new(net::channel(&net::addr(1)).map_err(|e| anyhow!(e))?);
            cluster.init(pb::InitRequest { members }).await?;
            Ok(())
        }
    })
    .await
    .context("init")?;

    let mut rng = JepsenRng::new(seed);
    let deals = Arc::new(DealBook::default());
    let terms = workload::deal_batch(0, 4, &mut rng);
    let probe = DealTerms {
        deal_id: PROBE_DEAL.into(),
        amount_cents: 100_000_000_000,
        max_investors: 100_000,
        min_ticket_cents: None,
        max_ticket_cents: None,
    };
    for deal in terms.iter().chain([&probe]) {
        create_deal(deal)
            .await
            .with_context(|| format!("create deal {}", deal.deal_id))?;
    }
    deals.open(terms, 4);
    tracing::info!(sim_ms = sim_ms(), "deals created");

    let connect: workload::Connect = Arc::new(|addr: &str| net::channel(addr).ok());
    let targets = targets(nodes);
    let load_over = Arc::new(AtomicBool::new(false));
    let membership = changes.then(|| {
        tokio::spawn(change_membership(
            shared.clone(),
            targets.clone(),
            (nodes, options.spares),
            JepsenRng::new(seed ^ 0x6d65_6d62_6572_7368),
            load_over.clone(),
        ))
    });
    workload::run_workers(
        WorkloadConfig {
            workers: options.workers,
            rate: options.rate,
            duration: options.load,
            max_ops: (options.rate * options.load.as_secs_f64() * 1.2) as u64 + 100,
            seed,
        },
        targets,
        Channels::with(connect),
        deals.clone(),
        recorder.clone(),
        Arc::new(AtomicBool::new(false)),
    )
    .await;

    load_over.store(true, Ordering::Release);
    if let Some(task) = membership {
        let _ = task.await;
    }
    tracing::info!(
        sim_ms = sim_ms(),
        ops = recorder.history().len(),
        "load done"
    );
    shared.load_done.store(true, Ordering::Release);
    while !shared.healed.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The members, as the cluster has them now (without changes: the first voters).
    let ids: Vec<u64> = if changes {
        retried(600, || current_members(nodes + options.spares))
            .await
            .context("final membership")?
    } else {
        (1..=nodes).collect()
    };
    let liveness = liveness(&ids, &recorder, &deals, seed).await;
    // Every node at one applied index (executors' heartbeats keep appending: a moment when
    // they agree is enough).
    let statuses = retried(600, || async {
        let mut statuses = Vec::new();
        for &id in &ids {
            statuses.push(status(id, true).await?);
        }
        let indexes: BTreeSet<u64> = statuses.iter().map(|s| s.applied_index).collect();
        if indexes.len() != 1 {
            return Err(anyhow!("not converged: indexes {indexes:?}"));
        }
        Ok(statuses)
    })
    .await
    .context("convergence after healing")?;

    // The probe's deal too, as the real-process harness reads it: its submits are in the
    // history.
    let all: Vec<DealTerms> = std::iter::once(probe).chain(deals.all()).collect();
    let mut finals: Vec<NodeFinal> = Vec::new();
    let mut digests = Vec::new();
    for status in &statuses {
        let channel = net::channel(&net::addr(status.node_id)).map_err(|e| anyhow!(e))?;
        finals.push(ledger_jepsen::run::node_final(channel, status, &all).await?);
        digests.push(DigestSample {
            node_id: status.node_id,
            applied_index: status.applied_index,
            digest: status.state_digest.clone(),
        });
    }
    let input = CheckInput {
        deals: all,
        history: recorder.history(),
        finals,
        digests,
        audit: None,
        liveness,
        log_times: Vec::new(),
    };
    *shared.input.lock().unwrap_or_else(PoisonError::into_inner) = Some(input);
    Ok(())
}

/// The members (voters and learners) of the cluster, as the leader has them; asked of every host
/// until one names a leader that answers.
async fn current_members(hosts: u64) -> Result<Vec<u64>> {
    for id in 1..=hosts {
        let Ok(seen) = status(id, false).await else {
            continue;
        };
        let Some(leader) = seen.leader_id else {
            continue;
        };
        if let Ok(leader) = status_of_leader(leader).await {
            return Ok(leader.members.iter().map(|m| m.node_id).collect());
        }
    }
    Err(anyhow!("no leader to tell the membership"))
}

/// While the load runs, changes the membership one step at a time, as an operator would, each
/// waiting for the previous to commit: adds a spare as a learner and promotes it once caught up
/// (up to 5 voters), or removes a voter other than the leader (down to 3); a removed node is
/// stopped for good. A step whose outcome is unknown is settled by reading the membership
/// again. The workload's targets follow the voters.
async fn change_membership(
    shared: Arc<Shared>,
    targets: Targets,
    (nodes, spares): (u64, u64),
    mut rng: JepsenRng,
    load_over: Arc<AtomicBool>,
) {
    let mut spare: Vec<u64> = (nodes + 1..=nodes + spares).collect();
    let mut known: BTreeSet<u64> = (1..=nodes).collect();
    let note = |line: String| {
        tracing::info!(sim_ms = sim_ms(), "{line}");
        shared
            .changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("{} ms: {line}", sim_ms()));
    };
    let retire = |known: &mut BTreeSet<u64>, gone: u64| {
        known.remove(&gone);
        shared
            .retire
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(gone);
        targets
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|t| t.id != gone);
    };
    let mut last_round = false;
    loop {
        if load_over.load(Ordering::Acquire) {
            // A last look, so that a removal whose answer was lost is settled too.
            last_round = true;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.range(500, 2_500))).await;
        }
        // The membership as the leader has it.
        let mut leader = None;
        for &id in &known {
            if let Ok(status) = status(id, false).await {
                if let Some(id) = status.leader_id {
                    if let Ok(found) = status_of_leader(id).await {
                        leader = Some(found);
                        break;
                    }
                }
            }
        }
        let Some(leader) = leader else {
            if last_round {
                return;
            }
            continue;
        };
        let voters: BTreeSet<u64> = leader
            .members
            .iter()
            .filter(|m| m.role == pb::MemberRole::Voter as i32)
            .map(|m| m.node_id)
            .collect();
        let members: BTreeSet<u64> = leader.members.iter().map(|m| m.node_id).collect();
        // Whoever left the membership (a removal that answered "unknown" but took effect)
        // stops for good.
        for gone in known.difference(&members).copied().collect::<Vec<_>>() {
            retire(&mut known, gone);
        }
        if last_round {
            return;
        }
        let Ok(channel) = net::channel(&net::addr(leader.node_id)) else {
            continue;
        };
        let mut cluster = ClusterClient::new(channel);
        // A learner not yet promoted comes first.
        let learner = members.difference(&voters).next().copied();
        let grow = learner.is_some()
            || (voters.len() < 5 && !spare.is_empty() && (voters.len() < 4 || rng.percent(50)));
        if grow {
            let id = match learner {
                Some(id) => id,
                None => spare.remove(0),
            };
            known.insert(id);
            let add = pb::AddLearnerRequest {
                node_id: id,
                addr: net::addr(id),
                catch_up_wait_ms: 5_000,
            };
            let added = cluster.add_learner(add).await;
            let caught_up = match added {
                Ok(reply) => reply.into_inner().caught_up,
                Err(status) => {
                    note(format!("add learner {id}: {}", status.message()));
                    false
                }
            };
            if !caught_up {
                continue;
            }
            let mut promoted = voters.clone();
            promoted.insert(id);
            let change = pb::ChangeMembershipRequest {
                voters: promoted.into_iter().collect(),
                retain: false,
            };
            match cluster.change_membership(change).await {
                Ok(_) => {
                    note(format!("added and promoted {id}"));
                    let mut targets = targets.write().unwrap_or_else(PoisonError::into_inner);
                    if !targets.iter().any(|t| t.id == id) {
                        targets.push(Target {
                            id,
                            addr: net::addr(id),
                        });
                    }
                }
                Err(status) => note(format!("promote {id}: {}", status.message())),
            }
        } else if voters.len() > 3 {
            let others: Vec<u64> = voters
                .iter()
                .copied()
                .filter(|&id| id != leader.node_id)
                .collect();
            let Some(&victim) = rng.pick(&others) else {
                continue;
            };
            let remaining: Vec<u64> = voters.iter().copied().filter(|&id| id != victim).collect();
            let change = pb::ChangeMembershipRequest {
                voters: remaining,
                retain: false,
            };
            match cluster.change_membership(change).await {
                Ok(_) => {
                    note(format!("removed {victim}"));
                    retire(&mut known, victim);
                }
                Err(status) => note(format!("remove {victim}: {}", status.message())),
            }
        }
    }
}

/// The status of `leader`, if it answers as the leader.
async fn status_of_leader(leader: u64) -> Result<pb::StatusResponse> {
    let status = status(leader, false).await?;
    if status.leader_id == Some(status.node_id) {
        Ok(status)
    } else {
        Err(anyhow!("node {leader} does not lead"))
    }
}
