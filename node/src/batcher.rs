//! Leader-side group commit: concurrent writes are queued in arrival order, and each batch of
//! queued commands becomes one log entry. Several entries are in flight at once (pipelining),
//! bounded by a semaphore; while the pipeline is full, arrivals accumulate into larger batches.
//! Batching never reorders: commands keep their queue order inside an entry, and entries are
//! handed to openraft in queue order (`client_write_ff` keeps submission order).

use std::sync::Arc;
use std::time::Duration;

use ledger_state_machine::{Command, Entry, EntryHeader};
use openraft::error::ClientWriteError;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use crate::clock::LogClock;
use crate::error::ApiError;
use crate::node::Proposed;
use crate::raft::Raft;

/// Commands waiting for a batch; beyond this, callers wait for room (backpressure).
const QUEUE_COMMANDS_MAX: usize = 65_536;

type Reply = oneshot::Sender<Result<Proposed, ApiError>>;

struct Waiting {
    command: Command,
    reply: Reply,
}

/// The handle to the batching task.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Waiting>,
}

impl Batcher {
    /// Starts the batching task for node `node_id`.
    pub fn start(
        raft: Raft,
        node_id: u64,
        clock: Arc<LogClock>,
        batch_commands_max: usize,
        inflight_entries_max: usize,
        linger: Duration,
    ) -> Batcher {
        let (queue, waiting) = mpsc::channel(QUEUE_COMMANDS_MAX);
        tokio::spawn(run(
            raft,
            node_id,
            clock,
            waiting,
            Limits {
                batch_commands_max,
                inflight_entries_max,
                linger,
            },
        ));
        Batcher { queue }
    }

    /// Queues `command` and waits for its result.
    pub async fn propose(&self, command: Command) -> Result<Proposed, ApiError> {
        let (reply, result) = oneshot::channel();
        self.queue
            .send(Waiting { command, reply })
            .await
            .map_err(|_| ApiError::Unavailable("the node is shutting down".into()))?;
        result
            .await
            .map_err(|_| ApiError::Unavailable("the node is shutting down".into()))?
    }

    /// Queues all `commands` back to back, so they are decided in this order, and waits for all.
    pub async fn propose_all(&self, commands: Vec<Command>) -> Vec<Result<Proposed, ApiError>> {
        let mut pending = Vec::with_capacity(commands.len());
        for command in commands {
            let (reply, result) = oneshot::channel();
            let queued = self.queue.send(Waiting { command, reply }).await.is_ok();
            pending.push((queued, result));
        }
        let mut results = Vec::with_capacity(pending.len());
        for (queued, result) in pending {
            let shutting_down = || ApiError::Unavailable("the node is shutting down".into());
            results.push(match (queued, result.await) {
                (true, Ok(result)) => result,
                _ => Err(shutting_down()),
            });
        }
        results
    }
}

/// How the batcher shapes entries.
struct Limits {
    batch_commands_max: usize,
    inflight_entries_max: usize,
    linger: Duration,
}

async fn run(
    raft: Raft,
    node_id: u64,
    clock: Arc<LogClock>,
    mut waiting: mpsc::Receiver<Waiting>,
    limits: Limits,
) {
    let Limits {
        batch_commands_max,
        inflight_entries_max,
        linger,
    } = limits;
    let inflight = Arc::new(Semaphore::new(inflight_entries_max));
    // Signalled whenever an entry leaves the pipeline, to end a linger.
    let applied = Arc::new(Notify::new());
    while let Some(first) = waiting.recv().await {
        // Wait for room in the pipeline before draining, so that a full pipeline grows batches.
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < batch_commands_max {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // Under load (another entry still in flight) gather a little longer: each entry costs
        // an fsync on every replica, so fewer and larger entries leave the disks less busy.
        // The wait ends when the entry in flight is applied (its clients may be the ones to
        // send more), when the batch is full, or after `linger`. With the pipeline empty,
        // propose at once: a lone request must not wait.
        if !linger.is_zero() {
            let until = tokio::time::Instant::now() + linger;
            while batch.len() < batch_commands_max {
                let freed = applied.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if inflight.available_permits() + 1 >= inflight_entries_max {
                    break; // nothing else in flight
                }
                tokio::select! {
                    next = waiting.recv() => match next {
                        Some(next) => batch.push(next),
                        None => break,
                    },
                    () = &mut freed => break,
                    () = tokio::time::sleep_until(until) => break,
                }
            }
        }
        let (commands, replies): (Vec<Command>, Vec<Reply>) =
            batch.into_iter().map(|w| (w.command, w.reply)).unzip();
        let entry = Entry {
            header: EntryHeader {
                leader_id: node_id,
                // The members' median time, not this node's clock alone (`clock.rs`).
                time_ms: clock.stamp(),
            },
            commands,
        };
        let receiver = match raft.client_write_ff(entry).await {
            Ok(receiver) => receiver,
            Err(fatal) => {
                fail_all(replies, || ApiError::Unavailable(fatal.to_string()));
                continue;
            }
        };
        let applied = applied.clone();
        tokio::spawn(async move {
            let outcome = receiver.await;
            drop(permit);
            applied.notify_waiters();
            match outcome {
                Ok(Ok(response)) => {
                    let log_index = response.log_id.index;
                    let mut results = response.data.results.into_iter();
                    for reply in replies {
                        let result = match results.next() {
                            Some(applied) => Ok(Proposed { log_index, applied }),
                            None => Err(ApiError::Internal(format!(
                                "entry {log_index} returned fewer results than commands"
                            ))),
                        };
                        let _ = reply.send(result);
                    }
                }
                Ok(Err(ClientWriteError::ForwardToLeader(forward))) => {
                    fail_all(replies, || ApiError::NoLeader {
                        leader_id: forward.leader_id,
                        leader_addr: forward.leader_node.as_ref().map(|n| n.addr.clone()),
                    })
                }
                Ok(Err(other)) => fail_all(replies, || ApiError::Internal(other.to_string())),
                // The responder was dropped: leadership was lost before the entry committed. The
                // entry may still commit under the next leader, so the outcome is unknown.
                Err(_) => fail_all(replies, || ApiError::NoLeader {
                    leader_id: None,
                    leader_addr: None,
                }),
            }
        });
    }
}

fn fail_all(replies: Vec<Reply>, error: impl Fn() -> ApiError) {
    for reply in replies {
        let _ = reply.send(Err(error()));
    }
}
