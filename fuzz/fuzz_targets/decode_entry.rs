//! `codec::decode_entry`, the decoder of every log entry payload a replica applies.
//!
//! Asserts: never panics; a decoded entry re-encodes to bytes that decode to an equal entry and
//! re-encode to the same bytes (the encoding is stable); `Command::validate` never panics on a
//! decoded command; and applying the decoded entry to a fresh state never panics and leaves
//! the invariants holding (`apply_entry` promises both "whatever the entry holds").

#![no_main]

use ledger_state_machine::codec::{decode_entry, encode_entry};
use ledger_state_machine::AdmissionState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = decode_entry(data) else {
        return;
    };
    let bytes = encode_entry(&entry);
    let again = decode_entry(&bytes).expect("a re-encoded entry decodes");
    assert_eq!(entry, again, "entry round trip");
    assert_eq!(encode_entry(&again), bytes, "entry encoding is not stable");
    for command in &entry.commands {
        let _ = command.validate();
    }
    let mut state = AdmissionState::new();
    let mut events = Vec::new();
    if let Ok(results) = state.apply_entry(1, &entry, &mut events) {
        assert_eq!(results.len(), entry.commands.len());
        if let Err(violation) = state.check_invariants() {
            panic!("decoded entry broke the state: {violation}\nentry: {entry:?}");
        }
    }
});
