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
    /// A private CA (PEM) that the partners' `https://` certificate must chain to; without it,
    /// the public web roots are trusted.
    #[arg(long, env = "LEDGER_PARTNERS_CA")]
    pub partners_ca: Option<PathBuf>,
    /// Speak HTTP/2 to the partners: over `http://` without negotiation (the partners must
    /// accept cleartext HTTP/2), over `https://` offered by ALPN. Off: HTTP/1.1 with keep-alive.
    #[arg(long, env = "LEDGER_PARTNERS_HTTP2", default_value_t = false, action = ArgAction::Set)]
    pub partners_http2: bool,
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
    /// Most commands waiting on the leader for a log entry (back-pressure). Beyond it a write is
    /// refused at once with RESOURCE_EXHAUSTED, nothing proposed (the client library retries
    /// with backoff), instead of queueing into ever longer latency. A `SubmitBatch` is queued
    /// whole or refused whole. At least 10000 (the largest batch).
    #[arg(long, env = "LEDGER_PROPOSAL_QUEUE_MAX", default_value_t = 16_384)]
    pub proposal_queue_max: usize,
    /// Back-pressure by time, in ms: while the leader's writes wait longer than this for a log
    /// entry (measured on the oldest command of each entry it proposes), a client write is
    /// refused at once with RESOURCE_EXHAUSTED, nothing proposed. It bounds the queueing delay
    /// whatever the size of calls; 0 turns it off (the count bound above still holds).
    /// Executors' own writes are never refused.
    #[arg(long, env = "LEDGER_PROPOSAL_DELAY_MAX_MS", default_value_t = 200)]
    pub proposal_delay_max_ms: u64,
    /// Back-pressure from the sagas: while this many admitted investments have sagas still
    /// open, the leader refuses new submissions with RESOURCE_EXHAUSTED, nothing proposed,
    /// rather than admit investors whose sagas would wait past their deadline and be voided
    /// (10,000 admissions/s against ~2,000-3,000 sagas/s ended a quarter of them so, issue #15).
    /// Resubmissions of decided requests are still answered. Applies once the cluster has seen
    /// an executor (without any, sagas never run and would only stop admissions). 0 turns it
    /// off.
    #[arg(long, env = "LEDGER_OPEN_SAGAS_MAX", default_value_t = 100_000)]
    pub open_sagas_max: usize,
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
    /// Export spans over OTLP/HTTP (protobuf) to this collector, e.g. `http://127.0.0.1:4318`
    /// (`/v1/traces` is added when the URL has no path). Off by default.
    #[arg(long, env = "LEDGER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// This node's certificate (PEM), issued by the cluster CA for `spiffe://<cluster-id>/node/<id>`
    /// (`ledgerctl certs issue node`). With --tls-key and --tls-ca, every connection is TLS and
    /// peers, operators and clients are told apart by their certificates.
    #[arg(long, env = "LEDGER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "LEDGER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA's certificate (PEM): peers and clients must present a certificate it
    /// signed, and this node trusts peers only through it.
    #[arg(long, env = "LEDGER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Plaintext, and no identity checks at all: anyone who reaches the port may do anything,
    /// Raft included. For development only; the node says so loudly.
    #[arg(long, env = "LEDGER_INSECURE", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub insecure: bool,
    /// File holding the operators' bearer token (one line, at least 32 characters): a caller
    /// presenting `authorization: Bearer <token>` acts as an operator. Needs TLS.
    #[arg(long, env = "LEDGER_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the clients' bearer token (as --admin-token-file, for the client role).
    #[arg(long, env = "LEDGER_CLIENT_TOKEN_FILE")]
    pub client_token_file: Option<PathBuf>,
    /// Most calls in flight at once over all connections (Raft's own messages aside); beyond
    /// it a call gets RESOURCE_EXHAUSTED at once.
    #[arg(long, env = "LEDGER_MAX_IN_FLIGHT", default_value_t = 4_096)]
    pub max_in_flight: usize,
    /// Most TCP connections held at once (peers, operators and clients together); a connection
    /// past it is closed at once, before the TLS handshake.
    #[arg(long, env = "LEDGER_MAX_CONNECTIONS", default_value_t = 2_048)]
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams (calls) per connection.
    #[arg(long, env = "LEDGER_MAX_STREAMS_PER_CONNECTION", default_value_t = 512)]
    pub max_streams_per_connection: u32,
    /// Longest a call may take, in ms, before DEADLINE_EXCEEDED (its outcome is then unknown);
    /// AddLearner and ChangeMembership get 90 s. Watch streams are not cut.
    #[arg(long, env = "LEDGER_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Most WatchInvestment streams this node serves at once.
    #[arg(long, env = "LEDGER_WATCH_STREAMS_MAX", default_value_t = 10_000)]
    pub watch_streams_max: usize,
    /// Seed of the hash tables over client-chosen ids; random per process when absent (the
    /// default, against hash flooding). Only to reproduce a run: replicas decide the same
    /// whatever their seeds.
    #[arg(long, env = "LEDGER_HASH_SEED", hide = true)]
    pub hash_seed: Option<u64>,
    /// Most WatchInvestment streams over one connection.
    #[arg(
        long,
        env = "LEDGER_WATCH_STREAMS_PER_CONNECTION_MAX",
        default_value_t = 256
    )]
    pub watch_streams_per_connection_max: usize,
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
    /// The partners' private CA, if any.
    pub partners_ca: Option<PathBuf>,
    /// Whether to speak HTTP/2 to the partners.
    pub partners_http2: bool,
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
    /// Back-pressure: commands queued for a log entry at most.
    pub proposal_queue_max: usize,
    /// Back-pressure: refuse client writes while they wait longer than this (zero: off).
    pub proposal_delay_max: std::time::Duration,
    /// Back-pressure from the sagas: refuse submissions while this many sagas are open (zero:
    /// off).
    pub open_sagas_max: usize,
    /// Wait for more commands while another entry is in flight.
    pub batch_linger: std::time::Duration,
    /// Transport security and credentials.
    pub security: SecurityFiles,
    /// Server limits.
    pub limits: Limits,
    /// A fixed hash seed, if given.
    pub hash_seed: Option<u64>,
}

/// What one node serves at most (`grpc/limits.rs`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// TCP connections held at once.
    pub connections_max: usize,
    /// Calls in flight over all connections.
    pub in_flight_max: usize,
    /// Longest a call may take.
    pub request_timeout: Duration,
    /// HTTP/2 streams per connection.
    pub streams_per_connection_max: u32,
    /// Watch streams in total.
    pub watch_streams_max: usize,
    /// Watch streams per connection.
    pub watch_streams_per_connection_max: usize,
}

/// Where the node's certificates and tokens are, as given; read by `tls::Security::load`.
#[derive(Clone, Debug)]
pub struct SecurityFiles {
    /// `None`: `--insecure`.
    pub tls: Option<TlsFiles>,
    /// The operators' token file.
    pub admin_token_file: Option<PathBuf>,
    /// The clients' token file.
    pub client_token_file: Option<PathBuf>,
}

/// The three PEM files of TLS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// This node's certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The cluster CA's certificate.
    pub ca: PathBuf,
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
        // codec::decode_large reads the snapshot file within DECODE_LARGE_CLAIM_MAX (4 GiB).
        if !(1..=4_095).contains(&self.snapshot_max_mib) {
            return bad("--snapshot-max-mib must be between 1 and 4095".into());
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
        if !(10_000..=1 << 20).contains(&self.proposal_queue_max) {
            return bad("--proposal-queue-max must be between 10000 and 1048576".into());
        }
        if self.proposal_delay_max_ms > 60_000 {
            return bad("--proposal-delay-max-ms must be at most 60000 (0: off)".into());
        }
        if self.open_sagas_max > 100_000_000 {
            return bad("--open-sagas-max must be at most 100000000 (0: off)".into());
        }
        if self.batch_linger_us > 100_000 {
            return bad("--batch-linger-us must be at most 100000 (0.1 s)".into());
        }
        if !(self.partners_url.starts_with("http://") || self.partners_url.starts_with("https://"))
        {
            return bad("--partners-url must be an http:// or https:// URL".into());
        }
        let tls = match (self.tls_cert, self.tls_key, self.tls_ca, self.insecure) {
            (Some(cert), Some(key), Some(ca), false) => Some(TlsFiles { cert, key, ca }),
            (None, None, None, true) => None,
            (None, None, None, false) => {
                return bad(
                    "give --tls-cert, --tls-key and --tls-ca (see `ledgerctl certs`), or \
                            --insecure to run without TLS and without any identity checks"
                        .into(),
                )
            }
            (_, _, _, true) => return bad("--insecure cannot be combined with --tls-*".into()),
            _ => return bad("--tls-cert, --tls-key and --tls-ca go together".into()),
        };
        if tls.is_none() && (self.admin_token_file.is_some() || self.client_token_file.is_some()) {
            return bad(
                "token files need TLS: a bearer token sent in plaintext is anyone's".into(),
            );
        }
        if !ledger_proto::identity::is_valid_name(&self.cluster_id) {
            return bad(
                "--cluster-id must be 1 to 64 of A-Z a-z 0-9 . _ - (it is part of certificates' \
                 identities)"
                    .into(),
            );
        }
        if !(1..=1 << 20).contains(&self.max_in_flight)
            || !(1..=1 << 20).contains(&self.max_connections)
            || !(1..=1 << 20).contains(&self.watch_streams_max)
            || !(1..=1 << 20).contains(&self.watch_streams_per_connection_max)
            || !(1..=1 << 20).contains(&self.max_streams_per_connection)
        {
            return bad(
                "--max-connections, --max-in-flight, --max-streams-per-connection, \
                 --watch-streams-max and --watch-streams-per-connection-max are between 1 and \
                 1048576"
                    .into(),
            );
        }
        if !(100..=3_600_000).contains(&self.request_timeout_ms) {
            return bad("--request-timeout-ms must be between 100 and 3600000".into());
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
            partners_ca: self.partners_ca,
            partners_http2: self.partners_http2,
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
            proposal_queue_max: self.proposal_queue_max,
            proposal_delay_max: std::time::Duration::from_millis(self.proposal_delay_max_ms),
            open_sagas_max: self.open_sagas_max,
            batch_linger: std::time::Duration::from_micros(self.batch_linger_us),
            security: SecurityFiles {
                tls,
                admin_token_file: self.admin_token_file,
                client_token_file: self.client_token_file,
            },
            hash_seed: self.hash_seed,
            limits: Limits {
                connections_max: self.max_connections,
                in_flight_max: self.max_in_flight,
                request_timeout: Duration::from_millis(self.request_timeout_ms),
                streams_per_connection_max: self.max_streams_per_connection,
                watch_streams_max: self.watch_streams_max,
                watch_streams_per_connection_max: self.watch_streams_per_connection_max,
            },
        })
    }
}
