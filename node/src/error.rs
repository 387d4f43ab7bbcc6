//! Errors of the node, one enum per layer. [`ApiError`] is what an RPC fails with; `grpc/status.rs`
//! is the one place that turns it into a gRPC status. [`StartError`] is what keeps a node from
//! starting (bad config, corrupt storage).

use std::borrow::Cow;

use ledger_state_machine::CommandError;

/// Why an RPC failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field is malformed; `INVALID_ARGUMENT` with a field violation. Nothing was proposed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field, as named in the API.
        field: Cow<'static, str>,
        /// What is wrong.
        reason: String,
    },
    /// The state machine refused the command; nothing changed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The thing asked for does not exist; `NOT_FOUND`.
    #[error("{0} not found")]
    NotFound(String),
    /// The deal asked for was archived: its records live in its export; `NOT_FOUND`.
    #[error("{0} archived")]
    Archived(String),
    /// No leader is known, or this node is not the leader; `UNAVAILABLE`, retryable, with the
    /// leader's id and address in the `x-leader-id` / `x-leader-addr` metadata when known.
    /// Raised only before anything was proposed, so it tells the client "not proposed".
    #[error("no leader available{}", hint_text(.leader_id, .leader_addr))]
    NoLeader {
        /// The leader's id, if known.
        leader_id: Option<u64>,
        /// The leader's address, if known.
        leader_addr: Option<String>,
    },
    /// The node is shutting down or its Raft stopped; `UNAVAILABLE`, retry elsewhere. For a
    /// write, raised only before anything was proposed ("not proposed"); a write that may have
    /// been proposed fails with [`ApiError::OutcomeUnknown`] instead.
    #[error("node unavailable: {0}")]
    Unavailable(String),
    /// A write was proposed but this node cannot tell whether its entry committed (it lost the
    /// leadership, its Raft stopped, or the entry was cut from its log, which does not prove that
    /// another node's copy will not commit): it may still take effect. `UNAVAILABLE` (retryable:
    /// every write is idempotent) marked "outcome unknown", with the leader hint when known.
    #[error("outcome unknown: {reason}{}", hint_text(.leader_id, .leader_addr))]
    OutcomeUnknown {
        /// What happened.
        reason: String,
        /// The leader's id, if known.
        leader_id: Option<u64>,
        /// The leader's address, if known.
        leader_addr: Option<String>,
    },
    /// The leader's queue of commands waiting for a log entry is full, or its writes wait too
    /// long (back-pressure); `RESOURCE_EXHAUSTED`, retryable, marked "not proposed", with the
    /// wait the leader suggests before another attempt (`grpc-retry-pushback-ms`).
    #[error("overloaded: {reason}")]
    Overloaded {
        reason: String,
        retry_after: std::time::Duration,
    },
    /// The operation did not finish in time; its outcome is unknown; `DEADLINE_EXCEEDED`,
    /// marked "outcome unknown".
    #[error("timed out: {0}")]
    Timeout(String),
    /// The cluster is not in a state that allows this; `FAILED_PRECONDITION`.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A Raft message from another cluster; `PERMISSION_DENIED`.
    #[error("request from cluster {theirs:?}, which is not this node's cluster")]
    ForeignCluster {
        /// The cluster id the sender claimed.
        theirs: String,
    },
    /// The caller's credentials do not allow this; `PERMISSION_DENIED`.
    #[error("{0}")]
    PermissionDenied(String),
    /// The leader answered a forwarded call with this status; passed on as it is.
    #[error("{}", .0.message())]
    Forwarded(tonic::Status),
    /// A bug or an I/O failure; clients see a generic message, the log has the details.
    #[error("internal error: {0}")]
    Internal(String),
}

fn hint_text(leader_id: &Option<u64>, leader_addr: &Option<String>) -> String {
    match (leader_id, leader_addr) {
        (Some(id), Some(addr)) => format!("; try leader {id} at {addr}"),
        (Some(id), None) => format!("; leader is {id}"),
        _ => String::new(),
    }
}

impl ApiError {
    /// An [`ApiError::OutcomeUnknown`] without a leader hint.
    pub fn outcome_unknown(reason: impl Into<String>) -> ApiError {
        ApiError::OutcomeUnknown {
            reason: reason.into(),
            leader_id: None,
            leader_addr: None,
        }
    }

    /// An `INVALID_ARGUMENT` for `field`.
    pub fn invalid(field: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag or setting is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data folder cannot be used.
    #[error("data folder {path}: {error}")]
    DataDir {
        /// The folder.
        path: std::path::PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The Raft log failed its start-up check; the node refuses to vote or lead on it.
    #[error("refusing to start: the Raft log is corrupt ({0}); restore this node from its peers (remove it from the cluster, wipe its data folder, add it back as a learner)")]
    CorruptLog(#[from] crate::raft::log_store::CorruptLog),
    /// The stored snapshot is unreadable.
    #[error("refusing to start: {0}")]
    CorruptSnapshot(#[from] crate::raft::state_machine::SnapshotLoadError),
    /// openraft refused to start.
    #[error("raft failed to start: {0}")]
    Raft(String),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}
