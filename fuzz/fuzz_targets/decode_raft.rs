//! Every openraft message the node decodes with `ledger_state_machine::codec::decode` (bincode 2
//! over serde), with a `TypeConfig` equal to the node's (`node/src/raft/mod.rs`:
//! `D = EncodedEntry`, `R = ApplyReply`, `u64` node ids, `BasicNode`), declared again here so
//! that the fuzz build does not include the node, and every persisted record
//! (`codec::record`):
//! - the Raft service's requests (`grpc/raft.rs`): `AppendEntriesRequest`, `VoteRequest`,
//!   `InstallSnapshotRequest`, `Propose`'s `Command` and `ProposeBatch`'s list of them;
//! - the replies the client half decodes (`raft/network.rs`): the three responses and the
//!   `RaftError`s, `Propose`'s `(u64, Applied)` and `ProposeBatch`'s list of results
//!   (`raft/forward.rs`);
//! - the sled log store's records (`raft/log_store.rs`): a log entry, the vote, the purged and
//!   the committed log ids, of this layout or of format 0;
//! - the snapshot file (`raft/state_machine.rs`), whose `data` is a state snapshot.
//!
//! The first byte picks the type; for the checksummed records, the next byte says whether the
//! target seals the rest itself (so that the fuzzer reaches the payload) or takes it as is.
//! Asserts: never panics; whatever decodes re-encodes to bytes that decode again and re-encode
//! identically (a record: re-encodes to one that decodes to the same value); a log entry's
//! membership can be looked at as openraft does.

#![no_main]

use std::fmt::Debug;

use ledger_state_machine::codec::record::{self, EncodedEntry, RecordError};
use ledger_state_machine::{codec, AdmissionState, Applied, Command};
use libfuzzer_sys::fuzz_target;
use openraft::entry::RaftPayload;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::EffectiveMembership;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// `ledger_node::raft::ApplyReply`, field for field (bincode carries no names, only the layout).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ApplyReply {
    results: Vec<Applied>,
}

openraft::declare_raft_types!(
    /// `ledger_node::raft::TypeConfig`, declared again.
    TypeConfig:
        D = EncodedEntry,
        R = ApplyReply,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

type LogEntry = openraft::Entry<TypeConfig>;

/// Decodes `bytes` as `T`; if it decodes, checks the encoding round trip.
fn round_trip<T: Serialize + DeserializeOwned + Debug>(bytes: &[u8]) -> Option<T> {
    let value: T = codec::decode(bytes).ok()?;
    let encoded = codec::encode(&value);
    let again: T = match codec::decode(&encoded) {
        Ok(again) => again,
        Err(error) => panic!("{value:?} re-encodes to bytes that do not decode: {error}"),
    };
    assert_eq!(
        codec::encode(&again),
        encoded,
        "unstable encoding of {value:?}"
    );
    let _ = format!("{value:?}");
    Some(value)
}

/// Decodes a record; if it decodes, checks that its re-encoding decodes to the same value, and
/// that a record of this build's layout re-encodes to its own bytes.
fn record_round_trip<T: PartialEq + Debug>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, RecordError>,
    encode: impl Fn(&T) -> Vec<u8>,
) -> Option<T> {
    let value = decode(bytes).ok()?;
    let encoded = encode(&value);
    match decode(&encoded) {
        Ok(again) => assert_eq!(again, value, "{value:?} re-encodes to another value"),
        Err(error) => panic!("{value:?} re-encodes to bytes that do not decode: {error}"),
    }
    if bytes.get(4) == Some(&0xFF) {
        assert_eq!(encoded, bytes, "unstable encoding of {value:?}");
    }
    let _ = format!("{value:?}");
    Some(value)
}

/// The record as stored: with a checksum of the bytes when `seal_it`, else the bytes as they
/// are.
fn record(seal_it: bool, bytes: &[u8]) -> Vec<u8> {
    if seal_it {
        let mut record = crc32fast::hash(bytes).to_le_bytes().to_vec();
        record.extend_from_slice(bytes);
        record
    } else {
        bytes.to_vec()
    }
}

fn look_at_entry(entry: &LogEntry) {
    let _ = entry.is_blank();
    if let openraft::EntryPayload::Normal(encoded) = &entry.payload {
        let _ = encoded.entry().map(|entry| entry.commands.len());
    }
    if let Some(membership) = entry.get_membership() {
        let effective = EffectiveMembership::new(Some(entry.log_id), membership.clone());
        let _ = effective.voter_ids().count();
        let _ = effective.get_joint_config().len();
        let _ = effective.nodes().count();
        let _ = effective.get_node(&1);
        let _ = membership.voter_ids().count();
        let _ = membership.learner_ids().count();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let (seal_it, sealed) = match rest.split_first() {
        Some((&flag, tail)) => (flag % 2 == 0, tail),
        None => (false, rest),
    };
    match kind % 15 {
        0 => {
            if let Some(request) = round_trip::<AppendEntriesRequest<TypeConfig>>(rest) {
                request.entries.iter().for_each(look_at_entry);
            }
        }
        1 => {
            if let Some(request) = round_trip::<VoteRequest<u64>>(rest) {
                let _ = request.to_string();
            }
        }
        2 => {
            if let Some(request) = round_trip::<InstallSnapshotRequest<TypeConfig>>(rest) {
                let _ = request.to_string();
                let _ = request.meta.last_log_id.map(|id| id.index);
            }
        }
        3 => {
            if let Some(command) = round_trip::<Command>(rest) {
                let _ = command.validate();
            }
            if let Some(commands) = round_trip::<Vec<Command>>(rest) {
                commands.iter().for_each(|command| {
                    let _ = command.validate();
                });
            }
        }
        4 => {
            let _ = round_trip::<AppendEntriesResponse<u64>>(rest);
        }
        5 => {
            let _ = round_trip::<VoteResponse<u64>>(rest);
        }
        6 => {
            let _ = round_trip::<InstallSnapshotResponse<u64>>(rest);
        }
        7 => {
            if let Some(error) = round_trip::<RaftError<u64>>(rest) {
                let _ = error.to_string();
            }
        }
        8 => {
            if let Some(error) = round_trip::<RaftError<u64, InstallSnapshotError>>(rest) {
                let _ = error.to_string();
            }
        }
        9 => {
            let _ = round_trip::<(u64, Applied)>(rest);
            let _ = round_trip::<Vec<Result<(u64, Applied), String>>>(rest);
            let _ = round_trip::<ApplyReply>(rest);
        }
        10 => {
            if let Some(entry) = record_round_trip(
                &record(seal_it, sealed),
                record::decode_log_record,
                record::encode_log_record,
            ) {
                if let record::PayloadRecord::Normal(encoded) = &entry.payload {
                    let _ = encoded.entry();
                }
            }
        }
        11 => {
            let _ = record_round_trip(
                &record(seal_it, sealed),
                record::decode_vote_record,
                record::encode_vote_record,
            );
        }
        12 => {
            let _ = record_round_trip(
                &record(seal_it, sealed),
                record::decode_purged_record,
                |id| record::encode_log_id_record(id.as_ref()),
            );
        }
        13 => {
            let _ = record_round_trip(
                &record(seal_it, sealed),
                record::decode_committed_record,
                |id| record::encode_log_id_record(id.as_ref()),
            );
        }
        _ => {
            let file = record_round_trip(
                &record(seal_it, sealed),
                record::decode_snapshot_record,
                |file| record::encode_snapshot_record(&file.head, &file.data),
            );
            if let Some(file) = file {
                if let Ok(state) = AdmissionState::decode_snapshot(&file.data) {
                    let _ = state.digest();
                }
            }
        }
    }
});
