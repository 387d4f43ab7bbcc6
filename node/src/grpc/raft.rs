//! The server half of the Raft transport (`raft/network.rs` is the client half): decodes
//! openraft's RPCs, hands them to the local Raft, and encodes the reply or the Raft error.

use std::fmt::Display;

use ledger_proto::pb::{self, RaftReply, RaftRequest};
use ledger_state_machine::codec;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::raft::Raft;

/// The internal `admission.v1.Raft` service.
pub struct RaftService {
    raft: Raft,
    cluster_id: String,
}

impl RaftService {
    /// Serves `raft` to peers of the cluster named `cluster_id`.
    pub fn new(raft: Raft, cluster_id: String) -> RaftService {
        RaftService { raft, cluster_id }
    }

    fn open<T: DeserializeOwned>(&self, request: Request<RaftRequest>) -> Result<T, Status> {
        let request = request.into_inner();
        if request.cluster_id != self.cluster_id {
            return Err(ApiError::ForeignCluster {
                theirs: request.cluster_id,
            }
            .into());
        }
        codec::decode(&request.payload).map_err(|e| {
            ApiError::invalid("payload", format!("undecodable Raft message: {e}")).into()
        })
    }
}

fn reply<T: Serialize, E: Serialize + Display>(
    result: Result<T, E>,
) -> Result<Response<RaftReply>, Status> {
    Ok(Response::new(match result {
        Ok(value) => RaftReply {
            payload: codec::encode(&value),
            error: String::new(),
        },
        Err(error) => RaftReply {
            payload: codec::encode(&error),
            error: error.to_string(),
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
        reply(self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(self.raft.install_snapshot(rpc).await)
    }
}
