//! What applying a command returns: decisions and acknowledgements. Capacity rejections are
//! decisions, not errors.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::CommandError;
use crate::ids::RequestId;
use crate::saga::SagaStep;

/// The result of applying one command.
pub type Applied = Result<Outcome, CommandError>;

/// An investment's lifecycle status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Admitted: holds a seat and its amount while the saga runs.
    Pending,
    /// Paid and documented; holds its seat for good.
    Confirmed,
    /// Admitted, then undone: seat and amount released, money returned.
    Cancelled,
    /// Refused at once, or ended on the waitlist; see [`RejectReason`].
    Rejected,
    /// Waiting for a seat and amount to free, in log order (it opted in with `waitlist`).
    Waitlisted,
}

impl Status {
    /// PENDING and CONFIRMED investments hold a seat and count against the deal.
    pub const fn is_active(self) -> bool {
        matches!(self, Status::Pending | Status::Confirmed)
    }

    /// PENDING, CONFIRMED and WAITLISTED requests: at most one per user and deal (I3).
    pub const fn holds_place(self) -> bool {
        matches!(
            self,
            Status::Pending | Status::Confirmed | Status::Waitlisted
        )
    }

    /// The status's name in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Confirmed => "CONFIRMED",
            Status::Cancelled => "CANCELLED",
            Status::Rejected => "REJECTED",
            Status::Waitlisted => "WAITLISTED",
        }
    }
}

/// Why a request was refused, in the precedence order of `DESIGN.md` §4.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RejectReason {
    /// Rule 2: no such deal.
    DealNotFound,
    /// Rule 2: the deal is closed.
    DealClosed,
    /// Rule 3: amount outside `min_ticket..=max_ticket`.
    TicketOutOfRange,
    /// Rule 4: the user already holds an active investment in the deal.
    DuplicateInvestor,
    /// Rule 5: every seat is taken.
    InvestorLimitReached,
    /// Rule 6: the amount does not fit in what remains of the deal.
    AmountExceedsRemaining,
    /// Rule 2: the deal opens later (`opens_at_ms`, log time).
    DealNotOpen,
    /// Rule 8: a waitlisted request ended without a seat: the deal closed, its
    /// `waitlist_ttl_ms` passed, or the investor withdrew it.
    WaitlistClosed,
}

impl RejectReason {
    /// Every reason, in [`RejectReason::index`] order.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::DealNotFound,
        RejectReason::DealClosed,
        RejectReason::TicketOutOfRange,
        RejectReason::DuplicateInvestor,
        RejectReason::InvestorLimitReached,
        RejectReason::AmountExceedsRemaining,
        RejectReason::DealNotOpen,
        RejectReason::WaitlistClosed,
    ];

    /// The reason's position in [`RejectReason::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The reason's name in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::DealNotFound => "DEAL_NOT_FOUND",
            RejectReason::DealClosed => "DEAL_CLOSED",
            RejectReason::TicketOutOfRange => "TICKET_OUT_OF_RANGE",
            RejectReason::DuplicateInvestor => "DUPLICATE_INVESTOR",
            RejectReason::InvestorLimitReached => "INVESTOR_LIMIT_REACHED",
            RejectReason::AmountExceedsRemaining => "AMOUNT_EXCEEDS_REMAINING",
            RejectReason::DealNotOpen => "DEAL_NOT_OPEN",
            RejectReason::WaitlistClosed => "WAITLIST_CLOSED",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision on a request at the moment it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// Admitted; the saga decides CONFIRMED or CANCELLED later.
    Pending,
    /// Refused.
    Rejected(RejectReason),
    /// Put on the deal's waitlist (rule 8).
    Waitlisted,
}

/// The answer to a `Submit`: the original decision and the position that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Decision {
    /// The request.
    pub request_id: RequestId,
    /// Admitted or rejected, as decided the first time.
    pub verdict: Verdict,
    /// The log index of the entry that decided it.
    pub log_index: u64,
    /// The request's position inside that entry.
    pub offset: u32,
}

/// Why a saga step result changed nothing. Normal under retries and failover, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IgnoreReason {
    /// No investment with this request id.
    UnknownInvestment,
    /// The investment was rejected and has no saga.
    NoSaga,
    /// The result was produced under an older assignment (fencing).
    StaleEpoch,
    /// The result is for another step than the saga's current one (already recorded, or the
    /// saga moved on, e.g. to compensation after its deadline).
    WrongStep,
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The deal exists with the requested terms; `created` is false when it already did.
    DealCreated {
        /// Whether this command created it.
        created: bool,
    },
    /// The deal is closed (now or already).
    DealClosed,
    /// A `Submit` was decided, now or (`replayed`) earlier.
    Submitted {
        /// The decision.
        decision: Decision,
        /// True when the request id had been decided before and this is that decision again.
        replayed: bool,
    },
    /// The heartbeat renewed the executor's lease.
    HeartbeatRecorded,
    /// The heartbeat came from a replica too far behind (`lag` entries behind the entry that
    /// carried it); the lease was not renewed.
    HeartbeatRefused {
        /// Entries between the executor's applied index and the heartbeat's entry.
        lag: u64,
    },
    /// The executor is gone; its sagas moved.
    ExecutorRetired,
    /// The step result moved the saga on.
    StepRecorded {
        /// The investment's status now.
        status: Status,
        /// The saga's next step.
        step: SagaStep,
    },
    /// The step result was ignored.
    StepIgnored(IgnoreReason),
    /// The saga moved to compensation.
    SagaAborted,
    /// The tunables changed.
    ParamsSet,
    /// A waitlisted request was withdrawn: REJECTED(WAITLIST_CLOSED).
    Withdrawn,
    /// The deal is archived; `archived` is false when it already was (a retry).
    DealArchived {
        /// Whether this command archived it.
        archived: bool,
    },
}
