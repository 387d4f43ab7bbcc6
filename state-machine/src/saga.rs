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
        }
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
