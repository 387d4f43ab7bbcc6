//! `ledger-sim`: a deterministic simulation of an admission-ledger cluster.
//!
//! One seed is one run: turmoil hosts the nodes (each the real `ledger_node::run_with`, on the
//! simulation's clock, transport and disk) and a client that drives the Jepsen workload; the
//! seed draws the network, the faults and their schedule, and the workload's choices. When the
//! load ends every fault is healed, the client reads what each node holds, and the Jepsen
//! checker (`ledger_jepsen::check`) judges the history. The same seed gives the same history:
//! [`Outcome::history_hash`] says so.

mod cli;
pub mod clock;
pub mod net;
mod scenario;

/// Whether this build replays a seed exactly: tokio draws `select!` branch orders and `watch`
/// wake orders from its runtime's generator, which turmoil seeds only when tokio is built with
/// `--cfg tokio_unstable` (`.cargo/config.toml`; a RUSTFLAGS variable replaces it).
pub fn deterministic() -> bool {
    cfg!(tokio_unstable)
}

pub use cli::cli_main;
pub use scenario::{run_seed, MembershipChanges, Options, Outcome};
