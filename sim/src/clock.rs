//! A node's clocks in the simulation: the monotonic clock is the node's tokio clock (turmoil
//! advances it); the wall clock is the simulation's epoch plus elapsed time plus an offset the
//! scenario moves to skew or jump it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use ledger_node::clock::Clock;

/// The wall clock of every node starts here (2026-01-01T00:00:00Z), whatever the real date.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// One node's clock.
#[derive(Debug)]
pub struct SimClock {
    offset_ms: Arc<AtomicI64>,
}

impl SimClock {
    /// A clock whose wall time is moved by `offset_ms`, which the scenario holds too.
    pub fn new(offset_ms: Arc<AtomicI64>) -> SimClock {
        SimClock { offset_ms }
    }
}

impl Clock for SimClock {
    fn wall_ms(&self) -> u64 {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64;
        (EPOCH_MS + elapsed).saturating_add_signed(self.offset_ms.load(Ordering::Relaxed))
    }
}
