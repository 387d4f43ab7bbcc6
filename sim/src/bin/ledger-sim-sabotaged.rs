//! `ledger-sim` built with the test-only sabotage `sabotage-skip-seat-check` (never in a
//! release of the ledger): every node's state machine skips the seat limit.

fn main() -> std::process::ExitCode {
    ledger_sim::cli_main()
}
