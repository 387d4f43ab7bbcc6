//! `AdmissionState::decode_snapshot`, which loads a snapshot (from this node's disk or sent by
//! the leader) and promises: "a snapshot that decodes to an impossible state is refused, never
//! half-loaded" (it rebuilds the derived values and runs `check_invariants` itself).
//!
//! Inputs come two ways, chosen by the first byte: raw bytes (odd), or (even) a state built by
//! applying a `ledger_fuzz::Program`, encoded, then corrupted at up to 8 positions, so that
//! well-formed but incoherent snapshots are reached too.
//!
//! Asserts: never panics; a state that decodes satisfies `check_invariants`; `digest()`,
//! `encode_snapshot()` and the queries do not panic; its snapshot decodes again to the same
//! digest and bytes; and applying an empty entry and a heartbeat after it (log time and leases
//! move) never panics and keeps the invariants.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use ledger_fuzz::{check_state, Driver, Program};
use ledger_state_machine::{AdmissionState, Command, Entry, EntryHeader};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Built {
    program: Program,
    patches: Vec<(u16, u8)>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 1 {
        check(rest);
        return;
    }
    let Ok(built) = Built::arbitrary_take_rest(Unstructured::new(rest)) else {
        return;
    };
    let mut driver = Driver::new();
    driver.run(&built.program, false);
    let mut bytes = driver.state.encode_snapshot();
    for &(at, byte) in built.patches.iter().take(8) {
        let at = usize::from(at) % bytes.len();
        bytes[at] = byte;
    }
    check(&bytes);
});

fn check(bytes: &[u8]) {
    let Ok(state) = AdmissionState::decode_snapshot(bytes) else {
        return;
    };
    if let Err(violation) = state.check_invariants() {
        panic!("decode_snapshot accepted an incoherent state: {violation}");
    }
    let _ = state.digest();
    check_state(&state);

    let mut state = state;
    let next = state.last_log_index().checked_add(1);
    let Some(next) = next else {
        return;
    };
    let header = EntryHeader {
        leader_id: 1,
        time_ms: state
            .now_ms()
            .saturating_add(state.params().log_time_step_max_ms),
    };
    let entry = Entry {
        header,
        commands: Vec::new(),
    };
    let mut events = Vec::new();
    state
        .apply_entry(next, &entry, &mut events)
        .expect("the next index applies");
    if let Err(violation) = state.check_invariants() {
        panic!("an empty entry broke a loaded state: {violation}");
    }
    let Some(after) = next.checked_add(1) else {
        return;
    };
    let entry = Entry {
        header,
        commands: vec![Command::ExecutorHeartbeat {
            node_id: 2,
            applied_index: after,
        }],
    };
    state
        .apply_entry(after, &entry, &mut events)
        .expect("the next index applies");
    if let Err(violation) = state.check_invariants() {
        panic!("a heartbeat broke a loaded state: {violation}");
    }
}
