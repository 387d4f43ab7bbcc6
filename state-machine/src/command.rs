//! What the log carries: entries of commands, each entry stamped by the leader that proposed it.

use serde::{Deserialize, Serialize};

use crate::error::CommandError;
use crate::ids::{validate_deal_id, validate_user_id, NodeId, RequestId};
use crate::money::Money;
use crate::saga::SagaStep;

/// Default cap on a deal's investors (`DESIGN.md` §4.1).
pub const MAX_INVESTORS_DEFAULT: u32 = 200;
/// Largest `max_investors` a deal may ask for.
pub const MAX_INVESTORS_LIMIT: u32 = 100_000;
/// Longest partner-issued id (payment, document, message) kept in the state.
pub const EXTERNAL_ID_LEN_MAX: usize = 128;
/// Longest error or reason text kept in the state; executors truncate before proposing.
pub const ERROR_TEXT_LEN_MAX: usize = 512;
/// Default cap on a deal's waitlist (`DESIGN.md` §4.1).
pub const MAX_WAITLIST_DEFAULT: u32 = 1_000;
/// Largest `max_waitlist` a deal may ask for: the waitlist is scanned in order whenever a seat
/// frees, so it stays short.
pub const MAX_WAITLIST_LIMIT: u32 = 10_000;
/// Longest `waitlist_ttl_ms` a request may ask for: 30 days.
pub const WAITLIST_TTL_MS_MAX: u64 = 30 * 24 * 3_600_000;

/// One log entry's payload: the commands batched by the leader, in arrival order.
///
/// The log index is not part of it: Raft assigns it, and [`crate::AdmissionState::apply_entry`]
/// takes it separately.
///
/// Encoded with a format version (`codec::ENTRY_FORMAT_VERSION`); entries written before
/// versions existed are read and converted (`codec`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Who proposed the entry and when, by the leader's clock.
    pub header: EntryHeader,
    /// The commands, decided in this order; a command's position is its `offset`.
    pub commands: Vec<Command>,
}

/// Stamped by the proposing leader; the only source of time for the state machine (§4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryHeader {
    /// The leader that proposed the entry; new sagas prefer executors on other nodes.
    pub leader_id: NodeId,
    /// The leader's wall clock in Unix milliseconds when it proposed the entry.
    pub time_ms: u64,
}

/// Tunables that every replica must agree on, so they travel through the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Log time a saga has to reach CONFIRMED before it is compensated.
    pub saga_deadline_ms: u64,
    /// Log time after its last heartbeat when an executor counts as gone and loses its sagas.
    pub executor_lease_ms: u64,
    /// How far (in entries) an executor's replica may lag behind the entry carrying its
    /// heartbeat for the heartbeat to renew its lease: a lease means "this replica is healthy
    /// and caught up", since the executor learns of its sagas from its own replica.
    pub executor_lag_max_entries: u64,
    /// The most one entry may advance log time (`DESIGN.md` §4.3): a leader whose clock jumps
    /// forward cannot expire every lease and deadline with one entry.
    pub log_time_step_max_ms: u64,
}

impl Params {
    /// Bounds for [`Params::saga_deadline_ms`]: 1 s to 1 day.
    pub const SAGA_DEADLINE_MS_RANGE: std::ops::RangeInclusive<u64> = 1_000..=86_400_000;
    /// Bounds for [`Params::executor_lease_ms`]: 100 ms to 10 min.
    pub const EXECUTOR_LEASE_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=600_000;
    /// Bounds for [`Params::executor_lag_max_entries`].
    pub const EXECUTOR_LAG_MAX_ENTRIES_RANGE: std::ops::RangeInclusive<u64> = 1..=1_000_000;
    /// Bounds for [`Params::log_time_step_max_ms`]: 100 ms to 1 hour.
    pub const LOG_TIME_STEP_MAX_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=3_600_000;

    /// Checks the bounds above.
    pub fn validate(&self) -> Result<(), CommandError> {
        if !Params::SAGA_DEADLINE_MS_RANGE.contains(&self.saga_deadline_ms) {
            return Err(CommandError::invalid(
                "saga_deadline_ms",
                "must be between 1000 and 86400000",
            ));
        }
        if !Params::EXECUTOR_LEASE_MS_RANGE.contains(&self.executor_lease_ms) {
            return Err(CommandError::invalid(
                "executor_lease_ms",
                "must be between 100 and 600000",
            ));
        }
        if !Params::EXECUTOR_LAG_MAX_ENTRIES_RANGE.contains(&self.executor_lag_max_entries) {
            return Err(CommandError::invalid(
                "executor_lag_max_entries",
                "must be between 1 and 1000000",
            ));
        }
        if !Params::LOG_TIME_STEP_MAX_MS_RANGE.contains(&self.log_time_step_max_ms) {
            return Err(CommandError::invalid(
                "log_time_step_max_ms",
                "must be between 100 and 3600000",
            ));
        }
        Ok(())
    }
}

impl Default for Params {
    /// A 5-minute saga deadline (§4.4), a 10-second executor lease renewed only by replicas at
    /// most 1,000 entries behind, and log time advancing at most 5 s per entry (executors
    /// heartbeat every 2.5 s by default, so a busy log never holds log time back, and one entry
    /// cannot lapse a lease renewed on time).
    fn default() -> Params {
        Params {
            saga_deadline_ms: 300_000,
            executor_lease_ms: 10_000,
            executor_lag_max_entries: 1_000,
            log_time_step_max_ms: 5_000,
        }
    }
}

/// A state change, as proposed to the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Open a deal.
    CreateDeal(CreateDeal),
    /// Stop admitting to a deal; sagas already open run to their end.
    CloseDeal {
        /// The deal to close.
        #[serde(deserialize_with = "crate::codec::text::string")]
        deal_id: String,
    },
    /// An investor asks for a seat.
    Submit(Submit),
    /// An executor is alive; it keeps its sagas while its heartbeats are younger than the lease.
    ExecutorHeartbeat {
        /// The executor's node.
        node_id: NodeId,
        /// The last log index the executor's own replica had applied when it sent the heartbeat;
        /// a replica further behind than [`Params::executor_lag_max_entries`] does not renew its
        /// lease (it would not see new sagas in time).
        applied_index: u64,
    },
    /// An executor leaves on purpose (graceful shutdown); its sagas move at once.
    ExecutorRetire {
        /// The executor's node.
        node_id: NodeId,
    },
    /// An executor reports the result of a saga step.
    RecordStep(RecordStep),
    /// An operator compensates a stuck saga by hand: same path as a passed deadline.
    AbortSaga {
        /// The investment whose saga to compensate.
        request_id: RequestId,
        /// Why, for the audit trail.
        #[serde(deserialize_with = "crate::codec::text::string")]
        reason: String,
    },
    /// Change the cluster-wide tunables.
    SetParams(Params),
    /// An investor takes a WAITLISTED request off the waitlist: REJECTED(WAITLIST_CLOSED).
    Withdraw {
        /// The waitlisted request.
        request_id: RequestId,
    },
    /// An operator removes a closed deal, whose sagas have all ended, from the live state.
    ArchiveDeal(ArchiveDeal),
    /// A `Submit` whose client sent a trace context: decided exactly as the `Submit` (the
    /// trace is not part of the request's identity), and the saga events it causes carry the
    /// trace to the executor, which sends it on to the partners.
    SubmitTraced(TracedSubmit),
}

/// A `Submit` and the client's trace context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracedSubmit {
    /// The request.
    pub submit: Submit,
    /// The client's `traceparent`.
    pub trace: crate::trace::TraceContext,
}

/// What `ArchiveDeal` names: the deal, and the receipt head the caller holds an export up to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveDeal {
    /// The deal to archive.
    #[serde(deserialize_with = "crate::codec::text::string")]
    pub deal_id: String,
    /// The deal's current receipt head: how many decisions it has ...
    pub receipt_seq: u64,
    /// ... and the chain's hash after the last one.
    pub receipt_hash: [u8; 32],
}

/// Terms of a new deal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateDeal {
    /// 1–64 characters of `[A-Za-z0-9_.-]`.
    #[serde(deserialize_with = "crate::codec::text::string")]
    pub deal_id: String,
    /// The most the admitted amounts may sum to.
    pub amount: Money,
    /// The most investors admitted at once (`1..=100_000`).
    pub max_investors: u32,
    /// Smallest ticket accepted, if any.
    pub min_ticket: Option<Money>,
    /// Largest ticket accepted, if any.
    pub max_ticket: Option<Money>,
    /// Log time before which `Submit` is rejected with `DEAL_NOT_OPEN`, if any.
    pub opens_at_ms: Option<u64>,
    /// Log time at which the deal closes by itself, if any.
    pub closes_at_ms: Option<u64>,
    /// The most requests waiting on the deal's waitlist (`1..=10_000`).
    pub max_waitlist: u32,
}

/// One investment request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submit {
    /// Client-chosen idempotency key.
    pub request_id: RequestId,
    /// The deal asked for.
    #[serde(deserialize_with = "crate::codec::text::string")]
    pub deal_id: String,
    /// The investor.
    #[serde(deserialize_with = "crate::codec::text::string")]
    pub user_id: String,
    /// The ticket.
    pub amount: Money,
    /// Rule 8: wait on the deal's waitlist instead of a capacity rejection.
    pub waitlist: bool,
    /// With `waitlist`: how long (log time) the request may wait before it ends as
    /// REJECTED(WAITLIST_CLOSED); `None` waits until the deal closes.
    pub waitlist_ttl_ms: Option<u64>,
}

/// A saga step's result, fenced by the assignment it was done under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordStep {
    /// The investment whose saga advanced.
    pub request_id: RequestId,
    /// The executor that did the work.
    pub executor: NodeId,
    /// The assignment epoch the executor worked under; stale epochs are ignored.
    pub epoch: u64,
    /// What happened.
    pub result: StepResult,
}

/// The result of one saga step, as observed at a partner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepResult {
    /// The payment partner charged the investor.
    PaymentSucceeded {
        /// The partner's id of the charge.
        #[serde(deserialize_with = "crate::codec::text::string")]
        payment_id: String,
    },
    /// The payment partner declined: nothing was charged.
    PaymentDeclined {
        /// The partner's reason.
        #[serde(deserialize_with = "crate::codec::text::string")]
        reason: String,
    },
    /// The documents partner produced the legal documents.
    DocumentsGenerated {
        /// The partner's id of the documents.
        #[serde(deserialize_with = "crate::codec::text::string")]
        document_id: String,
    },
    /// Documents failed permanently (retries exhausted); compensation follows.
    DocumentsFailed {
        /// The last error.
        #[serde(deserialize_with = "crate::codec::text::string")]
        error: String,
    },
    /// The payment was voided by its key: refunded if it had been charged, refused from now on
    /// if not.
    PaymentVoided {
        /// Whether a charge existed and was refunded.
        refunded: bool,
    },
    /// The confirmation or cancellation e-mail was accepted by the e-mail partner.
    NotifySent {
        /// The partner's id of the message.
        #[serde(deserialize_with = "crate::codec::text::string")]
        message_id: String,
    },
    /// E-mail retries are exhausted; recorded for operators, changes nothing else.
    NotifyFailed {
        /// The last error.
        #[serde(deserialize_with = "crate::codec::text::string")]
        error: String,
    },
    /// An attempt at `step` failed in a retryable way; progress for operators only.
    Retrying {
        /// The step attempted.
        step: SagaStep,
        /// Attempts made so far in this step.
        attempts: u32,
        /// The last error.
        #[serde(deserialize_with = "crate::codec::text::string")]
        error: String,
    },
}

impl StepResult {
    /// The step this result belongs to; a result for another step than the saga's is stale.
    pub fn step(&self) -> SagaStep {
        match self {
            StepResult::PaymentSucceeded { .. } | StepResult::PaymentDeclined { .. } => {
                SagaStep::Payment
            }
            StepResult::DocumentsGenerated { .. } | StepResult::DocumentsFailed { .. } => {
                SagaStep::Documents
            }
            StepResult::PaymentVoided { .. } => SagaStep::Void,
            StepResult::NotifySent { .. } | StepResult::NotifyFailed { .. } => SagaStep::Notify,
            StepResult::Retrying { step, .. } => *step,
        }
    }

    fn validate(&self) -> Result<(), CommandError> {
        match self {
            StepResult::PaymentSucceeded { payment_id } => {
                validate_text("payment_id", payment_id, 1, EXTERNAL_ID_LEN_MAX)
            }
            StepResult::DocumentsGenerated { document_id } => {
                validate_text("document_id", document_id, 1, EXTERNAL_ID_LEN_MAX)
            }
            StepResult::NotifySent { message_id } => {
                validate_text("message_id", message_id, 1, EXTERNAL_ID_LEN_MAX)
            }
            StepResult::PaymentDeclined { reason } => {
                validate_text("reason", reason, 0, ERROR_TEXT_LEN_MAX)
            }
            StepResult::DocumentsFailed { error } | StepResult::NotifyFailed { error } => {
                validate_text("error", error, 0, ERROR_TEXT_LEN_MAX)
            }
            StepResult::Retrying { step, error, .. } => {
                if *step == SagaStep::Done {
                    return Err(CommandError::invalid(
                        "step",
                        "a finished saga has no attempts",
                    ));
                }
                validate_text("error", error, 0, ERROR_TEXT_LEN_MAX)
            }
            StepResult::PaymentVoided { .. } => Ok(()),
        }
    }
}

impl Command {
    /// Checks the command's own fields, without looking at the state. The node calls this before
    /// proposing, and `apply` calls it again, so a malformed command never changes state.
    pub fn validate(&self) -> Result<(), CommandError> {
        match self {
            Command::CreateDeal(create) => create.validate(),
            Command::CloseDeal { deal_id } => {
                validate_deal_id(deal_id).map_err(|e| CommandError::invalid_id("deal_id", e))
            }
            Command::Submit(submit) => submit.validate(),
            Command::SubmitTraced(traced) => traced.submit.validate(),
            Command::ExecutorHeartbeat { .. } | Command::ExecutorRetire { .. } => Ok(()),
            Command::RecordStep(record) => {
                validate_request_id(record.request_id)?;
                record.result.validate()
            }
            Command::AbortSaga { request_id, reason } => {
                validate_request_id(*request_id)?;
                validate_text("reason", reason, 0, ERROR_TEXT_LEN_MAX)
            }
            Command::SetParams(params) => params.validate(),
            Command::Withdraw { request_id } => validate_request_id(*request_id),
            Command::ArchiveDeal(archive) => validate_deal_id(&archive.deal_id)
                .map_err(|e| CommandError::invalid_id("deal_id", e)),
        }
    }
}

impl CreateDeal {
    /// Checks the terms: valid id, valid amounts, a sensible ticket range, a bounded seat count.
    pub fn validate(&self) -> Result<(), CommandError> {
        validate_deal_id(&self.deal_id).map_err(|e| CommandError::invalid_id("deal_id", e))?;
        self.amount
            .validate_amount()
            .map_err(|e| CommandError::invalid_money("amount", e))?;
        if !(1..=MAX_INVESTORS_LIMIT).contains(&self.max_investors) {
            return Err(CommandError::invalid(
                "max_investors",
                "must be between 1 and 100000",
            ));
        }
        if let Some(min) = self.min_ticket {
            min.validate_amount()
                .map_err(|e| CommandError::invalid_money("min_ticket", e))?;
            if min > self.amount {
                return Err(CommandError::invalid(
                    "min_ticket",
                    "must not exceed the deal amount",
                ));
            }
        }
        if let Some(max) = self.max_ticket {
            max.validate_amount()
                .map_err(|e| CommandError::invalid_money("max_ticket", e))?;
            if self.min_ticket.is_some_and(|min| min > max) {
                return Err(CommandError::invalid(
                    "max_ticket",
                    "must not be below min_ticket",
                ));
            }
        }
        if !(1..=MAX_WAITLIST_LIMIT).contains(&self.max_waitlist) {
            return Err(CommandError::invalid(
                "max_waitlist",
                "must be between 1 and 10000",
            ));
        }
        if let (Some(opens), Some(closes)) = (self.opens_at_ms, self.closes_at_ms) {
            if closes <= opens {
                return Err(CommandError::invalid(
                    "closes_at_ms",
                    "must be after opens_at_ms",
                ));
            }
        }
        Ok(())
    }
}

impl Submit {
    /// Checks the request's fields (§4.2, "malformed input").
    pub fn validate(&self) -> Result<(), CommandError> {
        validate_request_id(self.request_id)?;
        validate_deal_id(&self.deal_id).map_err(|e| CommandError::invalid_id("deal_id", e))?;
        validate_user_id(&self.user_id).map_err(|e| CommandError::invalid_id("user_id", e))?;
        self.amount
            .validate_amount()
            .map_err(|e| CommandError::invalid_money("amount", e))?;
        match self.waitlist_ttl_ms {
            Some(_) if !self.waitlist => Err(CommandError::invalid(
                "waitlist_ttl_ms",
                "is only for a request with waitlist set",
            )),
            Some(ttl) if !(1..=WAITLIST_TTL_MS_MAX).contains(&ttl) => Err(CommandError::invalid(
                "waitlist_ttl_ms",
                "must be between 1 and 2592000000 (30 days)",
            )),
            _ => Ok(()),
        }
    }
}

fn validate_request_id(request_id: RequestId) -> Result<(), CommandError> {
    if request_id.is_valid() {
        Ok(())
    } else {
        Err(CommandError::invalid(
            "request_id",
            "must not be the nil UUID",
        ))
    }
}

fn validate_text(
    field: &'static str,
    text: &str,
    len_min: usize,
    len_max: usize,
) -> Result<(), CommandError> {
    if text.len() < len_min {
        return Err(CommandError::invalid(field, "must not be empty"));
    }
    if text.len() > len_max {
        return Err(CommandError::invalid(field, "is too long"));
    }
    if text.chars().any(char::is_control) {
        return Err(CommandError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}
