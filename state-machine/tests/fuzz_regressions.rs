//! Inputs the fuzz targets of `fuzz/` found (docs/SECURITY.md, "Fuzzing"), reduced to the
//! crate's API. The raw crash inputs are kept in `fuzz/regressions/TARGET/` and replay with
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/regressions/TARGET/*` (from `fuzz/`).
//!
//! Each test failed (or aborted the test process) before its fix.

use ledger_state_machine::codec;
use ledger_state_machine::{Applied, Money};
use serde::Deserialize;

/// `parse_api`: `Money::parse` read the text with `rust_decimal`'s `from_str`, which rounds a
/// text with more significant digits than a `Decimal` holds (28), and accepted the rounded
/// value: "5.999999999999999999999999999990" became 6.00 and "1.00000000000000000000000000001"
/// became 1.00, where the contract refuses a non-zero digit past the second fraction digit
/// (`MoneyError::TooPrecise`); "1000000000000.00000000000000001", above `Money::MAX`, became
/// `Money::MAX` instead of `MoneyError::TooLarge`.
#[test]
fn money_parse_refuses_what_decimal_would_round() {
    for text in [
        "5.999999999999999999999999999990",
        "1.00000000000000000000000000001",
        "1000000000000.00000000000000001",
    ] {
        let parsed = Money::parse(text);
        assert!(parsed.is_err(), "{text:?} parsed to {parsed:?}");
    }
    // What the contract accepts still parses, trailing zeros included.
    assert_eq!(Money::parse("5.99"), Ok(Money::from_cents(599)));
    assert_eq!(Money::parse("1.500"), Ok(Money::from_cents(150)));
}

/// openraft's `SnapshotSegmentId` (an owned `String`, then a `u64`): the node decodes openraft's
/// RPCs (`InstallSnapshotRequest::meta.snapshot_id`, `BasicNode::addr` in a membership entry,
/// `InstallSnapshotError::SnapshotMismatch` in a reply) with `codec::decode`.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct SnapshotSegmentId {
    id: String,
    offset: u64,
}

/// `decode_raft`: `codec::decode` read an owned `String` through bincode's owned path, which
/// allocates the length the input claims before reading it. Nine bytes claiming a 1 TiB
/// string made the allocation fail and the process abort ("memory allocation of
/// 1099511627776 bytes failed"); the borrowed-text deserializers protect only this crate's
/// own text fields. The whole `InstallSnapshotRequest` that did this to a node is 17 bytes
/// (`fuzz/regressions/decode_raft/install-snapshot-id-claims-1tib`).
#[test]
fn codec_decode_refuses_a_string_longer_than_its_input() {
    // Varint 0xFD: a u64 length follows, 2^40, then nothing.
    let bytes = [0xfd, 0, 0, 0, 0, 0, 1, 0, 0];
    assert!(codec::decode::<SnapshotSegmentId>(&bytes).is_err());
    assert!(codec::decode::<String>(&bytes).is_err());
}

/// `decode_raft`: the same through this crate's own types. `CommandError`'s text fields
/// (`reason`, `deal_id`, and `field` as a `Cow`) are plain serde `String`s, not read through
/// `codec::text`, so an `Applied` (in `Propose`'s `(u64, Applied)` reply, which a follower's
/// executor decodes, and in `ApplyReply`) claiming a 1 TiB `deal_id` aborted the process too.
#[test]
fn codec_decode_refuses_a_command_error_longer_than_its_input() {
    // Err (variant 1), CommandError::DealNotFound (variant 3), deal_id claiming 2^40 bytes.
    let bytes = [0x01, 0x03, 0xfd, 0, 0, 0, 0, 0, 1, 0, 0];
    assert!(codec::decode::<Applied>(&bytes).is_err());
    let mut reply = vec![0x07];
    reply.extend_from_slice(&bytes);
    assert!(codec::decode::<(u64, Applied)>(&reply).is_err());
}
