//! `ledger-sim --seeds N [--seed S]`: see `ledger_sim::cli`.

fn main() -> std::process::ExitCode {
    ledger_sim::cli_main()
}
