//! What a call through [`crate::Client`] can fail with, and which failures are worth a retry.

use std::time::Duration;

use tonic::Code;

use crate::VoterSetError;

/// A failed call. Capacity rejections are not errors: they are decisions
/// ([`crate::Decision`] with status `REJECTED`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The request is malformed; retrying it unchanged fails the same way.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The request conflicts with the ledger's state (a deal id taken, a deal already closed,
    /// a saga no longer open).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The named deal, investment or user is unknown.
    #[error("not found: {0}")]
    NotFound(String),
    /// No node could serve the call before the deadline. For a write this also means nothing
    /// was written: every attempt was refused before anything was proposed (the node said
    /// "not proposed": no leader, shutting down) or never reached a node (no connection). A
    /// write that may have taken effect is [`ClientError::OutcomeUnknown`] (submissions) or
    /// [`ClientError::OperationOutcomeUnknown`] (other writes) instead, never this.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// A `Submit` may or may not have been decided: every attempt until the deadline failed
    /// without a definite answer. Look the request up later by its id (`GetInvestment`); a
    /// retry with the same id can never admit twice. Inside a `SubmitBatch` result, the node
    /// said the request was proposed but it could not learn whether it was decided.
    #[error("outcome unknown for request {request_id} after {waited:?}: {last_error}")]
    OutcomeUnknown {
        /// The request's id.
        request_id: String,
        /// How long the client tried.
        waited: Duration,
        /// The last failure seen.
        last_error: String,
    },
    /// A write other than a submission (`CreateDeal`, `CloseDeal`, `CompensateSaga`,
    /// `AddLearner`, `ChangeMembership`, `TransferLeader`, `Init`, `TriggerSnapshot`) may or
    /// may not have taken effect: an attempt reached a node that may have proposed it (it
    /// timed out, its connection broke, or the node said the outcome is unknown) and no later
    /// attempt got a definite answer before the deadline. These writes are idempotent on the
    /// ledger, so repeating the same call is safe; or read the ledger to see whether it
    /// happened.
    #[error("outcome of {operation} unknown after {waited:?}: {last_error}")]
    OperationOutcomeUnknown {
        /// The write, with its arguments (`"CreateDeal seed-round"`).
        operation: String,
        /// How long the client tried.
        waited: Duration,
        /// The last failure seen.
        last_error: String,
    },
    /// `invest_and_wait`: the request was admitted, but its saga was not over by the deadline.
    #[error("request {request_id} still {status} at the deadline")]
    NotFinal {
        /// The request's id.
        request_id: String,
        /// Its last known status.
        status: String,
    },
    /// The last attempt, at the deadline or at [`crate::ClientConfig::max_attempts`], was
    /// refused for lack of room (`RESOURCE_EXHAUSTED`, marked "not proposed": the leader's
    /// queue of writes or a node's calls in flight were full), and no attempt may have written:
    /// nothing was written, and the same call may be sent again later. When an earlier attempt
    /// may have written, a submission is [`ClientError::OutcomeUnknown`] instead.
    #[error("overloaded, nothing was written: {0}")]
    Overloaded(String),
    /// Anything else the server said, with its gRPC code.
    #[error("{code:?}: {message}")]
    Other {
        /// The gRPC status code.
        code: Code,
        /// The server's message.
        message: String,
    },
    /// The client's own settings are unusable (no seeds, a malformed address).
    #[error("client configuration: {0}")]
    Config(String),
    /// [`crate::Client::promote`] or [`crate::Client::remove_member`] refused the change
    /// before sending anything.
    #[error(transparent)]
    VoterSet(#[from] VoterSetError),
}

impl ClientError {
    /// The gRPC-style name of the error, for reports that count errors by code.
    pub fn code_name(&self) -> &'static str {
        match self {
            ClientError::InvalidArgument(_) => "INVALID_ARGUMENT",
            ClientError::Conflict(_) => "CONFLICT",
            ClientError::NotFound(_) => "NOT_FOUND",
            ClientError::Unavailable(_) => "UNAVAILABLE",
            ClientError::Overloaded(_) => "RESOURCE_EXHAUSTED",
            ClientError::OutcomeUnknown { .. } | ClientError::OperationOutcomeUnknown { .. } => {
                "OUTCOME_UNKNOWN"
            }
            ClientError::NotFinal { .. } => "NOT_FINAL",
            ClientError::Other { .. } => "OTHER",
            ClientError::Config(_) => "CONFIG",
            ClientError::VoterSet(_) => "VOTER_SET",
        }
    }

    /// Whether the call may or may not have taken effect (either unknown-outcome variant).
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(
            self,
            ClientError::OutcomeUnknown { .. } | ClientError::OperationOutcomeUnknown { .. }
        )
    }
}

/// How the client treats a failed attempt.
pub(crate) enum Failure {
    /// A definite answer: stop and report it.
    Definite(ClientError),
    /// Worth another attempt, possibly at the node `leader_hint` names.
    Retry {
        leader_hint: Option<String>,
        message: String,
        /// Whether a write sent in this attempt may have taken effect.
        may_have_written: bool,
        /// The node's HTTP/2 layer refused the stream (`REFUSED_STREAM`): the connection had
        /// no room for another call, so the request reached no application code.
        stream_refused: bool,
        /// How long the node asks to be left alone before the next attempt
        /// ([`RETRY_PUSHBACK_KEY`], on its refusals for lack of room).
        pushback: Option<std::time::Duration>,
    },
}

/// Sorts a status into a definite error or a retry. Retried: `UNAVAILABLE` (no leader, a node
/// going away, connection errors), `DEADLINE_EXCEEDED` and `CANCELLED` (the attempt's own
/// timeout), `UNKNOWN`, `INTERNAL`, `ABORTED` and `RESOURCE_EXHAUSTED` (transient on a
/// replicated service). Everything else is the server's definite answer.
///
/// A retried failure may have written something unless the node said `not-proposed`
/// ([`OUTCOME_KEY`]), the connection was never established, or the node's HTTP/2 layer refused
/// the stream: a status without the marker (from a broken connection, a forwarding node, a
/// proxy) proves nothing.
pub(crate) fn classify(status: &tonic::Status) -> Failure {
    let message = status.message().to_owned();
    let stream_refused = stream_refused(status);
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => {
            Failure::Definite(ClientError::InvalidArgument(message))
        }
        Code::AlreadyExists | Code::FailedPrecondition => {
            Failure::Definite(ClientError::Conflict(message))
        }
        Code::NotFound => Failure::Definite(ClientError::NotFound(message)),
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::Internal
        | Code::Aborted
        | Code::ResourceExhausted => Failure::Retry {
            leader_hint: status
                .metadata()
                .get(LEADER_ADDR_KEY)
                .and_then(|v| v.to_str().ok())
                .filter(|addr| !addr.is_empty())
                .map(str::to_owned),
            message: format!("{:?}: {message}", status.code()),
            may_have_written: match status.metadata().get(OUTCOME_KEY).map(|v| v.to_str()) {
                Some(Ok(NOT_PROPOSED)) => false,
                Some(_) => true,
                None => !never_connected(status) && !stream_refused,
            },
            stream_refused,
            pushback: status
                .metadata()
                .get(RETRY_PUSHBACK_KEY)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .map(std::time::Duration::from_millis),
        },
        code => Failure::Definite(ClientError::Other { code, message }),
    }
}

/// Whether the status comes from failing to open a connection, so no request left the client.
fn never_connected(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::ConnectError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Whether the status comes from the peer resetting the stream with `REFUSED_STREAM`. HTTP/2
/// (RFC 9113 §8.7) guarantees such a stream was not processed; a server sends it for a stream
/// past its `SETTINGS_MAX_CONCURRENT_STREAMS`, which a client may open before it has read the
/// server's SETTINGS (hyper allows 100 then; `--max-streams-per-connection` can be lower).
fn stream_refused(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = error.source();
    }
    false
}

/// The response metadata key under which nodes name the leader's address.
pub const LEADER_ADDR_KEY: &str = "x-leader-addr";
/// The response metadata key under which a node says whether a failed write may still take
/// effect: [`NOT_PROPOSED`] or `unknown`.
pub const OUTCOME_KEY: &str = "x-ledger-outcome";
/// The response metadata key under which a node refusing a call for lack of room suggests how
/// many milliseconds to wait before the next attempt (gRPC's server pushback, proposal A6).
/// The library waits at least that long, and no longer than the call's deadline allows.
pub const RETRY_PUSHBACK_KEY: &str = "grpc-retry-pushback-ms";
/// [`OUTCOME_KEY`]'s value when the node proposed nothing.
pub const NOT_PROPOSED: &str = "not-proposed";

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(code: Code, outcome: Option<&str>) -> tonic::Status {
        let mut status = tonic::Status::new(code, "failed");
        if let Some(outcome) = outcome {
            status
                .metadata_mut()
                .insert(OUTCOME_KEY, outcome.parse().unwrap());
        }
        status
    }

    fn may_have_written(status: &tonic::Status) -> bool {
        match classify(status) {
            Failure::Retry {
                may_have_written, ..
            } => may_have_written,
            Failure::Definite(error) => panic!("{status:?} is retryable, got {error:?}"),
        }
    }

    #[test]
    fn only_the_nodes_not_proposed_says_a_failed_attempt_wrote_nothing() {
        assert!(!may_have_written(&marked(
            Code::Unavailable,
            Some(NOT_PROPOSED)
        )));
        assert!(may_have_written(&marked(
            Code::Unavailable,
            Some("unknown")
        )));
        // Unmarked: from a broken connection, a forwarding node or a proxy.
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Unknown,
            Code::Internal,
            Code::Aborted,
            Code::ResourceExhausted,
        ] {
            assert!(may_have_written(&marked(code, None)), "{code:?}");
        }
        // An unreadable or unexpected value proves nothing either.
        assert!(may_have_written(&marked(Code::Unavailable, Some("maybe"))));
    }

    #[test]
    fn a_stream_refused_by_http2_wrote_nothing_and_other_resets_prove_nothing() {
        // As tonic builds the status of a call whose stream the server reset: the h2 error
        // stays in the status's source chain.
        let reset = |reason| tonic::Status::from_error(Box::new(h2::Error::from(reason)));
        let refused = reset(h2::Reason::REFUSED_STREAM);
        assert!(matches!(
            classify(&refused),
            Failure::Retry {
                may_have_written: false,
                stream_refused: true,
                ..
            }
        ));
        for reason in [h2::Reason::CANCEL, h2::Reason::INTERNAL_ERROR] {
            assert!(matches!(
                classify(&reset(reason)),
                Failure::Retry {
                    may_have_written: true,
                    stream_refused: false,
                    ..
                }
            ));
        }
        // A node's explicit marker still wins.
        let mut marked_unknown = reset(h2::Reason::REFUSED_STREAM);
        marked_unknown
            .metadata_mut()
            .insert(OUTCOME_KEY, "unknown".parse().unwrap());
        assert!(may_have_written(&marked_unknown));
    }

    #[test]
    fn definite_codes_are_not_retried_and_retryable_ones_carry_the_hint() {
        assert!(matches!(
            classify(&tonic::Status::invalid_argument("amount")),
            Failure::Definite(ClientError::InvalidArgument(m)) if m == "amount"
        ));
        assert!(matches!(
            classify(&tonic::Status::already_exists("deal")),
            Failure::Definite(ClientError::Conflict(_))
        ));
        let mut status = tonic::Status::unavailable("not the leader");
        status
            .metadata_mut()
            .insert(LEADER_ADDR_KEY, "127.0.0.1:7002".parse().unwrap());
        match classify(&status) {
            Failure::Retry { leader_hint, .. } => {
                assert_eq!(leader_hint.as_deref(), Some("127.0.0.1:7002"))
            }
            Failure::Definite(e) => panic!("retryable status treated as definite: {e}"),
        }
        assert!(matches!(
            classify(&tonic::Status::deadline_exceeded("slow")),
            Failure::Retry {
                leader_hint: None,
                ..
            }
        ));
        assert!(matches!(
            classify(&tonic::Status::deadline_exceeded("slow")),
            Failure::Retry {
                may_have_written: true,
                ..
            }
        ));
        assert!(matches!(
            classify(&tonic::Status::permission_denied("token")),
            Failure::Definite(ClientError::Other {
                code: Code::PermissionDenied,
                ..
            })
        ));
    }
}
