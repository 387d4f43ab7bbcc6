//! The client half of the Raft transport: openraft's RPCs, bincode-encoded, over the internal
//! `admission.v1.Raft` gRPC service (`grpc/raft.rs` is the server half), on channels of the
//! node's [`Transport`].
//!
//! Connections are made lazily and kept per peer; a peer that cannot be reached is reported as
//! `Unreachable`, so openraft backs off instead of spinning, and a call that ran out of time as
//! `Timeout`, which openraft retries at its next event without backing off (see
//! [`failure_of`]). Every request carries the cluster id
//! and the ids of its sender and its target, and peers refuse requests from another cluster or
//! addressed to another node.

use std::sync::Arc;

use ledger_state_machine::codec;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
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
        action: RPCTypes,
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
        let method = match action {
            RPCTypes::AppendEntries => RaftMethod::AppendEntries,
            RPCTypes::Vote => RaftMethod::Vote,
            RPCTypes::InstallSnapshot => RaftMethod::InstallSnapshot,
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
            Err(status) => {
                return Err(failure_of(
                    &status,
                    action,
                    self.sender,
                    self.target,
                    option.hard_ttl(),
                ))
            }
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

/// What a failed call to a peer tells openraft.
///
/// Only a peer that cannot be reached (`Unavailable`: refused, reset, no route) is
/// `Unreachable`: openraft then stops sending to it for 500 ms. A call that ran out of time
/// (`DeadlineExceeded`, or tonic's own "Timeout expired", which it reports as `Cancelled`) is a
/// slow peer, not a missing one: `Timeout`, which openraft retries at its next event, as it does
/// when its own timer ends the call. Reporting timeouts as unreachable cost 600 ms stalls: one
/// fsync of 217 ms on the shared disk made both followers miss the 100 ms AppendEntries
/// deadline at once, and the leader then sent them nothing for half a second
/// (docs/performance.md, "The tail").
fn failure_of<E: std::error::Error>(
    status: &tonic::Status,
    action: RPCTypes,
    sender: u64,
    target: u64,
    timeout: std::time::Duration,
) -> RPCError<u64, BasicNode, RaftError<u64, E>> {
    match status.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => RPCError::Timeout(Timeout {
            action,
            id: sender,
            target,
            timeout,
        }),
        tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(status)),
        _ => RPCError::Network(NetworkError::new(status)),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(RPCTypes::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn failure(code: tonic::Code, message: &str) -> RPCError<u64, BasicNode, RaftError<u64>> {
        failure_of(
            &tonic::Status::new(code, message),
            RPCTypes::AppendEntries,
            1,
            2,
            Duration::from_millis(100),
        )
    }

    #[test]
    fn a_call_out_of_time_is_a_timeout_not_an_unreachable_peer() {
        // What tonic's channel timeout returns, as seen in a leader's log during a slow fsync.
        for (code, message) in [
            (tonic::Code::Cancelled, "Timeout expired"),
            (tonic::Code::DeadlineExceeded, "deadline has elapsed"),
        ] {
            match failure(code, message) {
                RPCError::Timeout(timeout) => {
                    assert_eq!(timeout.action, RPCTypes::AppendEntries);
                    assert_eq!((timeout.id, timeout.target), (1, 2));
                    assert_eq!(timeout.timeout, Duration::from_millis(100));
                }
                other => panic!("{code:?} became {other:?}"),
            }
        }
    }

    #[test]
    fn only_an_unavailable_peer_is_unreachable() {
        assert!(matches!(
            failure(tonic::Code::Unavailable, "connection refused"),
            RPCError::Unreachable(_)
        ));
        for code in [
            tonic::Code::Internal,
            tonic::Code::PermissionDenied,
            tonic::Code::Unknown,
        ] {
            assert!(
                matches!(failure(code, "x"), RPCError::Network(_)),
                "{code:?}"
            );
        }
    }
}
