//! openraft's types to and from the persisted records of `ledger_state_machine::codec::record`,
//! which alone knows their bytes.

use std::collections::BTreeMap;

use ledger_state_machine::codec::record::{
    self, LogPosition, LogRecord, MembershipRecord, PayloadRecord, RecordError, SnapshotHead,
    VoteRecord,
};
use openraft::{
    BasicNode, CommittedLeaderId, EntryPayload, Membership, SnapshotMeta, StoredMembership, Vote,
};

use super::{LogEntry, LogId};

fn position(id: &LogId) -> LogPosition {
    LogPosition {
        term: id.leader_id.term,
        node_id: id.leader_id.node_id,
        index: id.index,
    }
}

fn log_id(position: LogPosition) -> LogId {
    LogId::new(
        CommittedLeaderId::new(position.term, position.node_id),
        position.index,
    )
}

fn membership_record(membership: &Membership<u64, BasicNode>) -> MembershipRecord {
    MembershipRecord {
        configs: membership.get_joint_config().clone(),
        nodes: membership
            .nodes()
            .map(|(&id, node)| (id, node.addr.clone()))
            .collect(),
    }
}

fn membership(record: MembershipRecord) -> Membership<u64, BasicNode> {
    let nodes: BTreeMap<u64, BasicNode> = record
        .nodes
        .into_iter()
        .map(|(id, addr)| (id, BasicNode { addr }))
        .collect();
    Membership::new(record.configs, nodes)
}

/// A log entry's record.
pub fn encode_entry(entry: &LogEntry) -> Vec<u8> {
    let payload = match &entry.payload {
        EntryPayload::Blank => PayloadRecord::Blank,
        EntryPayload::Normal(encoded) => PayloadRecord::Normal(encoded.clone()),
        EntryPayload::Membership(m) => PayloadRecord::Membership(membership_record(m)),
    };
    record::encode_log_record(&LogRecord {
        position: position(&entry.log_id),
        payload,
    })
}

/// A log entry from its record.
pub fn decode_entry(bytes: &[u8]) -> Result<LogEntry, RecordError> {
    let record = record::decode_log_record(bytes)?;
    Ok(LogEntry {
        log_id: log_id(record.position),
        payload: match record.payload {
            PayloadRecord::Blank => EntryPayload::Blank,
            PayloadRecord::Normal(encoded) => EntryPayload::Normal(encoded),
            PayloadRecord::Membership(m) => EntryPayload::Membership(membership(m)),
        },
    })
}

/// The vote's record.
pub fn encode_vote(vote: &Vote<u64>) -> Vec<u8> {
    record::encode_vote_record(&VoteRecord {
        term: vote.leader_id.term,
        node_id: vote.leader_id.node_id,
        committed: vote.committed,
    })
}

/// The vote from its record.
pub fn decode_vote(bytes: &[u8]) -> Result<Vote<u64>, RecordError> {
    let vote = record::decode_vote_record(bytes)?;
    let mut decoded = Vote::new(vote.term, vote.node_id);
    decoded.committed = vote.committed;
    Ok(decoded)
}

/// The committed or purged marker's record.
pub fn encode_log_id(id: Option<&LogId>) -> Vec<u8> {
    record::encode_log_id_record(id.map(position).as_ref())
}

/// The committed marker from its record.
pub fn decode_committed(bytes: &[u8]) -> Result<Option<LogId>, RecordError> {
    Ok(record::decode_committed_record(bytes)?.map(log_id))
}

/// The purged marker from its record; `None` is malformed here (the marker is written only
/// with a log id).
pub fn decode_purged(bytes: &[u8]) -> Result<LogId, RecordError> {
    record::decode_purged_record(bytes)?
        .map(log_id)
        .ok_or(RecordError::Malformed {
            what: "purged marker",
        })
}

/// The snapshot file's bytes.
pub fn encode_snapshot(meta: &SnapshotMeta<u64, BasicNode>, data: &[u8]) -> Vec<u8> {
    let head = SnapshotHead {
        last_log_id: meta.last_log_id.as_ref().map(position),
        membership_log_id: meta.last_membership.log_id().as_ref().map(position),
        membership: membership_record(meta.last_membership.membership()),
        snapshot_id: meta.snapshot_id.clone(),
    };
    record::encode_snapshot_record(&head, data)
}

/// The snapshot file's meta and state bytes.
pub fn decode_snapshot(
    bytes: &[u8],
) -> Result<(SnapshotMeta<u64, BasicNode>, Vec<u8>), RecordError> {
    let file = record::decode_snapshot_record(bytes)?;
    let meta = SnapshotMeta {
        last_log_id: file.head.last_log_id.map(log_id),
        last_membership: StoredMembership::new(
            file.head.membership_log_id.map(log_id),
            membership(file.head.membership),
        ),
        snapshot_id: file.head.snapshot_id,
    };
    Ok((meta, file.data))
}

#[cfg(test)]
mod tests {
    //! The format 0 reader in `codec::record` mirrors openraft's serde derives by hand; these
    //! check the mirror against openraft's own encoding of every record kind.

    use std::collections::BTreeSet;

    use ledger_state_machine::codec::{self, record::EncodedEntry};
    use ledger_state_machine::{Command, Entry, EntryHeader};

    use super::*;

    /// `crc32 ‖ bincode`, as builds before the record layout wrote every record.
    fn format0<T: serde::Serialize>(value: &T) -> Vec<u8> {
        let payload = codec::encode(value);
        let mut bytes = crc32fast::hash(&payload).to_le_bytes().to_vec();
        bytes.extend_from_slice(&payload);
        bytes
    }

    fn membership_of(ids: &[u64]) -> Membership<u64, BasicNode> {
        let nodes: BTreeMap<u64, BasicNode> = ids
            .iter()
            .map(|&id| (id, BasicNode::new(format!("127.0.0.1:{}", 9000 + id))))
            .collect();
        Membership::new(vec![ids.iter().copied().collect::<BTreeSet<_>>()], nodes)
    }

    fn entries() -> Vec<LogEntry> {
        let id = |index| LogId::new(CommittedLeaderId::new(3, 2), index);
        vec![
            LogEntry {
                log_id: id(7),
                payload: EntryPayload::Blank,
            },
            LogEntry {
                log_id: id(8),
                payload: EntryPayload::Normal(EncodedEntry::new(Entry {
                    header: EntryHeader {
                        leader_id: 2,
                        time_ms: 1_700_000_000_000,
                    },
                    commands: vec![Command::ExecutorRetire { node_id: 4 }],
                })),
            },
            LogEntry {
                log_id: id(9),
                payload: EntryPayload::Membership(membership_of(&[1, 2, 3])),
            },
        ]
    }

    openraft::declare_raft_types!(
        /// The type configuration of builds before the record layout: `D` was the entry itself.
        Format0:
            D = Entry,
            R = super::super::ApplyReply,
            NodeId = u64,
            Node = BasicNode,
            SnapshotData = std::io::Cursor<Vec<u8>>,
    );

    /// `entry` as the previous build held it: the decoded entry inline.
    fn format0_entry(entry: &LogEntry) -> openraft::Entry<Format0> {
        openraft::Entry {
            log_id: entry.log_id,
            payload: match &entry.payload {
                EntryPayload::Normal(encoded) => {
                    EntryPayload::Normal(encoded.entry().expect("decodes").clone())
                }
                EntryPayload::Blank => EntryPayload::Blank,
                EntryPayload::Membership(m) => EntryPayload::Membership(m.clone()),
            },
        }
    }

    #[test]
    fn format_0_log_records_read_as_openraft_wrote_them() {
        for entry in entries() {
            let legacy = format0_entry(&entry);
            assert_eq!(
                decode_entry(&format0(&legacy)).expect("format 0 reads"),
                entry
            );
            assert_eq!(decode_entry(&encode_entry(&entry)).expect("reads"), entry);
        }
    }

    #[test]
    fn format_0_markers_and_snapshot_meta_read_as_openraft_wrote_them() {
        let mut vote = Vote::new(5, 3);
        assert_eq!(decode_vote(&format0(&vote)).expect("vote"), vote);
        vote.commit();
        assert_eq!(decode_vote(&format0(&vote)).expect("vote"), vote);
        assert_eq!(decode_vote(&encode_vote(&vote)).expect("vote"), vote);

        let id = LogId::new(CommittedLeaderId::new(1, 1), 1);
        assert_eq!(
            decode_committed(&format0(&Some(id))).expect("committed"),
            Some(id)
        );
        assert_eq!(
            decode_committed(&format0(&None::<LogId>)).expect("none"),
            None
        );
        assert_eq!(decode_purged(&format0(&id)).expect("purged"), id);
        assert_eq!(
            decode_committed(&encode_log_id(Some(&id))).expect("new"),
            Some(id)
        );
        assert_eq!(decode_purged(&encode_log_id(Some(&id))).expect("new"), id);

        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(4, 1), 250)),
            last_membership: StoredMembership::new(
                Some(LogId::new(CommittedLeaderId::new(2, 1), 3)),
                membership_of(&[1, 2, 3, 4]),
            ),
            snapshot_id: "4-1-250".into(),
        };
        #[derive(serde::Serialize)]
        struct SnapshotFile<'a> {
            meta: &'a SnapshotMeta<u64, BasicNode>,
            data: Vec<u8>,
        }
        let legacy = format0(&SnapshotFile {
            meta: &meta,
            data: vec![9; 300],
        });
        assert_eq!(
            decode_snapshot(&legacy).expect("format 0 snapshot"),
            (meta.clone(), vec![9; 300])
        );
        assert_eq!(
            decode_snapshot(&encode_snapshot(&meta, &[9; 300])).expect("snapshot"),
            (meta, vec![9; 300])
        );
    }

    /// A leader of the previous build sends its entries inline; a follower of this build reads
    /// them (followers are upgraded first), and its own form reads back the same.
    #[test]
    fn append_entries_of_the_previous_build_read_as_this_builds() {
        use openraft::raft::AppendEntriesRequest;

        let current = AppendEntriesRequest::<super::super::TypeConfig> {
            vote: Vote::new_committed(3, 2),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(3, 2), 6)),
            entries: entries(),
            leader_commit: Some(LogId::new(CommittedLeaderId::new(3, 2), 6)),
        };
        let previous = AppendEntriesRequest::<Format0> {
            vote: current.vote,
            prev_log_id: current.prev_log_id,
            entries: current.entries.iter().map(format0_entry).collect(),
            leader_commit: current.leader_commit,
        };
        let read: AppendEntriesRequest<super::super::TypeConfig> =
            codec::decode(&codec::encode(&previous)).expect("the previous build's message");
        assert_eq!(read.entries, current.entries);
        let again: AppendEntriesRequest<super::super::TypeConfig> =
            codec::decode(&codec::encode(&current)).expect("this build's message");
        assert_eq!(again.entries, current.entries);
    }
}
