//! The executor: one worker per saga assigned to this node, performing the saga's current step
//! at the partners and proposing the result (`RecordStep`) under the assignment's epoch.
//!
//! It learns of work from its own replica, without asking the leader: saga events emitted while
//! entries apply, plus a periodic sweep of `executor_sagas(me)` as a safety net. It keeps its
//! lease with `ExecutorHeartbeat` entries at a quarter of the lease. A worker re-reads the saga
//! before every attempt and stops as soon as the saga moved on (another step, another owner,
//! another epoch), so a paused or partitioned executor cannot keep acting on stale work; and its
//! late results are ignored by the state machine anyway (epoch fencing).
//!
//! Retries use exponential backoff with jitter (`backon`). Payment and void are retried until
//! the partner gives a definite answer (an unknown outcome is not a failure; the saga deadline
//! bounds how long payment may take). Documents and e-mail have a bounded number of attempts:
//! documents failing for good start compensation; e-mail failing for good is recorded.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use ledger_state_machine::{
    Command, InvestmentView, Outcome, RecordStep, RequestId, SagaEvent, SagaStep, Status,
    StepResult, ERROR_TEXT_LEN_MAX, EXTERNAL_ID_LEN_MAX,
};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{timeout_at, Instant};

use super::api::{CallError, PartnerApi};
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
}

impl Default for ExecutorConfig {
    fn default() -> ExecutorConfig {
        ExecutorConfig {
            concurrency: 1_024,
            documents_attempts_max: 5,
            notify_attempts_max: 6,
            retry_delay_min: Duration::from_millis(100),
            retry_delay_max: Duration::from_secs(3),
        }
    }
}

/// How often the executor re-reads its assignments, in case an event was missed.
const SWEEP_PERIOD: Duration = Duration::from_secs(5);
/// Delay before retrying a heartbeat that could not be proposed.
const HEARTBEAT_RETRY: Duration = Duration::from_millis(200);
/// Longest wait for a proposed result to show in the replica before re-reading.
const RESULT_WAIT: Duration = Duration::from_secs(10);

/// A step result that reached the log.
#[derive(Clone, Copy)]
struct Recorded {
    log_index: u64,
    /// Whether the state machine took it (not ignored as stale or out of step).
    accepted: bool,
}

enum Attempted<T> {
    Done(T),
    Exhausted(String),
    Superseded,
}

/// The executor of one node.
pub struct Executor {
    node: Arc<Node>,
    partners: Arc<dyn PartnerApi>,
    config: ExecutorConfig,
    me: u64,
    running: Mutex<HashSet<RequestId>>,
    permits: Arc<Semaphore>,
}

impl Executor {
    /// Starts the executor of `node`, fed by `events` from its state machine store.
    pub fn start(
        node: Arc<Node>,
        partners: Arc<dyn PartnerApi>,
        config: ExecutorConfig,
        events: mpsc::UnboundedReceiver<SagaEvent>,
    ) -> Arc<Executor> {
        let executor = Arc::new(Executor {
            me: node.config.node_id,
            permits: Arc::new(Semaphore::new(config.concurrency)),
            node,
            partners,
            config,
            running: Mutex::new(HashSet::new()),
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
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) if event.executor == Some(self.me) && event.step != SagaStep::Done => {
                        self.ensure_worker(event.request_id);
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = sweep.tick() => self.sweep(),
                () = replaced => self.sweep(),
            }
        }
        heartbeats.abort();
    }

    /// Starts a worker for every saga this replica assigns here that has none.
    fn sweep(self: &Arc<Self>) {
        let mine = self.node.replica.read().state.executor_sagas(self.me);
        for saga in mine {
            self.ensure_worker(saga.request_id);
        }
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
        let fresh = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(request_id);
        if fresh {
            tokio::spawn(self.clone().work(request_id));
        }
    }

    /// The saga as this executor may act on it: assigned here and not done.
    fn assigned(&self, request_id: RequestId) -> Option<(InvestmentView, SagaStep, u64)> {
        let view = self.node.replica.read().state.investment(request_id)?;
        let saga = view.saga.as_ref()?;
        if saga.assignee != Some(self.me) || saga.step == SagaStep::Done {
            return None;
        }
        let (step, epoch) = (saga.step, saga.epoch);
        Some((view, step, epoch))
    }

    /// Whether the saga left `step` (or this executor's `epoch`). Documents may start while the
    /// charge's result is still on its way to the log, so PAYMENT does not supersede them.
    fn superseded(&self, request_id: RequestId, step: SagaStep, epoch: u64) -> bool {
        let current =
            |s: SagaStep| s == step || (step == SagaStep::Documents && s == SagaStep::Payment);
        !matches!(self.assigned(request_id), Some((_, s, e)) if current(s) && e == epoch)
    }

    async fn work(self: Arc<Self>, request_id: RequestId) {
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        while let Some((view, step, epoch)) = self.assigned(request_id) {
            let span = tracing::info_span!("saga_step", node_id = self.me, request_id = %request_id, step = %step, epoch);
            let recorded =
                tracing::Instrument::instrument(self.advance(&view, step, epoch), span).await;
            match recorded {
                // Our replica must show our own result before the next step is read from it.
                Some(recorded) => self.wait_for_applied(recorded.log_index).await,
                None => self.wait_for_change(request_id, step, epoch).await,
            }
        }
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&request_id);
        // An assignment that arrived while this worker was finishing is picked up by the sweep.
    }

    /// Performs `step` and records its result. A successful charge is recorded while the
    /// documents are already being generated: the charge is definite, and the documents key makes
    /// a repeated call harmless, so the saga does not wait a log round trip plus its own replica
    /// catching up between the two partner calls. The documents result is proposed only once the
    /// charge's entry is applied, so the log keeps the steps in order.
    async fn advance(&self, view: &InvestmentView, step: SagaStep, epoch: u64) -> Option<Recorded> {
        let id = view.request_id;
        let result = self.perform(view, step, epoch).await?;
        if !matches!(result, StepResult::PaymentSucceeded { .. }) {
            return self.record(id, step, epoch, result).await;
        }
        let (charge, documents) = tokio::join!(
            self.record(id, step, epoch, result),
            self.perform(view, SagaStep::Documents, epoch)
        );
        match (charge, documents) {
            (Some(charge), Some(documents)) if charge.accepted => self
                .record(id, SagaStep::Documents, epoch, documents)
                .await
                .or(Some(charge)),
            (charge, _) => charge,
        }
    }

    async fn perform(
        &self,
        view: &InvestmentView,
        step: SagaStep,
        epoch: u64,
    ) -> Option<StepResult> {
        let id = view.request_id;
        let payment_key = format!("{id}:payment");
        let request_id = id.to_string();
        match step {
            SagaStep::Payment => {
                if view.admitted_at.is_some() {
                    self.announce_admission(view, step, epoch).await;
                }
                let charged = self
                    .attempt(id, step, epoch, None, || {
                        self.partners
                            .charge(&payment_key, &view.user_id, view.amount)
                    })
                    .await;
                match charged {
                    Attempted::Done(charge) if charge.status == "succeeded" => {
                        Some(StepResult::PaymentSucceeded {
                            payment_id: bounded(&charge.payment_id, EXTERNAL_ID_LEN_MAX),
                        })
                    }
                    Attempted::Done(_) => Some(StepResult::PaymentDeclined {
                        reason: "declined by the payment partner".into(),
                    }),
                    Attempted::Exhausted(_) | Attempted::Superseded => None,
                }
            }
            SagaStep::Documents => {
                let key = format!("{id}:documents");
                let attempts = Some(self.config.documents_attempts_max);
                let generated = self
                    .attempt(id, step, epoch, attempts, || {
                        self.partners.documents(
                            &key,
                            &request_id,
                            &view.deal_id,
                            &view.user_id,
                            view.amount,
                        )
                    })
                    .await;
                match generated {
                    Attempted::Done(document_id) => Some(StepResult::DocumentsGenerated {
                        document_id: bounded(&document_id, EXTERNAL_ID_LEN_MAX),
                    }),
                    Attempted::Exhausted(error) => Some(StepResult::DocumentsFailed {
                        error: bounded(&error, ERROR_TEXT_LEN_MAX),
                    }),
                    Attempted::Superseded => None,
                }
            }
            SagaStep::Void => match self
                .attempt(id, step, epoch, None, || self.partners.void(&payment_key))
                .await
            {
                Attempted::Done(refunded) => Some(StepResult::PaymentVoided { refunded }),
                Attempted::Exhausted(_) | Attempted::Superseded => None,
            },
            SagaStep::Notify => {
                let key = format!("{id}:notify");
                let (to, subject, body) = email_of(view);
                let attempts = Some(self.config.notify_attempts_max);
                match self
                    .attempt(id, step, epoch, attempts, || {
                        self.partners.email(&key, &to, &subject, &body)
                    })
                    .await
                {
                    Attempted::Done(message_id) => Some(StepResult::NotifySent {
                        message_id: bounded(&message_id, EXTERNAL_ID_LEN_MAX),
                    }),
                    Attempted::Exhausted(error) => Some(StepResult::NotifyFailed {
                        error: bounded(&error, ERROR_TEXT_LEN_MAX),
                    }),
                    Attempted::Superseded => None,
                }
            }
            SagaStep::Done => None,
        }
    }

    /// Tells an investor admitted from the waitlist, before charging them. Under its own key, so
    /// a retry, a restart or another executor sends the same message once; at most
    /// `notify_attempts_max` tries, then the saga goes on without it (logged): the outcome
    /// e-mail follows anyway.
    async fn announce_admission(&self, view: &InvestmentView, step: SagaStep, epoch: u64) {
        let id = view.request_id;
        let key = format!("{id}:waitlist-admitted");
        let (to, _, _) = email_of(view);
        let subject = format!("A seat in {} is yours", view.deal_id);
        let body = format!(
            "A seat freed in {}: your waitlisted request {} for {} is admitted. We are taking \
             the payment now; you will hear from us again once it is settled.",
            view.deal_id, id, view.amount
        );
        let attempts = Some(self.config.notify_attempts_max);
        let sent = self
            .attempt(id, step, epoch, attempts, || {
                self.partners.email(&key, &to, &subject, &body)
            })
            .await;
        if let Attempted::Exhausted(error) = sent {
            tracing::warn!(request_id = %id, %error, "the waitlist admission e-mail was not sent");
        }
    }

    /// Exponential delays with jitter between the configured bounds, without end.
    fn retry_delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.config.retry_delay_min)
            .with_max_delay(self.config.retry_delay_max)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// Calls `call` until it answers, `attempts_max` is reached, or the saga moves on.
    async fn attempt<T, F, Fut>(
        &self,
        request_id: RequestId,
        step: SagaStep,
        epoch: u64,
        attempts_max: Option<usize>,
        mut call: F,
    ) -> Attempted<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        let mut delays = self.retry_delays();
        let mut attempts = 0usize;
        loop {
            if self.superseded(request_id, step, epoch) {
                return Attempted::Superseded;
            }
            attempts += 1;
            let error = match call().await {
                Ok(value) => return Attempted::Done(value),
                // The key was voided: compensation runs; this step is over.
                Err(CallError::Voided) => return Attempted::Superseded,
                Err(error) => error,
            };
            tracing::warn!(attempts, %error, "partner call failed; retrying with the same key");
            if attempts_max.is_some_and(|max| attempts >= max) {
                return Attempted::Exhausted(error.to_string());
            }
            if attempts.is_power_of_two() {
                // Progress for operators; best effort.
                let progress = StepResult::Retrying {
                    step,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    error: bounded(&error.to_string(), ERROR_TEXT_LEN_MAX),
                };
                let command = record_step(request_id, self.me, epoch, progress);
                let _ = self.node.propose_anywhere(command).await;
            }
            let delay = delays.next().unwrap_or(self.config.retry_delay_max);
            tokio::time::sleep(delay).await;
        }
    }

    /// Proposes the step's result until it is in the log, or the saga moved on without it
    /// (then `None`).
    async fn record(
        &self,
        request_id: RequestId,
        step: SagaStep,
        epoch: u64,
        result: StepResult,
    ) -> Option<Recorded> {
        let command = record_step(request_id, self.me, epoch, result);
        let mut delays = self.retry_delays();
        loop {
            match self.node.propose_anywhere(command.clone()).await {
                Ok(proposed) => {
                    let accepted = match proposed.applied {
                        Ok(Outcome::StepIgnored(reason)) => {
                            tracing::info!(%request_id, ?reason, "step result ignored");
                            false
                        }
                        Ok(_) => {
                            tracing::debug!(%request_id, log_index = proposed.log_index, "step recorded");
                            true
                        }
                        Err(error) => {
                            tracing::error!(%request_id, %error, "step result refused");
                            false
                        }
                    };
                    return Some(Recorded {
                        log_index: proposed.log_index,
                        accepted,
                    });
                }
                Err(error) => tracing::warn!(%request_id, %error, "step result not proposed yet"),
            }
            if self.superseded(request_id, step, epoch) {
                return None;
            }
            tokio::time::sleep(delays.next().unwrap_or(self.config.retry_delay_max)).await;
        }
    }

    /// Waits (bounded) until this node's replica has applied `log_index`.
    async fn wait_for_applied(&self, log_index: u64) {
        let mut applied = self.node.replica.applied_index();
        let deadline = Instant::now() + RESULT_WAIT;
        let _ = timeout_at(deadline, applied.wait_for(|&index| index >= log_index)).await;
    }

    async fn wait_for_change(&self, request_id: RequestId, step: SagaStep, epoch: u64) {
        let mut applied = self.node.replica.applied_index();
        let deadline = Instant::now() + RESULT_WAIT;
        while !self.superseded(request_id, step, epoch) {
            match timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }
}

fn record_step(request_id: RequestId, executor: u64, epoch: u64, result: StepResult) -> Command {
    Command::RecordStep(RecordStep {
        request_id,
        executor,
        epoch,
        result,
    })
}

/// Cuts partner-supplied text to what the state machine accepts: at most `len_max` bytes on a
/// character boundary, control characters replaced.
fn bounded(text: &str, len_max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(len_max));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > len_max {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push('?');
    }
    out
}

/// The outcome e-mail: deterministic for a given investment, so a retry sends the same payload
/// under the same key.
fn email_of(view: &InvestmentView) -> (String, String, String) {
    let to = if view.user_id.contains('@') {
        view.user_id.clone()
    } else {
        format!("{}@investors.invalid", view.user_id)
    };
    let (subject, body) = if view.status == Status::Confirmed {
        (
            format!("Your investment in {} is confirmed", view.deal_id),
            format!(
                "Your investment of {} in {} (request {}) is confirmed: payment received and documents generated.",
                view.amount, view.deal_id, view.request_id
            ),
        )
    } else {
        (
            format!("Your investment in {} was cancelled", view.deal_id),
            format!(
                "Your investment of {} in {} (request {}) was cancelled; nothing was charged, or it was refunded in full.",
                view.amount, view.deal_id, view.request_id
            ),
        )
    };
    (to, subject, body)
}
