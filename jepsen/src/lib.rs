//! `ledger-jepsen`: a Jepsen-style test of the admission ledger on real processes.
//!
//! - [`history`]: the recorded operations and final reads, the checker's input;
//! - [`check`]: the checker, which turns a [`history::CheckInput`] into verdicts on I1–I9.

pub mod check;
pub mod history;
