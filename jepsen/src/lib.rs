//! `ledger-jepsen`: a Jepsen-style test of the admission ledger on real processes.
//!
//! - [`history`]: the recorded operations and final reads, the checker's input;
//! - [`check`]: the checker, which turns a [`history::CheckInput`] into verdicts on I1–I9;
//! - [`synth`]: valid synthetic runs made with a real state machine, to test and time the
//!   checker without a cluster.

pub mod check;
pub mod history;
pub mod synth;
