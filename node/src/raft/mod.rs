//! Everything that talks to openraft: the type configuration, the sled log store, the state
//! machine store, the network, the batcher (the leader's proposals), and the administration the
//! rest of the node needs (`admin.rs`). Outside this module only `lib.rs` (the wiring) names
//! openraft's types (`node/tests/tidy.rs`); the bytes of what is
//! persisted are `ledger_state_machine::codec::record`'s (`records.rs`).

// openraft's storage traits fix the error type (`StorageError`, over 200 bytes); our helpers
// return it as the traits do.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod backup;
pub mod batcher;
pub mod forward;
pub mod log_store;
pub mod mem_log;
pub mod network;
pub mod records;
pub mod runtime;
pub mod server;
pub mod state_machine;

use ledger_state_machine::codec::record::EncodedEntry;
use ledger_state_machine::Applied;
use serde::{Deserialize, Serialize};

/// What applying one log entry returns: one result per command, in the entry's order. Empty for
/// blank and membership entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReply {
    /// One result per command.
    pub results: Vec<Applied>,
}

openraft::declare_raft_types!(
    /// The openraft type configuration of the ledger: log entries carry a batch of state machine
    /// commands, encoded once by the leader's batcher ([`EncodedEntry`]); nodes are `u64` ids
    /// with a gRPC address.
    pub TypeConfig:
        D = EncodedEntry,
        R = ApplyReply,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = runtime::LedgerRuntime,
);

/// The Raft handle of this node.
pub type Raft = openraft::Raft<TypeConfig>;
/// An openraft log entry of this configuration.
pub type LogEntry = openraft::Entry<TypeConfig>;
/// A log id (term, node, index).
pub type LogId = openraft::LogId<u64>;
/// Storage errors, as openraft wants them.
pub type StorageError = openraft::StorageError<u64>;
