//! `ledger-sim --seeds N [--seed S]`: runs seeds S, S+1, ... and prints one line per failing
//! seed (with the command that replays it), then `N seeds, F failures`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ledger_sim::{run_seed, Options};

#[derive(Parser)]
#[command(about = "Deterministic simulation of an admission-ledger cluster")]
struct Args {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of client load per seed (simulated).
    #[arg(long, default_value_t = 10)]
    load_s: u64,
    /// Print every seed's outcome, not only failures.
    #[arg(long)]
    verbose: bool,
    /// Print the checker's whole report for every seed.
    #[arg(long)]
    report: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = Options {
        load: Duration::from_secs(args.load_s),
        ..Options::default()
    };
    let mut failures = 0u64;
    for seed in args.seed..args.seed + args.seeds {
        let outcome = std::panic::catch_unwind(|| run_seed(seed, &options));
        let replay = format!("scripts/simulate.sh --seeds 1 --seed {seed}");
        match outcome {
            Ok(Ok(outcome)) if !outcome.failed() => {
                if args.report {
                    println!("{}", ledger_jepsen::check::render_text(&outcome.verdicts));
                }
                if args.verbose || args.report {
                    println!(
                        "seed {seed}: ok, {} ops, {} faults, {} ms simulated, history {}",
                        outcome.ops,
                        outcome.faults.len(),
                        outcome.simulated_ms,
                        &outcome.history_hash[..16]
                    );
                }
            }
            Ok(Ok(outcome)) => {
                failures += 1;
                println!("FAIL seed {seed}: checker found violations; replay: {replay}");
                println!("{}", ledger_jepsen::check::render_text(&outcome.verdicts));
                for fault in &outcome.faults {
                    println!("  fault {fault}");
                }
            }
            Ok(Err(error)) => {
                failures += 1;
                println!("FAIL seed {seed}: {error:#}; replay: {replay}");
            }
            Err(_) => {
                failures += 1;
                println!("FAIL seed {seed}: panicked; replay: {replay}");
            }
        }
    }
    println!("{} seeds, {failures} failures", args.seeds);
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
