//! Times the checker on a generated run of about 1,000,000 client operations (a measurement to
//! run by hand, not a test):
//!
//! ```text
//! cargo run --release -p ledger-jepsen --example check_million [ops]
//! ```

use std::time::{Duration, Instant};

use ledger_jepsen::check::{check, render_text};
use ledger_jepsen::synth::{generate, SynthConfig};

fn main() {
    let ops = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let config = SynthConfig {
        seed: 1,
        deals: 500,
        max_investors: 200,
        deal_amount_cents: 1_000_000,
        users: 50_000,
        ops,
        batch_max: 64,
        nodes: 3,
    };
    let started = Instant::now();
    let input = generate(&config);
    let generated = started.elapsed();
    let investments: usize = input.finals.iter().map(|n| n.investments.len()).sum();
    println!(
        "generated {} ops, {} final investments over {} nodes, {} audit events in {:.2?}",
        input.history.len(),
        investments,
        input.finals.len(),
        input.audit.as_ref().map_or(0, |a| a.events.len()),
        generated
    );
    let started = Instant::now();
    let cpu_started = cpu_time();
    let verdicts = check(&input);
    let cpu = cpu_time() - cpu_started;
    let checked = started.elapsed();
    println!("{}", render_text(&verdicts));
    // CPU time too: on a shared machine the wall time says more about the neighbours.
    println!("check took {checked:.2?} wall, {cpu:.2?} CPU");
}

/// CPU time this process has used (user and system, every thread).
fn cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call to fill in.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}
