//! The client half of the Raft transport: openraft's RPCs, bincode-encoded, over the internal
//! `admission.v1.Raft` gRPC service (`grpc/raft.rs` is the server half), on channels of the
//! node's [`Transport`].
//!
//! Connections are made lazily and kept per peer; a peer that cannot be reached is reported as
//! `Unreachable`, so openraft backs off instead of spinning. Every request carries the cluster id
//! and the ids of its sender and its target, and peers refuse requests from another cluster or
//! addressed to another node.

use std::sync::Arc;

use ledger_state_machine::codec;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::grpc::peer::{RaftAnswer, RaftCall, RaftMethod, RaftPeer};
use crate::transport::Transport;

use super::TypeConfig;
use crate::clock::LogClock;

/// Largest gRPC message between nodes: room for a full AppendEntries batch.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Makes one [`PeerClient`] per peer.
#[derive(Clone)]
pub struct Network {
    node_id: u64,
    cluster_id: String,
    clock: Arc<LogClock>,
    transport: Arc<dyn Transport>,
}

impl Network {
    /// The network of node `node_id` in the cluster named `cluster_id`; the peers' clocks seen
    /// in their replies go to `clock`.
    pub fn new(
        node_id: u64,
        cluster_id: String,
        clock: Arc<LogClock>,
        transport: Arc<dyn Transport>,
    ) -> Network {
        Network {
            node_id,
            cluster_id,
            clock,
            transport,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        let channel = self.transport.channel(&node.addr);
        PeerClient {
            target,
            sender: self.node_id,
            cluster_id: self.cluster_id.clone(),
            clock: self.clock.clone(),
            client: channel
                .map(|channel| RaftPeer::with_message_limit(channel, RAFT_MESSAGE_BYTES_MAX)),
        }
    }
}

/// The connection to one peer.
pub struct PeerClient {
    /// The peer's node id, named in every request so that whoever answers at its address
    /// refuses a request meant for another node.
    target: u64,
    /// This node's id.
    sender: u64,
    cluster_id: String,
    /// `Err` when the peer's address is not a valid URI; every call then fails as unreachable.
    client: Result<RaftPeer, String>,
    /// Where the peer's clock offset is recorded.
    clock: Arc<LogClock>,
}

/// A transport failure, as openraft's error types want an `Error` to wrap.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        method: RaftMethod,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(client) => client,
            Err(error) => {
                return Err(RPCError::Unreachable(Unreachable::new(&TransportError(
                    error.clone(),
                ))))
            }
        };
        let call = RaftCall {
            payload: codec::encode(request),
            cluster_id: self.cluster_id.clone(),
            target_node_id: self.target,
            sender_node_id: self.sender,
            timeout: Some(option.hard_ttl()),
        };
        let sent = self.clock.now();
        let RaftAnswer {
            payload,
            error,
            clock_ms,
        } = match client.call(method, call).await {
            Ok(answer) => answer,
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Cancelled
                ) =>
            {
                return Err(RPCError::Unreachable(Unreachable::new(&status)))
            }
            Err(status) => return Err(RPCError::Network(NetworkError::new(&status))),
        };
        self.clock
            .record(self.target, clock_ms, sent, self.clock.now());
        let undecodable = |e: codec::DecodeError| RPCError::Network(NetworkError::new(&e));
        if error.is_empty() {
            codec::decode(&payload).map_err(undecodable)
        } else {
            let remote: RaftError<u64, E> = codec::decode(&payload).map_err(undecodable)?;
            Err(RPCError::RemoteError(RemoteError::new(self.target, remote)))
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(RaftMethod::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(RaftMethod::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(RaftMethod::Vote, &rpc, &option).await
    }
}
