//! `ledger-node`: one replica of the admission ledger.
//!
//! Not built yet: openraft, the sled log store, the gRPC API and the saga executor land with
//! issues #3 and #4. Today this crate only links the state machine, so the workspace builds.

pub use ledger_state_machine as state_machine;
