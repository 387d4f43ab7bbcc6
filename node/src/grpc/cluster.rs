//! The operators' `admission.v1.Cluster` service: status, bootstrap, membership, leadership and
//! snapshots. Membership changes run on the leader (followers forward them once).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ledger_proto::pb::{self, cluster_client::ClusterClient};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ServerState};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::node::{forwarded, is_forwarded, Node, Route};

/// How long `TransferLeader` and `TriggerSnapshot` wait for their effect.
const WAIT_FOR_EFFECT: Duration = Duration::from_secs(10);

/// The `Cluster` service of one node.
pub struct ClusterService {
    node: Arc<Node>,
}

impl ClusterService {
    /// Serves `node`.
    pub fn new(node: Arc<Node>) -> ClusterService {
        ClusterService { node }
    }

    fn members(&self) -> Vec<pb::Member> {
        let metrics = self.node.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let matched: BTreeMap<u64, u64> = metrics
            .replication
            .iter()
            .flatten()
            .map(|(id, log_id)| (*id, log_id.map_or(0, |l| l.index)))
            .collect();
        membership
            .nodes()
            .map(|(id, node)| pb::Member {
                node_id: *id,
                addr: node.addr.clone(),
                role: if voters.contains(id) {
                    pb::MemberRole::Voter
                } else {
                    pb::MemberRole::Learner
                } as i32,
                matched_index: matched.get(id).copied().unwrap_or(0),
            })
            .collect()
    }
}

fn client(channel: Channel) -> ClusterClient<Channel> {
    ClusterClient::new(channel)
}

fn write_error(error: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> ApiError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => ApiError::NoLeader {
            leader_id: forward.leader_id,
            leader_addr: forward.leader_node.map(|n| n.addr),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ApiError::FailedPrecondition(e.to_string())
        }
        RaftError::Fatal(fatal) => ApiError::Unavailable(fatal.to_string()),
    }
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let metrics = self.node.raft.metrics().borrow().clone();
        let (applied_index, digest) = self.node.replica.digest();
        let executors = self
            .node
            .replica
            .read()
            .state
            .executors()
            .into_iter()
            .map(|e| pb::ExecutorStatus {
                node_id: e.node_id,
                live: e.live,
                last_heartbeat_ms: e.last_heartbeat_ms,
                open_sagas: u32::try_from(e.open_sagas).unwrap_or(u32::MAX),
            })
            .collect();
        Ok(Response::new(pb::StatusResponse {
            node_id: self.node.config.node_id,
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            // openraft 0.9 does not publish the commit index; what is applied is committed, and
            // the leader's view of its followers is in `matched_index`.
            committed_index: applied_index,
            applied_index,
            state_digest: digest.to_string(),
            members: self.members(),
            executors,
            role: role(metrics.state).to_owned(),
            snapshot_index: metrics.snapshot.map_or(0, |l| l.index),
            purged_index: metrics.purged.map_or(0, |l| l.index),
        }))
    }

    async fn init(
        &self,
        request: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        let members = &request.get_ref().members;
        if members.is_empty() {
            return Err(ApiError::invalid("members", "at least one member").into());
        }
        let mut nodes = BTreeMap::new();
        for member in members {
            if member.node_id == 0 || member.addr.is_empty() {
                return Err(ApiError::invalid(
                    "members",
                    "every member needs a node_id ≥ 1 and an addr",
                )
                .into());
            }
            nodes.insert(
                member.node_id,
                BasicNode {
                    addr: member.addr.clone(),
                },
            );
        }
        if !nodes.contains_key(&self.node.config.node_id) {
            return Err(
                ApiError::invalid("members", "must include the node receiving Init").into(),
            );
        }
        self.node
            .raft
            .initialize(nodes)
            .await
            .map_err(|error| match error {
                RaftError::APIError(InitializeError::NotAllowed(e)) => {
                    ApiError::FailedPrecondition(format!("already initialized: {e}"))
                }
                RaftError::APIError(InitializeError::NotInMembers(e)) => {
                    ApiError::invalid("members", e.to_string())
                }
                RaftError::Fatal(fatal) => ApiError::Unavailable(fatal.to_string()),
            })?;
        Ok(Response::new(pb::InitResponse {}))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let pb::AddLearnerRequest { node_id, addr } = request.get_ref().clone();
        if node_id == 0 || addr.is_empty() {
            return Err(
                ApiError::invalid("node_id", "a learner needs a node_id ≥ 1 and an addr").into(),
            );
        }
        if let Route::Leader(channel) = self.node.route(is_forwarded(&request))? {
            return client(channel).add_learner(forwarded(request)).await;
        }
        // Blocking: returns once the learner has caught up with the log.
        let response = self
            .node
            .raft
            .add_learner(node_id, BasicNode { addr }, true)
            .await
            .map_err(write_error)?;
        Ok(Response::new(pb::MembershipResponse {
            members: self.members(),
            log_index: response.log_id.index,
        }))
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let voters: BTreeSet<u64> = request.get_ref().voters.iter().copied().collect();
        if voters.is_empty() {
            return Err(ApiError::invalid("voters", "at least one voter").into());
        }
        let retain = request.get_ref().retain;
        if let Route::Leader(channel) = self.node.route(is_forwarded(&request))? {
            return client(channel).change_membership(forwarded(request)).await;
        }
        let response = self
            .node
            .raft
            .change_membership(voters, retain)
            .await
            .map_err(write_error)?;
        Ok(Response::new(pb::MembershipResponse {
            members: self.members(),
            log_index: response.log_id.index,
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let to = request.get_ref().to;
        let me = self.node.config.node_id;
        if to == me {
            // openraft 0.9 has no transfer call: this node campaigns. The first campaign makes
            // the old leader step down (higher term), but followers still inside the old
            // leader's lease refuse their votes; campaigning again once a few heartbeat periods
            // passed (before their own election timers fire) wins.
            let retry = Duration::from_millis(self.node.config.raft.heartbeat_ms * 3);
            let deadline = tokio::time::Instant::now() + WAIT_FOR_EFFECT;
            loop {
                self.node
                    .raft
                    .trigger()
                    .elect()
                    .await
                    .map_err(|e| ApiError::Unavailable(e.to_string()))?;
                let won = self
                    .node
                    .raft
                    .wait(Some(retry))
                    .metrics(|m| m.current_leader == Some(me), "campaign")
                    .await
                    .is_ok();
                if won || tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
        } else if !is_forwarded(&request) {
            let addr = {
                let metrics = self.node.raft.metrics().borrow().clone();
                let node = metrics
                    .membership_config
                    .membership()
                    .get_node(&to)
                    .cloned();
                node.map(|n| n.addr)
            };
            let addr =
                addr.ok_or_else(|| ApiError::invalid("to", format!("node {to} is not a member")))?;
            let channel = self.node.channel(&addr)?;
            client(channel).transfer_leader(forwarded(request)).await?;
        } else {
            return Err(ApiError::FailedPrecondition(format!(
                "forwarded transfer reached node {me}, not {to}"
            ))
            .into());
        }
        let metrics = self
            .node
            .raft
            .wait(Some(WAIT_FOR_EFFECT))
            .metrics(|m| m.current_leader == Some(to), "leader transfer")
            .await
            .map_err(|e| ApiError::Timeout(format!("node {to} did not become leader: {e}")))?;
        Ok(Response::new(pb::TransferLeaderResponse {
            leader_id: metrics.current_leader.unwrap_or(to),
        }))
    }

    async fn trigger_snapshot(
        &self,
        _request: Request<pb::TriggerSnapshotRequest>,
    ) -> Result<Response<pb::TriggerSnapshotResponse>, Status> {
        let applied = self
            .node
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        self.node
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let metrics = self
            .node
            .raft
            .wait(Some(WAIT_FOR_EFFECT))
            .metrics(|m| m.snapshot.map_or(0, |l| l.index) >= applied, "snapshot")
            .await
            .map_err(|e| ApiError::Timeout(format!("snapshot not built in time: {e}")))?;
        Ok(Response::new(pb::TriggerSnapshotResponse {
            snapshot_index: metrics.snapshot.map_or(0, |l| l.index),
        }))
    }
}
