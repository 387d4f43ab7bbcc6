//! The server half of the Raft transport (`grpc/peer.rs` is the client half): refuses requests
//! from another cluster, addressed to another node, or from a sender its certificate does not
//! name, and hands the rest to `raft/server.rs` (openraft's messages: decoded, checked, handed
//! to Raft) or, for `Propose`, to the batcher.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ledger_proto::pb::{self, RaftReply, RaftRequest};
use ledger_state_machine::{codec, Command};
use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::node::{Node, Route};
use crate::raft::admin;
use crate::raft::forward::{self, ForwardedResult};
use crate::raft::server::{self, Answer, RaftRpc};

/// The internal `admission.v1.Raft` service.
pub struct RaftService {
    node: Arc<Node>,
}

impl RaftService {
    /// Serves `node`'s Raft to peers of its cluster.
    pub fn new(node: Arc<Node>) -> RaftService {
        RaftService { node }
    }

    /// Checks that the request is for this node of this cluster, from the node its certificate
    /// names; the payload, else the refusal (logged and counted).
    fn admitted(&self, request: Request<RaftRequest>) -> Result<(u64, Vec<u8>), Status> {
        let certified = super::auth::node_caller(&request)?;
        let request = request.into_inner();
        let sender = request.sender_node_id;
        self.check_sender(certified, sender)
            .and_then(|()| self.admit(request))
            .map(|payload| (sender, payload))
            .map_err(|error| self.refused(sender, error))
    }

    fn refused(&self, sender: u64, error: ApiError) -> Status {
        self.node.raft_refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(sender, %error, "refused a Raft message");
        error.into()
    }

    /// An openraft message: admitted, then decoded, checked and handed to Raft.
    async fn raft_rpc(
        &self,
        rpc: RaftRpc,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let (sender, payload) = self.admitted(request)?;
        let answer = server::handle(&self.node.raft, rpc, &payload, &self.node.config.raft)
            .await
            .map_err(|error| self.refused(sender, error))?;
        Ok(reply(&self.node, answer))
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
        let membership = admin::membership(&self.node.raft);
        let known = !membership.nodes.is_empty();
        if known && !membership.nodes.contains_key(&sender) {
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
                    .saga_assignee(record.request_id);
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

    /// A forwarded command's checks: valid, proposed by the node it concerns, and allowed now.
    fn check_forwarded(&self, certified: Option<u64>, command: &Command) -> Result<(), ApiError> {
        command.validate().map_err(ApiError::from)?;
        self.check_proposer(certified, command)
            .inspect_err(|error| {
                self.node.raft_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "refused a proposal");
            })?;
        self.node.check_proposal(command)
    }

    fn admit(&self, request: RaftRequest) -> Result<Vec<u8>, ApiError> {
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
        Ok(request.payload)
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::CreateDeal(_) => "CreateDeal",
        Command::CloseDeal { .. } => "CloseDeal",
        Command::Submit(_) => "Submit",
        Command::SubmitTraced(_) => "SubmitTraced",
        Command::ExecutorHeartbeat { .. } => "ExecutorHeartbeat",
        Command::ExecutorRetire { .. } => "ExecutorRetire",
        Command::RecordStep(_) => "RecordStep",
        Command::AbortSaga { .. } => "AbortSaga",
        Command::SetParams(_) => "SetParams",
        Command::Withdraw { .. } => "Withdraw",
        Command::ArchiveDeal(_) => "ArchiveDeal",
    }
}

/// The reply to a peer, with this node's wall clock for its leader's median (`clock.rs`).
fn reply(node: &Node, answer: Answer) -> Response<RaftReply> {
    Response::new(RaftReply {
        payload: answer.payload,
        error: answer.error,
        clock_ms: node.clock.wall_ms(),
    })
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        self.raft_rpc(RaftRpc::AppendEntries, request).await
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.raft_rpc(RaftRpc::Vote, request).await
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        self.raft_rpc(RaftRpc::InstallSnapshot, request).await
    }

    async fn propose(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let certified = super::auth::node_caller(&request)?;
        let (sender, payload) = self.admitted(request)?;
        let command: Command = codec::decode(&payload).map_err(|e| {
            self.refused(
                sender,
                ApiError::invalid("payload", format!("undecodable Raft message: {e}")),
            )
        })?;
        self.check_forwarded(certified, &command)?;
        // Only the leader proposes; a forwarded proposal is never forwarded again.
        let Route::Local = self.node.route(true)? else {
            return Err(
                ApiError::Internal("a forwarded proposal was routed onwards".into()).into(),
            );
        };
        let proposed = self.node.propose_internal(command).await?;
        Ok(reply(
            &self.node,
            Answer::of::<_, String>(Ok((proposed.log_index, proposed.applied))),
        ))
    }

    async fn propose_batch(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let certified = super::auth::node_caller(&request)?;
        let (sender, payload) = self.admitted(request)?;
        let commands: Vec<Command> = codec::decode(&payload).map_err(|e| {
            self.refused(
                sender,
                ApiError::invalid("payload", format!("undecodable Raft message: {e}")),
            )
        })?;
        if commands.len() > forward::BATCH_MAX {
            return Err(self.refused(
                sender,
                ApiError::invalid(
                    "payload",
                    format!(
                        "{} commands in one call; at most {}",
                        commands.len(),
                        forward::BATCH_MAX
                    ),
                ),
            ));
        }
        let Route::Local = self.node.route(true)? else {
            return Err(
                ApiError::Internal("a forwarded proposal was routed onwards".into()).into(),
            );
        };
        // Each command is checked as `Propose` checks one; a refused one does not hold back
        // the others (a saga reassigned meanwhile must not stall the node's other sagas).
        let mut results: Vec<Option<ForwardedResult>> = Vec::with_capacity(commands.len());
        let mut admitted = Vec::with_capacity(commands.len());
        for command in commands {
            match self.check_forwarded(certified, &command) {
                Ok(()) => {
                    results.push(None);
                    admitted.push(command);
                }
                Err(error) => results.push(Some(Err(error.to_string()))),
            }
        }
        let mut proposed = self.node.propose_internal_all(admitted).await.into_iter();
        let results: Vec<ForwardedResult> = results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| match proposed.next() {
                    Some(Ok(proposed)) => Ok((proposed.log_index, proposed.applied)),
                    Some(Err(error)) => Err(error.to_string()),
                    None => Err("no result".to_owned()),
                })
            })
            .collect();
        Ok(reply(&self.node, Answer::of::<_, String>(Ok(results))))
    }
}
