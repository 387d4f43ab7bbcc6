//! The same seed gives the same history; another seed another one. Each run is a process of its
//! own, as a replay from the command line is.

use std::process::Command;

/// `(history hash, the whole line)` of one run of `seed`, without membership changes (as this
/// test ran before they existed; `docs/SIMULATION.md`, "Determinism", says which seeds do not
/// replay exactly yet).
fn run(seed: u64) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
        .args(["--seeds", "1", "--seed", &seed.to_string(), "--verbose"])
        .args(["--membership", "off"])
        .output()
        .expect("run ledger-sim");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "seed {seed} failed:\n{text}");
    let line = text
        .lines()
        .find(|line| line.starts_with(&format!("seed {seed}: ok")))
        .unwrap_or_else(|| panic!("no outcome line:\n{text}"))
        .to_owned();
    let hash = line
        .rsplit_once("history ")
        .map(|(_, hash)| hash.to_owned())
        .expect("a history hash");
    (hash, line)
}

#[test]
fn a_seed_replays_its_history_exactly() {
    assert!(
        ledger_sim::deterministic(),
        "built without --cfg tokio_unstable: did a RUSTFLAGS variable replace .cargo/config.toml?"
    );
    let (first, line) = run(11);
    let ops: u64 = line
        .split(", ")
        .find_map(|part| part.strip_suffix(" ops"))
        .and_then(|n| n.rsplit(' ').next()?.parse().ok())
        .expect("an op count");
    assert!(ops > 50, "too little happened: {line}");
    assert!(!line.contains(" 0 faults"), "seed 11 drew no fault: {line}");
    let (again, line_again) = run(11);
    assert_eq!(first, again, "\n{line}\n{line_again}");
    assert_eq!(line, line_again);
    let (other, _) = run(12);
    assert_ne!(first, other);
}
