//! `ledger-tests`: multi-process integration tests and the Jepsen-style harness.
//!
//! Empty until real `ledger-node` processes exist (issue #3). The state machine's own tests live
//! in `state-machine/tests/`.
