//! Conversions between the wire types of `admission.v1` and the domain types. Protobuf types
//! never enter the state machine: requests are parsed and validated here, before anything is
//! proposed.

use ledger_proto::pb;
use ledger_state_machine::{
    ArchiveDeal, CancelCause, Command, CreateDeal, DealStatus, DealView, InvestmentView, Money,
    RejectReason, RequestId, SagaChange, SagaFilter, SagaMark, SagaStep, Status, StepEnd, Submit,
    UserView, ERROR_TEXT_LEN_MAX, MAX_INVESTORS_DEFAULT, MAX_WAITLIST_DEFAULT,
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
        waitlist: request.waitlist,
        waitlist_ttl_ms: request.waitlist_ttl_ms,
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
        opens_at_ms: request.opens_at_ms,
        closes_at_ms: request.closes_at_ms,
        max_waitlist: match request.max_waitlist {
            0 => MAX_WAITLIST_DEFAULT,
            n => n,
        },
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

/// Sagas `ListSagas` returns when the request's `limit` is 0.
pub const LIST_SAGAS_LIMIT_DEFAULT: usize = 100;
/// Largest `limit` of `ListSagas`; about 11 MB of worst-case investments, within
/// [`crate::grpc::CLIENT_MESSAGE_BYTES_MAX`].
pub const LIST_SAGAS_LIMIT_MAX: usize = 10_000;

/// Validates a `ListSagas` request: which open sagas to keep and how many to return at most.
pub fn list_sagas(request: &pb::ListSagasRequest) -> Result<(SagaFilter, usize), ApiError> {
    let limit = match usize::try_from(request.limit).unwrap_or(usize::MAX) {
        0 => LIST_SAGAS_LIMIT_DEFAULT,
        n if n <= LIST_SAGAS_LIMIT_MAX => n,
        _ => {
            return Err(ApiError::invalid(
                "limit",
                format!(
                    "must be at most {LIST_SAGAS_LIMIT_MAX} (0 means {LIST_SAGAS_LIMIT_DEFAULT})"
                ),
            ))
        }
    };
    let filter = SagaFilter {
        older_than_ms: request.older_than_ms,
        failing: request.failing_only,
    };
    Ok((filter, limit))
}

/// Validates a `CompensateSaga` request into the `AbortSaga` command for its request id.
pub fn compensate_saga(
    request: &pb::CompensateSagaRequest,
) -> Result<(RequestId, Command), ApiError> {
    let request_id = request_id(&request.request_id)?;
    let reason = &request.reason;
    // The state machine accepts an empty reason (deadlines have none); an operator must say why.
    if reason.trim().is_empty() {
        return Err(ApiError::invalid(
            "reason",
            "must not be blank: say why the saga is compensated",
        ));
    }
    if reason.len() > ERROR_TEXT_LEN_MAX {
        return Err(ApiError::invalid(
            "reason",
            format!(
                "is {} bytes long; at most {ERROR_TEXT_LEN_MAX}",
                reason.len()
            ),
        ));
    }
    let command = Command::AbortSaga {
        request_id,
        reason: reason.clone(),
    };
    command.validate()?;
    Ok((request_id, command))
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
        opens_at_ms: view.terms.opens_at_ms,
        closes_at_ms: view.terms.closes_at_ms,
        max_waitlist: view.terms.max_waitlist,
        waitlist_length: view.waitlist_length,
        receipt_head: Some(receipt(view.receipt_head)),
        closed_log_index: view.closed_at.map_or(0, |(index, _)| index),
        closed_offset: view.closed_at.map_or(0, |(_, offset)| offset),
    }
}

/// An `ArchiveDeal` request as the state machine's command.
pub fn archive_deal(request: &pb::ArchiveDealRequest) -> Result<ArchiveDeal, ApiError> {
    let deal_id = deal_id(&request.deal_id)?.to_owned();
    let head = request
        .receipt_head
        .as_ref()
        .ok_or_else(|| ApiError::invalid("receipt_head", "required: the deal's current head"))?;
    let receipt_hash: [u8; 32] = head
        .hash
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::invalid("receipt_head.hash", "32 bytes"))?;
    Ok(ArchiveDeal {
        deal_id,
        receipt_seq: head.deal_seq,
        receipt_hash,
    })
}

/// What is kept of an archived deal, as `ArchiveDeal` answers it.
pub fn archived_deal(
    archived: &ledger_state_machine::ArchivedDeal,
    newly: bool,
) -> pb::ArchiveDealResponse {
    pb::ArchiveDealResponse {
        deal_id: archived.deal_id.to_string(),
        archived: newly,
        receipt_head: Some(receipt(archived.receipt_head())),
        log_index: archived.archived_log_index,
        confirmed_count: archived.confirmed_count,
        confirmed_amount: archived.confirmed_amount.to_string(),
    }
}

fn receipt(receipt: ledger_state_machine::Receipt) -> pb::Receipt {
    pb::Receipt {
        deal_seq: receipt.deal_seq,
        hash: receipt.hash.to_vec(),
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
        decided_by: view.decided_by.unwrap_or(0),
        decided_at_ms: view.decided_at_ms,
        updated_at_ms: view.decided_at_ms,
        waitlist_position: view.waitlist_position.unwrap_or(0),
        waitlist: view.waitlist_requested,
        waitlist_ttl_ms: view.waitlist_ttl_ms,
        waitlisted: view.waitlisted,
        receipt: view.receipt.map(receipt),
        ..pb::Investment::default()
    };
    if let Some((log_index, offset)) = view.admitted_at {
        wire.admitted_log_index = log_index;
        wire.admitted_offset = offset;
    }
    if let Some((log_index, offset)) = view.waitlist_ended_at {
        wire.waitlist_ended_log_index = log_index;
        wire.waitlist_ended_offset = offset;
    }
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
        if let Some((log_index, offset)) = saga.cancelled_at {
            wire.cancelled_log_index = log_index;
            wire.cancelled_offset = offset;
        }
    }
    wire
}

/// An investment and its saga's history on the wire (`Cluster.TraceInvestment`).
pub fn investment_trace(mut view: InvestmentView) -> pb::InvestmentTrace {
    let (history, history_dropped) = match view.saga.as_mut() {
        Some(saga) => (std::mem::take(&mut saga.history), saga.history_dropped),
        None => (Vec::new(), 0),
    };
    pb::InvestmentTrace {
        investment: Some(investment(view)),
        history: history.into_iter().map(saga_mark).collect(),
        history_dropped,
    }
}

fn saga_mark(mark: SagaMark) -> pb::SagaMark {
    use pb::saga_mark::Change;
    let change = match mark.change {
        SagaChange::Assigned { executor } => Change::Assigned(pb::SagaAssigned { executor }),
        SagaChange::StepEnded { result, retries } => Change::StepEnded(pb::SagaStepEnded {
            step: saga_step(result.step()) as i32,
            result: step_end(result) as i32,
            refunded: matches!(result, StepEnd::PaymentVoided { refunded: true }),
            retries,
        }),
        SagaChange::Compensating { cause } => Change::Compensating(pb::SagaCompensating {
            cause: cancel_cause(cause) as i32,
        }),
    };
    pb::SagaMark {
        log_index: mark.log_index,
        at_ms: mark.at_ms,
        epoch: mark.epoch,
        change: Some(change),
    }
}

fn step_end(end: StepEnd) -> pb::StepEnd {
    match end {
        StepEnd::PaymentSucceeded => pb::StepEnd::PaymentSucceeded,
        StepEnd::PaymentDeclined => pb::StepEnd::PaymentDeclined,
        StepEnd::DocumentsGenerated => pb::StepEnd::DocumentsGenerated,
        StepEnd::DocumentsFailed => pb::StepEnd::DocumentsFailed,
        StepEnd::PaymentVoided { .. } => pb::StepEnd::PaymentVoided,
        StepEnd::NotifySent => pb::StepEnd::NotifySent,
        StepEnd::NotifyFailed => pb::StepEnd::NotifyFailed,
    }
}

/// A user on the wire.
pub fn user(view: UserView) -> pb::User {
    pb::User {
        user_id: view.user_id,
        pending: view.pending.into_iter().map(investment).collect(),
        confirmed: view.confirmed.into_iter().map(investment).collect(),
        waitlisted: view.waitlisted.into_iter().map(investment).collect(),
    }
}

fn status(status: Status) -> pb::InvestmentStatus {
    match status {
        Status::Pending => pb::InvestmentStatus::Pending,
        Status::Confirmed => pb::InvestmentStatus::Confirmed,
        Status::Cancelled => pb::InvestmentStatus::Cancelled,
        Status::Rejected => pb::InvestmentStatus::Rejected,
        Status::Waitlisted => pb::InvestmentStatus::Waitlisted,
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
        RejectReason::DealNotOpen => pb::RejectReason::DealNotOpen,
        RejectReason::WaitlistClosed => pb::RejectReason::WaitlistClosed,
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

/// The client's W3C trace context: its `traceparent` metadata, when valid (anything else is
/// ignored, as the W3C text asks).
pub fn trace_of(
    metadata: &tonic::metadata::MetadataMap,
) -> Option<ledger_state_machine::TraceContext> {
    let value = metadata.get("traceparent")?.to_str().ok()?;
    ledger_state_machine::TraceContext::parse(value)
}

/// The command deciding `submit`, carrying the client's trace when there is one.
pub fn traced(
    submit: ledger_state_machine::Submit,
    trace: Option<ledger_state_machine::TraceContext>,
) -> Command {
    match trace {
        Some(trace) => Command::SubmitTraced(ledger_state_machine::TracedSubmit { submit, trace }),
        None => Command::Submit(submit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b5e2d0c-6f1e-4c1a-9a57-6c0b8c3b1f2e";

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::InvalidArgument { field, .. } => field.into_owned(),
            ApiError::Command(ledger_state_machine::CommandError::InvalidArgument {
                field,
                ..
            }) => field.into_owned(),
            other => panic!("not an invalid argument: {other:?}"),
        }
    }

    #[test]
    fn list_sagas_defaults_and_bounds_the_limit() {
        let request = |limit| pb::ListSagasRequest {
            older_than_ms: 60_000,
            failing_only: true,
            limit,
            consistency: 0,
        };
        let (filter, limit) = list_sagas(&request(0)).unwrap();
        assert_eq!(
            filter,
            SagaFilter {
                older_than_ms: 60_000,
                failing: true
            }
        );
        assert_eq!(limit, LIST_SAGAS_LIMIT_DEFAULT);
        assert_eq!(list_sagas(&request(10_000)).unwrap().1, 10_000);
        assert_eq!(field_of(list_sagas(&request(10_001)).unwrap_err()), "limit");
    }

    #[test]
    fn compensate_saga_needs_a_uuid_and_a_reason() {
        let request = |request_id: &str, reason: &str| pb::CompensateSagaRequest {
            request_id: request_id.into(),
            reason: reason.into(),
        };
        let (id, command) = compensate_saga(&request(ID, "partner stuck")).unwrap();
        assert_eq!(id.to_string(), ID);
        assert_eq!(
            command,
            Command::AbortSaga {
                request_id: id,
                reason: "partner stuck".into()
            }
        );
        let nil = "00000000-0000-0000-0000-000000000000";
        for (request_id, reason, field) in [
            ("not-a-uuid", "why", "request_id"),
            (nil, "why", "request_id"),
            (ID, "", "reason"),
            (ID, "  \t", "reason"),
            (ID, "line\nbreak", "reason"),
        ] {
            let error = compensate_saga(&request(request_id, reason)).unwrap_err();
            assert_eq!(field_of(error), field, "{request_id:?} {reason:?}");
        }
        let longest = "x".repeat(ERROR_TEXT_LEN_MAX);
        assert!(compensate_saga(&request(ID, &longest)).is_ok());
        let too_long = format!("{longest}x");
        let error = compensate_saga(&request(ID, &too_long)).unwrap_err();
        assert!(error.to_string().contains("at most 512"), "{error}");
    }
}
