//! Seeds that once failed, each with the bug it found (`docs/SIMULATION.md`, "Bugs found"). They
//! run on every build, besides the 200-seed run, without membership changes, as they ran when
//! they failed (membership changes draw other faults).

use std::process::Command;

/// Runs `seed` in the simulator and fails with its report if the checker finds a violation.
fn passes(seed: u64) {
    let output = Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
        .args(["--seeds", "1", "--seed", &seed.to_string(), "--report"])
        .args(["--membership", "off"])
        .output()
        .expect("run ledger-sim");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "seed {seed} fails:\n{text}");
    assert!(text.contains("1 seeds, 0 failures"), "seed {seed}:\n{text}");
}

/// A leader that crashed before flushing entries its followers had committed came back as the
/// leader of the same term (openraft 0.9 resumes a committed vote for itself) and answered a
/// linearizable read from its shorter log. Fixed by `raft::admin::step_down_on_start`.
#[test]
fn a_restarted_leader_does_not_resume_its_term() {
    for seed in [5398, 8434, 9764] {
        passes(seed);
    }
}

/// A fresh cluster's log time started in 1970 (a replica with no stamped entry reported log time
/// 0), and every lease and saga deadline lapsed. Fixed in `node/src/clock.rs`.
#[test]
fn log_time_starts_at_the_leaders_clock() {
    for seed in [55, 123, 228, 372] {
        passes(seed);
    }
}
