//! `ledger-jepsen`: run the Jepsen-style suite (`run`), re-check a recorded run (`check`), or
//! remove what interrupted runs left behind (`cleanup`). `scripts/jepsen.sh` is the front door.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ledger_jepsen::check;
use ledger_jepsen::history::CheckInput;
use ledger_jepsen::nemesis::Family;
use ledger_jepsen::run::{run, RunConfig};

#[derive(Parser)]
#[command(
    name = "ledger-jepsen",
    about = "Jepsen-style fault injection for admission-ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One run: cluster in network namespaces, load, nemesis, checker, report.
    Run {
        /// The nemesis family.
        #[arg(long, value_enum, default_value_t = Family::Mixed)]
        nemesis: Family,
        /// Seconds of load and faults.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// Seed of the schedule and every random choice; random when absent (printed at start).
        #[arg(long)]
        seed: Option<u64>,
        /// Voters at start.
        #[arg(long, default_value_t = 3)]
        voters: usize,
        /// Client operations per second (all workers).
        #[arg(long, default_value_t = 150.0)]
        rate: f64,
        /// Concurrent client workers.
        #[arg(long, default_value_t = 12)]
        workers: usize,
        /// Folder for run reports.
        #[arg(long, default_value = "jepsen-runs")]
        out: PathBuf,
        /// The ledger-node binary (default: beside this one).
        #[arg(long)]
        node_bin: Option<PathBuf>,
        /// The ledger-partners binary (default: beside this one).
        #[arg(long)]
        partners_bin: Option<PathBuf>,
        /// Run without saga executors (no money check).
        #[arg(long)]
        no_executors: bool,
        /// Seconds the cluster gets after healing to show liveness (I8).
        #[arg(long, default_value_t = 120)]
        liveness_s: u64,
    },
    /// Re-runs the checker on a run folder's `check-input.json`.
    Check {
        /// The run folder.
        dir: PathBuf,
    },
    /// Removes namespaces, links and cgroups left by interrupted runs.
    Cleanup,
    /// Builds the slow-fsync `LD_PRELOAD` shim (the disk nemeses' tool) into a folder and prints
    /// its path: preloaded with `LJP_SLOW_FSYNC_FILE=F`, every fsync waits the milliseconds
    /// written in F (`scripts/fsync-blips.sh` uses it outside the suite).
    Shim {
        /// Where to build it.
        dir: PathBuf,
    },
    /// Prints one Markdown table row per run folder (for docs/JEPSEN.md).
    Table {
        /// Run folders.
        dirs: Vec<PathBuf>,
    },
}

fn beside_me(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn exit_for(verdicts: &check::Verdicts) -> ExitCode {
    let text = check::render_text(verdicts);
    print!("{text}");
    ExitCode::from(match verdicts.overall {
        check::Overall::Valid => 0,
        check::Overall::Invalid => 1,
        check::Overall::Unknown => 2,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ledger-jepsen: {error}");
            return ExitCode::from(3);
        }
    };
    match cli.command {
        Command::Cleanup => match ledger_jepsen::net::cleanup_leftovers() {
            Ok(removed) => {
                for what in removed {
                    println!("removed {what}");
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("ledger-jepsen cleanup: {error:#}");
                ExitCode::from(3)
            }
        },
        Command::Shim { dir } => match std::fs::create_dir_all(&dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| ledger_jepsen::procs::build_slow_fsync_shim(&dir))
        {
            Ok(path) => {
                println!("{}", path.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("ledger-jepsen shim: {error:#}");
                ExitCode::from(3)
            }
        },
        Command::Table { dirs } => {
            println!("{}", ledger_jepsen::summary::HEADER);
            for dir in dirs {
                match ledger_jepsen::summary::row(&dir) {
                    Ok(row) => println!("{row}"),
                    Err(error) => eprintln!("{}: {error:#}", dir.display()),
                }
            }
            ExitCode::SUCCESS
        }
        Command::Check { dir } => {
            let input: CheckInput = match std::fs::read(dir.join("check-input.json"))
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(serde_json::from_slice(&bytes)?))
            {
                Ok(input) => input,
                Err(error) => {
                    eprintln!("ledger-jepsen check: {error:#}");
                    return ExitCode::from(3);
                }
            };
            exit_for(&check::check(&input))
        }
        Command::Run {
            nemesis,
            time,
            seed,
            voters,
            rate,
            workers,
            out,
            node_bin,
            partners_bin,
            no_executors,
            liveness_s,
        } => {
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
            let config = RunConfig {
                family: nemesis,
                time: Duration::from_secs(time),
                seed,
                voters,
                rate,
                workers,
                out,
                node_bin: node_bin.unwrap_or_else(|| beside_me("ledger-node")),
                partners_bin: partners_bin.unwrap_or_else(|| beside_me("ledger-partners")),
                executors: !no_executors,
                liveness_timeout: Duration::from_secs(liveness_s),
            };
            let outcome = runtime.block_on(async {
                tokio::select! {
                    outcome = run(config) => outcome,
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
                }
            });
            match outcome {
                Ok(outcome) => {
                    println!("report: {}", outcome.dir.join("report.md").display());
                    exit_for(&outcome.verdicts)
                }
                Err(error) => {
                    eprintln!("ledger-jepsen run: {error:#}");
                    ExitCode::from(3)
                }
            }
        }
    }
}
