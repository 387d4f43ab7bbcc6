//! The executor: one worker per saga assigned to this node, performing the saga's current step
//! at the partners and proposing the result (`RecordStep`) under the assignment's epoch.
//!
//! It learns of work from its own replica, without asking the leader: saga events emitted while
//! entries apply, plus a periodic sweep of `executor_saga_ids(me)` as a safety net. It keeps its
//! lease with `ExecutorHeartbeat` entries at a quarter of the lease.
//!
//! A worker is a thin loop around its [`StepDriver`], which decides every retry, supersession
//! check and attempt limit without I/O: the worker reads the saga from its replica, asks the
//! driver for the next action, performs it (a partner call through [`PartnerApi`], a proposal
//! through `Node::propose_anywhere`, a sleep, a wait on the replica) and reports what became of
//! it. The driver stops as soon as the saga moved on (another step, another owner, another
//! epoch), so a paused or partitioned executor cannot keep acting on stale work; and its late
//! results are ignored by the state machine anyway (epoch fencing).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ledger_state_machine::{
    Command, InvestmentView, Outcome, RequestId, SagaEvent, SagaStep, TraceContext,
};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};
use tracing::Instrument;

use super::api::{CallError, PartnerApi};
use super::driver::{Action, Lane, LaneEnd, LaneStep, Last, RetryPolicy, StepDriver};
use crate::metrics::OperationLabels;
use crate::node::{Node, Proposed};

/// Tunables of the executor.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// Sagas worked on at once.
    pub concurrency: usize,
    /// Attempts at the documents partner before compensating.
    pub documents_attempts_max: usize,
    /// Attempts at the e-mail partner before giving up (recorded, nothing rolled back).
    pub notify_attempts_max: usize,
    /// First retry delay; doubles up to `retry_delay_max`.
    pub retry_delay_min: Duration,
    /// Longest retry delay.
    pub retry_delay_max: Duration,
    /// Seed of the retry jitter; `None`: a random one per process. A simulation fixes it.
    pub jitter_seed: Option<u64>,
}

impl ExecutorConfig {
    /// The part of the config the step driver follows.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            documents_attempts_max: self.documents_attempts_max,
            notify_attempts_max: self.notify_attempts_max,
            retry_delay_min: self.retry_delay_min,
            retry_delay_max: self.retry_delay_max,
        }
    }
}

impl Default for ExecutorConfig {
    fn default() -> ExecutorConfig {
        ExecutorConfig {
            concurrency: 1_024,
            documents_attempts_max: 5,
            notify_attempts_max: 6,
            retry_delay_min: Duration::from_millis(100),
            retry_delay_max: Duration::from_secs(3),
            jitter_seed: None,
        }
    }
}

/// How often the executor re-reads its assignments, in case an event was missed.
const SWEEP_PERIOD: Duration = Duration::from_secs(5);
/// Delay before retrying a heartbeat that could not be proposed.
const HEARTBEAT_RETRY: Duration = Duration::from_millis(200);
/// Longest wait for a proposed result to show in the replica before re-reading.
const RESULT_WAIT: Duration = Duration::from_secs(10);
/// Sagas held at once from which, once all have ended, the executor gives the memory they used
/// back to the operating system.
const RELEASE_AFTER_SAGAS: usize = 4_096;

/// The executor of one node.
pub struct Executor {
    node: Arc<Node>,
    partners: Arc<dyn PartnerApi>,
    config: ExecutorConfig,
    me: u64,
    /// Mixed with each saga's id into its driver's seed, so that workers' jitters differ.
    seed: u64,
    running: Mutex<HashSet<RequestId>>,
    /// The client's trace of sagas assigned here, from the events of the entry that decided
    /// them; dropped when the saga's worker ends.
    traces: Mutex<HashMap<RequestId, TraceContext>>,
    /// Sagas of `running` waiting for one of the `concurrency` workers.
    queue: WorkQueue,
    /// The most sagas `running` held since it was last empty.
    peak: AtomicUsize,
}

/// Sagas waiting for one of a bounded number of worker slots, oldest first.
///
/// A saga waits here as its id, not as a spawned task: a task waiting for a slot holds its
/// whole future (several KB), and 90,000 sagas queued behind a 10,000/s load held 1.49 GB on
/// each executor's node (560–590 MB since; issue #15, docs/performance.md).
struct WorkQueue {
    slots: Arc<Semaphore>,
    waiting: Mutex<VecDeque<RequestId>>,
}

impl WorkQueue {
    fn new(concurrency: usize) -> WorkQueue {
        WorkQueue {
            slots: Arc::new(Semaphore::new(concurrency)),
            waiting: Mutex::new(VecDeque::new()),
        }
    }

    fn push_all(&self, request_ids: Vec<RequestId>) {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(request_ids);
    }

    /// The waiting sagas that may start now, oldest first, each with its slot (given back when
    /// dropped). Call it after a push and after a slot is given back: whichever of the two
    /// comes second sees both the saga and the free slot, so none is left waiting beside one.
    fn ready(&self) -> Vec<(RequestId, OwnedSemaphorePermit)> {
        let mut ready = Vec::new();
        loop {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                return ready;
            };
            let next = self
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            match next {
                Some(request_id) => ready.push((request_id, slot)),
                None => return ready,
            }
        }
    }
}

impl Executor {
    /// Starts the executor of `node`, fed by `events` from its state machine store.
    pub fn start(
        node: Arc<Node>,
        partners: Arc<dyn PartnerApi>,
        config: ExecutorConfig,
        events: mpsc::UnboundedReceiver<SagaEvent>,
    ) -> Arc<Executor> {
        let me = node.config.node_id;
        let executor = Arc::new(Executor {
            me,
            // std's hasher keys are random per process: jitter needs no more than that here.
            seed: match config.jitter_seed {
                Some(seed) => seed ^ me.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                None => std::collections::hash_map::RandomState::new().hash_one(me),
            },
            queue: WorkQueue::new(config.concurrency),
            node,
            partners,
            config,
            running: Mutex::new(HashSet::new()),
            traces: Mutex::new(HashMap::new()),
            peak: AtomicUsize::new(0),
        });
        tokio::spawn(executor.clone().run(events));
        executor
    }

    /// Leaves the cluster's executors on purpose, so this node's sagas move at once.
    pub async fn retire(&self) {
        let retire = Command::ExecutorRetire { node_id: self.me };
        match tokio::time::timeout(Duration::from_secs(2), self.node.propose_anywhere(retire)).await
        {
            Ok(Ok(_)) => tracing::info!(node_id = self.me, "executor retired"),
            Ok(Err(error)) => {
                tracing::warn!(node_id = self.me, %error, "executor could not retire; its lease will lapse")
            }
            Err(_) => tracing::warn!(
                node_id = self.me,
                "executor retirement timed out; its lease will lapse"
            ),
        }
    }

    async fn run(self: Arc<Self>, mut events: mpsc::UnboundedReceiver<SagaEvent>) {
        let mut sweep = tokio::time::interval(SWEEP_PERIOD);
        let heartbeats = tokio::spawn(self.clone().heartbeats());
        let replica = self.node.replica.clone();
        loop {
            // A snapshot install replaces the state without saga events: sweep at once then,
            // rather than at the next period.
            let replaced = replica.replaced();
            // In a fixed order (not tokio's random one), so that a simulation replays which
            // worker starts first; the rare branches first, so a stream of events cannot hold
            // them back.
            tokio::select! {
                biased;
                () = replaced => self.sweep(),
                _ = sweep.tick() => self.sweep(),
                event = events.recv() => match event {
                    Some(event) if event.executor == Some(self.me) && event.step != SagaStep::Done => {
                        if let Some(trace) = event.trace {
                            self.traces
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .insert(event.request_id, trace);
                        }
                        self.ensure_worker(event.request_id);
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
        heartbeats.abort();
    }

    /// Starts a worker for every saga this replica assigns here that has none.
    fn sweep(self: &Arc<Self>) {
        let mine = self.node.replica.read().state.executor_saga_ids(self.me);
        self.ensure_workers(mine);
    }

    async fn heartbeats(self: Arc<Self>) {
        loop {
            let lease_ms = self.node.replica.read().state.params().executor_lease_ms;
            let period = Duration::from_millis((lease_ms / 4).clamp(50, 2_500));
            let wait = match self.heartbeat() {
                Err(why) => {
                    tracing::debug!(node_id = self.me, why, "no heartbeat sent");
                    period.min(HEARTBEAT_RETRY)
                }
                Ok(heartbeat) => match self.node.propose_anywhere(heartbeat).await {
                    Ok(Proposed {
                        applied: Ok(Outcome::HeartbeatRefused { lag }),
                        ..
                    }) => {
                        tracing::warn!(
                            node_id = self.me,
                            lag,
                            "heartbeat refused: this replica is too far behind to take sagas"
                        );
                        period.min(HEARTBEAT_RETRY)
                    }
                    Ok(_) => period,
                    Err(error) => {
                        // No leader yet (start-up, election): try again soon, so that sagas do
                        // not wait a whole period for an executor.
                        tracing::debug!(node_id = self.me, %error, "heartbeat not proposed");
                        period.min(HEARTBEAT_RETRY)
                    }
                },
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The heartbeat to send now, or why this node must not renew its lease: a lease promises
    /// that this replica is healthy and caught up, since the executor learns of its sagas from
    /// it. A stopped Raft or a node outside the membership cannot keep that promise; how far
    /// behind the replica is, the state machine judges from the applied index it carries.
    fn heartbeat(&self) -> Result<Command, &'static str> {
        {
            let metrics = self.node.raft.metrics();
            let metrics = metrics.borrow();
            if metrics.running_state.is_err() {
                return Err("this node's Raft has stopped");
            }
            if metrics
                .membership_config
                .membership()
                .get_node(&self.me)
                .is_none()
            {
                return Err("this node is not a member of the cluster");
            }
        }
        let applied_index = self
            .node
            .replica
            .read()
            .last_applied
            .map_or(0, |log_id| log_id.index);
        Ok(Command::ExecutorHeartbeat {
            node_id: self.me,
            applied_index,
        })
    }

    fn ensure_worker(self: &Arc<Self>, request_id: RequestId) {
        self.ensure_workers([request_id]);
    }

    /// Queues a worker for each of `sagas` that has none (one lock for all: a sweep behind a
    /// burst names hundreds of thousands), oldest first, and starts those that may start.
    fn ensure_workers(self: &Arc<Self>, sagas: impl IntoIterator<Item = RequestId>) {
        let fresh: Vec<RequestId> = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            let fresh = sagas.into_iter().filter(|id| running.insert(*id)).collect();
            self.peak.fetch_max(running.len(), Ordering::Relaxed);
            fresh
        };
        if !fresh.is_empty() {
            self.queue.push_all(fresh);
            self.dispatch();
        }
    }

    /// Starts a worker for each saga that may start now.
    fn dispatch(self: &Arc<Self>) {
        for (request_id, slot) in self.queue.ready() {
            tokio::spawn(self.clone().work(request_id, slot));
        }
    }

    /// The investment as this node's replica shows it now.
    fn view(&self, request_id: RequestId) -> Option<InvestmentView> {
        self.node.replica.read().state.investment(request_id)
    }

    /// Runs the saga's driver until it stops, then hands its `slot` on to the next waiting saga.
    async fn work(self: Arc<Self>, request_id: RequestId, slot: OwnedSemaphorePermit) {
        self.drive(request_id).await;
        drop(slot);
        self.dispatch();
    }

    /// Runs the saga's driver until it stops.
    async fn drive(&self, request_id: RequestId) {
        let bits = request_id.as_u128();
        let seed = self.seed ^ (bits as u64) ^ ((bits >> 64) as u64);
        let mut driver = StepDriver::new(self.me, self.config.retry_policy(), seed);
        let times = StepTimes::default();
        let trace = self
            .traces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&request_id)
            .copied();
        let trace_id = trace.map(|t| t.trace_id_hex());
        let mut last = Last::Start;
        // One span per step worked on, kept across the actions of that step: a span per action
        // cost about 4% of the machine's CPU behind a load of 3,000 sagas/s (issue #15).
        let mut step_span: Option<((SagaStep, u64), tracing::Span)> = None;
        loop {
            let view = self.view(request_id);
            let action = driver.next_action(view.as_ref(), last);
            let span = match driver.working_on() {
                Some(working) => match &step_span {
                    Some((current, span)) if *current == working => span.clone(),
                    _ => {
                        let (step, epoch) = working;
                        let span = tracing::info_span!("saga_step", node_id = self.me, request_id = %request_id, saga_step = %step, epoch, trace_id);
                        if let Some(trace) = &trace {
                            crate::logging::adopt(&span, trace);
                        }
                        step_span = Some((working, span.clone()));
                        span
                    }
                },
                None => tracing::Span::none(),
            };
            last = match action {
                Action::Stop => break,
                Action::WaitForChange => {
                    self.wait_for_change(request_id, &driver).await;
                    Last::Waited
                }
                Action::Pipeline(pipeline) => {
                    let lanes = async {
                        tokio::join!(
                            self.run_lane(request_id, pipeline.charge, &times, trace),
                            self.run_lane(request_id, pipeline.documents, &times, trace)
                        )
                    };
                    let (charge, documents) = lanes.instrument(span).await;
                    Last::Pipelined { charge, documents }
                }
                action => {
                    self.perform(request_id, action, &times, trace)
                        .instrument(span)
                        .await
                }
            };
        }
        let drained = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            running.remove(&request_id);
            running.is_empty()
        };
        self.traces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&request_id);
        if drained {
            self.drained();
        }
        // An assignment that arrived while this worker was finishing is picked up by the sweep.
    }

    /// Every saga held here has ended. After a burst, the tables sized for it are emptied
    /// (they keep their capacity otherwise) and the allocator's freed pages go back to the
    /// operating system: behind a 10,000/s load with sagas, each executor's node stayed at
    /// 1.17-1.20 GB RSS where the live heap was 0.88 GB (issue #15, docs/performance.md, "Size").
    fn drained(&self) {
        let peak = self.peak.swap(0, Ordering::Relaxed);
        if peak < RELEASE_AFTER_SAGAS {
            return;
        }
        {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            if !running.is_empty() {
                // A saga arrived meanwhile: the burst goes on, and its peak with it.
                self.peak.fetch_max(peak, Ordering::Relaxed);
                return;
            }
            running.shrink_to_fit();
        }
        self.traces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .shrink_to_fit();
        self.queue
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .shrink_to_fit();
        let me = self.me;
        // On a blocking thread: trimming a heap of a gigabyte takes a while, and the node may
        // have a single async worker.
        tokio::task::spawn_blocking(move || {
            let before = crate::metrics::process::read().resident_bytes;
            let started = std::time::Instant::now();
            crate::memory::release_freed();
            let after = crate::metrics::process::read().resident_bytes;
            tracing::info!(
                node_id = me,
                peak_sagas = peak,
                rss_before_mb = before.map(|b| b / 1_000_000),
                rss_after_mb = after.map(|b| b / 1_000_000),
                took_ms = started.elapsed().as_millis() as u64,
                "sagas drained: freed memory given back"
            );
        });
    }

    /// Runs one lane of a pipeline to its end.
    async fn run_lane(
        &self,
        request_id: RequestId,
        mut lane: Lane,
        times: &StepTimes,
        trace: Option<TraceContext>,
    ) -> LaneEnd {
        let mut last = Last::Start;
        loop {
            let view = self.view(request_id);
            match lane.next_action(view.as_ref(), last) {
                LaneStep::Act(action) => {
                    last = self.perform(request_id, action, times, trace).await
                }
                LaneStep::End(end) => return end,
            }
        }
    }

    /// Performs one action of a worker or lane (waits for a change, pipelines and stops are the
    /// worker's own).
    async fn perform(
        &self,
        request_id: RequestId,
        action: Action,
        times: &StepTimes,
        trace: Option<TraceContext>,
    ) -> Last {
        match action {
            Action::Call { call, attempt } => {
                let (partner, operation) = call.operation();
                let labels = OperationLabels { partner, operation };
                if attempt > 1 {
                    self.node
                        .metrics
                        .partner_retries
                        .get_or_create(&labels)
                        .inc();
                }
                let started = Instant::now();
                let called = super::api::with_trace(
                    trace,
                    call.key(),
                    attempt,
                    call.perform(self.partners.as_ref()),
                )
                .await;
                let took = started.elapsed();
                times.called(call.step(), started, took);
                let result = match &called {
                    Ok(_) => "ok",
                    Err(CallError::Unknown(_)) => "unknown",
                    Err(CallError::Permanent(_)) => "refused",
                    Err(CallError::Voided) => "voided",
                };
                self.node.metrics.partner_call(labels, result, took);
                match &called {
                    Err(CallError::Voided) => {}
                    Err(error) => tracing::warn!(
                        attempts = attempt,
                        %error,
                        "partner call failed; retrying with the same key"
                    ),
                    Ok(_) => {}
                }
                Last::Called(called)
            }
            Action::Record(command) => {
                let step = match &command {
                    Command::RecordStep(record) => Some(record.result.step()),
                    _ => None,
                };
                let last = self.record(request_id, command).await;
                if let (
                    Some(step),
                    Last::Entered {
                        applied: Ok(Outcome::StepRecorded { .. }),
                        ..
                    },
                ) = (step, &last)
                {
                    if let Some((took, in_partners)) = times.recorded(step) {
                        self.node.metrics.step(step.as_str(), took, in_partners);
                    }
                }
                last
            }
            Action::Progress(command) => {
                // Progress for operators; best effort.
                let _ = self.node.propose_anywhere(command).await;
                Last::Progressed
            }
            Action::Sleep(delay) => {
                tokio::time::sleep(delay).await;
                Last::Slept
            }
            Action::WaitForApplied(log_index) => {
                self.wait_for_applied(log_index).await;
                Last::Waited
            }
            Action::WaitForChange | Action::Pipeline(_) | Action::Stop => {
                debug_assert!(false, "a lane cannot wait, pipeline or stop: {action:?}");
                Last::Waited
            }
        }
    }

    /// Proposes a step's result once.
    async fn record(&self, request_id: RequestId, command: Command) -> Last {
        match self.node.propose_anywhere(command).await {
            Ok(Proposed { log_index, applied }) => {
                match &applied {
                    Ok(Outcome::StepIgnored(reason)) => {
                        tracing::info!(%request_id, ?reason, "step result ignored");
                    }
                    Ok(_) => tracing::debug!(%request_id, log_index, "step recorded"),
                    Err(error) => tracing::error!(%request_id, %error, "step result refused"),
                }
                Last::Entered { log_index, applied }
            }
            Err(error) => {
                tracing::warn!(%request_id, %error, "step result not proposed yet");
                Last::NotProposed
            }
        }
    }

    /// Waits (bounded) until this node's replica has applied `log_index`.
    async fn wait_for_applied(&self, log_index: u64) {
        let mut applied = self.node.replica.applied_index();
        let deadline = Instant::now() + RESULT_WAIT;
        let _ = timeout_at(deadline, applied.wait_for(|&index| index >= log_index)).await;
    }

    /// Waits (bounded) until the driver sees the saga moved on, re-reading it as entries apply.
    async fn wait_for_change(&self, request_id: RequestId, driver: &StepDriver) {
        let mut applied = self.node.replica.applied_index();
        let deadline = Instant::now() + RESULT_WAIT;
        while !driver.moved_on(self.view(request_id).as_ref()) {
            match timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }
}

/// When each step of one saga began (its first partner call) and how long its partner calls
/// took, until its result is recorded: `ledger_saga_step_duration_seconds` and the overhead
/// beyond the partners.
#[derive(Default)]
struct StepTimes(Mutex<BTreeMap<SagaStep, (Instant, Duration)>>);

impl StepTimes {
    /// A call of `step` began at `started` and took `took`.
    fn called(&self, step: SagaStep, started: Instant, took: Duration) {
        let mut steps = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, in_partners) = steps.entry(step).or_insert((started, Duration::ZERO));
        *in_partners += took;
    }

    /// `step`'s result is recorded: how long the step took, and how much of it in partner calls
    /// (`None` if this worker made none, e.g. it took the step over with its call done).
    fn recorded(&self, step: SagaStep) -> Option<(Duration, Duration)> {
        let mut steps = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        steps
            .remove(&step)
            .map(|(started, in_partners)| (started.elapsed(), in_partners))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> RequestId {
        RequestId::from_u128(n + 1).expect("not nil")
    }

    #[test]
    fn sagas_past_the_concurrency_wait_as_ids_and_start_in_order_as_slots_free() {
        let queue = WorkQueue::new(2);
        queue.push_all((0..5).map(id).collect());
        let mut running: Vec<_> = queue.ready();
        assert_eq!(ids(&running), [id(0), id(1)]);
        assert!(queue.ready().is_empty(), "no free slot");

        drop(running.remove(0));
        running.extend(queue.ready());
        assert_eq!(ids(&running), [id(1), id(2)]);

        running.clear();
        running.extend(queue.ready());
        assert_eq!(ids(&running), [id(3), id(4)]);

        // A free slot with nothing waiting starts nothing, and the next push starts at once.
        running.clear();
        assert!(queue.ready().is_empty());
        queue.push_all(vec![id(5)]);
        assert_eq!(ids(&queue.ready()), [id(5)]);
    }

    fn ids(running: &[(RequestId, OwnedSemaphorePermit)]) -> Vec<RequestId> {
        running.iter().map(|(request_id, _)| *request_id).collect()
    }
}
