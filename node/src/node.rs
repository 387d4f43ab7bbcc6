//! [`Node`]: what every RPC handler shares: the Raft handle, the local replica, the batcher, and
//! the routing of writes and linearizable reads to the leader.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use ledger_state_machine::{AdmissionState, Command};

use crate::clock::LogClock;
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::raft::batcher::Batcher;
pub use crate::raft::batcher::Proposed;
use crate::raft::state_machine::Replica;
use crate::raft::Raft;
use crate::tls::Security;
use crate::transport::{PeerChannel, Transport};

/// Longest wait for a command proposed by this node's executor ([`Node::propose_anywhere`]) to
/// be committed and applied. A leader that silently stopped answering (a partition that drops
/// packets, a frozen process) must not hold the executor's workers until TCP gives up: after
/// this the caller re-reads its saga and proposes again, under the same epoch, which is harmless
/// if the first one landed.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The wait a refusal for a backlog of sagas suggests: executors end thousands a second, so a
/// second frees room for many, and a shorter wait would mostly be refused again.
const SAGA_ROOM_PUSHBACK: Duration = Duration::from_secs(1);

/// Metadata marking a forwarded call, so that it is never forwarded twice (a node with a stale
/// view of the leader answers `UNAVAILABLE` with its hint instead of starting a loop).
pub const FORWARDED_KEY: &str = "x-ledger-forwarded";

/// Whether a call was forwarded by another node (see [`FORWARDED_KEY`]).
pub fn is_forwarded<T>(request: &tonic::Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_KEY)
}

/// The same call, marked as forwarded, for the leader; the caller's deadline travels in the
/// metadata.
pub fn forwarded<T>(request: tonic::Request<T>) -> tonic::Request<T> {
    let (mut metadata, _, message) = request.into_parts();
    metadata.insert(
        FORWARDED_KEY,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    tonic::Request::from_parts(metadata, Default::default(), message)
}

/// Where a write or a linearizable read must run.
pub enum Route {
    /// Here: this node leads.
    Local,
    /// At the leader, over this channel.
    Leader(PeerChannel),
}

/// The node's shared state.
pub struct Node {
    /// Settings.
    pub config: Config,
    /// What the node records for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The Raft handle.
    pub raft: Raft,
    /// The local replica of the state machine.
    pub replica: Arc<Replica>,
    /// This node's clocks and what it knows of its peers'.
    pub clock: Arc<LogClock>,
    batcher: Batcher,
    /// Channels to peers, each kept for reuse ([`crate::transport::SharedChannels`]).
    transport: Arc<dyn Transport>,
    /// Raft messages refused before they reached Raft (`ledger_raft_refused_total`).
    pub raft_refused: AtomicU64,
    /// Calls refused for their credentials (`ledger_auth_refused_total`).
    pub auth_refused: AtomicU64,
    /// TLS settings and tokens.
    pub security: Arc<Security>,
    /// Server limits shared by every connection.
    pub guard: Arc<crate::grpc::limits::Guard>,
    /// The cap on TCP connections.
    pub connections: Arc<crate::grpc::connections::ConnectionCap>,
    /// This node's executor's proposals on their way to another node that leads.
    pub forwarder: crate::raft::forward::Forwarder,
}

impl Node {
    /// Ties the parts together.
    #[allow(clippy::too_many_arguments)] // one caller: `lib.rs`'s wiring
    pub fn new(
        config: Config,
        security: Arc<Security>,
        transport: Arc<dyn Transport>,
        clock: Arc<LogClock>,
        raft: Raft,
        replica: Arc<Replica>,
        batcher: Batcher,
        metrics: Arc<Metrics>,
    ) -> Node {
        Node {
            metrics,
            raft,
            replica,
            clock,
            batcher,
            transport,
            raft_refused: AtomicU64::new(0),
            auth_refused: AtomicU64::new(0),
            security,
            guard: crate::grpc::limits::Guard::new(config.limits),
            connections: Arc::new(crate::grpc::connections::ConnectionCap::new(
                config.limits.connections_max,
            )),
            forwarder: crate::raft::forward::Forwarder::default(),
            config,
        }
    }

    /// The current leader's id and address, as this node believes.
    pub fn leader(&self) -> (Option<u64>, Option<String>) {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader_id = metrics.current_leader;
        let leader_addr = leader_id.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|node| node.addr.clone())
        });
        (leader_id, leader_addr)
    }

    /// Where a write or linearizable read goes. `forwarded` calls are never forwarded again.
    pub fn route(&self, forwarded: bool) -> Result<Route, ApiError> {
        match self.leader() {
            (Some(id), _) if id == self.config.node_id => Ok(Route::Local),
            (Some(id), Some(addr)) if !forwarded => Ok(Route::Leader(self.channel(&addr)?))
                .inspect(|_| {
                    tracing::debug!(leader = id, "forwarding to the leader");
                }),
            (leader_id, leader_addr) => Err(ApiError::NoLeader {
                leader_id,
                leader_addr,
            }),
        }
    }

    /// Where a read runs: `None` when the local replica may serve it (a `stale` read, or a
    /// linearizable one on the leader after a read barrier), else the leader to forward it to.
    pub async fn read_route<T>(
        &self,
        request: &tonic::Request<T>,
        stale: bool,
    ) -> Result<Option<PeerChannel>, ApiError> {
        if stale {
            return Ok(None);
        }
        match self.route(is_forwarded(request))? {
            Route::Local => {
                self.linearizable_barrier().await?;
                Ok(None)
            }
            Route::Leader(channel) => Ok(Some(channel)),
        }
    }

    /// A lazily connected channel to `addr`, shared with every other caller on this node.
    pub fn channel(&self, addr: &str) -> Result<PeerChannel, ApiError> {
        self.transport.channel(addr).map_err(ApiError::Internal)
    }

    /// `NOT_FOUND` for a deal this replica does not have: "archived" if it was.
    pub fn deal_missing(&self, deal_id: &str) -> ApiError {
        match self.replica.read().state.archived_deal(deal_id) {
            Some(_) => ApiError::Archived(format!("deal {deal_id}")),
            None => ApiError::NotFound(format!("deal {deal_id}")),
        }
    }

    /// Stops this node's batcher from proposing new entries while the guard lives; returns once
    /// no proposal is under way.
    pub async fn hold_writes(&self) -> crate::raft::batcher::Hold {
        self.batcher.hold().await
    }

    /// Waits until every entry this node's batcher proposed was answered (applied or failed).
    pub async fn writes_drained(&self) {
        self.batcher.drained().await
    }

    /// On the leader, before proposing submissions: refuses them ([`ApiError::Overloaded`],
    /// nothing proposed) while `--open-sagas-max` sagas are open in a cluster that has
    /// executors. Admitting more than the executors can finish before the saga deadline would
    /// only void them later.
    pub fn saga_room(&self) -> Result<(), ApiError> {
        self.saga_room_in(&self.replica.read().state)
    }

    /// [`Node::saga_room`] on a state the caller already holds.
    pub fn saga_room_in(&self, state: &AdmissionState) -> Result<(), ApiError> {
        let max = self.config.open_sagas_max;
        // A cluster that runs no executor (every node `--executor false`, as the
        // decisions-only benches run) never works its sagas off: the bound would stop it after
        // `max` admissions for nothing. Once an executor was seen, sagas it cannot finish
        // (every executor down) count.
        if max == 0 || state.executor_count() == 0 {
            return Ok(());
        }
        let open = state.open_saga_count();
        if open < max {
            return Ok(());
        }
        Err(ApiError::Overloaded {
            reason: format!(
                "{open} admitted investments have sagas still running, the limit \
                 (--open-sagas-max {max}); new submissions are refused until some end; retry \
                 later"
            ),
            retry_after: SAGA_ROOM_PUSHBACK,
        })
    }

    /// Proposes a command through the leader's batcher; only call when [`Route::Local`].
    pub async fn propose(&self, command: Command) -> Result<Proposed, ApiError> {
        self.batcher.propose(command).await
    }

    /// [`Node::propose`] for the cluster's own commands (executors' heartbeats and step
    /// results, from this node or over `Raft.Propose`): waits for room in the leader's queue
    /// instead of being refused under a client overload.
    pub async fn propose_internal(&self, command: Command) -> Result<Proposed, ApiError> {
        self.batcher.propose_waiting(command).await
    }

    /// Proposes a command from anywhere in the cluster: through the batcher on the leader, in a
    /// batch of the internal `Raft.ProposeBatch` call from any other node (`raft/forward.rs`).
    /// Used by the saga executor; gives up after [`PROPOSE_TIMEOUT`] with an outcome the caller
    /// must treat as unknown.
    pub async fn propose_anywhere(
        self: &Arc<Self>,
        command: Command,
    ) -> Result<Proposed, ApiError> {
        tokio::time::timeout(PROPOSE_TIMEOUT, self.propose_anywhere_unbounded(command))
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::Timeout(format!(
                    "proposal not applied within {PROPOSE_TIMEOUT:?}"
                )))
            })
    }

    async fn propose_anywhere_unbounded(
        self: &Arc<Self>,
        command: Command,
    ) -> Result<Proposed, ApiError> {
        match self.leader() {
            (Some(id), _) if id == self.config.node_id => self.propose_internal(command).await,
            // Batched with this node's other proposals (`raft/forward.rs`); the request names
            // the leader's id, and a node answering at that address as another node refuses it.
            (Some(_), Some(_)) => self.forwarder.forward(self, command).await,
            (leader_id, leader_addr) => Err(ApiError::NoLeader {
                leader_id,
                leader_addr,
            }),
        }
    }

    /// Proposes the cluster's own `commands` through this leader's batcher, in order, each
    /// waiting for room; each one's result.
    pub async fn propose_internal_all(
        &self,
        commands: Vec<Command>,
    ) -> Vec<Result<Proposed, ApiError>> {
        self.batcher.propose_all_waiting(commands).await
    }

    /// On the leader, refuses the heartbeat of an executor outside the membership: a removed
    /// node may keep running and heartbeating (it still knows the old leader), but it no longer
    /// receives the log, so it would never see the sagas its lease attracts.
    pub fn check_proposal(&self, command: &Command) -> Result<(), ApiError> {
        let Command::ExecutorHeartbeat { node_id, .. } = command else {
            return Ok(());
        };
        let metrics = self.raft.metrics();
        let member = metrics
            .borrow()
            .membership_config
            .membership()
            .get_node(node_id)
            .is_some();
        if member {
            Ok(())
        } else {
            Err(ApiError::FailedPrecondition(format!(
                "node {node_id} is not a member of the cluster; its executor heartbeat is refused"
            )))
        }
    }

    /// Proposes many commands, decided in the given order (they may span several entries); all
    /// or none are queued ([`ApiError::Overloaded`] when the leader's queue has no room).
    pub async fn propose_all(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<Result<Proposed, ApiError>>, ApiError> {
        self.batcher.propose_all(commands).await
    }

    /// Waits until a read of the local replica is linearizable: confirms leadership with a
    /// quorum and waits for the state machine to apply up to the read index.
    pub async fn linearizable_barrier(&self) -> Result<(), ApiError> {
        self.raft.ensure_linearizable().await?;
        Ok(())
    }
}
