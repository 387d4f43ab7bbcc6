//! A watchdog for the async runtime: a task that asks to wake every [`PERIOD`] and notes how
//! late it woke. A late wake-up means every task on the runtime waited that long (a blocking
//! call on a worker, CPU starvation, a long poll), which shows up as a latency spike nowhere
//! else in the logs. Stalls over [`STALL_REPORTED`] are logged and counted for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the watchdog asks to wake.
pub const PERIOD: Duration = Duration::from_millis(10);
/// Lateness beyond which a wake-up counts as a stall.
pub const STALL_REPORTED: Duration = Duration::from_millis(50);

static STALLS: AtomicU64 = AtomicU64::new(0);
static WORST_MS: AtomicU64 = AtomicU64::new(0);

/// Stalls seen since start, and the worst lateness in milliseconds.
pub fn observed() -> (u64, u64) {
    (
        STALLS.load(Ordering::Relaxed),
        WORST_MS.load(Ordering::Relaxed),
    )
}

/// Starts the watchdog on the current runtime.
pub fn spawn_watchdog(node_id: u64) {
    tokio::spawn(async move {
        let started = Instant::now();
        loop {
            let before = Instant::now();
            tokio::time::sleep(PERIOD).await;
            let late = before.elapsed().saturating_sub(PERIOD);
            if late > STALL_REPORTED {
                let late_ms = late.as_millis() as u64;
                STALLS.fetch_add(1, Ordering::Relaxed);
                WORST_MS.fetch_max(late_ms, Ordering::Relaxed);
                tracing::warn!(
                    node_id,
                    late_ms,
                    uptime_ms = started.elapsed().as_millis() as u64,
                    "async runtime stalled"
                );
            }
        }
    });
}
