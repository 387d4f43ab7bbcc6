//! Flags (with `LEDGER_*` environment fallbacks) and their validation into a typed [`Config`].
//! Every default is written here, once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

use crate::error::StartError;

/// The raw command line of `ledger-node`.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "ledger-node",
    version,
    about = "One replica of the admission ledger"
)]
pub struct Flags {
    /// This node's id, unique in the cluster (1 or more).
    #[arg(long, env = "LEDGER_ID")]
    pub id: u64,
    /// Address to serve gRPC on (clients, operators and peers).
    #[arg(long, env = "LEDGER_LISTEN", default_value = "127.0.0.1:7801")]
    pub listen: SocketAddr,
    /// Address peers and clients reach this node at; defaults to --listen.
    #[arg(long, env = "LEDGER_ADVERTISE")]
    pub advertise: Option<String>,
    /// Folder for the Raft log and snapshots; created if missing.
    #[arg(long, env = "LEDGER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Base URL of the payment, documents and e-mail partners.
    #[arg(
        long,
        env = "LEDGER_PARTNERS_URL",
        default_value = "http://127.0.0.1:7700"
    )]
    pub partners_url: String,
    /// Run a saga executor on this node.
    #[arg(long, env = "LEDGER_EXECUTOR", default_value_t = true, action = ArgAction::Set)]
    pub executor: bool,
    /// Address to serve Prometheus metrics on (`GET /metrics`); off when absent.
    #[arg(long, env = "LEDGER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Name shared by the nodes of one cluster; Raft messages from another cluster are refused.
    #[arg(long, env = "LEDGER_CLUSTER_ID", default_value = "admission-ledger")]
    pub cluster_id: String,
    /// Raft heartbeat period.
    #[arg(long, env = "LEDGER_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Smallest election timeout; the largest is twice this.
    #[arg(long, env = "LEDGER_ELECTION_TIMEOUT_MS", default_value_t = 400)]
    pub election_timeout_ms: u64,
    /// Build a snapshot (and purge the log behind it) every this many entries, plus
    /// (node id mod 4) × 2% so that the replicas do not all snapshot at the same moment.
    #[arg(long, env = "LEDGER_SNAPSHOT_EVERY_ENTRIES", default_value_t = 20_000)]
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a snapshot, so slightly lagging followers need no snapshot.
    #[arg(long, env = "LEDGER_LOG_KEEP_ENTRIES", default_value_t = 2_000)]
    pub log_keep_entries: u64,
    /// Largest snapshot, in MiB, this node accepts from a leader: a chunk reaching past it is
    /// refused (the receive buffer would otherwise grow to any offset a peer names).
    #[arg(long, env = "LEDGER_SNAPSHOT_MAX_MIB", default_value_t = 1_024)]
    pub snapshot_max_mib: u64,
    /// Most commands the leader puts in one log entry.
    #[arg(long, env = "LEDGER_BATCH_COMMANDS_MAX", default_value_t = 1_024)]
    pub batch_commands_max: usize,
    /// Most log entries proposed and not yet applied at once (pipelining depth).
    /// Two measured best on a 2-core loopback cluster: deeper pipelines made batches smaller
    /// (about 1.6 commands per entry at 32) and throughput lower.
    #[arg(long, env = "LEDGER_INFLIGHT_ENTRIES_MAX", default_value_t = 2)]
    pub inflight_entries_max: usize,
    /// How long, in µs, the leader waits for more commands before proposing an entry while
    /// another entry is still in flight; the wait also ends when that entry is applied, and it
    /// never happens with the pipeline empty, so a lone request does not wait. Fewer, larger
    /// entries mean fewer fsyncs (docs/performance.md: saga overhead p50 14 → 12-13 ms, 64
    /// flat-out clients 7,700 → 8,350 decisions/s on the local cluster).
    #[arg(long, env = "LEDGER_BATCH_LINGER_US", default_value_t = 3_000)]
    pub batch_linger_us: u64,
    /// Async runtime worker threads (default: one per core). When several nodes share a few
    /// cores, as in a local cluster, 1 avoids most of the cross-thread wake-ups.
    #[arg(long, env = "LEDGER_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
    /// Log format.
    #[arg(long, env = "LEDGER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How the node writes its log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Validated settings of one node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id.
    pub node_id: u64,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where others reach this node.
    pub advertise: String,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Partners' base URL (used by the saga executor).
    pub partners_url: String,
    /// Whether to run a saga executor.
    pub executor: bool,
    /// Where to serve metrics, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The cluster's name.
    pub cluster_id: String,
    /// Raft timing and log compaction.
    pub raft: RaftTuning,
    /// Leader batching.
    pub batch_commands_max: usize,
    /// Pipelining depth.
    pub inflight_entries_max: usize,
    /// Wait for more commands while another entry is in flight.
    pub batch_linger: std::time::Duration,
}

/// Raft timing and compaction settings.
#[derive(Clone, Copy, Debug)]
pub struct RaftTuning {
    /// Heartbeat period.
    pub heartbeat_ms: u64,
    /// Election timeout range start; the end is twice it.
    pub election_timeout_ms: u64,
    /// Snapshot period in entries.
    pub snapshot_every_entries: u64,
    /// Entries kept behind a snapshot.
    pub log_keep_entries: u64,
    /// Largest snapshot accepted from a leader, in bytes.
    pub snapshot_bytes_max: u64,
}

impl RaftTuning {
    /// How long a peer gets to answer before it counts as unreachable.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.election_timeout_ms)
    }
}

impl Flags {
    /// Checks every flag and fills defaults that depend on others.
    pub fn validate(self) -> Result<Config, StartError> {
        let bad = |msg: String| Err(StartError::Config(msg));
        if self.id == 0 {
            return bad("--id must be 1 or more".into());
        }
        if self.heartbeat_ms == 0 || self.election_timeout_ms < 2 * self.heartbeat_ms {
            return bad("--election-timeout-ms must be at least twice --heartbeat-ms".into());
        }
        if self.snapshot_every_entries == 0 {
            return bad("--snapshot-every-entries must be 1 or more".into());
        }
        if !(1..=1 << 20).contains(&self.snapshot_max_mib) {
            return bad("--snapshot-max-mib must be between 1 and 1048576 (1 TiB)".into());
        }
        if !(1..=ledger_state_machine::ENTRY_COMMANDS_MAX).contains(&self.batch_commands_max) {
            return bad(format!(
                "--batch-commands-max must be between 1 and {}",
                ledger_state_machine::ENTRY_COMMANDS_MAX
            ));
        }
        if !(1..=1_024).contains(&self.inflight_entries_max) {
            return bad("--inflight-entries-max must be between 1 and 1024".into());
        }
        if self.batch_linger_us > 100_000 {
            return bad("--batch-linger-us must be at most 100000 (0.1 s)".into());
        }
        if self.cluster_id.is_empty() {
            return bad("--cluster-id must not be empty".into());
        }
        if !(self.partners_url.starts_with("http://") || self.partners_url.starts_with("https://"))
        {
            return bad("--partners-url must be an http:// or https:// URL".into());
        }
        let advertise = self.advertise.unwrap_or_else(|| self.listen.to_string());
        if advertise.parse::<SocketAddr>().is_err() && !advertise.contains(':') {
            return bad(format!("--advertise {advertise:?} must be host:port"));
        }
        Ok(Config {
            node_id: self.id,
            listen: self.listen,
            advertise,
            data_dir: self.data_dir,
            partners_url: self.partners_url,
            executor: self.executor,
            metrics_listen: self.metrics_listen,
            cluster_id: self.cluster_id,
            raft: RaftTuning {
                heartbeat_ms: self.heartbeat_ms,
                election_timeout_ms: self.election_timeout_ms,
                snapshot_every_entries: self.snapshot_every_entries,
                log_keep_entries: self.log_keep_entries,
                snapshot_bytes_max: self.snapshot_max_mib << 20,
            },
            batch_commands_max: self.batch_commands_max,
            inflight_entries_max: self.inflight_entries_max,
            batch_linger: std::time::Duration::from_micros(self.batch_linger_us),
        })
    }
}
