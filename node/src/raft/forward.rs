//! An executor's proposals on a node that does not lead, forwarded to the leader in batches:
//! every command queued while earlier calls are on their way leaves in one `Raft.ProposeBatch`
//! call, instead of one `Raft.Propose` call per heartbeat or step result. Behind a load of
//! 2,000-3,000 sagas/s those single calls, three per saga, each a gRPC exchange over TLS on both
//! ends, were a large share of the two cores (issue #15, docs/performance.md, "Sagas per
//! second").
//!
//! At most [`SENDERS`] calls are on their way at once; a lone proposal leaves at once, alone, as
//! it did before. A leader that does not know `ProposeBatch` (an older build during a rolling
//! upgrade) gets the commands one `Propose` call each.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use ledger_state_machine::{codec, Applied, Command};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::batcher::Proposed;
use crate::error::ApiError;
use crate::grpc::peer::{RaftCall, RaftMethod, RaftPeer};
use crate::node::{Node, PROPOSE_TIMEOUT};

/// Calls on their way to the leader at once.
pub const SENDERS: usize = 4;
/// Commands in one call at most (the leader refuses more).
pub const BATCH_MAX: usize = 1_024;

/// What one forwarded command gets back from the leader: where it went in the log and what
/// applying it answered, or why the leader refused it.
pub type ForwardedResult = Result<(u64, Applied), String>;

/// Proposals waiting to be forwarded, and the senders' places.
pub struct Forwarder {
    pending: Mutex<VecDeque<Pending>>,
    senders: Arc<Semaphore>,
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<Proposed, ApiError>>,
}

impl Default for Forwarder {
    fn default() -> Self {
        Forwarder {
            pending: Mutex::new(VecDeque::new()),
            senders: Arc::new(Semaphore::new(SENDERS)),
        }
    }
}

impl Forwarder {
    /// Queues `command` for the leader, starts a sender if one may start, and waits for the
    /// command's result. A sender that stopped without answering (the runtime is shutting down)
    /// leaves the outcome unknown.
    pub async fn forward(&self, node: &Arc<Node>, command: Command) -> Result<Proposed, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.lock().push_back(Pending { command, reply });
        if let Ok(permit) = self.senders.clone().try_acquire_owned() {
            tokio::spawn(send_all(node.clone(), permit));
        }
        answer.await.unwrap_or_else(|_| {
            Err(ApiError::outcome_unknown(
                "the forwarding of the proposal stopped",
            ))
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Vec<Pending> {
        let mut pending = self.lock();
        let n = pending.len().min(BATCH_MAX);
        pending.drain(..n).collect()
    }
}

/// Sends batches while commands wait. A sender gives its place back only when it finds nothing
/// queued, and looks once more after that: a command queued while every place was taken is
/// always picked up by a sender that was still running.
async fn send_all(node: Arc<Node>, mut permit: OwnedSemaphorePermit) {
    loop {
        let batch = node.forwarder.take();
        if batch.is_empty() {
            drop(permit);
            if node.forwarder.lock().is_empty() {
                return;
            }
            match node.forwarder.senders.clone().try_acquire_owned() {
                Ok(again) => permit = again,
                Err(_) => return,
            }
            continue;
        }
        let (commands, replies): (Vec<Command>, Vec<_>) = batch
            .into_iter()
            .map(|pending| (pending.command, pending.reply))
            .unzip();
        let count = commands.len();
        let results = match tokio::time::timeout(PROPOSE_TIMEOUT, send(&node, commands)).await {
            Ok(Ok(results)) if results.len() == count => Ok(results),
            Ok(Ok(results)) => Err(format!(
                "the leader answered {} results for {count} commands",
                results.len()
            )),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(format!(
                "the leader did not answer within {PROPOSE_TIMEOUT:?}"
            )),
        };
        let results: Vec<Result<Proposed, String>> = match results {
            Ok(results) => results,
            Err(error) => (0..count).map(|_| Err(error.clone())).collect(),
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // The caller may have stopped waiting (its own timeout): nothing to tell it.
            let _ = reply.send(
                result.map_err(|refused| ApiError::Unavailable(format!("leader: {refused}"))),
            );
        }
    }
}

/// One batch to whoever leads now; `Err` for the whole batch when it could not be sent or the
/// leader refused it whole: the reason, which the caller's error names after "leader: ", as
/// one `Propose` call's failure was named.
async fn send(
    node: &Arc<Node>,
    commands: Vec<Command>,
) -> Result<Vec<Result<Proposed, String>>, String> {
    let (leader_id, addr) = match node.leader() {
        // Leadership came here while the commands waited.
        (Some(id), _) if id == node.config.node_id => {
            let results = node.propose_internal_all(commands).await;
            return Ok(results
                .into_iter()
                .map(|result| result.map_err(|error| error.to_string()))
                .collect());
        }
        (Some(id), Some(addr)) => (id, addr),
        (leader_id, leader_addr) => {
            return Err(ApiError::NoLeader {
                leader_id,
                leader_addr,
            }
            .to_string())
        }
    };
    let mut peer = RaftPeer::new(node.channel(&addr).map_err(|error| error.to_string())?);
    let call = |payload| RaftCall {
        payload,
        cluster_id: node.config.cluster_id.clone(),
        target_node_id: leader_id,
        sender_node_id: node.config.node_id,
        timeout: Some(PROPOSE_TIMEOUT),
    };
    let reply = match peer
        .call(RaftMethod::ProposeBatch, call(codec::encode(&commands)))
        .await
    {
        Ok(reply) => reply,
        // A leader of an older build: UNIMPLEMENTED, or PERMISSION_DENIED from its access table,
        // which refuses the methods it does not list. One call per command then; a real denial
        // comes back from each of them.
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::Unimplemented | tonic::Code::PermissionDenied
            ) =>
        {
            return Ok(one_by_one(peer, call, commands).await)
        }
        Err(status) => return Err(status.message().to_owned()),
    };
    if !reply.error.is_empty() {
        return Err(reply.error);
    }
    let results: Vec<ForwardedResult> =
        codec::decode(&reply.payload).map_err(|e| format!("undecodable proposal replies: {e}"))?;
    Ok(results
        .into_iter()
        .map(|result| result.map(|(log_index, applied)| Proposed { log_index, applied }))
        .collect())
}

/// The commands one `Propose` call each, all at once, for a leader without `ProposeBatch`.
async fn one_by_one(
    peer: RaftPeer,
    call: impl Fn(Vec<u8>) -> RaftCall,
    commands: Vec<Command>,
) -> Vec<Result<Proposed, String>> {
    let calls = commands.iter().map(|command| {
        let mut peer = peer.clone();
        let call = call(codec::encode(command));
        async move {
            let reply = peer
                .call(RaftMethod::Propose, call)
                .await
                .map_err(|status| status.message().to_owned())?;
            if !reply.error.is_empty() {
                return Err(reply.error);
            }
            let (log_index, applied): (u64, Applied) = codec::decode(&reply.payload)
                .map_err(|e| format!("undecodable proposal reply: {e}"))?;
            Ok(Proposed { log_index, applied })
        }
    });
    futures_util::future::join_all(calls).await
}
