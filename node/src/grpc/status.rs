//! The one mapping from [`ApiError`] to a gRPC [`Status`] (`DESIGN.md` §5).

use ledger_state_machine::CommandError;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::ApiError;

/// Metadata key carrying the leader's node id on `UNAVAILABLE`.
pub const LEADER_ID_KEY: &str = "x-leader-id";
/// Metadata key carrying the leader's address on `UNAVAILABLE`.
pub const LEADER_ADDR_KEY: &str = "x-leader-addr";

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        match error {
            ApiError::InvalidArgument {
                ref field,
                ref reason,
            } => invalid_argument(field, reason, error.to_string()),
            ApiError::Command(command) => command_status(command),
            ApiError::NotFound(_) => Status::not_found(error.to_string()),
            ApiError::NoLeader {
                leader_id,
                ref leader_addr,
            } => {
                let mut status = Status::unavailable(error.to_string());
                if let Some(id) = leader_id {
                    status
                        .metadata_mut()
                        .insert(LEADER_ID_KEY, MetadataValue::from(id));
                }
                if let Some(addr) = leader_addr.as_deref().and_then(|a| a.parse().ok()) {
                    status.metadata_mut().insert(LEADER_ADDR_KEY, addr);
                }
                status
            }
            ApiError::Unavailable(_) => Status::unavailable(error.to_string()),
            ApiError::Timeout(_) => Status::deadline_exceeded(error.to_string()),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(error.to_string()),
            ApiError::ForeignCluster { .. } => Status::permission_denied(error.to_string()),
            ApiError::Forwarded(status) => status,
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Status::internal("internal error; see the node's log")
            }
        }
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
        CommandError::NotCompensable { .. } => Status::failed_precondition(message),
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
