//! The one mapping from [`ApiError`] to a gRPC [`Status`] (`DESIGN.md` §5).

use ledger_proto::pb;
use ledger_state_machine::CommandError;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::ApiError;

/// Metadata key carrying the leader's node id on `UNAVAILABLE`.
pub const LEADER_ID_KEY: &str = "x-leader-id";
/// Metadata key carrying the leader's address on `UNAVAILABLE`.
pub const LEADER_ADDR_KEY: &str = "x-leader-addr";
/// Metadata key saying whether a failed write may still take effect: [`NOT_PROPOSED`] or
/// [`OUTCOME_UNKNOWN`]. Clients take a retryable status without it as unknown.
pub const OUTCOME_KEY: &str = "x-ledger-outcome";
/// Metadata key on a refusal for lack of room: how many milliseconds the node suggests waiting
/// before the next attempt; the name gRPC's retry design (proposal A6) gives server pushback.
pub const RETRY_PUSHBACK_KEY: &str = "grpc-retry-pushback-ms";
/// [`OUTCOME_KEY`]'s value when nothing was proposed.
pub const NOT_PROPOSED: &str = "not-proposed";
/// [`OUTCOME_KEY`]'s value when the write was proposed and may still commit.
pub const OUTCOME_UNKNOWN: &str = "unknown";

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        match error {
            ApiError::InvalidArgument {
                ref field,
                ref reason,
            } => invalid_argument(field, reason, error.to_string()),
            ApiError::Command(command) => command_status(command),
            ApiError::NotFound(_) | ApiError::Archived(_) => Status::not_found(error.to_string()),
            ApiError::NoLeader {
                leader_id,
                ref leader_addr,
            } => {
                let mut status = Status::unavailable(error.to_string());
                hint(&mut status, leader_id, leader_addr.as_deref());
                mark(status, NOT_PROPOSED)
            }
            ApiError::Unavailable(_) => mark(Status::unavailable(error.to_string()), NOT_PROPOSED),
            ApiError::Overloaded { retry_after, .. } => {
                let mut status = Status::resource_exhausted(error.to_string());
                let millis = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
                status
                    .metadata_mut()
                    .insert(RETRY_PUSHBACK_KEY, MetadataValue::from(millis));
                mark(status, NOT_PROPOSED)
            }
            ApiError::OutcomeUnknown {
                leader_id,
                ref leader_addr,
                ..
            } => {
                let mut status = Status::unavailable(error.to_string());
                hint(&mut status, leader_id, leader_addr.as_deref());
                mark(status, OUTCOME_UNKNOWN)
            }
            ApiError::Timeout(_) => mark(
                Status::deadline_exceeded(error.to_string()),
                OUTCOME_UNKNOWN,
            ),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(error.to_string()),
            ApiError::ForeignCluster { .. } | ApiError::PermissionDenied(_) => {
                Status::permission_denied(error.to_string())
            }
            ApiError::Forwarded(status) => status,
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Status::internal("internal error; see the node's log")
            }
        }
    }
}

/// The leader hint of an `UNAVAILABLE`.
fn hint(status: &mut Status, leader_id: Option<u64>, leader_addr: Option<&str>) {
    if let Some(id) = leader_id {
        status
            .metadata_mut()
            .insert(LEADER_ID_KEY, MetadataValue::from(id));
    }
    if let Some(addr) = leader_addr.and_then(|a| a.parse().ok()) {
        status.metadata_mut().insert(LEADER_ADDR_KEY, addr);
    }
}

pub(crate) fn mark(mut status: Status, outcome: &'static str) -> Status {
    status
        .metadata_mut()
        .insert(OUTCOME_KEY, MetadataValue::from_static(outcome));
    status
}

/// One failed request of a `SubmitBatch`, shaped like the status a lone `Submit` would get,
/// with the outcome marker as a field.
pub fn request_error(error: ApiError) -> pb::RequestError {
    let field = match &error {
        ApiError::InvalidArgument { field, .. }
        | ApiError::Command(CommandError::InvalidArgument { field, .. }) => field.to_string(),
        _ => String::new(),
    };
    let status = Status::from(error);
    let outcome = match status
        .metadata()
        .get(OUTCOME_KEY)
        .and_then(|v| v.to_str().ok())
    {
        Some(NOT_PROPOSED) => pb::WriteOutcome::NotProposed,
        Some(OUTCOME_UNKNOWN) => pb::WriteOutcome::Unknown,
        _ => pb::WriteOutcome::Unspecified,
    };
    pb::RequestError {
        code: status.code() as u32,
        message: status.message().to_owned(),
        field,
        outcome: outcome as i32,
    }
}

fn command_status(error: CommandError) -> Status {
    let message = error.to_string();
    match error {
        CommandError::InvalidArgument { field, reason } => {
            invalid_argument(&field, &reason, message)
        }
        CommandError::RequestConflict { .. } | CommandError::DealConflict { .. } => {
            Status::already_exists(message)
        }
        CommandError::DealNotFound { .. } | CommandError::InvestmentNotFound { .. } => {
            Status::not_found(message)
        }
        CommandError::NotCompensable { .. }
        | CommandError::NotWaitlisted { .. }
        | CommandError::DealArchived { .. }
        | CommandError::DealOpen { .. }
        | CommandError::SagasOpen { .. }
        | CommandError::ReceiptHeadMismatch { .. } => Status::failed_precondition(message),
    }
}

/// `INVALID_ARGUMENT` with a `google.rpc.BadRequest` field violation, so clients can point at
/// the field without parsing the message.
fn invalid_argument(field: &str, reason: &str, message: String) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request_violation(field, reason),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(status: &'a Status, key: &str) -> Option<&'a str> {
        status.metadata().get(key).and_then(|v| v.to_str().ok())
    }

    fn outcome(status: &Status) -> Option<&str> {
        header(status, OUTCOME_KEY)
    }

    #[test]
    fn refusals_before_proposing_say_so_and_unknown_outcomes_say_unknown() {
        let no_leader = Status::from(ApiError::NoLeader {
            leader_id: Some(3),
            leader_addr: Some("127.0.0.1:7003".into()),
        });
        assert_eq!(no_leader.code(), Code::Unavailable);
        assert_eq!(outcome(&no_leader), Some(NOT_PROPOSED));
        let shutting_down = Status::from(ApiError::Unavailable("shutting down".into()));
        assert_eq!(outcome(&shutting_down), Some(NOT_PROPOSED));

        let unknown = Status::from(ApiError::OutcomeUnknown {
            reason: "lost the leadership".into(),
            leader_id: Some(3),
            leader_addr: Some("127.0.0.1:7003".into()),
        });
        assert_eq!(unknown.code(), Code::Unavailable, "retryable");
        assert_eq!(outcome(&unknown), Some(OUTCOME_UNKNOWN));
        assert_eq!(header(&unknown, LEADER_ADDR_KEY), Some("127.0.0.1:7003"));
        let overloaded = Status::from(ApiError::Overloaded {
            reason: "queue full".into(),
            retry_after: std::time::Duration::from_millis(250),
        });
        assert_eq!(overloaded.code(), Code::ResourceExhausted);
        assert_eq!(outcome(&overloaded), Some(NOT_PROPOSED));
        assert_eq!(header(&overloaded, RETRY_PUSHBACK_KEY), Some("250"));

        let timeout = Status::from(ApiError::Timeout("no new leader".into()));
        assert_eq!(timeout.code(), Code::DeadlineExceeded);
        assert_eq!(outcome(&timeout), Some(OUTCOME_UNKNOWN));

        // Definite answers carry no marker.
        assert_eq!(
            outcome(&Status::from(ApiError::invalid("amount", "bad"))),
            None
        );
    }

    #[test]
    fn batch_items_carry_the_marker_as_a_field() {
        let unknown = request_error(ApiError::outcome_unknown("lost the leadership"));
        assert_eq!(unknown.code, Code::Unavailable as u32);
        assert_eq!(unknown.outcome(), pb::WriteOutcome::Unknown);
        let not_proposed = request_error(ApiError::NoLeader {
            leader_id: None,
            leader_addr: None,
        });
        assert_eq!(not_proposed.outcome(), pb::WriteOutcome::NotProposed);
        let invalid = request_error(ApiError::invalid("amount", "not money"));
        assert_eq!(
            (invalid.code, invalid.field.as_str(), invalid.outcome()),
            (
                Code::InvalidArgument as u32,
                "amount",
                pb::WriteOutcome::Unspecified
            )
        );
    }
}
