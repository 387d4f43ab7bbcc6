//! `ledger-node`: one replica of the admission ledger.
//!
//! A node persists the Raft log in sled ([`raft::log_store`]), applies committed entries to its
//! in-memory [`ledger_state_machine::AdmissionState`] ([`raft::state_machine`]), talks to its
//! peers over the internal gRPC `Raft` service ([`raft::network`] and [`grpc::peer`] send,
//! [`grpc::raft`] and [`raft::server`] receive), and serves the public `Admission` and
//! operators' `Cluster` services ([`grpc`]). On the leader, the [`raft::batcher::Batcher`] turns
//! concurrent writes into one log entry per batch; every other node forwards writes and
//! linearizable reads to the leader ([`node::Node::route`]).
//!
//! [`run`] is the whole node: it takes a validated [`config::Config`], a bound listener and a
//! shutdown future, so tests and the binary drive it the same way.

pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod grpc;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod saga;
pub mod stall;
pub mod tls;
pub mod transport;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ledger_proto::pb::admission_server::AdmissionServer;
use ledger_proto::pb::cluster_server::ClusterServer;
use ledger_proto::pb::raft_server::RaftServer;
use tokio::net::TcpListener;

use crate::clock::{Clock, LogClock, SystemClock};
use crate::config::Config;
use crate::error::StartError;
use crate::grpc::{admission::AdmissionService, cluster::ClusterService, raft::RaftService};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::raft::batcher::{Batcher, Limits as BatchLimits, Pressure};
use crate::raft::log_store::LogStore;
use crate::raft::mem_log::MemDisk;
use crate::raft::network::{Network, RAFT_MESSAGE_BYTES_MAX};
use crate::raft::state_machine::StateMachineStore;
use crate::raft::Raft;
use crate::saga::api::PartnerApi;
use crate::saga::executor::{Executor, ExecutorConfig};
use crate::saga::partners::{HttpPartners, PartnerHttp};
use crate::tls::Security;
use crate::transport::{SharedChannels, TonicTransport, Transport};

/// Longest wait for one partner call before its outcome counts as unknown.
const PARTNER_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Entries per AppendEntries message; with batches of up to 1,024 commands this keeps a message
/// within [`RAFT_MESSAGE_BYTES_MAX`].
const APPEND_ENTRIES_MAX: u64 = 64;
/// Snapshot bytes per InstallSnapshot message.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// [`raft::admin::step_down_on_start`], logged.
async fn step_down<S>(node_id: u64, store: &mut S) -> Result<(), StartError>
where
    S: openraft::storage::RaftLogStorage<raft::TypeConfig>,
{
    let term = raft::admin::step_down_on_start(node_id, store)
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    if let Some(term) = term {
        tracing::info!(
            node_id,
            term,
            "led term {term} before it stopped; starts as a follower"
        );
    }
    Ok(())
}

fn raft_config(config: &Config) -> Result<openraft::Config, StartError> {
    let tuning = config.raft;
    openraft::Config {
        cluster_name: config.cluster_id.clone(),
        heartbeat_interval: tuning.heartbeat_ms,
        election_timeout_min: tuning.election_timeout_ms,
        election_timeout_max: tuning.election_timeout_ms * 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(staggered(
            tuning.snapshot_every_entries,
            config.node_id,
        )),
        max_in_snapshot_log_to_keep: tuning.log_keep_entries,
        max_payload_entries: APPEND_ENTRIES_MAX,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES as u64,
        ..openraft::Config::default()
    }
    .validate()
    .map_err(|e| StartError::Config(e.to_string()))
}

/// The snapshot period of node `node_id`: `every` plus (id mod 4) × 2%. Building a snapshot
/// holds a replica up for a moment (the copy of the state, then encoding and writing it beside
/// the work); if every replica did it at the same index, the whole cluster would pause at once.
fn staggered(every: u64, node_id: u64) -> u64 {
    every.saturating_add(every.saturating_mul(node_id % 4) / 50)
}

/// The Raft log's folder inside `--data-dir`.
pub const RAFT_LOG_DIR: &str = "raft-log";
/// The file inside `--data-dir` naming the cluster the data belongs to.
pub const CLUSTER_ID_FILE: &str = "cluster-id";

/// Checks that the data in `dir` belongs to `cluster_id`, and records it there when the folder
/// names no cluster yet (a new node, or data written before this check existed): a node whose
/// data came from another cluster (or was restored from a backup for a new one) refuses to
/// start rather than mix two clusters' logs.
fn claim_data_dir(dir: &Path, cluster_id: &str) -> Result<(), StartError> {
    let path = dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(found) if found.trim() == cluster_id => Ok(()),
        Ok(found) => Err(StartError::Config(format!(
            "{} belongs to cluster {:?} ({}), not --cluster-id {cluster_id:?}",
            dir.display(),
            found.trim(),
            path.display()
        ))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&path, format!("{cluster_id}\n")).map_err(|error| StartError::DataDir {
                path: path.clone(),
                error,
            })
        }
        Err(error) => Err(StartError::DataDir { path, error }),
    }
}

/// What a node reads time from, talks to its peers through, and keeps its Raft log and snapshot
/// on. [`Seams::default`] is production: the system clock, gRPC over TCP with the node's TLS, and
/// sled plus a snapshot file in `--data-dir`. The deterministic simulation replaces each.
#[derive(Clone)]
pub struct Seams {
    /// The wall and monotonic clocks.
    pub clock: Arc<dyn Clock>,
    /// Node-to-node calls; `None`: [`TonicTransport`] with the node's TLS settings.
    pub transport: Option<Arc<dyn Transport>>,
    /// The Raft log and snapshot on a simulated disk; `None`: sled and a file in `--data-dir`.
    pub disk: Option<MemDisk>,
    /// The executor's partners; `None`: HTTP to `--partners-url`.
    pub partners: Option<Arc<dyn PartnerApi>>,
    /// Seed of the executor's retry jitter; `None`: random.
    pub jitter_seed: Option<u64>,
    /// Whether the runtime watchdog runs (it measures real time against tokio's timers).
    pub watchdog: bool,
}

impl Default for Seams {
    fn default() -> Seams {
        Seams {
            clock: Arc::new(SystemClock),
            transport: None,
            disk: None,
            partners: None,
            jitter_seed: None,
            watchdog: true,
        }
    }
}

/// Runs one node on `listener` until `shutdown` completes, then stops gracefully.
///
/// Refuses to start, with a [`StartError`] saying why, when the log or the snapshot in the data
/// folder fails its checks.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    run_with(
        config,
        Seams::default(),
        |node| node.connections.clone().incoming(listener),
        shutdown,
    )
    .await
}

/// Runs one node with `seams`, serving the connections `incoming` yields (given the node, for
/// the connection cap), until `shutdown` completes.
pub async fn run_with<I, IO, IE>(
    config: Config,
    seams: Seams,
    incoming: impl FnOnce(&Arc<Node>) -> I,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError>
where
    I: futures_util::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let node_id = config.node_id;
    let seed = match config.hash_seed {
        Some(seed) => [seed, seed.rotate_left(32)],
        None => {
            let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
            [a, b]
        }
    };
    // Before any state exists: the replica's tables hash client-chosen ids with it.
    match (ledger_state_machine::set_hash_seed(seed), config.hash_seed) {
        (true, Some(_)) => tracing::info!(node_id, "hash seed fixed by --hash-seed"),
        (true, None) => {}
        (false, _) => tracing::warn!(node_id, "this process had already seeded its tables"),
    }
    let security = Arc::new(Security::load(
        &config.security,
        &config.cluster_id,
        node_id,
    )?);
    if !security.is_tls() {
        tracing::warn!(
            node_id,
            "--insecure: plaintext, and NO identity checks: anyone who reaches this port can \
             vote, append to the log, change the membership and confirm investments; for \
             development only"
        );
    }
    let (events, saga_events) = match config.executor {
        true => {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            (Some(sender), Some(receiver))
        }
        false => (None, None),
    };
    let clock = Arc::new(LogClock::new(seams.clock.clone()));
    let metrics = Arc::new(Metrics::new(node_id));
    let transport: Arc<dyn Transport> = match &seams.transport {
        Some(transport) => transport.clone(),
        None => Arc::new(TonicTransport::new(
            security.clone(),
            config.raft.connect_timeout(),
        )),
    };
    // Raft, forwarding and the executor's proposals share one channel per peer.
    let transport: Arc<dyn Transport> = Arc::new(SharedChannels::new(transport));
    let network = Network::new(
        node_id,
        config.cluster_id.clone(),
        clock.clone(),
        transport.clone(),
    );
    let raft_config = Arc::new(raft_config(&config)?);
    let (raft, replica) = match &seams.disk {
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(|error| StartError::DataDir {
                path: config.data_dir.clone(),
                error,
            })?;
            claim_data_dir(&config.data_dir, &config.cluster_id)?;
            let log_dir = config.data_dir.join(RAFT_LOG_DIR);
            let (mut log_store, summary) = LogStore::open_metered(&log_dir, metrics.clone())?;
            metrics.watch_data_dir(config.data_dir.clone());
            step_down(node_id, &mut log_store).await?;
            let (mut state_machine, replica) = StateMachineStore::open(&config.data_dir, events)?;
            state_machine.set_log_clock(clock.clone());
            state_machine.set_metrics(metrics.clone());
            tracing::info!(
                node_id,
                first_index = ?summary.first_index,
                last_index = ?summary.last_index,
                purged_index = ?summary.purged_index,
                applied_index = replica.read().last_applied.map_or(0, |l| l.index),
                "storage checked"
            );
            let raft = Raft::new(node_id, raft_config, network, log_store, state_machine).await;
            (raft, replica)
        }
        Some(disk) => {
            let (mut state_machine, replica) = StateMachineStore::open_in_memory(disk, events)?;
            state_machine.set_log_clock(clock.clone());
            state_machine.set_metrics(metrics.clone());
            let mut log_store = disk.open();
            step_down(node_id, &mut log_store).await?;
            let raft = Raft::new(node_id, raft_config, network, log_store, state_machine).await;
            (raft, replica)
        }
    };
    let raft = raft.map_err(|e| StartError::Raft(e.to_string()))?;
    {
        let metrics = metrics.clone();
        tokio::spawn(crate::raft::admin::on_leader_change(
            raft.clone(),
            move || {
                metrics.leader_changes.inc();
            },
        ));
    }
    metrics.set_started(seams.clock.wall_ms() / 1000);
    let batcher = Batcher::start(
        raft.clone(),
        node_id,
        clock.clone(),
        BatchLimits {
            batch_commands_max: config.batch_commands_max,
            inflight_entries_max: config.inflight_entries_max,
            linger: config.batch_linger,
        },
        config.proposal_queue_max,
        Pressure::new(
            config.proposal_delay_max,
            metrics.proposal_delay_seconds.clone(),
        ),
    );
    if seams.watchdog {
        stall::spawn_watchdog(node_id);
    }
    let metrics_listen = config.metrics_listen;
    let partners_url = config.partners_url.clone();
    let partners_http = if config.partners_http2 {
        PartnerHttp::Http2
    } else {
        PartnerHttp::Http1
    };
    let partners_ca = match &config.partners_ca {
        Some(path) => Some(std::fs::read(path).map_err(|error| {
            StartError::Config(format!("--partners-ca {}: {error}", path.display()))
        })?),
        None => None,
    };
    let node = Arc::new(Node::new(
        config,
        security.clone(),
        transport,
        clock,
        raft.clone(),
        replica,
        batcher,
        metrics,
    ));
    let executor = match saga_events {
        Some(receiver) => {
            let partners: Arc<dyn PartnerApi> = match seams.partners.clone() {
                Some(partners) => partners,
                None => {
                    tracing::info!(
                        node_id,
                        partners_url = %partners_url,
                        http = %partners_http,
                        "saga executor: partners"
                    );
                    Arc::new(
                        HttpPartners::new(
                            &partners_url,
                            PARTNER_CALL_TIMEOUT,
                            partners_ca.as_deref(),
                            partners_http,
                        )
                        .map_err(|e| StartError::Config(format!("--partners-url: {e}")))?,
                    )
                }
            };
            Some(Executor::start(
                node.clone(),
                partners,
                ExecutorConfig {
                    jitter_seed: seams.jitter_seed,
                    ..ExecutorConfig::default()
                },
                receiver,
            ))
        }
        None => None,
    };
    if let Some(addr) = metrics_listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| StartError::Config(format!("--metrics-listen {addr}: {error}")))?;
        tracing::info!(node_id, %addr, "serving metrics");
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(error) = metrics::serve(listener, node).await {
                tracing::warn!(%error, "metrics server stopped");
            }
        });
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AdmissionServer<AdmissionService>>()
        .await;
    health_reporter
        .set_serving::<ClusterServer<ClusterService>>()
        .await;
    // v1 for current tools (grpcurl), v1alpha for the many that still speak only it (Python's
    // grpcio-reflection, older grpcurl, Postman).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ledger_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| StartError::Config(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| StartError::Config(format!("reflection: {e}")))?;

    let limit = grpc::CLIENT_MESSAGE_BYTES_MAX;
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = security.server_tls() {
        server = server.tls_config(tls)?;
    }
    let served = server
        .layer(grpc::metered::MeteredLayer::new(node.metrics.clone()))
        .layer(grpc::limits::LimitLayer::new(node.guard.clone()))
        .layer(grpc::auth::AuthLayer::new(node.clone()))
        .max_concurrent_streams(node.config.limits.streams_per_connection_max)
        // No `tcp_nodelay` here: it applies only to listeners tonic binds itself; the
        // connection cap sets TCP_NODELAY on every accepted socket.
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(
            AdmissionServer::new(AdmissionService::new(node.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            ClusterServer::new(ClusterService::new(node.clone()))
                .max_decoding_message_size(grpc::CLUSTER_REQUEST_BYTES_MAX)
                .max_encoding_message_size(limit),
        )
        .add_service(
            RaftServer::new(RaftService::new(node.clone()))
                .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming(&node), shutdown)
        .await;
    tracing::info!(node_id, "stopping");
    if let Some(executor) = executor {
        executor.retire().await;
    }
    if let Err(error) = raft.shutdown().await {
        tracing::warn!(node_id, %error, "raft did not stop cleanly");
    }
    served.map_err(StartError::from)
}

#[cfg(test)]
mod tests {
    use super::staggered;

    #[test]
    fn snapshot_periods_differ_between_neighbouring_node_ids() {
        assert_eq!(
            [1, 2, 3, 4].map(|id| staggered(20_000, id)),
            [20_400, 20_800, 21_200, 20_000]
        );
        assert_eq!(staggered(50, 3), 53);
        assert_eq!(staggered(u64::MAX, 3), u64::MAX);
    }
}
