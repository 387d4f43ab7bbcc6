//! The server half of the Raft transport (`raft/network.rs` is the client half): refuses requests
//! from another cluster or addressed to another node, decodes openraft's RPCs, hands them to the
//! local Raft, and encodes the reply or the Raft error.

use std::fmt::Display;
use std::sync::Arc;

use ledger_proto::pb::{self, RaftReply, RaftRequest};
use ledger_state_machine::codec;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::node::{Node, Route};

/// The internal `admission.v1.Raft` service.
pub struct RaftService {
    node: Arc<Node>,
}

impl RaftService {
    /// Serves `node`'s Raft to peers of its cluster.
    pub fn new(node: Arc<Node>) -> RaftService {
        RaftService { node }
    }

    /// Checks that the request is for this node of this cluster, then decodes it; nothing
    /// reaches Raft before that.
    fn open<T: DeserializeOwned>(&self, request: Request<RaftRequest>) -> Result<T, Status> {
        let request = request.into_inner();
        if request.cluster_id != self.node.config.cluster_id {
            return Err(ApiError::ForeignCluster {
                theirs: request.cluster_id,
            }
            .into());
        }
        let me = self.node.config.node_id;
        match request.target_node_id {
            0 => {
                return Err(ApiError::invalid(
                    "target_node_id",
                    "missing: a Raft request names the node it is for",
                )
                .into())
            }
            // Answering as another member would let one disk count twice toward a quorum.
            target if target != me => {
                return Err(ApiError::FailedPrecondition(format!(
                    "Raft request from node {} for node {target} reached node {me}: this address \
                     is node {me}'s, not node {target}'s; check the members' addresses \
                     (--advertise)",
                    request.sender_node_id
                ))
                .into())
            }
            _ => {}
        }
        codec::decode(&request.payload).map_err(|e| {
            ApiError::invalid("payload", format!("undecodable Raft message: {e}")).into()
        })
    }
}

fn reply<T: Serialize, E: Serialize + Display>(
    result: Result<T, E>,
) -> Result<Response<RaftReply>, Status> {
    let clock_ms = crate::clock::wall_clock_ms();
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
        reply(self.node.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(self.node.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(self.node.raft.install_snapshot(rpc).await)
    }

    async fn propose(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let command: ledger_state_machine::Command = self.open(request)?;
        command.validate().map_err(ApiError::from)?;
        self.node.check_proposal(&command)?;
        // Only the leader proposes; a forwarded proposal is never forwarded again.
        let Route::Local = self.node.route(true)? else {
            return Err(
                ApiError::Internal("a forwarded proposal was routed onwards".into()).into(),
            );
        };
        let proposed = self.node.propose(command).await?;
        reply::<_, String>(Ok((proposed.log_index, proposed.applied)))
    }
}
