//! The command line of `ledger-sim` (and of `ledger-sim-sabotaged`, the same program built with
//! a test-only sabotage): `--seeds N [--seed S]` runs seeds S, S+1, ... and prints one line per
//! failing seed (with the command that replays it), then `N seeds, F failures`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::{run_seed, MembershipChanges, Options};

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
    /// Stop at the first failing seed.
    #[arg(long)]
    first_failure: bool,
    /// Whether seeds change the membership while the load runs (`auto`: half of them, drawn
    /// from the seed).
    #[arg(long, value_enum, default_value_t = MembershipChanges::Auto)]
    membership: MembershipChanges,
    /// Run this one seed in this process (what the batch runs each seed with).
    #[arg(long, hide = true)]
    one: Option<u64>,
}

/// Runs the command line; the exit code says whether every seed passed.
pub fn cli_main() -> ExitCode {
    let args = Args::parse();
    // Quiet unless RUST_LOG asks: a failing seed is replayed with RUST_LOG=info to read it.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_ansi(false)
        .init();
    if !crate::deterministic() {
        eprintln!(
            "warning: built without --cfg tokio_unstable (RUSTFLAGS replaced .cargo/config.toml): \
             a seed may not replay exactly"
        );
    }
    let options = Options {
        load: Duration::from_secs(args.load_s),
        membership: args.membership,
        ..Options::default()
    };
    if let Some(seed) = args.one {
        return match one(seed, &options, &args) {
            true => ExitCode::SUCCESS,
            false => ExitCode::FAILURE,
        };
    }
    // Each seed in a process of its own, as its replay will run: nothing one run leaves in the
    // process (the tables' hash seed, std's hash keys, tokio's task ids) can reach the next,
    // and a seed that aborts the process fails alone.
    let me = match std::env::current_exe() {
        Ok(me) => me,
        Err(error) => {
            eprintln!("ledger-sim: cannot find its own executable: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut failures = 0u64;
    let mut ran = 0u64;
    for seed in args.seed..args.seed + args.seeds {
        if args.first_failure && failures > 0 {
            break;
        }
        ran += 1;
        let mut child = std::process::Command::new(&me);
        child.args([
            "--one",
            &seed.to_string(),
            "--load-s",
            &args.load_s.to_string(),
            "--membership",
            membership_flag(args.membership),
        ]);
        if args.verbose {
            child.arg("--verbose");
        }
        if args.report {
            child.arg("--report");
        }
        match child.status() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                failures += 1;
                if status.code() != Some(1) {
                    println!(
                        "FAIL seed {seed}: the process ended with {status}; replay: {}",
                        replay(seed, args.membership)
                    );
                }
            }
            Err(error) => {
                failures += 1;
                println!("FAIL seed {seed}: could not start: {error}");
            }
        }
    }
    println!("{ran} seeds, {failures} failures");
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn membership_flag(membership: MembershipChanges) -> &'static str {
    match membership {
        MembershipChanges::Auto => "auto",
        MembershipChanges::On => "on",
        MembershipChanges::Off => "off",
    }
}

fn replay(seed: u64, membership: MembershipChanges) -> String {
    match membership {
        MembershipChanges::Auto => format!("scripts/simulate.sh --seeds 1 --seed {seed}"),
        other => format!(
            "scripts/simulate.sh --seeds 1 --seed {seed} --membership {}",
            membership_flag(other)
        ),
    }
}

/// Runs `seed` in this process, prints what it found; true when it passed.
fn one(seed: u64, options: &Options, args: &Args) -> bool {
    let replay = replay(seed, args.membership);
    match std::panic::catch_unwind(|| run_seed(seed, options)) {
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
                    outcome.history_hash
                );
            }
            true
        }
        Ok(Ok(outcome)) => {
            println!("FAIL seed {seed}: checker found violations; replay: {replay}");
            println!("{}", ledger_jepsen::check::render_text(&outcome.verdicts));
            for fault in &outcome.faults {
                println!("  fault {fault}");
            }
            false
        }
        Ok(Err(error)) => {
            println!("FAIL seed {seed}: {error:#}; replay: {replay}");
            false
        }
        Err(_) => {
            println!("FAIL seed {seed}: panicked; replay: {replay}");
            false
        }
    }
}
