//! `ledger-node` built with a test-only sabotage (feature `sabotage-skip-seat-check`: deals
//! admit past their seat limit), for the Jepsen suite's test that the checker catches it. Never
//! built by default (`required-features`), never shipped.

fn main() -> std::process::ExitCode {
    ledger_node::cli::main()
}
