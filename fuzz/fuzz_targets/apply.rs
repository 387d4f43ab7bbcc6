//! `AdmissionState::apply_entry` on sequences of entries read from the input (see
//! `ledger_fuzz::Program`): create, close, submit (varied users and edge amounts), heartbeats
//! (caught up or lagging), retirements, saga step results (current, stale or forged fences),
//! aborts and parameter changes, with log time moving forwards, backwards and by leaps, and
//! indexes that repeat or skip.
//!
//! Asserts: `apply_entry` never panics; an entry at an index already applied is refused with
//! nothing changed; after every entry `check_invariants` (I1–I3, status/saga fit, saga
//! ownership, coherence of every derived value) holds; a command refused with a `CommandError`
//! changed nothing; at the end the queries answer, the snapshot round-trips to the same digest
//! and bytes, and replaying the entries on a fresh state reaches the same digest.

#![no_main]

use ledger_fuzz::{Driver, Program};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|program: Program| {
    let mut driver = Driver::new();
    driver.run(&program, true);
    driver.check_at_rest();
});
