//! The same seed gives the same history; another seed another one.

use ledger_sim::{run_seed, Options};

#[test]
fn a_seed_replays_its_history_exactly() {
    let options = Options::default();
    let first = run_seed(11, &options).expect("seed 11 runs");
    let again = run_seed(11, &options).expect("seed 11 runs again");
    assert!(first.ops > 50, "too little happened: {} ops", first.ops);
    assert!(!first.faults.is_empty(), "seed 11 drew no fault");
    assert_eq!(first.history_hash, again.history_hash);
    assert_eq!(first.faults, again.faults);
    assert_eq!(first.simulated_ms, again.simulated_ms);
    let other = run_seed(12, &options).expect("seed 12 runs");
    assert_ne!(first.history_hash, other.history_hash);
}
