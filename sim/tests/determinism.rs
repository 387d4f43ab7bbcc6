//! The same seed gives the same history; another seed another one. Each run is a process of its
//! own, as a replay from the command line is.

use std::process::Command;

/// `(history hash, the whole line)` of one run of `seed`, with membership changes `on` or `off`.
fn run(seed: u64, membership: &str) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
        .args(["--seeds", "1", "--seed", &seed.to_string(), "--verbose"])
        .args(["--membership", membership])
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
    let (first, line) = run(11, "off");
    let ops: u64 = line
        .split(", ")
        .find_map(|part| part.strip_suffix(" ops"))
        .and_then(|n| n.rsplit(' ').next()?.parse().ok())
        .expect("an op count");
    assert!(ops > 50, "too little happened: {line}");
    assert!(!line.contains(" 0 faults"), "seed 11 drew no fault: {line}");
    let (again, line_again) = run(11, "off");
    assert_eq!(first, again, "\n{line}\n{line_again}");
    assert_eq!(line, line_again);
    let (other, _) = run(12, "off");
    assert_ne!(first, other);
}

/// Seeds that did not replay while maps with a random order held connections (the client's, a
/// node's) and watchers: dropping or waking them in another order closed the connections in
/// another order. Seed 18 gave 3 histories in 4 runs; seed 11 with membership changes, 2 in 7.
/// Each is run three times, since a random order can repeat by chance.
#[test]
fn seeds_that_diverged_replay_exactly() {
    for (seed, membership) in [(18, "off"), (11, "on")] {
        let (first, line) = run(seed, membership);
        for _ in 0..2 {
            let (again, line_again) = run(seed, membership);
            assert_eq!(first, again, "seed {seed}:\n{line}\n{line_again}");
        }
    }
}
