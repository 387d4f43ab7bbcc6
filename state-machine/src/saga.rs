//! The saga of an admitted investment (`DESIGN.md` §4.4), as data.
//!
//! `PAYMENT → DOCUMENTS → (CONFIRMED) → NOTIFY → DONE`, or, when payment is declined,
//! `PAYMENT → (CANCELLED) → NOTIFY → DONE`, or, when documents fail for good, the deadline passes
//! or an operator aborts, `… → VOID → (CANCELLED) → NOTIFY → DONE`. The transitions themselves
//! live in [`crate::AdmissionState`]; the executor in `node` only performs the step it sees and
//! proposes the result.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{NodeId, RequestId};
use crate::outcome::Status;

/// Where a saga stands: the step its executor has to perform next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SagaStep {
    /// Charge the investor (key `"{request_id}:payment"`).
    Payment,
    /// Generate the legal documents (key `"{request_id}:documents"`).
    Documents,
    /// Compensate: void the payment by its key (refund, or refuse a late charge).
    Void,
    /// E-mail the outcome (key `"{request_id}:notify"`); never changes money or seats.
    Notify,
    /// Nothing left to do.
    Done,
}

impl SagaStep {
    /// The step's name in idempotency keys and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            SagaStep::Payment => "payment",
            SagaStep::Documents => "documents",
            SagaStep::Void => "void",
            SagaStep::Notify => "notify",
            SagaStep::Done => "done",
        }
    }

    /// Steps that the saga deadline and operator aborts can still turn into compensation.
    pub const fn is_compensable(self) -> bool {
        matches!(self, SagaStep::Payment | SagaStep::Documents)
    }
}

impl fmt::Display for SagaStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an admitted investment ended CANCELLED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelCause {
    /// The payment partner declined the charge.
    PaymentDeclined,
    /// Documents failed permanently; the payment was voided.
    DocumentsFailed,
    /// The saga deadline passed before CONFIRMED; the payment was voided.
    DeadlineExceeded,
    /// An operator compensated the saga by hand; the payment was voided.
    Aborted,
}

impl CancelCause {
    /// Every cause, in [`CancelCause::index`] order.
    pub const ALL: [CancelCause; 4] = [
        CancelCause::PaymentDeclined,
        CancelCause::DocumentsFailed,
        CancelCause::DeadlineExceeded,
        CancelCause::Aborted,
    ];

    /// The cause's position in [`CancelCause::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The cause's name in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            CancelCause::PaymentDeclined => "PAYMENT_DECLINED",
            CancelCause::DocumentsFailed => "DOCUMENTS_FAILED",
            CancelCause::DeadlineExceeded => "DEADLINE_EXCEEDED",
            CancelCause::Aborted => "ABORTED",
        }
    }
}

/// The saga of one admitted investment. Kept after it finishes, for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saga {
    /// The step to perform next.
    pub step: SagaStep,
    /// The executor that owns the saga; `None` while no executor is live.
    pub assignee: Option<NodeId>,
    /// Bumped on every (re)assignment; results carrying an older epoch are ignored.
    pub epoch: u64,
    /// Log time by which the saga must be CONFIRMED, or it is compensated.
    pub deadline_ms: u64,
    /// Attempts made in the current step, as reported by the executor.
    pub attempts: u32,
    /// The last error reported in the current step.
    #[serde(deserialize_with = "crate::codec::text::optional")]
    pub last_error: Option<Box<str>>,
    /// Why the investment was cancelled, once it is (or once compensation started).
    pub cancel_cause: Option<CancelCause>,
    /// The payment partner's id of the charge.
    #[serde(deserialize_with = "crate::codec::text::optional")]
    pub payment_id: Option<Box<str>>,
    /// Whether compensation found a charge and refunded it.
    pub refunded: bool,
    /// The documents partner's id.
    #[serde(deserialize_with = "crate::codec::text::optional")]
    pub document_id: Option<Box<str>>,
    /// The e-mail partner's id of the outcome message.
    #[serde(deserialize_with = "crate::codec::text::optional")]
    pub message_id: Option<Box<str>>,
    /// E-mail retries were exhausted (visible to operators; changes nothing else).
    pub notify_failed: bool,
    /// Log time of the last change.
    pub updated_at_ms: u64,
    /// Where the investment was cancelled, `(log_index, offset)` of the command that released
    /// its seat and amount; lets anyone replay the capacity of a deal from its investments.
    pub cancelled_at: Option<(u64, u32)>,
    /// What happened to the saga, oldest first: each assignment, each step's end and the start
    /// of a compensation. At most [`SAGA_HISTORY_MAX`]; beyond it the oldest marks after the
    /// first are dropped (counted in `history_dropped`).
    pub history: Vec<SagaMark>,
    /// Marks dropped from `history` to keep it bounded.
    pub history_dropped: u32,
}

/// The most marks a saga's history keeps. A saga normally has four or five (assigned, then one
/// per step); only an executor that keeps losing its lease adds more.
pub const SAGA_HISTORY_MAX: usize = 32;

/// One change in a saga's history, stamped with where and when it was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaMark {
    /// The log index of the entry that made the change.
    pub log_index: u64,
    /// Log time of that entry.
    pub at_ms: u64,
    /// The saga's assignment epoch after the change.
    pub epoch: u64,
    /// What changed.
    pub change: SagaChange,
}

/// What a [`SagaMark`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SagaChange {
    /// The saga was (re)assigned, under a new epoch: to an executor, or to none while no
    /// executor is live.
    Assigned {
        /// The new owner.
        executor: Option<NodeId>,
    },
    /// The current step ended with a result reported by its executor.
    StepEnded {
        /// The result.
        result: StepEnd,
        /// Failed attempts the executor had reported for the step before this result. It
        /// reports the 1st, 2nd, 4th, 8th …, so this is a lower bound.
        retries: u32,
    },
    /// Compensation started without a step result: the saga deadline passed, or an operator
    /// aborted the saga.
    Compensating {
        /// Why.
        cause: CancelCause,
    },
}

/// How a saga step ended (the partner's answer, without its ids, which the saga keeps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepEnd {
    /// PAYMENT: charged.
    PaymentSucceeded,
    /// PAYMENT: declined.
    PaymentDeclined,
    /// DOCUMENTS: generated.
    DocumentsGenerated,
    /// DOCUMENTS: failed for good.
    DocumentsFailed,
    /// VOID: the payment voided, refunded if a charge existed.
    PaymentVoided {
        /// A charge existed and was refunded.
        refunded: bool,
    },
    /// NOTIFY: the e-mail was accepted.
    NotifySent,
    /// NOTIFY: retries exhausted.
    NotifyFailed,
}

impl StepEnd {
    /// The step that ended this way.
    pub const fn step(self) -> SagaStep {
        match self {
            StepEnd::PaymentSucceeded | StepEnd::PaymentDeclined => SagaStep::Payment,
            StepEnd::DocumentsGenerated | StepEnd::DocumentsFailed => SagaStep::Documents,
            StepEnd::PaymentVoided { .. } => SagaStep::Void,
            StepEnd::NotifySent | StepEnd::NotifyFailed => SagaStep::Notify,
        }
    }

    /// The result's name in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            StepEnd::PaymentSucceeded => "PAYMENT_SUCCEEDED",
            StepEnd::PaymentDeclined => "PAYMENT_DECLINED",
            StepEnd::DocumentsGenerated => "DOCUMENTS_GENERATED",
            StepEnd::DocumentsFailed => "DOCUMENTS_FAILED",
            StepEnd::PaymentVoided { .. } => "PAYMENT_VOIDED",
            StepEnd::NotifySent => "NOTIFY_SENT",
            StepEnd::NotifyFailed => "NOTIFY_FAILED",
        }
    }
}

impl Saga {
    pub(crate) fn new(deadline_ms: u64, now_ms: u64) -> Saga {
        Saga {
            step: SagaStep::Payment,
            assignee: None,
            epoch: 0,
            deadline_ms,
            attempts: 0,
            last_error: None,
            cancel_cause: None,
            payment_id: None,
            refunded: false,
            document_id: None,
            message_id: None,
            notify_failed: false,
            updated_at_ms: now_ms,
            cancelled_at: None,
            history: Vec::new(),
            history_dropped: 0,
        }
    }

    /// Appends `change` to the history, applied at `log_index` and log time `at_ms`, under the
    /// saga's current epoch. Keeps the first mark (the saga's start) and drops the oldest after
    /// it when the history is full. Capacity is kept exact: most sagas never exceed five marks,
    /// and a million of them are held in memory.
    pub(crate) fn mark(&mut self, log_index: u64, at_ms: u64, change: SagaChange) {
        if self.history.len() >= SAGA_HISTORY_MAX {
            self.history.remove(1);
            self.history_dropped = self.history_dropped.saturating_add(1);
        }
        self.history.reserve_exact(1);
        self.history.push(SagaMark {
            log_index,
            at_ms,
            epoch: self.epoch,
            change,
        });
    }

    /// Moves to `step`, forgetting the previous step's attempts.
    pub(crate) fn enter(&mut self, step: SagaStep, now_ms: u64) {
        self.step = step;
        self.attempts = 0;
        self.last_error = None;
        self.updated_at_ms = now_ms;
    }
}

/// A change to a saga that its executor or a watcher may care about, emitted by
/// [`crate::AdmissionState::apply_entry`]. The node's executor acts on events naming its own
/// node; watchers of the request wake up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SagaEvent {
    /// The investment.
    pub request_id: RequestId,
    /// Its status after the change.
    pub status: Status,
    /// The step to perform next.
    pub step: SagaStep,
    /// The executor that owns it now.
    pub executor: Option<NodeId>,
    /// The assignment epoch to report results under.
    pub epoch: u64,
    /// The client's trace context, on the events of the entry that decided a `SubmitTraced`
    /// (never persisted: an executor that learns of the saga later works without it).
    pub trace: Option<crate::trace::TraceContext>,
}
