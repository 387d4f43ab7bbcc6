//! The step driver: what one saga worker does next, decided without I/O.
//!
//! [`StepDriver::next_action`] takes the investment as this node's replica shows it now and
//! what became of the previous action ([`Last`]), and answers the next [`Action`]; the shell
//! (`executor.rs`) performs it, reads the replica again and comes back. Nothing here awaits,
//! sleeps, reads a clock or draws from a global generator: the jitter of retry delays comes
//! from the driver's own generator, seeded by its owner, so a seed and a sequence of views and
//! answers always give the same actions (a simulation replays a run from its seed).
//!
//! The saga is *current* while the replica shows it assigned here, at the step being worked on,
//! under the same epoch and not done (PAYMENT also counts as current for DOCUMENTS: the
//! documents are generated while the charge's result is on its way to the log). Transitions:
//!
//! | state | input | action |
//! |---|---|---|
//! | loop head | saga not assigned here, or done | `Stop` |
//! | loop head | PAYMENT, admitted from the waitlist | admission e-mail (`Call`) |
//! | loop head | PAYMENT / DOCUMENTS / VOID / NOTIFY | charge / documents / void / outcome e-mail |
//! | before any call | saga not current | ends the step unrecorded |
//! | call | answer | the step's result: `Record` (a successful charge: `Pipeline`) |
//! | call | voided key | ends the step unrecorded |
//! | call | error, attempts left | `Progress` (`Retrying`) at attempts 1, 2, 4, 8…, then `Sleep` |
//! | call | error, no attempts left | `DocumentsFailed` / `NotifyFailed` (admission e-mail: charge) |
//! | `Pipeline` | charge record accepted, documents answered | `Record` of the documents |
//! | `Record` | in the log | `WaitForApplied(index)` |
//! | `Record` | not proposed, saga current / not | `Sleep` then `Record` again / unrecorded |
//! | step ended unrecorded | – | `WaitForChange` |
//! | `WaitFor…` | waited | loop head |
//!
//! Payment and void are retried without limit (an unknown outcome is not a failure; the saga
//! deadline bounds payment); documents up to `documents_attempts_max`, e-mails up to
//! `notify_attempts_max`. Delays double from `retry_delay_min` up to `retry_delay_max`, each
//! stretched by a random factor in `[1, 2)` and cut at `retry_delay_max`.

use std::time::Duration;

use ledger_state_machine::{
    Applied, Command, InvestmentView, Outcome, RecordStep, RequestId, SagaStep, Status, StepResult,
    ERROR_TEXT_LEN_MAX, EXTERNAL_ID_LEN_MAX,
};

use super::api::{Call, CallError, Reply};

/// How a driver retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts at the documents partner before compensating.
    pub documents_attempts_max: usize,
    /// Attempts at an e-mail before giving up (recorded, nothing rolled back).
    pub notify_attempts_max: usize,
    /// First retry delay; doubles up to `retry_delay_max`.
    pub retry_delay_min: Duration,
    /// Longest retry delay.
    pub retry_delay_max: Duration,
}

/// What the shell does next for the saga.
#[derive(Debug)]
pub enum Action {
    /// Make the partner call (`attempt` counts from 1 within the operation); answer
    /// [`Last::Called`].
    Call {
        /// The call, with its idempotency key and payload.
        call: Call,
        /// Which attempt this is.
        attempt: usize,
    },
    /// Propose this `RecordStep` (a step's result, under the assignment's epoch); answer
    /// [`Last::Entered`] or [`Last::NotProposed`].
    Record(Command),
    /// Propose this `RecordStep` of a `Retrying` progress, best effort; answer
    /// [`Last::Progressed`] whatever became of it.
    Progress(Command),
    /// Wait this long; answer [`Last::Slept`].
    Sleep(Duration),
    /// Wait (bounded) until this replica has applied this log index, so the next step is read
    /// with our own result in it; answer [`Last::Waited`].
    WaitForApplied(u64),
    /// Wait (bounded) until [`StepDriver::moved_on`] says the saga left the step just worked
    /// on, re-reading it as entries apply; answer [`Last::Waited`].
    WaitForChange,
    /// Run both lanes to their ends at once (the charge's record, the documents call) and
    /// answer [`Last::Pipelined`]: the saga does not wait a log round trip between the two
    /// partner calls.
    Pipeline(Box<Pipeline>),
    /// The worker is done: the saga is not assigned here any more, or is done.
    Stop,
}

/// What became of the previous [`Action`].
#[derive(Debug)]
pub enum Last {
    /// Nothing yet: a new worker.
    Start,
    /// The partner's answer to [`Action::Call`].
    Called(Result<Reply, CallError>),
    /// [`Action::Record`]'s command is in the log.
    Entered {
        /// The entry that carried it.
        log_index: u64,
        /// The state machine's answer.
        applied: Applied,
    },
    /// [`Action::Record`]'s command was not proposed (no leader, timeout): it may be tried
    /// again.
    NotProposed,
    /// [`Action::Progress`] was tried.
    Progressed,
    /// [`Action::Sleep`] is over.
    Slept,
    /// [`Action::WaitForApplied`] or [`Action::WaitForChange`] is over.
    Waited,
    /// Both lanes of [`Action::Pipeline`] ended.
    Pipelined {
        /// The charge's record lane.
        charge: LaneEnd,
        /// The documents lane.
        documents: LaneEnd,
    },
}

/// The two lanes of [`Action::Pipeline`].
#[derive(Debug)]
pub struct Pipeline {
    /// Records the successful charge.
    pub charge: Lane,
    /// Generates the documents.
    pub documents: Lane,
}

/// One lane of a [`Pipeline`]: a sequence of actions (calls, records, progress, sleeps) the
/// shell runs alongside the other lane.
#[derive(Debug)]
pub struct Lane {
    ctx: Ctx,
    task: Task,
}

/// The next step of a [`Lane`].
#[derive(Debug)]
pub enum LaneStep {
    /// Perform this action (never a wait, a pipeline or a stop) and come back.
    Act(Action),
    /// The lane is over; hand this back in [`Last::Pipelined`].
    End(LaneEnd),
}

/// How a [`Lane`] ended, for [`StepDriver`] alone to read.
#[derive(Debug)]
pub struct LaneEnd(End);

impl Lane {
    /// The lane's next action, given the saga now and what became of the previous one.
    pub fn next_action(&mut self, view: Option<&InvestmentView>, last: Last) -> LaneStep {
        match self.task.next(&mut self.ctx, view, last) {
            Next::Act(action) => LaneStep::Act(action),
            Next::End(end) => LaneStep::End(LaneEnd(end)),
        }
    }
}

/// The driver of one saga worker. See the module's documentation.
#[derive(Debug)]
pub struct StepDriver {
    ctx: Ctx,
    state: State,
    /// The step being worked on, from the loop head until the next one.
    working: Option<Working>,
}

impl StepDriver {
    /// A driver for an executor on node `me`, its jitter drawn from `seed`.
    pub fn new(me: u64, policy: RetryPolicy, seed: u64) -> StepDriver {
        StepDriver {
            ctx: Ctx {
                me,
                policy,
                rng: SplitMix64(seed),
            },
            state: State::Head,
            working: None,
        }
    }

    /// The next action, given the investment as this replica shows it now (`None` if it does
    /// not know it) and what became of the previous action.
    pub fn next_action(&mut self, view: Option<&InvestmentView>, last: Last) -> Action {
        let mut last = last;
        loop {
            match self.advance(view, last) {
                Flow::Act(action) => return action,
                // A transition without I/O (a step's operation ended, the next begins): go on
                // with the same view.
                Flow::Again => last = Last::Start,
            }
        }
    }

    /// The step and epoch being worked on, for the shell's logs.
    pub fn working_on(&self) -> Option<(SagaStep, u64)> {
        self.working.map(|w| (w.step, w.epoch))
    }

    /// Whether the saga, as `view` shows it, left the step being worked on (another step,
    /// another assignee, another epoch, done): the end of [`Action::WaitForChange`].
    pub fn moved_on(&self, view: Option<&InvestmentView>) -> bool {
        self.working
            .is_none_or(|w| superseded(view, self.ctx.me, w.step, w.epoch))
    }

    fn advance(&mut self, view: Option<&InvestmentView>, last: Last) -> Flow {
        match std::mem::replace(&mut self.state, State::Stopped) {
            State::Stopped => Flow::Act(Action::Stop),
            State::Head => {
                let Some((view, step, epoch)) = assigned(view, self.ctx.me) else {
                    self.working = None;
                    return Flow::Act(Action::Stop);
                };
                self.working = Some(Working {
                    request_id: view.request_id,
                    step,
                    epoch,
                });
                match self.start(view, step, epoch) {
                    Some(stage) => {
                        self.state = State::Stage(stage);
                        Flow::Again
                    }
                    None => self.finish(None),
                }
            }
            State::Waiting => {
                expect(matches!(last, Last::Waited), &last);
                self.state = State::Head;
                Flow::Again
            }
            State::Stage(stage) => self.work(stage, view, last),
        }
    }

    /// The first operation of `step`, with the payloads taken from `view` once: every retry
    /// sends the same payload under the same key.
    fn start(&self, view: &InvestmentView, step: SagaStep, epoch: u64) -> Option<Stage> {
        let policy = self.ctx.policy;
        let id = view.request_id;
        let attempts = |call, attempts_max| Attempts::new(id, step, epoch, call, attempts_max);
        let stage = match step {
            SagaStep::Payment => {
                let charge = charge_call(view);
                let documents = documents_call(view);
                if view.admitted_at.is_some() {
                    Stage::Announce {
                        attempts: attempts(admission_email(view), Some(policy.notify_attempts_max)),
                        charge,
                        documents,
                    }
                } else {
                    Stage::Charge {
                        attempts: attempts(charge, None),
                        documents,
                    }
                }
            }
            SagaStep::Documents => Stage::Documents(attempts(
                documents_call(view),
                Some(policy.documents_attempts_max),
            )),
            SagaStep::Void => Stage::Void(attempts(
                Call::Void {
                    key: payment_key(view.request_id),
                },
                None,
            )),
            SagaStep::Notify => Stage::Notify(attempts(
                outcome_email(view),
                Some(policy.notify_attempts_max),
            )),
            // Not reached: a done saga is not worked on (`assigned`).
            SagaStep::Done => return None,
        };
        Some(stage)
    }

    fn work(&mut self, stage: Stage, view: Option<&InvestmentView>, last: Last) -> Flow {
        let Some(working) = self.working else {
            // Not reached: a stage exists only while a step is worked on.
            self.state = State::Head;
            return Flow::Again;
        };
        let (id, epoch) = (working.request_id, working.epoch);
        match stage {
            Stage::Announce {
                mut attempts,
                charge,
                documents,
            } => match attempts.next(&mut self.ctx, view, last) {
                Next::Act(action) => {
                    self.state = State::Stage(Stage::Announce {
                        attempts,
                        charge,
                        documents,
                    });
                    Flow::Act(action)
                }
                // Sent, given up (logged; the outcome e-mail follows anyway) or superseded (the
                // charge's own check sees it): the charge comes next.
                Next::End(end) => {
                    if let Attempted::Exhausted(error) = &end {
                        tracing::warn!(request_id = %id, %error, "the waitlist admission e-mail was not sent");
                    }
                    self.state = State::Stage(Stage::Charge {
                        attempts: Attempts::new(id, SagaStep::Payment, epoch, charge, None),
                        documents,
                    });
                    Flow::Again
                }
            },
            Stage::Charge {
                mut attempts,
                documents,
            } => match attempts.next(&mut self.ctx, view, last) {
                Next::Act(action) => {
                    self.state = State::Stage(Stage::Charge {
                        attempts,
                        documents,
                    });
                    Flow::Act(action)
                }
                Next::End(Attempted::Done(Reply::Charge(charge))) => {
                    if charge.status == "succeeded" {
                        let result = StepResult::PaymentSucceeded {
                            payment_id: bounded(&charge.payment_id, EXTERNAL_ID_LEN_MAX),
                        };
                        let record = Recording::new(
                            SagaStep::Payment,
                            epoch,
                            record_step(id, self.ctx.me, epoch, result),
                        );
                        let documents = Attempts::new(
                            id,
                            SagaStep::Documents,
                            epoch,
                            documents,
                            Some(self.ctx.policy.documents_attempts_max),
                        );
                        self.state = State::Stage(Stage::Pipelined);
                        Flow::Act(Action::Pipeline(Box::new(Pipeline {
                            charge: self.lane(Task::Record(record)),
                            documents: self.lane(Task::Attempts(documents)),
                        })))
                    } else {
                        let reason = "declined by the payment partner".into();
                        self.record(SagaStep::Payment, StepResult::PaymentDeclined { reason })
                    }
                }
                Next::End(end) => {
                    expect(!matches!(end, Attempted::Done(_)), &end);
                    self.finish(None)
                }
            },
            Stage::Documents(mut attempts) => match attempts.next(&mut self.ctx, view, last) {
                Next::Act(action) => {
                    self.state = State::Stage(Stage::Documents(attempts));
                    Flow::Act(action)
                }
                Next::End(end) => match documents_result(end) {
                    Some(result) => self.record(SagaStep::Documents, result),
                    None => self.finish(None),
                },
            },
            Stage::Void(mut attempts) => match attempts.next(&mut self.ctx, view, last) {
                Next::Act(action) => {
                    self.state = State::Stage(Stage::Void(attempts));
                    Flow::Act(action)
                }
                Next::End(Attempted::Done(Reply::Void(refunded))) => {
                    self.record(SagaStep::Void, StepResult::PaymentVoided { refunded })
                }
                Next::End(end) => {
                    expect(!matches!(end, Attempted::Done(_)), &end);
                    self.finish(None)
                }
            },
            Stage::Notify(mut attempts) => match attempts.next(&mut self.ctx, view, last) {
                Next::Act(action) => {
                    self.state = State::Stage(Stage::Notify(attempts));
                    Flow::Act(action)
                }
                Next::End(Attempted::Done(Reply::Email(message_id))) => {
                    let message_id = bounded(&message_id, EXTERNAL_ID_LEN_MAX);
                    self.record(SagaStep::Notify, StepResult::NotifySent { message_id })
                }
                Next::End(Attempted::Exhausted(error)) => {
                    let error = bounded(&error, ERROR_TEXT_LEN_MAX);
                    self.record(SagaStep::Notify, StepResult::NotifyFailed { error })
                }
                Next::End(end) => {
                    expect(!matches!(end, Attempted::Done(_)), &end);
                    self.finish(None)
                }
            },
            Stage::Record(mut recording) => match recording.next(&mut self.ctx, view, last) {
                Next::Act(action) => {
                    self.state = State::Stage(Stage::Record(recording));
                    Flow::Act(action)
                }
                Next::End(recorded) => self.finish(recorded),
            },
            Stage::Pipelined => {
                let Last::Pipelined { charge, documents } = last else {
                    expect(false, &last);
                    self.state = State::Head;
                    return Flow::Again;
                };
                let charge = match charge.0 {
                    End::Recorded(recorded) => recorded,
                    End::Attempted(_) => None,
                };
                let documents = match documents.0 {
                    End::Attempted(end) => documents_result(end),
                    End::Recorded(_) => None,
                };
                match (charge, documents) {
                    // The documents' result follows the charge's in the log, and only if the
                    // charge's counted: otherwise the saga is elsewhere and it would be ignored.
                    (Some(charge), Some(result)) if charge.accepted => {
                        let command = record_step(id, self.ctx.me, epoch, result);
                        let recording = Recording::new(SagaStep::Documents, epoch, command);
                        self.state = State::Stage(Stage::RecordAfterCharge { recording, charge });
                        Flow::Again
                    }
                    (charge, _) => self.finish(charge),
                }
            }
            Stage::RecordAfterCharge {
                mut recording,
                charge,
            } => match recording.next(&mut self.ctx, view, last) {
                Next::Act(action) => {
                    self.state = State::Stage(Stage::RecordAfterCharge { recording, charge });
                    Flow::Act(action)
                }
                Next::End(recorded) => self.finish(recorded.or(Some(charge))),
            },
        }
    }

    /// Goes on to record `result` of `step`.
    fn record(&mut self, step: SagaStep, result: StepResult) -> Flow {
        let Some(working) = self.working else {
            self.state = State::Head;
            return Flow::Again;
        };
        let command = record_step(working.request_id, self.ctx.me, working.epoch, result);
        self.state = State::Stage(Stage::Record(Recording::new(step, working.epoch, command)));
        Flow::Again
    }

    /// Ends the step: wait for our own result to apply here (the next step is read from this
    /// replica), or for the saga to move on without one.
    fn finish(&mut self, recorded: Option<Recorded>) -> Flow {
        self.state = State::Waiting;
        Flow::Act(match recorded {
            Some(recorded) => Action::WaitForApplied(recorded.log_index),
            None => Action::WaitForChange,
        })
    }

    fn lane(&mut self, task: Task) -> Lane {
        Lane {
            ctx: Ctx {
                me: self.ctx.me,
                policy: self.ctx.policy,
                rng: SplitMix64(self.ctx.rng.next_u64()),
            },
            task,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Working {
    request_id: RequestId,
    step: SagaStep,
    epoch: u64,
}

/// What every operation needs besides its own state.
#[derive(Debug)]
struct Ctx {
    me: u64,
    policy: RetryPolicy,
    rng: SplitMix64,
}

// One per worker, held in place: boxing the stage would allocate on every transition to save a
// few hundred bytes while the worker waits.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum State {
    /// The worker's loop head: the next view names the step to work on, or ends the worker.
    Head,
    /// Working on a step.
    Stage(Stage),
    /// After [`Action::WaitForApplied`] or [`Action::WaitForChange`].
    Waiting,
    /// After [`Action::Stop`].
    Stopped,
}

#[derive(Debug)]
enum Stage {
    /// PAYMENT of an investment admitted from the waitlist: the admission e-mail first.
    Announce {
        attempts: Attempts,
        charge: Call,
        documents: Call,
    },
    Charge {
        attempts: Attempts,
        documents: Call,
    },
    Documents(Attempts),
    Void(Attempts),
    Notify(Attempts),
    Record(Recording),
    /// Waiting for [`Last::Pipelined`].
    Pipelined,
    /// The documents' result, recorded after the charge's accepted record.
    RecordAfterCharge {
        recording: Recording,
        charge: Recorded,
    },
}

enum Flow {
    Act(Action),
    Again,
}

enum Next<T> {
    Act(Action),
    End(T),
}

/// A lane's sequence of actions.
#[derive(Debug)]
enum Task {
    Attempts(Attempts),
    Record(Recording),
}

#[derive(Debug)]
enum End {
    Attempted(Attempted),
    Recorded(Option<Recorded>),
}

impl Task {
    fn next(&mut self, ctx: &mut Ctx, view: Option<&InvestmentView>, last: Last) -> Next<End> {
        match self {
            Task::Attempts(attempts) => match attempts.next(ctx, view, last) {
                Next::Act(action) => Next::Act(action),
                Next::End(end) => Next::End(End::Attempted(end)),
            },
            Task::Record(recording) => match recording.next(ctx, view, last) {
                Next::Act(action) => Next::Act(action),
                Next::End(end) => Next::End(End::Recorded(end)),
            },
        }
    }
}

/// How an operation's attempts ended.
#[derive(Debug)]
enum Attempted {
    Done(Reply),
    Exhausted(String),
    Superseded,
}

/// A step result that reached the log.
#[derive(Clone, Copy, Debug)]
struct Recorded {
    log_index: u64,
    /// Whether the state machine took it (not ignored as stale or out of step).
    accepted: bool,
}

/// One partner operation, attempted until it answers, `attempts_max` is reached, or the saga
/// moves on. The saga is checked before every attempt.
#[derive(Debug)]
struct Attempts {
    request_id: RequestId,
    step: SagaStep,
    epoch: u64,
    call: Call,
    attempts_max: Option<usize>,
    attempts: usize,
    backoff: Backoff,
    phase: AttemptPhase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AttemptPhase {
    Ready,
    Calling,
    Progressing,
    Sleeping,
}

impl Attempts {
    fn new(
        request_id: RequestId,
        step: SagaStep,
        epoch: u64,
        call: Call,
        attempts_max: Option<usize>,
    ) -> Attempts {
        Attempts {
            request_id,
            step,
            epoch,
            call,
            attempts_max,
            attempts: 0,
            backoff: Backoff::default(),
            phase: AttemptPhase::Ready,
        }
    }

    fn next(
        &mut self,
        ctx: &mut Ctx,
        view: Option<&InvestmentView>,
        last: Last,
    ) -> Next<Attempted> {
        match (self.phase, last) {
            (AttemptPhase::Ready, _) | (AttemptPhase::Sleeping, Last::Slept) => {
                self.try_call(ctx, view)
            }
            (AttemptPhase::Calling, Last::Called(Ok(reply))) => Next::End(Attempted::Done(reply)),
            // The key was voided: compensation runs; this step is over.
            (AttemptPhase::Calling, Last::Called(Err(CallError::Voided))) => {
                Next::End(Attempted::Superseded)
            }
            (AttemptPhase::Calling, Last::Called(Err(error))) => {
                let error = error.to_string();
                if self.attempts_max.is_some_and(|max| self.attempts >= max) {
                    return Next::End(Attempted::Exhausted(error));
                }
                if self.attempts.is_power_of_two() {
                    // Progress for operators, at exponentially spaced attempts.
                    self.phase = AttemptPhase::Progressing;
                    let progress = StepResult::Retrying {
                        step: self.step,
                        attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
                        error: bounded(&error, ERROR_TEXT_LEN_MAX),
                    };
                    let command = record_step(self.request_id, ctx.me, self.epoch, progress);
                    return Next::Act(Action::Progress(command));
                }
                self.sleep(ctx)
            }
            (AttemptPhase::Progressing, Last::Progressed) => self.sleep(ctx),
            (_, last) => {
                // A shell that answers out of turn: check the saga and call again, which the
                // idempotency key makes harmless.
                expect(false, &last);
                self.try_call(ctx, view)
            }
        }
    }

    fn try_call(&mut self, ctx: &Ctx, view: Option<&InvestmentView>) -> Next<Attempted> {
        if superseded(view, ctx.me, self.step, self.epoch) {
            return Next::End(Attempted::Superseded);
        }
        self.attempts += 1;
        self.phase = AttemptPhase::Calling;
        Next::Act(Action::Call {
            call: self.call.clone(),
            attempt: self.attempts,
        })
    }

    fn sleep(&mut self, ctx: &mut Ctx) -> Next<Attempted> {
        self.phase = AttemptPhase::Sleeping;
        Next::Act(Action::Sleep(self.backoff.next(&ctx.policy, &mut ctx.rng)))
    }
}

/// A step's result, proposed until it is in the log or the saga moved on without it.
#[derive(Debug)]
struct Recording {
    step: SagaStep,
    epoch: u64,
    command: Command,
    backoff: Backoff,
    proposing: bool,
}

impl Recording {
    fn new(step: SagaStep, epoch: u64, command: Command) -> Recording {
        Recording {
            step,
            epoch,
            command,
            backoff: Backoff::default(),
            proposing: false,
        }
    }

    fn next(
        &mut self,
        ctx: &mut Ctx,
        view: Option<&InvestmentView>,
        last: Last,
    ) -> Next<Option<Recorded>> {
        if !self.proposing {
            expect(matches!(last, Last::Start | Last::Slept), &last);
            self.proposing = true;
            return Next::Act(Action::Record(self.command.clone()));
        }
        match last {
            Last::Entered { log_index, applied } => Next::End(Some(Recorded {
                log_index,
                accepted: accepted(&applied),
            })),
            Last::NotProposed => {
                if superseded(view, ctx.me, self.step, self.epoch) {
                    return Next::End(None);
                }
                self.proposing = false;
                Next::Act(Action::Sleep(self.backoff.next(&ctx.policy, &mut ctx.rng)))
            }
            last => {
                expect(false, &last);
                Next::Act(Action::Record(self.command.clone()))
            }
        }
    }
}

/// Whether the state machine took a step result (an ignored or refused one moved nothing).
fn accepted(applied: &Applied) -> bool {
    matches!(applied, Ok(outcome) if !matches!(outcome, Outcome::StepIgnored(_)))
}

/// The documents operation's end as a step result: `None` when superseded.
fn documents_result(end: Attempted) -> Option<StepResult> {
    match end {
        Attempted::Done(Reply::Documents(document_id)) => Some(StepResult::DocumentsGenerated {
            document_id: bounded(&document_id, EXTERNAL_ID_LEN_MAX),
        }),
        Attempted::Exhausted(error) => Some(StepResult::DocumentsFailed {
            error: bounded(&error, ERROR_TEXT_LEN_MAX),
        }),
        Attempted::Superseded => None,
        Attempted::Done(reply) => {
            expect(false, &reply);
            None
        }
    }
}

/// A broken protocol between the driver and its shell: loud in tests and debug builds; in
/// release the driver recovers by re-reading the saga, which every step tolerates.
fn expect(ok: bool, got: &dyn std::fmt::Debug) {
    debug_assert!(ok, "the step driver did not expect {got:?}");
}

/// The saga as this executor may act on it: assigned here and not done.
fn assigned(view: Option<&InvestmentView>, me: u64) -> Option<(&InvestmentView, SagaStep, u64)> {
    let view = view?;
    let saga = view.saga.as_ref()?;
    (saga.assignee == Some(me) && saga.step != SagaStep::Done)
        .then_some((view, saga.step, saga.epoch))
}

/// Whether the saga left `step` (or this executor's `epoch`). Documents may start while the
/// charge's result is still on its way to the log, so PAYMENT does not supersede them.
fn superseded(view: Option<&InvestmentView>, me: u64, step: SagaStep, epoch: u64) -> bool {
    let current =
        |s: SagaStep| s == step || (step == SagaStep::Documents && s == SagaStep::Payment);
    !matches!(assigned(view, me), Some((_, s, e)) if current(s) && e == epoch)
}

fn record_step(request_id: RequestId, executor: u64, epoch: u64, result: StepResult) -> Command {
    Command::RecordStep(RecordStep {
        request_id,
        executor,
        epoch,
        result,
    })
}

/// Exponential delays with jitter: the base doubles from `retry_delay_min` up to
/// `retry_delay_max`; each delay is the base times a random factor in `[1, 2)`, cut at
/// `retry_delay_max` (the longest delay, as configured).
#[derive(Debug, Default)]
struct Backoff {
    base: Option<Duration>,
}

impl Backoff {
    fn next(&mut self, policy: &RetryPolicy, rng: &mut SplitMix64) -> Duration {
        let base = match self.base {
            None => policy.retry_delay_min,
            Some(base) => base.saturating_mul(2),
        }
        .min(policy.retry_delay_max);
        self.base = Some(base);
        let stretched = Duration::try_from_secs_f64(base.as_secs_f64() * (1.0 + rng.unit()))
            .unwrap_or(policy.retry_delay_max);
        stretched.min(policy.retry_delay_max)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, seedable, and the same on every platform and
/// version, so a seed means the same delays wherever it is replayed.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn payment_key(id: RequestId) -> String {
    format!("{id}:payment")
}

fn charge_call(view: &InvestmentView) -> Call {
    Call::Charge {
        key: payment_key(view.request_id),
        user_id: view.user_id.clone(),
        amount: view.amount,
    }
}

fn documents_call(view: &InvestmentView) -> Call {
    let id = view.request_id;
    Call::Documents {
        key: format!("{id}:documents"),
        request_id: id.to_string(),
        deal_id: view.deal_id.clone(),
        user_id: view.user_id.clone(),
        amount: view.amount,
    }
}

/// Tells an investor admitted from the waitlist, before charging them. Under its own key, so
/// a retry, a restart or another executor sends the same message once.
fn admission_email(view: &InvestmentView) -> Call {
    let id = view.request_id;
    Call::Email {
        key: format!("{id}:waitlist-admitted"),
        to: recipient(view),
        subject: format!("A seat in {} is yours", view.deal_id),
        body: format!(
            "A seat freed in {}: your waitlisted request {} for {} is admitted. We are taking \
             the payment now; you will hear from us again once it is settled.",
            view.deal_id, id, view.amount
        ),
    }
}

/// The outcome e-mail: deterministic for a given investment, so a retry sends the same payload
/// under the same key.
fn outcome_email(view: &InvestmentView) -> Call {
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
    Call::Email {
        key: format!("{}:notify", view.request_id),
        to: recipient(view),
        subject,
        body,
    }
}

fn recipient(view: &InvestmentView) -> String {
    if view.user_id.contains('@') {
        view.user_id.clone()
    } else {
        format!("{}@investors.invalid", view.user_id)
    }
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

#[cfg(test)]
mod tests {
    use ledger_state_machine::{CommandError, IgnoreReason, Saga};

    use super::*;
    use crate::saga::api::Charge;

    const ME: u64 = 2;
    const OTHER: u64 = 3;
    const EPOCH: u64 = 4;
    const SEED: u64 = 0x5eed;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            documents_attempts_max: 5,
            notify_attempts_max: 6,
            retry_delay_min: Duration::from_millis(100),
            retry_delay_max: Duration::from_secs(3),
        }
    }

    fn id() -> RequestId {
        RequestId::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0).unwrap()
    }

    /// A PENDING investment whose saga is at `step`, assigned here under `EPOCH`.
    fn at(step: SagaStep) -> InvestmentView {
        InvestmentView {
            request_id: id(),
            deal_id: "deal-1".into(),
            user_id: "ann".into(),
            amount: "1500.00".parse().unwrap(),
            status: Status::Pending,
            reject_reason: None,
            log_index: 7,
            offset: 0,
            decided_by: Some(1),
            decided_at_ms: 1_000,
            saga: Some(Saga {
                step,
                assignee: Some(ME),
                epoch: EPOCH,
                deadline_ms: 301_000,
                attempts: 0,
                last_error: None,
                cancel_cause: None,
                payment_id: None,
                refunded: false,
                document_id: None,
                message_id: None,
                notify_failed: false,
                updated_at_ms: 1_000,
                cancelled_at: None,
                history: Vec::new(),
                history_dropped: 0,
            }),
            waitlist_requested: false,
            waitlist_ttl_ms: None,
            waitlisted: false,
            waitlist_position: None,
            admitted_at: None,
            waitlist_ended_at: None,
            receipt: None,
        }
    }

    fn with(mut view: InvestmentView, change: impl FnOnce(&mut Saga)) -> InvestmentView {
        change(view.saga.as_mut().unwrap());
        view
    }

    fn driver() -> StepDriver {
        StepDriver::new(ME, policy(), SEED)
    }

    fn unknown() -> Last {
        Last::Called(Err(CallError::Unknown("unexpected status 503".into())))
    }

    fn recorded(log_index: u64) -> Last {
        Last::Entered {
            log_index,
            applied: Ok(Outcome::StepRecorded {
                status: Status::Pending,
                step: SagaStep::Documents,
            }),
        }
    }

    fn step_command(result: StepResult) -> Command {
        record_step(id(), ME, EPOCH, result)
    }

    fn key(suffix: &str) -> String {
        format!("{}:{suffix}", id())
    }

    #[track_caller]
    fn call(action: Action) -> (Call, usize) {
        match action {
            Action::Call { call, attempt } => (call, attempt),
            other => panic!("expected a call, got {other:?}"),
        }
    }

    #[track_caller]
    fn sleep(action: Action) -> Duration {
        match action {
            Action::Sleep(delay) => delay,
            other => panic!("expected a sleep, got {other:?}"),
        }
    }

    #[track_caller]
    fn lane_act(step: LaneStep) -> Action {
        match step {
            LaneStep::Act(action) => action,
            LaneStep::End(end) => panic!("expected an action, the lane ended: {end:?}"),
        }
    }

    #[track_caller]
    fn lane_end(step: LaneStep) -> LaneEnd {
        match step {
            LaneStep::End(end) => end,
            LaneStep::Act(action) => panic!("expected the lane's end, got {action:?}"),
        }
    }

    /// Fails the current operation once with an unknown outcome and follows the driver to its
    /// next call (through any progress and sleep); the actions it took on the way.
    fn fail_once(d: &mut StepDriver, view: &InvestmentView) -> Vec<Action> {
        let mut seen = Vec::new();
        let mut last = unknown();
        loop {
            let action = d.next_action(Some(view), last);
            last = match &action {
                Action::Progress(_) => Last::Progressed,
                Action::Sleep(_) => Last::Slept,
                _ => {
                    seen.push(action);
                    return seen;
                }
            };
            seen.push(action);
        }
    }

    #[test]
    fn a_fresh_payment_charges_under_the_payment_key() {
        let mut d = driver();
        let (charge, attempt) = call(d.next_action(Some(&at(SagaStep::Payment)), Last::Start));
        assert_eq!(
            charge,
            Call::Charge {
                key: key("payment"),
                user_id: "ann".into(),
                amount: "1500.00".parse().unwrap(),
            }
        );
        assert_eq!(attempt, 1);
        assert_eq!(d.working_on(), Some((SagaStep::Payment, EPOCH)));
    }

    #[test]
    fn each_step_calls_its_partner_with_its_key() {
        let confirmed = InvestmentView {
            status: Status::Confirmed,
            ..at(SagaStep::Notify)
        };
        let cancelled = InvestmentView {
            status: Status::Cancelled,
            ..at(SagaStep::Notify)
        };
        let cases = [
            (
                at(SagaStep::Documents),
                Call::Documents {
                    key: key("documents"),
                    request_id: id().to_string(),
                    deal_id: "deal-1".into(),
                    user_id: "ann".into(),
                    amount: "1500.00".parse().unwrap(),
                },
            ),
            (
                at(SagaStep::Void),
                Call::Void {
                    key: key("payment"),
                },
            ),
            (
                confirmed,
                Call::Email {
                    key: key("notify"),
                    to: "ann@investors.invalid".into(),
                    subject: "Your investment in deal-1 is confirmed".into(),
                    body: format!(
                        "Your investment of 1500.00 in deal-1 (request {}) is confirmed: payment \
                         received and documents generated.",
                        id()
                    ),
                },
            ),
            (
                InvestmentView {
                    user_id: "bob@example.com".into(),
                    ..cancelled
                },
                Call::Email {
                    key: key("notify"),
                    to: "bob@example.com".into(),
                    subject: "Your investment in deal-1 was cancelled".into(),
                    body: format!(
                        "Your investment of 1500.00 in deal-1 (request {}) was cancelled; nothing \
                         was charged, or it was refunded in full.",
                        id()
                    ),
                },
            ),
        ];
        for (view, expected) in cases {
            let (got, _) = call(driver().next_action(Some(&view), Last::Start));
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_successful_charge_is_recorded_while_the_documents_are_generated() {
        let view = at(SagaStep::Payment);
        let mut d = driver();
        call(d.next_action(Some(&view), Last::Start));
        let charged = Last::Called(Ok(Reply::Charge(Charge {
            payment_id: "pay_1".into(),
            status: "succeeded".into(),
        })));
        let Action::Pipeline(pipeline) = d.next_action(Some(&view), charged) else {
            panic!("expected the pipeline");
        };
        let Pipeline {
            mut charge,
            mut documents,
        } = *pipeline;
        let record = lane_act(charge.next_action(Some(&view), Last::Start));
        let payment_id = "pay_1".into();
        assert!(
            matches!(&record, Action::Record(c) if *c == step_command(StepResult::PaymentSucceeded { payment_id })),
            "{record:?}"
        );
        let (documents_call, _) = call(lane_act(documents.next_action(Some(&view), Last::Start)));
        assert_eq!(documents_call.key(), key("documents"));

        // The documents' result follows the charge's once that is in the log and counted.
        let charge = lane_end(charge.next_action(Some(&view), recorded(10)));
        let generated = Last::Called(Ok(Reply::Documents("doc_1".into())));
        let documents = lane_end(documents.next_action(Some(&view), generated));
        let action = d.next_action(Some(&view), Last::Pipelined { charge, documents });
        let document_id = "doc_1".into();
        assert!(
            matches!(&action, Action::Record(c) if *c == step_command(StepResult::DocumentsGenerated { document_id })),
            "{action:?}"
        );
        let action = d.next_action(Some(&view), recorded(11));
        assert!(matches!(action, Action::WaitForApplied(11)), "{action:?}");

        // Then the next step is read from the replica.
        let notify = InvestmentView {
            status: Status::Confirmed,
            ..at(SagaStep::Notify)
        };
        let (next, _) = call(d.next_action(Some(&notify), Last::Waited));
        assert_eq!(next.key(), key("notify"));
    }

    #[test]
    fn payment_does_not_supersede_the_documents_lane_but_other_steps_do() {
        let view = at(SagaStep::Payment);
        let cases = [
            (SagaStep::Payment, true),
            (SagaStep::Documents, true),
            (SagaStep::Void, false),
            (SagaStep::Notify, false),
            (SagaStep::Done, false),
        ];
        for (step, goes_on) in cases {
            let mut d = driver();
            call(d.next_action(Some(&view), Last::Start));
            let charged = Last::Called(Ok(Reply::Charge(Charge {
                payment_id: "pay_1".into(),
                status: "succeeded".into(),
            })));
            let Action::Pipeline(mut pipeline) = d.next_action(Some(&view), charged) else {
                panic!("expected the pipeline");
            };
            let now = with(view.clone(), |s| s.step = step);
            let next = pipeline.documents.next_action(Some(&now), Last::Start);
            assert_eq!(
                matches!(next, LaneStep::Act(Action::Call { .. })),
                goes_on,
                "{step:?}: {next:?}"
            );
        }
    }

    #[test]
    fn a_charge_record_not_counted_drops_the_documents_result() {
        let view = at(SagaStep::Payment);
        let ignored = |log_index| Last::Entered {
            log_index,
            applied: Ok(Outcome::StepIgnored(IgnoreReason::StaleEpoch)),
        };
        let refused = |log_index| Last::Entered {
            log_index,
            applied: Err(CommandError::DealNotFound {
                deal_id: "deal-1".into(),
            }),
        };
        for (charge_end, expected) in [
            (ignored(10), Some(10)),
            (refused(12), Some(12)),
            (Last::NotProposed, None),
        ] {
            let mut d = driver();
            call(d.next_action(Some(&view), Last::Start));
            let charged = Last::Called(Ok(Reply::Charge(Charge {
                payment_id: "pay_1".into(),
                status: "succeeded".into(),
            })));
            let Action::Pipeline(pipeline) = d.next_action(Some(&view), charged) else {
                panic!("expected the pipeline");
            };
            let Pipeline {
                mut charge,
                mut documents,
            } = *pipeline;
            lane_act(charge.next_action(Some(&view), Last::Start));
            lane_act(documents.next_action(Some(&view), Last::Start));
            // Not proposed, and meanwhile the saga was reassigned: the record gives up.
            let moved = with(view.clone(), |s| s.epoch += 1);
            let charge = lane_end(charge.next_action(Some(&moved), charge_end));
            let generated = Last::Called(Ok(Reply::Documents("doc_1".into())));
            let documents = lane_end(documents.next_action(Some(&view), generated));
            let action = d.next_action(Some(&moved), Last::Pipelined { charge, documents });
            match expected {
                Some(index) => assert!(
                    matches!(action, Action::WaitForApplied(i) if i == index),
                    "{action:?}"
                ),
                None => assert!(matches!(action, Action::WaitForChange), "{action:?}"),
            }
        }
    }

    #[test]
    fn a_declined_charge_is_recorded_as_declined() {
        let view = at(SagaStep::Payment);
        let mut d = driver();
        call(d.next_action(Some(&view), Last::Start));
        let declined = Last::Called(Ok(Reply::Charge(Charge {
            payment_id: "pay_2".into(),
            status: "declined".into(),
        })));
        let action = d.next_action(Some(&view), declined);
        let reason = "declined by the payment partner".into();
        assert!(
            matches!(&action, Action::Record(c) if *c == step_command(StepResult::PaymentDeclined { reason })),
            "{action:?}"
        );
        assert!(matches!(
            d.next_action(Some(&view), recorded(9)),
            Action::WaitForApplied(9)
        ));
    }

    #[test]
    fn an_unknown_outcome_waits_then_calls_again_with_the_same_key() {
        let view = at(SagaStep::Payment);
        let mut d = driver();
        let (first, _) = call(d.next_action(Some(&view), Last::Start));
        let actions = fail_once(&mut d, &view);
        let [Action::Progress(progress), Action::Sleep(delay), Action::Call { call, attempt }] =
            actions.as_slice()
        else {
            panic!("expected progress, a sleep and a call: {actions:?}");
        };
        let error = "outcome unknown: unexpected status 503".into();
        assert_eq!(
            *progress,
            step_command(StepResult::Retrying {
                step: SagaStep::Payment,
                attempts: 1,
                error
            })
        );
        assert!(*delay >= policy().retry_delay_min);
        assert_eq!((call, *attempt), (&first, 2));
    }

    #[test]
    fn progress_is_proposed_at_attempts_one_two_four_and_eight() {
        let view = at(SagaStep::Void);
        let mut d = driver();
        call(d.next_action(Some(&view), Last::Start));
        let mut progressed = Vec::new();
        for _ in 0..12 {
            for action in fail_once(&mut d, &view) {
                if let Action::Progress(Command::RecordStep(RecordStep {
                    result: StepResult::Retrying { attempts, .. },
                    ..
                })) = action
                {
                    progressed.push(attempts);
                }
            }
        }
        assert_eq!(progressed, [1, 2, 4, 8]);
    }

    #[test]
    fn exhausted_documents_and_e_mail_are_recorded_as_failures() {
        let long_error = "x".repeat(2 * ERROR_TEXT_LEN_MAX);
        let cases = [
            (SagaStep::Documents, policy().documents_attempts_max),
            (SagaStep::Notify, policy().notify_attempts_max),
        ];
        for (step, attempts_max) in cases {
            let view = at(step);
            let mut d = driver();
            let (first, _) = call(d.next_action(Some(&view), Last::Start));
            let mut calls = 1;
            let last = loop {
                let actions = fail_once(&mut d, &view);
                match actions.last() {
                    Some(Action::Call { call, .. }) => {
                        assert_eq!(*call, first);
                        calls += 1;
                    }
                    _ => break actions,
                }
            };
            assert_eq!(calls, attempts_max, "{step:?}");
            let error = bounded("outcome unknown: unexpected status 503", ERROR_TEXT_LEN_MAX);
            let expected = match step {
                SagaStep::Documents => StepResult::DocumentsFailed { error },
                _ => StepResult::NotifyFailed { error },
            };
            assert!(
                matches!(last.as_slice(), [Action::Record(c)] if *c == step_command(expected)),
                "{step:?}: {last:?}"
            );

            // A long error is cut to what the state machine takes.
            let mut d = StepDriver::new(
                ME,
                RetryPolicy {
                    documents_attempts_max: 1,
                    notify_attempts_max: 1,
                    ..policy()
                },
                SEED,
            );
            call(d.next_action(Some(&view), Last::Start));
            let failed = Last::Called(Err(CallError::Permanent(long_error.clone())));
            let Action::Record(Command::RecordStep(RecordStep { result, .. })) =
                d.next_action(Some(&view), failed)
            else {
                panic!("expected the failure recorded");
            };
            let (StepResult::DocumentsFailed { error } | StepResult::NotifyFailed { error }) =
                result
            else {
                panic!("{result:?}");
            };
            assert_eq!(error.len(), ERROR_TEXT_LEN_MAX);
        }
    }

    #[test]
    fn payment_and_void_retry_without_limit() {
        for step in [SagaStep::Payment, SagaStep::Void] {
            let view = at(step);
            let mut d = driver();
            call(d.next_action(Some(&view), Last::Start));
            for attempt in 2..=40 {
                let actions = fail_once(&mut d, &view);
                assert!(
                    matches!(actions.last(), Some(Action::Call { attempt: a, .. }) if *a == attempt),
                    "{step:?}: {actions:?}"
                );
            }
        }
    }

    #[test]
    fn a_voided_key_ends_the_step_until_the_saga_moves() {
        let view = at(SagaStep::Payment);
        let mut d = driver();
        call(d.next_action(Some(&view), Last::Start));
        let action = d.next_action(Some(&view), Last::Called(Err(CallError::Voided)));
        assert!(matches!(action, Action::WaitForChange), "{action:?}");
        assert!(!d.moved_on(Some(&view)));
        let voiding = with(view.clone(), |s| s.step = SagaStep::Void);
        assert!(d.moved_on(Some(&voiding)));
        let (next, _) = call(d.next_action(Some(&voiding), Last::Waited));
        assert!(matches!(next, Call::Void { .. }), "{next:?}");
    }

    #[test]
    fn a_saga_that_moved_on_ends_the_attempts_and_then_the_worker() {
        let view = at(SagaStep::Documents);
        let moves: [(&str, Option<InvestmentView>); 6] = [
            (
                "another step",
                Some(with(view.clone(), |s| s.step = SagaStep::Void)),
            ),
            (
                "another assignee",
                Some(with(view.clone(), |s| s.assignee = Some(OTHER))),
            ),
            (
                "no assignee",
                Some(with(view.clone(), |s| s.assignee = None)),
            ),
            (
                "another epoch",
                Some(with(view.clone(), |s| s.epoch = EPOCH + 1)),
            ),
            (
                "done",
                Some(with(view.clone(), |s| s.step = SagaStep::Done)),
            ),
            ("unknown here", None),
        ];
        for (name, moved) in moves {
            let mut d = driver();
            call(d.next_action(Some(&view), Last::Start));
            assert!(matches!(
                d.next_action(Some(&view), unknown()),
                Action::Progress(_)
            ));
            sleep(d.next_action(Some(&view), Last::Progressed));
            // The saga is checked before every attempt.
            let action = d.next_action(moved.as_ref(), Last::Slept);
            assert!(
                matches!(action, Action::WaitForChange),
                "{name}: {action:?}"
            );
            assert!(d.moved_on(moved.as_ref()), "{name}");
            // Still ours (another step, or reassigned here under a new epoch): worked on anew.
            let action = d.next_action(moved.as_ref(), Last::Waited);
            let ours = matches!(name, "another step" | "another epoch");
            assert_eq!(
                matches!(action, Action::Call { .. }),
                ours,
                "{name}: {action:?}"
            );
            assert_eq!(matches!(action, Action::Stop), !ours, "{name}: {action:?}");
        }
    }

    #[test]
    fn the_worker_stops_at_once_when_the_saga_is_not_its_own() {
        let view = at(SagaStep::Payment);
        let cases = [
            Some(with(view.clone(), |s| s.assignee = Some(OTHER))),
            Some(with(view.clone(), |s| s.step = SagaStep::Done)),
            Some(InvestmentView {
                saga: None,
                ..view.clone()
            }),
            None,
        ];
        for case in cases {
            let mut d = driver();
            assert!(matches!(
                d.next_action(case.as_ref(), Last::Start),
                Action::Stop
            ));
            assert!(matches!(
                d.next_action(Some(&view), Last::Start),
                Action::Stop
            ));
        }
    }

    #[test]
    fn a_record_is_proposed_again_until_it_is_in_the_log_or_the_saga_moved() {
        let view = at(SagaStep::Void);
        let mut d = driver();
        call(d.next_action(Some(&view), Last::Start));
        let record = d.next_action(Some(&view), Last::Called(Ok(Reply::Void(true))));
        let expected = step_command(StepResult::PaymentVoided { refunded: true });
        assert!(
            matches!(&record, Action::Record(c) if *c == expected),
            "{record:?}"
        );
        for _ in 0..3 {
            sleep(d.next_action(Some(&view), Last::NotProposed));
            let again = d.next_action(Some(&view), Last::Slept);
            assert!(
                matches!(&again, Action::Record(c) if *c == expected),
                "{again:?}"
            );
        }
        assert!(matches!(
            d.next_action(Some(&view), recorded(30)),
            Action::WaitForApplied(30)
        ));

        // Not proposed while the saga moved on: given up.
        let mut d = driver();
        call(d.next_action(Some(&view), Last::Start));
        d.next_action(Some(&view), Last::Called(Ok(Reply::Void(false))));
        let moved = with(view.clone(), |s| s.assignee = Some(OTHER));
        let action = d.next_action(Some(&moved), Last::NotProposed);
        assert!(matches!(action, Action::WaitForChange), "{action:?}");
    }

    #[test]
    fn a_waitlist_admission_is_announced_before_the_charge() {
        let view = InvestmentView {
            admitted_at: Some((40, 1)),
            ..at(SagaStep::Payment)
        };
        let (announce, _) = call(driver().next_action(Some(&view), Last::Start));
        assert_eq!(
            announce,
            Call::Email {
                key: key("waitlist-admitted"),
                to: "ann@investors.invalid".into(),
                subject: "A seat in deal-1 is yours".into(),
                body: format!(
                    "A seat freed in deal-1: your waitlisted request {} for 1500.00 is admitted. \
                     We are taking the payment now; you will hear from us again once it is \
                     settled.",
                    id()
                ),
            }
        );

        // Sent: the charge follows.
        let mut d = driver();
        call(d.next_action(Some(&view), Last::Start));
        let sent = Last::Called(Ok(Reply::Email("msg_1".into())));
        let (charge, attempt) = call(d.next_action(Some(&view), sent));
        assert_eq!((charge.key(), attempt), (key("payment").as_str(), 1));

        // Failing: bounded attempts (progress under PAYMENT), then the charge anyway.
        let mut d = driver();
        call(d.next_action(Some(&view), Last::Start));
        let mut announced = 1;
        let charge = loop {
            let actions = fail_once(&mut d, &view);
            if let Some(Action::Progress(Command::RecordStep(RecordStep {
                result: StepResult::Retrying { step, .. },
                ..
            }))) = actions.first()
            {
                assert_eq!(*step, SagaStep::Payment);
            }
            match actions.last() {
                Some(Action::Call { call: c, .. }) if *c == announce => announced += 1,
                Some(Action::Call { call: c, .. }) => break c.clone(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(announced, policy().notify_attempts_max);
        assert_eq!(charge.key(), key("payment"));
    }

    #[test]
    fn partner_ids_are_cut_to_what_the_state_machine_takes() {
        let view = at(SagaStep::Notify);
        let mut d = driver();
        call(d.next_action(Some(&view), Last::Start));
        let id = format!("msg\u{7}{}", "é".repeat(EXTERNAL_ID_LEN_MAX));
        let Action::Record(Command::RecordStep(RecordStep {
            result: StepResult::NotifySent { message_id },
            ..
        })) = d.next_action(Some(&view), Last::Called(Ok(Reply::Email(id))))
        else {
            panic!("expected the message id recorded");
        };
        assert!(message_id.starts_with("msg é"), "{message_id}");
        assert!(message_id.len() <= EXTERNAL_ID_LEN_MAX);
        assert!(message_id.len() > EXTERNAL_ID_LEN_MAX - 2);
        assert_eq!(bounded("", 10), "?");
    }

    #[test]
    fn delays_grow_stay_within_bounds_and_replay_from_the_seed() {
        let delays = |seed| {
            let mut rng = SplitMix64(seed);
            let mut backoff = Backoff::default();
            (0..12)
                .map(|_| backoff.next(&policy(), &mut rng))
                .collect::<Vec<_>>()
        };
        let first = delays(SEED);
        let (min, max) = (policy().retry_delay_min, policy().retry_delay_max);
        for (n, delay) in first.iter().enumerate() {
            // The base doubles from the minimum; jitter stretches it by less than twice.
            let base = min.saturating_mul(1 << n).min(max);
            assert!(base <= *delay && *delay <= max, "{n}: {delay:?}");
            assert!(*delay < base * 2 || *delay == max, "{n}: {delay:?}");
        }
        assert!(first[0] < first[3] && first[3] < first[5], "{first:?}");
        assert_eq!(*first.last().unwrap(), max);
        assert_eq!(first, delays(SEED));
        assert_ne!(first, delays(SEED + 1));

        // The driver's own sleeps replay from its seed too.
        let sleeps = |seed| {
            let view = at(SagaStep::Payment);
            let mut d = StepDriver::new(ME, policy(), seed);
            call(d.next_action(Some(&view), Last::Start));
            (0..8)
                .flat_map(|_| fail_once(&mut d, &view))
                .filter_map(|a| match a {
                    Action::Sleep(delay) => Some(delay),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(sleeps(SEED), sleeps(SEED));
        assert_ne!(sleeps(SEED), sleeps(SEED + 1));
    }
}
