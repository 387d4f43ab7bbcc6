//! Conversions between the wire types of `admission.v1` and the domain types. Protobuf types
//! never enter the state machine: requests are parsed and validated here, before anything is
//! proposed.

use ledger_proto::pb;
use ledger_state_machine::{
    CancelCause, Command, CreateDeal, DealStatus, DealView, InvestmentView, Money, RejectReason,
    RequestId, SagaStep, Status, Submit, UserView, MAX_INVESTORS_DEFAULT,
};

use crate::error::ApiError;

/// Parses a request id.
pub fn request_id(text: &str) -> Result<RequestId, ApiError> {
    RequestId::parse(text).map_err(|e| ApiError::invalid("request_id", e.to_string()))
}

fn money(field: &'static str, text: &str) -> Result<Money, ApiError> {
    Money::parse(text).map_err(|e| ApiError::invalid(field, e.to_string()))
}

/// Validates and parses a `Submit`.
pub fn submit(request: &pb::SubmitRequest) -> Result<Submit, ApiError> {
    let submit = Submit {
        request_id: request_id(&request.request_id)?,
        deal_id: request.deal_id.clone(),
        user_id: request.user_id.clone(),
        amount: money("amount", &request.amount)?,
    };
    submit.validate()?;
    Ok(submit)
}

/// Validates and parses a `CreateDeal`.
pub fn create_deal(request: &pb::CreateDealRequest) -> Result<Command, ApiError> {
    let create = CreateDeal {
        deal_id: request.deal_id.clone(),
        amount: money("amount", &request.amount)?,
        max_investors: match request.max_investors {
            0 => MAX_INVESTORS_DEFAULT,
            n => n,
        },
        min_ticket: request
            .min_ticket
            .as_deref()
            .map(|t| money("min_ticket", t))
            .transpose()?,
        max_ticket: request
            .max_ticket
            .as_deref()
            .map(|t| money("max_ticket", t))
            .transpose()?,
    };
    create.validate()?;
    Ok(Command::CreateDeal(create))
}

/// Validates a deal id.
pub fn deal_id(text: &str) -> Result<&str, ApiError> {
    ledger_state_machine::validate_deal_id(text)
        .map(|()| text)
        .map_err(|e| ApiError::invalid("deal_id", e.to_string()))
}

/// Validates a user id.
pub fn user_id(text: &str) -> Result<&str, ApiError> {
    ledger_state_machine::validate_user_id(text)
        .map(|()| text)
        .map_err(|e| ApiError::invalid("user_id", e.to_string()))
}

/// Parses a page token: empty for the first page, else the cursor a previous page returned.
pub fn page_token(text: &str) -> Result<u64, ApiError> {
    if text.is_empty() {
        return Ok(0);
    }
    text.parse()
        .map_err(|_| ApiError::invalid("page_token", "not a token from a previous page"))
}

/// The next page's token, empty at the end.
pub fn next_page_token(next: Option<u64>) -> String {
    next.map(|n| n.to_string()).unwrap_or_default()
}

/// Whether a read asks for the local replica.
pub fn is_stale(consistency: i32) -> Result<bool, ApiError> {
    match pb::Consistency::try_from(consistency) {
        Ok(pb::Consistency::Linearizable) => Ok(false),
        Ok(pb::Consistency::Stale) => Ok(true),
        Err(_) => Err(ApiError::invalid("consistency", "unknown consistency")),
    }
}

/// A deal on the wire.
pub fn deal(view: DealView) -> pb::Deal {
    pb::Deal {
        deal_id: view.deal_id,
        amount: view.terms.amount.to_string(),
        max_investors: view.terms.max_investors,
        min_ticket: view.terms.min_ticket.map(|m| m.to_string()),
        max_ticket: view.terms.max_ticket.map(|m| m.to_string()),
        status: match view.status {
            DealStatus::Open => pb::DealStatus::Open,
            DealStatus::Closed => pb::DealStatus::Closed,
        } as i32,
        investor_count: view.investor_count,
        reserved_amount: view.reserved_amount.to_string(),
        confirmed_count: view.confirmed_count,
        confirmed_amount: view.confirmed_amount.to_string(),
        created_at_ms: view.created_at_ms,
    }
}

/// An investment on the wire.
pub fn investment(view: InvestmentView) -> pb::Investment {
    let mut wire = pb::Investment {
        request_id: view.request_id.to_string(),
        deal_id: view.deal_id,
        user_id: view.user_id,
        amount: view.amount.to_string(),
        status: status(view.status) as i32,
        reject_reason: view
            .reject_reason
            .map_or(pb::RejectReason::Unspecified, reject_reason) as i32,
        log_index: view.log_index,
        offset: view.offset,
        decided_at_ms: view.decided_at_ms,
        updated_at_ms: view.decided_at_ms,
        ..pb::Investment::default()
    };
    if let Some(saga) = view.saga {
        wire.saga_step = saga_step(saga.step) as i32;
        wire.updated_at_ms = saga.updated_at_ms;
        wire.attempts = saga.attempts;
        wire.last_error = saga.last_error.map(String::from).unwrap_or_default();
        wire.cancel_cause = saga
            .cancel_cause
            .map_or(pb::CancelCause::Unspecified, cancel_cause) as i32;
        wire.executor = saga.assignee;
        wire.epoch = saga.epoch;
        wire.deadline_ms = saga.deadline_ms;
        wire.payment_id = saga.payment_id.map(String::from).unwrap_or_default();
        wire.document_id = saga.document_id.map(String::from).unwrap_or_default();
        wire.message_id = saga.message_id.map(String::from).unwrap_or_default();
        wire.notify_failed = saga.notify_failed;
        wire.refunded = saga.refunded;
    }
    wire
}

/// A user on the wire.
pub fn user(view: UserView) -> pb::User {
    pb::User {
        user_id: view.user_id,
        pending: view.pending.into_iter().map(investment).collect(),
        confirmed: view.confirmed.into_iter().map(investment).collect(),
    }
}

fn status(status: Status) -> pb::InvestmentStatus {
    match status {
        Status::Pending => pb::InvestmentStatus::Pending,
        Status::Confirmed => pb::InvestmentStatus::Confirmed,
        Status::Cancelled => pb::InvestmentStatus::Cancelled,
        Status::Rejected => pb::InvestmentStatus::Rejected,
    }
}

fn reject_reason(reason: RejectReason) -> pb::RejectReason {
    match reason {
        RejectReason::DealNotFound => pb::RejectReason::DealNotFound,
        RejectReason::DealClosed => pb::RejectReason::DealClosed,
        RejectReason::TicketOutOfRange => pb::RejectReason::TicketOutOfRange,
        RejectReason::DuplicateInvestor => pb::RejectReason::DuplicateInvestor,
        RejectReason::InvestorLimitReached => pb::RejectReason::InvestorLimitReached,
        RejectReason::AmountExceedsRemaining => pb::RejectReason::AmountExceedsRemaining,
    }
}

fn saga_step(step: SagaStep) -> pb::SagaStep {
    match step {
        SagaStep::Payment => pb::SagaStep::Payment,
        SagaStep::Documents => pb::SagaStep::Documents,
        SagaStep::Void => pb::SagaStep::Void,
        SagaStep::Notify => pb::SagaStep::Notify,
        SagaStep::Done => pb::SagaStep::Done,
    }
}

fn cancel_cause(cause: CancelCause) -> pb::CancelCause {
    match cause {
        CancelCause::PaymentDeclined => pb::CancelCause::PaymentDeclined,
        CancelCause::DocumentsFailed => pb::CancelCause::DocumentsFailed,
        CancelCause::DeadlineExceeded => pb::CancelCause::DeadlineExceeded,
        CancelCause::Aborted => pb::CancelCause::Aborted,
    }
}
