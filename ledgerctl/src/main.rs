//! `ledgerctl`: the operator CLI of the admission ledger. Every read command takes `--json`.
//!
//! Exit codes: 0 done; 1 failed; 2 bad usage; 3 outcome unknown (a write may or may not have
//! taken effect: running the same command again is safe); 4 learner added but still catching
//! up (`member add-learner`).
//!
//! `cli.rs` holds the flags and subcommands, `cmd/` runs them (one file per command group),
//! `exit.rs` turns a failure into a message and an exit code.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod cmd;
mod exit;
mod export;
mod load;
mod output;
mod peers;
mod plot;
mod redecide;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(&cli).await {
        Ok(code) => code,
        Err(error) => exit::report(&cli, &error),
    }
}
