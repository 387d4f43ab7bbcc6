//! Prometheus metrics over HTTP (`GET /metrics`, OpenMetrics text) through `prometheus-client`.
//!
//! Two kinds: what happens is recorded as it happens in [`Metrics`] (calls, partner calls, saga
//! steps, log appends and fsyncs, snapshots: atomic counters and histograms, never under the
//! replica's lock), and what *is* is read at scrape time (Raft's indexes, the replica's tallies
//! and open sagas, the process), so the hot path pays nothing for it. `docs/operations.md`
//! lists every family.

pub(crate) mod process;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;

use crate::node::Node;
use ledger_state_machine::SagaStep;

/// Open sagas decided at least this long ago (log time) count as stuck in `ledger_sagas_stuck`.
pub const SAGA_STUCK_AFTER_MS: u64 = 60_000;

/// Every partner and operation the executor calls.
const OPERATIONS: [(&str, &str); 4] = [
    ("payment", "charge"),
    ("payment", "void"),
    ("documents", "generate"),
    ("email", "send"),
];
/// How a partner call can end.
const PARTNER_RESULTS: [&str; 4] = ["ok", "unknown", "refused", "voided"];
/// The steps a saga performs (not `done`).
const SAGA_STEPS: [SagaStep; 4] = [
    SagaStep::Payment,
    SagaStep::Documents,
    SagaStep::Void,
    SagaStep::Notify,
];

/// A histogram of durations: 100 µs to about 13 s, doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// A histogram of sizes: 1 KiB to 4 GiB, by fours.
fn bytes() -> Histogram {
    Histogram::new(exponential_buckets(1024.0, 4.0, 12))
}

type Seconds<S> = Family<S, Histogram, fn() -> Histogram>;

/// A gRPC method, as `package.Service/Method`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// The method.
    pub method: String,
}

/// A gRPC method and the status code it answered with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The method.
    pub method: String,
    /// The gRPC status code's name (`OK`, `UNAVAILABLE`, …).
    pub code: &'static str,
}

/// A partner call: which partner and operation, and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartnerLabels {
    /// `payment`, `documents` or `email`.
    pub partner: &'static str,
    /// `charge`, `void`, `generate` or `send`.
    pub operation: &'static str,
    /// `ok`, `unknown` (retried with the same key), `refused` (for good) or `voided`.
    pub result: &'static str,
}

/// A partner and operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The partner.
    pub partner: &'static str,
    /// The operation.
    pub operation: &'static str,
}

/// A saga step.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The step's API name (`PAYMENT`, `DOCUMENTS`, …).
    pub step: &'static str,
}

/// What a node records as it happens.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Calls answered, by method and status code.
    pub rpc_calls: Family<CallLabels, Counter>,
    /// Time to the final status of each call, by method.
    pub rpc_seconds: Seconds<MethodLabels>,
    /// Partner calls, by partner, operation and result.
    pub partner_calls: Family<PartnerLabels, Counter>,
    /// Partner call latency, as the executor sees it.
    pub partner_seconds: Seconds<OperationLabels>,
    /// Partner calls that were a retry (attempt 2 or later), with the same idempotency key.
    pub partner_retries: Family<OperationLabels, Counter>,
    /// A saga step from the executor's first call to its result applied on this replica.
    pub step_seconds: Seconds<StepLabels>,
    /// The same, less the time spent inside partner calls: the ledger's own overhead.
    pub step_overhead_seconds: Seconds<StepLabels>,
    /// Writing a batch of log entries (before the fsync).
    pub append_seconds: Histogram,
    /// Each fsync of the Raft log.
    pub fsync_seconds: Histogram,
    /// Building a snapshot (copy, encode, write).
    pub snapshot_build_seconds: Histogram,
    /// Installing a snapshot received from the leader.
    pub snapshot_install_seconds: Histogram,
    /// Sizes of snapshots built or installed.
    pub snapshot_bytes: Histogram,
    /// Times this node saw the cluster's leader change (including to none).
    pub leader_changes: Counter,
    /// The committed index this node's log store last saved.
    pub committed_index: Gauge,
    /// How long the oldest command of the leader's last proposed entry waited (back-pressure).
    pub proposal_delay_seconds: Gauge<f64, AtomicU64>,
    /// The data folder: its Raft log's size and its file system's free space are measured at
    /// scrape time when this is set.
    data_dir: std::sync::OnceLock<std::path::PathBuf>,
    started: AtomicU64,
}

impl Metrics {
    /// The families of node `node_id`, every series labelled with it.
    pub fn new(node_id: u64) -> Metrics {
        let mut registry = Registry::with_labels(
            [(
                std::borrow::Cow::Borrowed("node_id"),
                std::borrow::Cow::Owned(node_id.to_string()),
            )]
            .into_iter(),
        );
        let metrics = Metrics {
            rpc_calls: Family::default(),
            rpc_seconds: Family::new_with_constructor(seconds),
            partner_calls: Family::default(),
            partner_seconds: Family::new_with_constructor(seconds),
            partner_retries: Family::default(),
            step_seconds: Family::new_with_constructor(seconds),
            step_overhead_seconds: Family::new_with_constructor(seconds),
            append_seconds: seconds(),
            fsync_seconds: seconds(),
            snapshot_build_seconds: seconds(),
            snapshot_install_seconds: seconds(),
            snapshot_bytes: bytes(),
            leader_changes: Counter::default(),
            committed_index: Gauge::default(),
            proposal_delay_seconds: Gauge::default(),
            data_dir: std::sync::OnceLock::new(),
            started: AtomicU64::new(0),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "ledger_rpc_requests",
            "gRPC calls answered, by method and status code",
            metrics.rpc_calls.clone(),
        );
        r.register_with_unit(
            "ledger_rpc_duration",
            "Time from a call's arrival to its final status, by method",
            Unit::Seconds,
            metrics.rpc_seconds.clone(),
        );
        r.register(
            "ledger_partner_calls",
            "Partner calls by partner, operation and result (ok, unknown: retried with the same \
             key, refused: for good, voided)",
            metrics.partner_calls.clone(),
        );
        r.register_with_unit(
            "ledger_partner_call_duration",
            "Partner call latency as the executor sees it",
            Unit::Seconds,
            metrics.partner_seconds.clone(),
        );
        r.register(
            "ledger_partner_retries",
            "Partner calls that repeated an earlier one with the same idempotency key",
            metrics.partner_retries.clone(),
        );
        r.register_with_unit(
            "ledger_saga_step_duration",
            "A saga step from the executor's first partner call to its result applied here",
            Unit::Seconds,
            metrics.step_seconds.clone(),
        );
        r.register_with_unit(
            "ledger_saga_step_overhead",
            "A saga step's duration less the time inside partner calls",
            Unit::Seconds,
            metrics.step_overhead_seconds.clone(),
        );
        r.register_with_unit(
            "ledger_raft_append_duration",
            "Writing a batch of log entries to the log store (before its fsync)",
            Unit::Seconds,
            metrics.append_seconds.clone(),
        );
        r.register_with_unit(
            "ledger_raft_fsync_duration",
            "Each fsync of the Raft log",
            Unit::Seconds,
            metrics.fsync_seconds.clone(),
        );
        r.register_with_unit(
            "ledger_raft_snapshot_build_duration",
            "Building a snapshot: copying the state, encoding and writing it",
            Unit::Seconds,
            metrics.snapshot_build_seconds.clone(),
        );
        r.register_with_unit(
            "ledger_raft_snapshot_install_duration",
            "Installing a snapshot sent by the leader",
            Unit::Seconds,
            metrics.snapshot_install_seconds.clone(),
        );
        r.register_with_unit(
            "ledger_raft_snapshot_size",
            "Sizes of the snapshots this node built or installed",
            Unit::Bytes,
            metrics.snapshot_bytes.clone(),
        );
        r.register(
            "ledger_raft_leader_changes",
            "Times this node saw the leader change (to another node or to none)",
            metrics.leader_changes.clone(),
        );
        r.register(
            "ledger_raft_committed_index",
            "Index of the last entry known committed",
            metrics.committed_index.clone(),
        );
        r.register_with_unit(
            "ledger_proposal_queue_delay",
            "How long the oldest command of the last entry this node proposed as leader had \
             waited for it; over --proposal-delay-max-ms, client writes are refused \
             (RESOURCE_EXHAUSTED)",
            Unit::Seconds,
            metrics.proposal_delay_seconds.clone(),
        );
        // Every known series from the start, at zero: a family without series is not exported,
        // and dashboards and alerts should see "none yet" rather than "no such metric".
        for (partner, operation) in OPERATIONS {
            let call = OperationLabels { partner, operation };
            let _ = metrics.partner_seconds.get_or_create(&call);
            let _ = metrics.partner_retries.get_or_create(&call);
            for result in PARTNER_RESULTS {
                let _ = metrics.partner_calls.get_or_create(&PartnerLabels {
                    partner,
                    operation,
                    result,
                });
            }
        }
        for step in SAGA_STEPS {
            let labels = StepLabels {
                step: step.as_str(),
            };
            let _ = metrics.step_seconds.get_or_create(&labels);
            let _ = metrics.step_overhead_seconds.get_or_create(&labels);
        }
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Measures the data folder (its Raft log, its disk) at every scrape.
    pub fn watch_data_dir(&self, dir: std::path::PathBuf) {
        let _ = self.data_dir.set(dir);
    }

    /// Records one call to a partner that took `took`.
    pub fn partner_call(&self, call: OperationLabels, result: &'static str, took: Duration) {
        self.partner_seconds
            .get_or_create(&call)
            .observe(took.as_secs_f64());
        self.partner_calls
            .get_or_create(&PartnerLabels {
                partner: call.partner,
                operation: call.operation,
                result,
            })
            .inc();
    }

    /// Records a saga step that took `took`, `in_partners` of it inside partner calls.
    pub fn step(&self, step: &'static str, took: Duration, in_partners: Duration) {
        let labels = StepLabels { step };
        self.step_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.step_overhead_seconds
            .get_or_create(&labels)
            .observe(took.saturating_sub(in_partners).as_secs_f64());
    }

    /// Marks the node as serving since `unix_seconds` (for `ledger_node_start_time_seconds`).
    pub fn set_started(&self, unix_seconds: u64) {
        self.started.store(unix_seconds, Ordering::Relaxed);
    }
}

/// Serves `/metrics` on `listener` until the process stops.
pub async fn serve(listener: TcpListener, node: Arc<Node>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(node);
    axum::serve(listener, app).await
}

async fn render(State(node): State<Arc<Node>>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        exposition(&node),
    )
}

/// The whole exposition: the recorded families, then what is read now.
pub fn exposition(node: &Node) -> String {
    let mut out = String::new();
    let now = read_now(node);
    // Writing to a String cannot fail.
    let _ = encode_registry(&mut out, &node.metrics.registry);
    let _ = encode_registry(&mut out, &now);
    let _ = encode_eof(&mut out);
    out
}

/// Registers a gauge of `value`.
fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let gauge: Gauge = Gauge::default();
    gauge.set(value);
    registry.register(name, help, gauge);
}

/// Registers a counter read elsewhere (`_total` is appended).
fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(name, help, ConstCounter::new(value));
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViaLabels {
    via: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SagaLabels {
    step: &'static str,
    executor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DealLabels {
    deal_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FollowerLabels {
    follower: String,
}

/// What is read at scrape time, in a registry of its own.
fn read_now(node: &Node) -> Registry {
    use ledger_state_machine::{CancelCause, RejectReason};

    let id = node.config.node_id;
    let mut r = Registry::with_labels(
        [(
            std::borrow::Cow::Borrowed("node_id"),
            std::borrow::Cow::Owned(id.to_string()),
        )]
        .into_iter(),
    );
    let raft = crate::raft::admin::status(&node.raft);
    let leads = raft.role == "leader";
    let (investments, executors_live, unknown, breaches, tally, census, deals) = {
        let replica = node.replica.read();
        let state = &replica.state;
        (
            state.investment_count(),
            state.executors().iter().filter(|e| e.live).count(),
            state.unknown_deal_rejections(),
            state.breaches().count,
            state.tally().clone(),
            state.saga_census(SAGA_STUCK_AFTER_MS),
            state.open_deal_loads(),
        )
    };

    gauge(
        &mut r,
        "ledger_raft_term",
        "Current Raft term",
        raft.term as i64,
    );
    gauge(
        &mut r,
        "ledger_raft_is_leader",
        "1 if this node leads",
        i64::from(leads),
    );
    gauge(
        &mut r,
        "ledger_raft_leader_id",
        "Known leader's node id (0 if none)",
        raft.leader_id.unwrap_or(0) as i64,
    );
    gauge(
        &mut r,
        "ledger_raft_last_log_index",
        "Index of the last log entry",
        raft.last_log_index as i64,
    );
    gauge(
        &mut r,
        "ledger_raft_applied_index",
        "Index of the last applied entry",
        raft.applied_index as i64,
    );
    gauge(
        &mut r,
        "ledger_raft_snapshot_index",
        "Index covered by the last snapshot",
        raft.snapshot_index as i64,
    );
    gauge(
        &mut r,
        "ledger_raft_purged_index",
        "Index up to which the log was purged",
        raft.purged_index as i64,
    );
    let lag: Family<FollowerLabels, Gauge> = Family::default();
    if leads {
        for member in crate::raft::admin::members(&node.raft) {
            if member.node_id != id {
                lag.get_or_create(&FollowerLabels {
                    follower: member.node_id.to_string(),
                })
                .set(raft.last_log_index.saturating_sub(member.matched_index) as i64);
            }
        }
    }
    r.register(
        "ledger_raft_replication_lag_entries",
        "On the leader: entries each member is behind the leader's last log index",
        lag,
    );
    if let Some(dir) = node.metrics.data_dir.get() {
        gauge(
            &mut r,
            "ledger_raft_log_disk_bytes",
            "Bytes the Raft log's folder takes on disk",
            dir_bytes(&dir.join(crate::RAFT_LOG_DIR)) as i64,
        );
        if let Some((free, size)) = process::disk(dir) {
            gauge(
                &mut r,
                "ledger_disk_free_bytes",
                "Bytes free (to this process) on the data folder's file system",
                free as i64,
            );
            gauge(
                &mut r,
                "ledger_disk_size_bytes",
                "Size of the data folder's file system",
                size as i64,
            );
        }
    }

    // The replica's tallies only grow (until a restart or a snapshot): counters, set afresh in
    // this scrape's registry.
    let decisions: Family<DecisionLabels, Counter> = Family::default();
    let decided = |outcome, reason, n: u64| {
        decisions
            .get_or_create(&DecisionLabels { outcome, reason })
            .inc_by(n);
    };
    decided("PENDING", "", tally.admitted);
    decided("WAITLISTED", "", tally.waitlisted);
    for reason in RejectReason::ALL {
        decided("REJECTED", reason.as_str(), tally.rejected[reason.index()]);
    }
    r.register(
        "ledger_decisions",
        "Requests decided on this replica since it started or loaded a snapshot, by outcome \
         (PENDING: admitted) and reject reason; WAITLIST_CLOSED counts waits that ended without \
         a seat",
        decisions,
    );
    let admissions: Family<ViaLabels, Counter> = Family::default();
    admissions
        .get_or_create(&ViaLabels { via: "submit" })
        .inc_by(tally.admitted);
    admissions
        .get_or_create(&ViaLabels { via: "waitlist" })
        .inc_by(tally.admitted_from_waitlist);
    r.register(
        "ledger_admissions",
        "Admissions on this replica since it started or loaded a snapshot: when decided, or \
         from a waitlist when a seat freed",
        admissions,
    );
    let cancellations: Family<CauseLabels, Counter> = Family::default();
    for cause in CancelCause::ALL {
        cancellations
            .get_or_create(&CauseLabels {
                cause: cause.as_str(),
            })
            .inc_by(tally.cancellations[cause.index()]);
    }
    r.register(
        "ledger_saga_compensations",
        "Sagas turned to cancellation since this replica started or loaded a snapshot, by \
         cause (a declined payment cancels at once; the others void the payment first)",
        cancellations,
    );
    let waitlists: Family<DealLabels, Gauge> = Family::default();
    let seats: Family<DealLabels, Gauge> = Family::default();
    for deal in deals {
        let labels = DealLabels {
            deal_id: deal.deal_id,
        };
        waitlists.get_or_create(&labels).set(deal.waitlisted as i64);
        seats.get_or_create(&labels).set(i64::from(deal.investors));
    }
    r.register(
        "ledger_deal_waitlist_length",
        "Requests waiting on each open deal's waitlist",
        waitlists,
    );
    r.register(
        "ledger_deal_investors",
        "Investors holding a seat (PENDING or CONFIRMED) in each open deal",
        seats,
    );
    let open: Family<SagaLabels, Gauge> = Family::default();
    for step in SAGA_STEPS {
        // Zero unassigned sagas per step unless some are: the family is always there.
        let _ = open.get_or_create(&SagaLabels {
            step: step.as_str(),
            executor: "none".to_owned(),
        });
    }
    for ((step, executor), n) in &census.open {
        open.get_or_create(&SagaLabels {
            step: step.as_str(),
            executor: executor.map_or_else(|| "none".to_owned(), |e| e.to_string()),
        })
        .set(*n as i64);
    }
    r.register(
        "ledger_sagas_open",
        "Open sagas by current step and executor (none: no live executor)",
        open,
    );
    gauge(
        &mut r,
        "ledger_sagas_stuck",
        &format!(
            "Open sagas decided more than {} s ago in log time",
            SAGA_STUCK_AFTER_MS / 1000
        ),
        census.older as i64,
    );

    gauge(
        &mut r,
        "ledger_investments_recorded",
        "Requests for existing deals decided (admitted or rejected)",
        investments as i64,
    );
    gauge(
        &mut r,
        "ledger_unknown_deal_rejections_kept",
        &format!(
            "Rejections of requests naming a deal that does not exist, kept to answer \
             resubmissions (at most {})",
            ledger_state_machine::UNKNOWN_DEAL_REJECTIONS_KEPT
        ),
        unknown.0 as i64,
    );
    gauge(
        &mut r,
        "ledger_unknown_deal_rejections_forgotten",
        "Rejections of requests naming a deal that does not exist, forgotten past the bound \
         since the ledger began (a resubmission of one is decided anew)",
        unknown.1 as i64,
    );
    gauge(
        &mut r,
        "ledger_state_breaches",
        "Counter updates that found the replica's state already wrong while applying (a seat \
         released that was never held, an overflow), since it was loaded; anything but 0 is a \
         bug: the log names the deal",
        breaches as i64,
    );
    gauge(
        &mut r,
        "ledger_executors_live",
        "Executors with a live lease",
        executors_live as i64,
    );
    gauge(
        &mut r,
        "ledger_state_digests_computed",
        "Times the whole state was hashed for a Status with_digest (once per applied index)",
        node.replica.digests_computed() as i64,
    );
    gauge(
        &mut r,
        "ledger_connections_open",
        "TCP connections the gRPC server holds now",
        node.connections.open() as i64,
    );
    counter(
        &mut r,
        "ledger_raft_refused",
        "Raft messages refused before reaching Raft (another cluster, another target, \
         undecodable, overflowing numbers, oversized snapshot chunks, a sender that is not its \
         certificate's node or not a member, a proposal a node may not make)",
        node.raft_refused.load(Ordering::Relaxed),
    );
    counter(
        &mut r,
        "ledger_connections_accepted",
        "TCP connections the gRPC server accepted (under --max-connections) since start",
        node.connections.accepted(),
    );
    counter(
        &mut r,
        "ledger_connections_refused",
        "Connections closed at once for being past --max-connections",
        node.connections.refused(),
    );
    counter(
        &mut r,
        "ledger_auth_refused",
        "Calls refused for their credentials (none: UNAUTHENTICATED; the wrong role or \
         cluster: PERMISSION_DENIED)",
        node.auth_refused.load(Ordering::Relaxed),
    );
    let (stalls, worst_stall_ms) = crate::stall::observed();
    counter(
        &mut r,
        "ledger_runtime_stalls",
        "Times the async runtime woke a timer more than 50 ms late",
        stalls,
    );
    gauge(
        &mut r,
        "ledger_runtime_stall_worst_ms",
        "Worst lateness of a timer wake-up since start, in ms (0 if none over 50 ms)",
        worst_stall_ms as i64,
    );
    let started = node.metrics.started.load(Ordering::Relaxed);
    if started > 0 {
        gauge(
            &mut r,
            "ledger_node_start_time_seconds",
            "When this node started serving, in Unix seconds",
            started as i64,
        );
    }
    let figures = process::read();
    if let Some(bytes) = figures.resident_bytes {
        gauge(
            &mut r,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            bytes as i64,
        );
    }
    if let Some(fds) = figures.open_fds {
        gauge(
            &mut r,
            "process_open_fds",
            "Open file descriptors",
            fds as i64,
        );
    }
    if let Some(cpu) = figures.cpu_seconds {
        r.register(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            ConstCounter::new(cpu),
        );
    }
    r
}

/// Bytes of the files directly in `dir` (sled keeps its files one level deep; its `blobs`
/// folder is counted too).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    fn walk(dir: &std::path::Path, depth: u8) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|entry| match entry.metadata() {
                Ok(meta) if meta.is_dir() && depth > 0 => walk(&entry.path(), depth - 1),
                Ok(meta) if meta.is_file() => meta.len(),
                _ => 0,
            })
            .sum()
    }
    walk(dir, 2)
}
