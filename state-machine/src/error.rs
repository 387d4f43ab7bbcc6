//! Errors of the state machine. Business rejections (a full deal, a closed deal…) are not errors:
//! they are [`crate::Verdict::Rejected`] decisions, recorded like admissions.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::ids::{IdError, RequestId};
use crate::money::MoneyError;
use crate::saga::SagaStep;

/// Why a command was refused without changing anything.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CommandError {
    /// A field is malformed; maps to `INVALID_ARGUMENT`.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The offending field, as named in the API.
        field: Cow<'static, str>,
        /// What is wrong with it.
        reason: String,
    },
    /// The request id was decided before with another payload; maps to `ALREADY_EXISTS`.
    #[error("request {request_id} already exists with a different deal, user or amount")]
    RequestConflict {
        /// The reused id.
        request_id: RequestId,
    },
    /// A deal with this id exists with other terms; maps to `ALREADY_EXISTS`.
    #[error("deal {deal_id} already exists with different terms")]
    DealConflict {
        /// The existing deal.
        deal_id: String,
    },
    /// The command names a deal that was never created; maps to `NOT_FOUND`.
    #[error("deal {deal_id} not found")]
    DealNotFound {
        /// The unknown deal.
        deal_id: String,
    },
    /// The command names an unknown investment; maps to `NOT_FOUND`.
    #[error("investment {request_id} not found")]
    InvestmentNotFound {
        /// The unknown id.
        request_id: RequestId,
    },
    /// The saga is past the point where compensation applies; maps to `FAILED_PRECONDITION`.
    #[error("saga of {request_id} is in step {step} and cannot be compensated")]
    NotCompensable {
        /// The investment.
        request_id: RequestId,
        /// Its current step.
        step: SagaStep,
    },
    /// The deal was archived: it takes no request or command any more; maps to
    /// `FAILED_PRECONDITION`.
    #[error("deal {deal_id} archived")]
    DealArchived {
        /// The deal.
        deal_id: String,
    },
    /// Only a CLOSED deal can be archived; maps to `FAILED_PRECONDITION`.
    #[error("deal {deal_id} is open; close it before archiving")]
    DealOpen {
        /// The deal.
        deal_id: String,
    },
    /// Only a deal whose sagas all ended can be archived; maps to `FAILED_PRECONDITION`.
    #[error("deal {deal_id} still has {open} saga(s) running; archive it once they end")]
    SagasOpen {
        /// The deal.
        deal_id: String,
        /// How many of its sagas have not reached DONE.
        open: usize,
    },
    /// The receipt head named is not the deal's: the caller's export is not the whole deal;
    /// maps to `FAILED_PRECONDITION`.
    #[error(
        "deal {deal_id}'s receipt head is {deal_seq}:{hash}, not the one given; export the \
         deal again and archive with its head"
    )]
    ReceiptHeadMismatch {
        /// The deal.
        deal_id: String,
        /// Its current head's sequence number.
        deal_seq: u64,
        /// Its current head's hash, hex.
        hash: String,
    },
    /// Only a WAITLISTED request can be withdrawn; maps to `FAILED_PRECONDITION`.
    #[error("{request_id} is {status} and not on a waitlist")]
    NotWaitlisted {
        /// The request.
        request_id: RequestId,
        /// Its current status.
        status: crate::outcome::Status,
    },
}

impl CommandError {
    pub(crate) fn invalid(field: &'static str, reason: &str) -> CommandError {
        CommandError::InvalidArgument {
            field: Cow::Borrowed(field),
            reason: reason.to_owned(),
        }
    }

    pub(crate) fn invalid_id(field: &'static str, error: IdError) -> CommandError {
        CommandError::InvalidArgument {
            field: Cow::Borrowed(field),
            reason: error.to_string(),
        }
    }

    pub(crate) fn invalid_money(field: &'static str, error: MoneyError) -> CommandError {
        CommandError::InvalidArgument {
            field: Cow::Borrowed(field),
            reason: error.to_string(),
        }
    }
}

/// Why a whole entry was refused: a bug or a misuse by the caller, never by a client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Entries must be applied in strictly increasing log order, each once.
    #[error("entry at log index {got} applied after index {last}")]
    OutOfOrder {
        /// The last index applied.
        last: u64,
        /// The index offered now.
        got: u64,
    },
    /// An entry may hold at most [`crate::ENTRY_COMMANDS_MAX`] commands.
    #[error("entry holds {0} commands, more than allowed")]
    TooManyCommands(usize),
}

/// Why a snapshot could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes do not start with the snapshot magic.
    #[error("not an admission-ledger snapshot")]
    BadMagic,
    /// Written by a format this build does not know.
    #[error("unsupported snapshot format version {0}")]
    UnsupportedVersion(u32),
    /// The payload does not decode.
    #[error("snapshot payload does not decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The state could not be encoded (an I/O error of the writer).
    #[error("snapshot could not be encoded: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The payload decodes but describes an impossible state.
    #[error("snapshot is inconsistent: {0}")]
    Inconsistent(String),
}

/// Why a query could not be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No deal with this id was created.
    #[error("deal {0} not found")]
    DealNotFound(String),
    /// The deal was archived; its records are in its export.
    #[error("deal {0} archived")]
    DealArchived(String),
}
