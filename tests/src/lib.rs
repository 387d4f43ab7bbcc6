//! `ledger-tests`: multi-process integration tests of the admission ledger.
//!
//! The harness starts real `ledger-node` processes on free loopback ports, each with its own
//! temporary data folder, and drives them over gRPC:
//!
//! - [`binary::node_binary`] finds (or builds, once per test process) the `ledger-node` binary;
//! - [`cluster::TestCluster`] starts, initializes, kills, stops and restarts nodes, and waits for
//!   a leader or for the replicas to converge (I9); dropping it kills every process it started;
//! - [`wait::wait_until`] polls a condition within a bounded time;
//! - [`load`] submits with retries under the same request id, and records send/receive instants;
//! - [`check`] reads a deal's investments and checks the invariants I1–I5 against them;
//! - [`raft`] sends forged messages to a node's internal `Raft` service;
//! - [`saga`] runs nodes with saga executors against an in-process partner simulator, waits until
//!   every saga is over (I8) and checks the investments against the partners' audit (I7).
//!
//! The scenarios live in `tests/tests/*.rs`; the state machine's own tests live in
//! `state-machine/tests/`.

pub mod binary;
pub mod check;
pub mod cluster;
pub mod ctl;
pub mod faketime;
pub mod load;
pub mod metrics;
pub mod raft;
pub mod saga;
pub mod signal;
pub mod wait;

pub use cluster::{ClusterOptions, TestCluster};
pub use ledger_client::NodeClients;
pub use ledger_proto::pb;
pub use wait::{bounded, wait_until};

/// Bytes (a receipt's hash) as lowercase hex, as `ledgerctl` prints them.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A small deterministic pseudo-random generator (SplitMix64), so that scenarios are repeatable
/// without a dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..high` (`high > low`).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(high > low, "empty range {low}..{high}");
        low + self.next_u64() % (high - low)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }

    /// A random (version 4 style) request id.
    pub fn uuid(&mut self) -> String {
        let bits = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
        uuid::Builder::from_random_bytes(bits.to_be_bytes())
            .into_uuid()
            .to_string()
    }
}

/// A tool a test needs, found at `found`. When it is missing: panics with `CI=true` (`.ci/run`
/// installs every tool), else prints why and returns `None` so the test can skip.
pub fn required_tool(
    found: Option<std::path::PathBuf>,
    what: &str,
    install: &str,
) -> Option<std::path::PathBuf> {
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} is missing ({install}); .ci/run installs it"
        );
        eprintln!("skipped: {what} is not installed ({install})");
    }
    found
}
