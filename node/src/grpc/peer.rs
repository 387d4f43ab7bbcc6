//! The client of a peer's internal `Raft` service, in plain types: Raft's messages
//! (`raft/network.rs`) and proposals forwarded to the leader (`Node::propose_anywhere`) go out
//! through here, so that the protobuf messages stay in `grpc/`.

use std::time::Duration;

use ledger_proto::pb::raft_client::RaftClient;
use ledger_proto::pb::{RaftReply, RaftRequest};

use crate::transport::PeerChannel;

/// Which method of the `Raft` service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaftMethod {
    /// openraft's `AppendEntries`.
    AppendEntries,
    /// openraft's `Vote`.
    Vote,
    /// openraft's `InstallSnapshot`.
    InstallSnapshot,
    /// An executor's command, for the leader to propose.
    Propose,
    /// Several of an executor's commands, for the leader to propose.
    ProposeBatch,
}

/// A request to a peer: who sends it to whom, in which cluster, and the encoded message.
#[derive(Clone, Debug)]
pub struct RaftCall {
    /// The sender's cluster.
    pub cluster_id: String,
    /// The node the request is for.
    pub target_node_id: u64,
    /// The node sending it.
    pub sender_node_id: u64,
    /// The encoded message.
    pub payload: Vec<u8>,
    /// How long the caller waits for the answer, if bounded.
    pub timeout: Option<Duration>,
}

/// The peer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftAnswer {
    /// The encoded response, or the encoded error when `error` is not empty.
    pub payload: Vec<u8>,
    /// Empty on success, else what the remote Raft refused.
    pub error: String,
    /// The peer's wall clock when it answered, Unix milliseconds.
    pub clock_ms: u64,
}

/// A client of the `Raft` service on one peer.
#[derive(Clone)]
pub struct RaftPeer(RaftClient<PeerChannel>);

impl RaftPeer {
    /// Over `channel`.
    pub fn new(channel: PeerChannel) -> RaftPeer {
        RaftPeer(RaftClient::new(channel))
    }

    /// Over `channel`, sending and accepting messages of up to `bytes`.
    pub fn with_message_limit(channel: PeerChannel, bytes: usize) -> RaftPeer {
        RaftPeer(
            RaftClient::new(channel)
                .max_decoding_message_size(bytes)
                .max_encoding_message_size(bytes),
        )
    }

    /// Sends `call` to `method`; a `Status` is the channel's or the peer's refusal.
    pub async fn call(
        &mut self,
        method: RaftMethod,
        call: RaftCall,
    ) -> Result<RaftAnswer, tonic::Status> {
        let mut request = tonic::Request::new(RaftRequest {
            payload: call.payload,
            cluster_id: call.cluster_id,
            target_node_id: call.target_node_id,
            sender_node_id: call.sender_node_id,
        });
        if let Some(timeout) = call.timeout {
            request.set_timeout(timeout);
        }
        let reply = match method {
            RaftMethod::AppendEntries => self.0.append_entries(request).await,
            RaftMethod::Vote => self.0.vote(request).await,
            RaftMethod::InstallSnapshot => self.0.install_snapshot(request).await,
            RaftMethod::Propose => self.0.propose(request).await,
            RaftMethod::ProposeBatch => self.0.propose_batch(request).await,
        }?;
        let RaftReply {
            payload,
            error,
            clock_ms,
        } = reply.into_inner();
        Ok(RaftAnswer {
            payload,
            error,
            clock_ms,
        })
    }
}
