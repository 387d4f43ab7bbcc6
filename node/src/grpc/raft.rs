//! The server half of the Raft transport (`raft/network.rs` is the client half): refuses requests
//! from another cluster or addressed to another node, decodes openraft's RPCs, refuses terms and
//! indexes that would overflow and snapshot chunks past the size limit, hands the rest to the
//! local Raft, and encodes the reply or the Raft error.

use std::fmt::Display;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ledger_proto::pb::{self, RaftReply, RaftRequest};
use ledger_state_machine::{codec, Command};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::config::RaftTuning;
use crate::error::ApiError;
use crate::node::{Node, Route};
use crate::raft::{LogId, TypeConfig};

/// Terms and log indexes above this are refused. openraft adds to them (the next term, the next
/// index): a vote for term `u64::MAX` would be persisted, then wrap or panic at the next
/// election, an outage that survives restarts. No honest cluster reaches 2^62 of either.
pub const RAFT_NUMBER_MAX: u64 = 1 << 62;

/// The internal `admission.v1.Raft` service.
pub struct RaftService {
    node: Arc<Node>,
}

impl RaftService {
    /// Serves `node`'s Raft to peers of its cluster.
    pub fn new(node: Arc<Node>) -> RaftService {
        RaftService { node }
    }

    /// Checks that the request is for this node of this cluster, decodes it and checks its
    /// numbers; nothing reaches Raft before that. A refusal is logged and counted.
    fn open<T: DeserializeOwned + PeerMessage>(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<T, Status> {
        let certified = super::auth::node_caller(&request)?;
        let request = request.into_inner();
        let sender = request.sender_node_id;
        self.check_sender(certified, sender)
            .and_then(|()| self.admit(request))
            .and_then(|message: T| {
                message.check(&self.node.config.raft)?;
                Ok(message)
            })
            .map_err(|error| {
                self.node.raft_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sender, %error, "refused a Raft message");
                error.into()
            })
    }

    /// With TLS, the sender a message names must be the node its certificate names, and a
    /// member or learner of this node's latest membership. A node that knows no membership yet
    /// (it is waiting to be added) accepts any node of its cluster: the leader adding it is not
    /// in any membership it has seen.
    fn check_sender(&self, certified: Option<u64>, sender: u64) -> Result<(), ApiError> {
        let Some(certified) = certified else {
            return Ok(());
        };
        if certified != sender {
            return Err(ApiError::PermissionDenied(format!(
                "the message names sender {sender}, but the certificate is node {certified}'s"
            )));
        }
        let metrics = self.node.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let known = membership.nodes().next().is_some();
        if known && membership.get_node(&sender).is_none() {
            return Err(ApiError::PermissionDenied(format!(
                "node {sender} is not a member or learner of this cluster"
            )));
        }
        Ok(())
    }

    /// What a node may propose through another node's `Propose`: only its own executor's
    /// heartbeats and retirement, and results of saga steps done by itself under an assignment
    /// this replica knows (the state machine fences the epoch again when it applies the step).
    fn check_proposer(&self, certified: Option<u64>, command: &Command) -> Result<(), ApiError> {
        let Some(certified) = certified else {
            return Ok(());
        };
        let claimed = match command {
            Command::ExecutorHeartbeat { node_id, .. } | Command::ExecutorRetire { node_id } => {
                *node_id
            }
            Command::RecordStep(record) => {
                let assignee = self
                    .node
                    .replica
                    .read()
                    .state
                    .investment(record.request_id)
                    .and_then(|investment| investment.saga)
                    .and_then(|saga| saga.assignee);
                if assignee != Some(certified) {
                    return Err(ApiError::PermissionDenied(format!(
                        "the saga of {} is not assigned to node {certified}",
                        record.request_id
                    )));
                }
                record.executor
            }
            other => {
                return Err(ApiError::PermissionDenied(format!(
                    "a node may propose only its executor's heartbeats and step results, not {}",
                    command_name(other)
                )))
            }
        };
        if claimed != certified {
            return Err(ApiError::PermissionDenied(format!(
                "node {certified} proposed for executor {claimed}"
            )));
        }
        Ok(())
    }

    fn admit<T: DeserializeOwned>(&self, request: RaftRequest) -> Result<T, ApiError> {
        if request.cluster_id != self.node.config.cluster_id {
            return Err(ApiError::ForeignCluster {
                theirs: request.cluster_id,
            });
        }
        let me = self.node.config.node_id;
        match request.target_node_id {
            0 => {
                return Err(ApiError::invalid(
                    "target_node_id",
                    "missing: a Raft request names the node it is for",
                ))
            }
            // Answering as another member would let one disk count twice toward a quorum.
            target if target != me => {
                return Err(ApiError::FailedPrecondition(format!(
                    "Raft request from node {} for node {target} reached node {me}: this address \
                     is node {me}'s, not node {target}'s; check the members' addresses \
                     (--advertise)",
                    request.sender_node_id
                )))
            }
            _ => {}
        }
        codec::decode(&request.payload)
            .map_err(|e| ApiError::invalid("payload", format!("undecodable Raft message: {e}")))
    }
}

/// What a peer's message must satisfy before openraft sees it.
trait PeerMessage {
    fn check(&self, limits: &RaftTuning) -> Result<(), ApiError>;
}

fn bounded(field: &'static str, value: u64) -> Result<(), ApiError> {
    if value > RAFT_NUMBER_MAX {
        return Err(ApiError::invalid(
            field,
            format!("{value} is beyond {RAFT_NUMBER_MAX}, where Raft's arithmetic would overflow"),
        ));
    }
    Ok(())
}

fn bounded_log_id(field: &'static str, log_id: Option<&LogId>) -> Result<(), ApiError> {
    match log_id {
        Some(log_id) => {
            bounded(field, log_id.leader_id.term)?;
            bounded(field, log_id.index)
        }
        None => Ok(()),
    }
}

impl PeerMessage for VoteRequest<u64> {
    fn check(&self, _: &RaftTuning) -> Result<(), ApiError> {
        bounded("vote.term", self.vote.leader_id.term)?;
        bounded_log_id("last_log_id", self.last_log_id.as_ref())
    }
}

impl PeerMessage for AppendEntriesRequest<TypeConfig> {
    fn check(&self, _: &RaftTuning) -> Result<(), ApiError> {
        bounded("vote.term", self.vote.leader_id.term)?;
        bounded_log_id("prev_log_id", self.prev_log_id.as_ref())?;
        bounded_log_id("leader_commit", self.leader_commit.as_ref())?;
        self.entries
            .iter()
            .try_for_each(|entry| bounded_log_id("entries.log_id", Some(&entry.log_id)))
    }
}

impl PeerMessage for InstallSnapshotRequest<TypeConfig> {
    fn check(&self, limits: &RaftTuning) -> Result<(), ApiError> {
        bounded("vote.term", self.vote.leader_id.term)?;
        bounded_log_id("meta.last_log_id", self.meta.last_log_id.as_ref())?;
        // openraft writes the chunk at `offset` into an in-memory buffer, zero-filling any gap.
        let end = self.offset.checked_add(self.data.len() as u64);
        match end {
            Some(end) if end <= limits.snapshot_bytes_max => Ok(()),
            _ => Err(ApiError::invalid(
                "offset",
                format!(
                    "a snapshot chunk at {} of {} bytes reaches past the {} bytes this node \
                     accepts (--snapshot-max-mib)",
                    self.offset,
                    self.data.len(),
                    limits.snapshot_bytes_max
                ),
            )),
        }
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::CreateDeal(_) => "CreateDeal",
        Command::CloseDeal { .. } => "CloseDeal",
        Command::Submit(_) => "Submit",
        Command::ExecutorHeartbeat { .. } => "ExecutorHeartbeat",
        Command::ExecutorRetire { .. } => "ExecutorRetire",
        Command::RecordStep(_) => "RecordStep",
        Command::AbortSaga { .. } => "AbortSaga",
        Command::SetParams(_) => "SetParams",
        Command::Withdraw { .. } => "Withdraw",
        Command::ArchiveDeal(_) => "ArchiveDeal",
    }
}

/// `Propose` checks its command against the state and the sender (`check_proposer`,
/// `check_proposal`) instead.
impl PeerMessage for Command {
    fn check(&self, _: &RaftTuning) -> Result<(), ApiError> {
        Ok(())
    }
}

/// The reply to a peer, with this node's wall clock for its leader's median (`clock.rs`).
fn reply<T: Serialize, E: Serialize + Display>(
    node: &Node,
    result: Result<T, E>,
) -> Result<Response<RaftReply>, Status> {
    let clock_ms = node.clock.wall_ms();
    Ok(Response::new(match result {
        Ok(value) => RaftReply {
            payload: codec::encode(&value),
            error: String::new(),
            clock_ms,
        },
        Err(error) => RaftReply {
            payload: codec::encode(&error),
            error: error.to_string(),
            clock_ms,
        },
    }))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(&self.node, self.node.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(&self.node, self.node.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(&self.node, self.node.raft.install_snapshot(rpc).await)
    }

    async fn propose(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let certified = super::auth::node_caller(&request)?;
        let command: Command = self.open(request)?;
        command.validate().map_err(ApiError::from)?;
        self.check_proposer(certified, &command).map_err(|error| {
            self.node.raft_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "refused a proposal");
            Status::from(error)
        })?;
        self.node.check_proposal(&command)?;
        // Only the leader proposes; a forwarded proposal is never forwarded again.
        let Route::Local = self.node.route(true)? else {
            return Err(
                ApiError::Internal("a forwarded proposal was routed onwards".into()).into(),
            );
        };
        let proposed = self.node.propose(command).await?;
        reply::<_, String>(&self.node, Ok((proposed.log_index, proposed.applied)))
    }
}
