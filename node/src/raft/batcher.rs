//! Leader-side group commit: concurrent writes are queued in arrival order, and each batch of
//! queued commands becomes one log entry. Several entries are in flight at once (pipelining),
//! bounded by a semaphore; while the pipeline is full, arrivals accumulate into larger batches.
//! Batching never reorders: commands keep their queue order inside an entry, and entries are
//! handed to openraft in queue order (`client_write_ff` keeps submission order).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ledger_state_machine::codec::record::EncodedEntry;
use ledger_state_machine::{Applied, Command, Entry, EntryHeader};
use openraft::error::ClientWriteError;
use openraft::raft::ClientWriteResponse;
use openraft::BasicNode;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, oneshot, watch, Mutex, Notify, Semaphore};
use tokio::time::Instant;

use super::{Raft, TypeConfig};
use crate::clock::LogClock;
use crate::error::ApiError;

/// The result of a proposed command, once its entry is committed and applied.
#[derive(Debug)]
pub struct Proposed {
    /// The log index of the entry that carried the command.
    pub log_index: u64,
    /// The command's result.
    pub applied: Applied,
}

type Reply = oneshot::Sender<Result<Proposed, ApiError>>;

struct Waiting {
    command: Command,
    reply: Reply,
    /// When it was queued: how long the leader's writes wait is the back-pressure's measure.
    queued_at: Instant,
}

/// Back-pressure by time: how long the leader's writes wait for a log entry, and the bound
/// beyond which a client write is refused.
pub struct Pressure {
    /// Refuse client writes while the queue's wait is over this (zero: never, by time).
    delay_max: Duration,
    /// How long the oldest command of the last proposed entry had waited, in µs.
    delay_us: AtomicU64,
    /// The same, exported (`ledger_proposal_queue_delay_seconds`).
    gauge: Gauge<f64, AtomicU64>,
}

impl Pressure {
    /// Bound `delay_max` (zero: off), reporting the wait to `gauge`.
    pub fn new(delay_max: Duration, gauge: Gauge<f64, AtomicU64>) -> Pressure {
        Pressure {
            delay_max,
            delay_us: AtomicU64::new(0),
            gauge,
        }
    }

    /// The wait to suggest to a refused client: about as long as the queue's writes now wait
    /// for an entry, by when what is ahead of it has been proposed; within
    /// [`PUSHBACK_MIN`]..=[`PUSHBACK_MAX`].
    fn pushback(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
            .clamp(PUSHBACK_MIN, PUSHBACK_MAX)
    }

    fn record(&self, waited: Duration) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.delay_us.store(micros, Ordering::Relaxed);
        self.gauge.set(waited.as_secs_f64());
    }

    /// Why a client write must be refused now, if it must: commands are waiting, and the last
    /// entry's oldest command had waited longer than the bound. The measure is the last entry's,
    /// so it follows the queue within a round; once refusals drain the queue it falls under the
    /// bound and writes are taken again, which keeps the wait near the bound rather than growing.
    fn refusal(&self, queued: usize) -> Option<ApiError> {
        let waited = Duration::from_micros(self.delay_us.load(Ordering::Relaxed));
        (!self.delay_max.is_zero() && queued > 0 && waited > self.delay_max).then(|| {
            ApiError::Overloaded {
                reason: format!(
                    "the leader's writes wait {} ms for a log entry, over its bound of {} ms; \
                     retry later",
                    waited.as_millis(),
                    self.delay_max.as_millis()
                ),
                retry_after: self.pushback(),
            }
        })
    }
}

/// The shortest wait a refusal suggests (`grpc-retry-pushback-ms`).
const PUSHBACK_MIN: Duration = Duration::from_millis(10);
/// The longest: past it a client's own backoff knows as much.
const PUSHBACK_MAX: Duration = Duration::from_secs(1);

/// The handle to the batching task.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Waiting>,
    pressure: Arc<Pressure>,
    /// How many [`Hold`]s are alive; while any is, no new entry is proposed.
    holds: Arc<watch::Sender<u32>>,
    /// Held by the batching task from its last look at `holds` until openraft has the entry, so
    /// that [`Batcher::hold`] can wait out a proposal already past that look.
    proposing: Arc<Mutex<()>>,
    /// Entries proposed and not yet answered by openraft hold one permit each.
    inflight: Arc<Semaphore>,
    inflight_entries_max: u32,
}

/// While alive, the batcher proposes no new entry (commands queue up, in order); dropped, it
/// goes on. A leadership transfer holds the log still so that its target can catch up fully.
pub struct Hold {
    holds: Arc<watch::Sender<u32>>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.holds.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Batcher {
    /// Starts the batching task for node `node_id`.
    pub fn start(
        raft: Raft,
        node_id: u64,
        clock: Arc<LogClock>,
        limits: Limits,
        queue_max: usize,
        pressure: Pressure,
    ) -> Batcher {
        let pressure = Arc::new(pressure);
        let inflight_entries_max = limits.inflight_entries_max;
        let (queue, waiting) = mpsc::channel(queue_max.max(1));
        let holds = Arc::new(watch::Sender::new(0));
        let proposing = Arc::new(Mutex::new(()));
        let inflight = Arc::new(Semaphore::new(inflight_entries_max));
        tokio::spawn(run(
            raft,
            node_id,
            clock,
            waiting,
            Gates {
                holds: holds.subscribe(),
                proposing: proposing.clone(),
                inflight: inflight.clone(),
                pressure: pressure.clone(),
            },
            limits,
        ));
        Batcher {
            queue,
            pressure,
            holds,
            proposing,
            inflight,
            // The semaphore holds at most `u32::MAX` permits.
            inflight_entries_max: u32::try_from(inflight_entries_max).unwrap_or(u32::MAX),
        }
    }

    /// Stops proposing new entries until the returned [`Hold`] is dropped. Returns once no
    /// proposal is under way: every entry proposed before is in openraft's hands, and none
    /// follows. Without the wait, a batch that had looked at the holds just before could still
    /// reach the log after a transfer saw its target caught up (CI, 2026-12-02: the target then
    /// lacked one entry, both other voters refused it for ten seconds, and one of them won).
    pub async fn hold(&self) -> Hold {
        self.holds.send_modify(|n| *n += 1);
        let hold = Hold {
            holds: self.holds.clone(),
        };
        drop(self.proposing.lock().await);
        hold
    }

    /// Waits until openraft has answered every entry proposed so far (applied, or failed). Once
    /// an entry is applied, the leader's metrics have long shown it appended.
    pub async fn drained(&self) {
        if let Ok(all) = self.inflight.acquire_many(self.inflight_entries_max).await {
            drop(all);
        }
    }

    /// Queues `command` and waits for its result; [`ApiError::Overloaded`] at once, nothing
    /// proposed, when the queue is full.
    pub async fn propose(&self, command: Command) -> Result<Proposed, ApiError> {
        match enqueue_all(&self.queue, vec![command], Some(&self.pressure)) {
            Ok(mut results) => match results.pop() {
                Some(result) => result.await.unwrap_or_else(|_| Err(reply_lost())),
                None => Err(reply_lost()),
            },
            Err(error) => Err(error),
        }
    }

    /// Queues the cluster's own `command` (an executor's heartbeat or step result), waiting for
    /// room rather than refused: back-pressure is for clients, and refusing these would let
    /// leases lapse and sagas stall under a client overload.
    pub async fn propose_waiting(&self, command: Command) -> Result<Proposed, ApiError> {
        self.propose_all_waiting(vec![command])
            .await
            .pop()
            .unwrap_or_else(|| Err(reply_lost()))
    }

    /// Queues the cluster's own `commands` (one, or a batch another node's executor forwarded)
    /// in order, each waiting for room rather than refused, and waits for all their results.
    pub async fn propose_all_waiting(
        &self,
        commands: Vec<Command>,
    ) -> Vec<Result<Proposed, ApiError>> {
        let mut pending = Vec::with_capacity(commands.len());
        for command in commands {
            let (reply, result) = oneshot::channel();
            let waiting = Waiting {
                command,
                reply,
                queued_at: Instant::now(),
            };
            pending.push(match self.queue.send(waiting).await {
                Ok(()) => Ok(result),
                Err(_) => Err(not_queued()),
            });
        }
        let mut results = Vec::with_capacity(pending.len());
        for result in pending {
            results.push(match result {
                Ok(result) => result.await.unwrap_or_else(|_| Err(reply_lost())),
                Err(error) => Err(error),
            });
        }
        results
    }

    /// Queues all `commands` back to back, so they are decided in this order, and waits for all.
    /// When the queue has no room for all of them, none is queued: [`ApiError::Overloaded`] for
    /// the whole call.
    pub async fn propose_all(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<Result<Proposed, ApiError>>, ApiError> {
        let pending = enqueue_all(&self.queue, commands, Some(&self.pressure))?;
        let mut results = Vec::with_capacity(pending.len());
        for result in pending {
            results.push(result.await.unwrap_or_else(|_| Err(reply_lost())));
        }
        Ok(results)
    }
}

/// Queues `commands` in order, all or none: the queue is bounded (`--proposal-queue-max`), and a
/// write that finds no room, or finds the queue's wait over `--proposal-delay-max-ms`
/// (`pressure`), is refused at once rather than left waiting (back-pressure).
fn enqueue_all(
    queue: &mpsc::Sender<Waiting>,
    commands: Vec<Command>,
    pressure: Option<&Pressure>,
) -> Result<Vec<oneshot::Receiver<Result<Proposed, ApiError>>>, ApiError> {
    if commands.is_empty() {
        return Ok(Vec::new());
    }
    let queued = queue.max_capacity() - queue.capacity();
    if let Some(refusal) = pressure.and_then(|pressure| pressure.refusal(queued)) {
        return Err(refusal);
    }
    let room = match queue.try_reserve_many(commands.len()) {
        Ok(room) => room,
        Err(mpsc::error::TrySendError::Full(())) => {
            return Err(ApiError::Overloaded {
                reason: format!(
                    "the leader's queue of writes is full ({} commands); retry later",
                    queue.max_capacity()
                ),
                retry_after: pressure.map_or(PUSHBACK_MIN, Pressure::pushback),
            })
        }
        Err(mpsc::error::TrySendError::Closed(())) => return Err(not_queued()),
    };
    Ok(commands
        .into_iter()
        .zip(room)
        .map(|(command, permit)| {
            let (reply, result) = oneshot::channel();
            permit.send(Waiting {
                command,
                reply,
                queued_at: Instant::now(),
            });
            result
        })
        .collect())
}

/// The batching task is gone before taking the command: nothing was proposed.
fn not_queued() -> ApiError {
    ApiError::Unavailable("the node is shutting down".into())
}

/// The batching task dropped a command's reply: it stopped, possibly after proposing it.
fn reply_lost() -> ApiError {
    ApiError::outcome_unknown("the node is shutting down")
}

/// What the batching task shares with [`Batcher`]'s holds.
struct Gates {
    holds: watch::Receiver<u32>,
    proposing: Arc<Mutex<()>>,
    inflight: Arc<Semaphore>,
    pressure: Arc<Pressure>,
}

/// How the batcher shapes entries (`--batch-commands-max`, `--inflight-entries-max`,
/// `--batch-linger-us`).
pub struct Limits {
    pub batch_commands_max: usize,
    pub inflight_entries_max: usize,
    pub linger: Duration,
}

async fn run(
    raft: Raft,
    node_id: u64,
    clock: Arc<LogClock>,
    mut waiting: mpsc::Receiver<Waiting>,
    gates: Gates,
    limits: Limits,
) {
    let Gates {
        mut holds,
        proposing,
        inflight,
        pressure,
    } = gates;
    let Limits {
        batch_commands_max,
        inflight_entries_max,
        linger,
    } = limits;
    // Signalled whenever an entry leaves the pipeline, to end a linger.
    let applied = Arc::new(Notify::new());
    while let Some(first) = waiting.recv().await {
        // Held (a leadership transfer): nothing new goes to the log meanwhile.
        if holds.wait_for(|n| *n == 0).await.is_err() {
            return;
        }
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
                // In a fixed order (not tokio's random one), so that a simulation replays: a
                // freed slot or the end of the linger ends the batch before one more command.
                tokio::select! {
                    biased;
                    () = &mut freed => break,
                    () = tokio::time::sleep_until(until) => break,
                    next = waiting.recv() => match next {
                        Some(next) => batch.push(next),
                        None => break,
                    },
                }
            }
        }
        // A hold may have come while the batch gathered: look again, under the lock a new
        // hold waits for, and keep the lock until openraft has the entry.
        // Its permit is given back meanwhile, as [`Batcher::drained`] waits for all of them.
        let mut permit = Some(permit);
        let (gate, permit) = loop {
            let gate = proposing.lock().await;
            if *holds.borrow() == 0 {
                if let Some(permit) = permit.take() {
                    break (gate, permit);
                }
            }
            drop(gate);
            drop(permit.take());
            if holds.wait_for(|n| *n == 0).await.is_err() {
                return;
            }
            let Ok(again) = inflight.clone().acquire_owned().await else {
                return;
            };
            permit = Some(again);
        };
        if let Some(oldest) = batch.first() {
            pressure.record(oldest.queued_at.elapsed());
        }
        let (commands, replies): (Vec<Command>, Vec<Reply>) =
            batch.into_iter().map(|w| (w.command, w.reply)).unzip();
        let entry = Entry {
            header: EntryHeader {
                leader_id: node_id,
                // The members' median time, not this node's clock alone (`clock.rs`).
                time_ms: clock.stamp(voters(&raft)),
            },
            commands,
        };
        // Encoded once: these bytes go to this node's disk and to every follower.
        let proposed = raft.client_write_ff(EncodedEntry::new(entry)).await;
        drop(gate);
        let receiver = match proposed {
            Ok(receiver) => receiver,
            // The entry never reached openraft's core: nothing was proposed.
            Err(fatal) => {
                for reply in replies {
                    let _ = reply.send(Err(ApiError::Unavailable(fatal.to_string())));
                }
                continue;
            }
        };
        let applied = applied.clone();
        tokio::spawn(async move {
            let outcome = receiver.await.ok();
            drop(permit);
            applied.notify_waiters();
            let results = settle(outcome, replies.len());
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        });
    }
}

/// What openraft said about an entry handed to `client_write_ff`: its apply result, an error, or
/// nothing (`None`: the responder was dropped).
type WriteOutcome =
    Option<Result<ClientWriteResponse<TypeConfig>, ClientWriteError<u64, BasicNode>>>;

/// The result of each of the entry's `commands` commands, in order. Once `client_write_ff`
/// accepted the entry, only an apply result is definite: anything else leaves the outcome
/// unknown, since the entry may have been appended (and replicated) already.
/// How many voters the membership this node knows has.
fn voters(raft: &Raft) -> usize {
    raft.metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .count()
}

fn settle(outcome: WriteOutcome, commands: usize) -> Vec<Result<Proposed, ApiError>> {
    let fail = |error: &dyn Fn() -> ApiError| (0..commands).map(|_| Err(error())).collect();
    match outcome {
        Some(Ok(response)) => {
            let log_index = response.log_id.index;
            let mut results = response.data.results.into_iter();
            (0..commands)
                .map(|_| match results.next() {
                    Some(applied) => Ok(Proposed { log_index, applied }),
                    None => Err(ApiError::Internal(format!(
                        "entry {log_index} returned fewer results than commands"
                    ))),
                })
                .collect()
        }
        // Either openraft refused the entry before appending it (this node had just stopped
        // leading), or the entry was appended and later cut from this node's log by a new
        // leader. The two look the same here, and a cut entry can still commit if another node
        // that holds it wins a later election: unknown.
        Some(Err(ClientWriteError::ForwardToLeader(forward))) => {
            let leader_addr = forward.leader_node.map(|n| n.addr);
            fail(&|| ApiError::OutcomeUnknown {
                reason: "this node lost the leadership before the entry committed".into(),
                leader_id: forward.leader_id,
                leader_addr: leader_addr.clone(),
            })
        }
        Some(Err(other)) => fail(&|| ApiError::Internal(other.to_string())),
        // openraft keeps a responder until its index is applied or cut, so a dropped one means
        // its Raft stopped (the node is shutting down) with the entry possibly appended.
        None => fail(&|| ApiError::outcome_unknown("the node stopped before the entry committed")),
    }
}

#[cfg(test)]
mod tests {
    use openraft::error::ForwardToLeader;
    use openraft::{CommittedLeaderId, LogId};
    use tonic::Code;

    use super::*;
    use crate::grpc::status::{LEADER_ADDR_KEY, OUTCOME_KEY};
    use crate::raft::ApplyReply;

    fn outcome_marker(error: ApiError) -> (Code, Option<String>, Option<String>) {
        let status = tonic::Status::from(error);
        let get = |key| {
            status
                .metadata()
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (status.code(), get(OUTCOME_KEY), get(LEADER_ADDR_KEY))
    }

    /// Postmortem (defect h): an entry accepted by `client_write_ff` whose responder then
    /// reported ForwardToLeader, or was dropped, used to fail as `NoLeader`, which told clients
    /// "nothing was proposed", although the entry may still commit under the next leader.
    #[test]
    fn an_entry_accepted_then_not_confirmed_has_an_unknown_outcome() {
        let forwarded: WriteOutcome =
            Some(Err(ClientWriteError::ForwardToLeader(ForwardToLeader {
                leader_id: Some(2),
                leader_node: Some(BasicNode {
                    addr: "127.0.0.1:7002".into(),
                }),
            })));
        let results = settle(forwarded, 3);
        assert_eq!(results.len(), 3, "one result per command");
        for result in results {
            let error = result.expect_err("no result without an apply");
            assert!(
                matches!(error, ApiError::OutcomeUnknown { .. }),
                "{error:?}"
            );
            assert_eq!(
                outcome_marker(error),
                (
                    Code::Unavailable,
                    Some("unknown".into()),
                    Some("127.0.0.1:7002".into())
                ),
                "retryable, marked unknown, with the new leader's address"
            );
        }

        let dropped = settle(None, 2);
        assert_eq!(dropped.len(), 2);
        for result in dropped {
            let error = result.expect_err("no result without an apply");
            assert_eq!(
                outcome_marker(error),
                (Code::Unavailable, Some("unknown".into()), None)
            );
        }
    }

    /// Back-pressure: a bounded queue refuses at once what it has no room for, a batch whole,
    /// and says "not proposed", so the client may retry; what it refuses is not queued.
    #[test]
    fn a_full_queue_refuses_writes_whole_and_at_once() {
        let (queue, mut waiting) = mpsc::channel::<Waiting>(4);
        let retire = || Command::ExecutorRetire { node_id: 1 };
        let three =
            enqueue_all(&queue, vec![retire(), retire(), retire()], None).expect("room for 3");
        assert_eq!(three.len(), 3);
        let refused =
            enqueue_all(&queue, vec![retire(), retire()], None).expect_err("room for 1 only");
        assert!(
            matches!(refused, ApiError::Overloaded { retry_after, .. } if retry_after == PUSHBACK_MIN),
            "no wait measured, the shortest pushback: {refused:?}"
        );
        assert_eq!(
            outcome_marker(refused),
            (Code::ResourceExhausted, Some("not-proposed".into()), None)
        );
        enqueue_all(&queue, vec![retire()], None).expect("the refused batch took no room");
        assert!(enqueue_all(&queue, vec![retire()], None).is_err(), "full");
        // Taken by the batching task, room again; in order.
        for _ in 0..4 {
            assert!(waiting.try_recv().is_ok());
        }
        enqueue_all(&queue, vec![retire(); 4], None).expect("room again");
        // A batch of nothing (every request malformed) queues nothing, even when full.
        assert!(enqueue_all(&queue, Vec::new(), None)
            .expect("nothing to queue")
            .is_empty());
        drop(waiting);
        let closed = enqueue_all(&queue, vec![retire()], None).expect_err("the task is gone");
        assert!(matches!(closed, ApiError::Unavailable(_)), "{closed:?}");
    }

    /// Back-pressure by time: while commands wait and the last entry's oldest command waited
    /// over the bound, a client write is refused whole, "not proposed", and nothing is queued;
    /// once the wait falls under the bound (or nothing waits) writes are taken again.
    #[test]
    fn a_queue_waiting_too_long_refuses_writes() {
        let (queue, mut waiting) = mpsc::channel::<Waiting>(16);
        let retire = || Command::ExecutorRetire { node_id: 1 };
        let gauge = Gauge::<f64, AtomicU64>::default();
        let pressure = Pressure::new(Duration::from_millis(100), gauge.clone());
        pressure.record(Duration::from_millis(150));
        assert_eq!(gauge.get(), 0.15, "the wait is exported");
        enqueue_all(&queue, vec![retire(); 2], Some(&pressure))
            .expect("nothing waits: an arrival would not wait, whatever the last entry saw");
        let refused = enqueue_all(&queue, vec![retire(); 3], Some(&pressure))
            .expect_err("commands wait, and the last entry's waited 150 ms of 100");
        assert!(
            matches!(refused, ApiError::Overloaded { retry_after, .. } if retry_after == Duration::from_millis(150)),
            "the pushback is the queue's wait: {refused:?}"
        );
        assert_eq!(
            outcome_marker(refused),
            (Code::ResourceExhausted, Some("not-proposed".into()), None)
        );
        assert_eq!(
            queue.max_capacity() - queue.capacity(),
            2,
            "the refused took no room"
        );
        pressure.record(Duration::from_millis(99));
        enqueue_all(&queue, vec![retire()], Some(&pressure)).expect("under the bound again");
        let off = Pressure::new(Duration::ZERO, Gauge::default());
        off.record(Duration::from_secs(60));
        enqueue_all(&queue, vec![retire()], Some(&off)).expect("no bound by time");
        for _ in 0..4 {
            assert!(waiting.try_recv().is_ok(), "in order, none lost");
        }
        assert!(waiting.try_recv().is_err());
    }

    #[test]
    fn an_applied_entry_answers_each_command_and_flags_missing_results() {
        let response = ClientWriteResponse::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 9),
            data: ApplyReply {
                results: vec![Ok(ledger_state_machine::Outcome::DealClosed)],
            },
            membership: None,
        };
        let results = settle(Some(Ok(response)), 2);
        match &results[0] {
            Ok(proposed) => assert_eq!(proposed.log_index, 9),
            Err(error) => panic!("first command: {error:?}"),
        }
        assert!(matches!(results[1], Err(ApiError::Internal(_))));
    }
}
