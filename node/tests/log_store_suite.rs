//! openraft's storage conformance suite against the sled log store and the state machine store,
//! and against the simulation's in-memory log, plus the start-up checks that keep a node from
//! serving on a corrupt log.

use std::time::Duration;

use ledger_node::raft::log_store::{CorruptLog, LogStore};
use ledger_node::raft::mem_log::{MemDisk, MemLog};
use ledger_node::raft::state_machine::StateMachineStore;
use ledger_node::raft::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};

struct SledStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledStores {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let (log, _) = LogStore::open(&dir.path().join("raft-log")).expect("a fresh log opens");
        let (state_machine, _) =
            StateMachineStore::open(dir.path(), None).expect("a fresh state machine opens");
        Ok((dir, log, state_machine))
    }
}

#[test]
fn the_stores_pass_openraft_conformance_suite() {
    Suite::test_all(SledStores).expect("every conformance test passes");
}

/// The simulation's disk: the log, with a real (if short) fsync delay so that appends are
/// durable only after the call returns, as on sled, and the snapshot file.
struct MemStores;

impl StoreBuilder<TypeConfig, MemLog, StateMachineStore, MemDisk> for MemStores {
    async fn build(&self) -> Result<(MemDisk, MemLog, StateMachineStore), StorageError> {
        let disk = MemDisk::new(Duration::from_millis(1));
        let (state_machine, _) =
            StateMachineStore::open_in_memory(&disk, None).expect("a fresh state machine opens");
        Ok((disk.clone(), disk.open(), state_machine))
    }
}

#[test]
fn the_in_memory_stores_pass_openraft_conformance_suite() {
    Suite::test_all(MemStores).expect("every conformance test passes");
}

/// sled releases its folder lock shortly after the last handle drops (its background flusher
/// stops asynchronously); a reopen in the same process waits for that, bounded.
fn when_released<T, E: std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match open() {
            Err(error)
                if error.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Flips one byte in the middle of the last log record's value.
fn corrupt_last_record(dir: &std::path::Path) {
    let db = when_released(|| sled::open(dir)).expect("the log opens as a sled database");
    let logs = db.open_tree("logs").expect("the logs tree");
    let (key, value) = logs.last().expect("readable").expect("an entry");
    let mut bytes = value.to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    logs.insert(key, bytes).expect("write");
    db.flush().expect("flush");
}

#[tokio::test]
async fn a_corrupted_record_keeps_the_node_from_starting() {
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    // Phase 1: a healthy log with a vote and three entries opens cleanly.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft-log");
    {
        let (mut log, summary) = LogStore::open(&path).unwrap();
        assert_eq!(summary.last_index, None);
        log.save_vote(&Vote::new(1, 1)).await.unwrap();
        let entries = (1..=3).map(|index| Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        });
        log.blocking_append(entries).await.unwrap();
    }
    let (_, summary) = when_released(|| LogStore::open(&path)).unwrap();
    assert_eq!(
        (summary.first_index, summary.last_index),
        (Some(1), Some(3))
    );

    // Phase 2: one flipped byte is found by the checksum before anything is served.
    corrupt_last_record(&path);
    match when_released(|| LogStore::open(&path)) {
        Err(CorruptLog::BadRecord { key, reason }) => {
            assert_eq!(key, "3");
            assert!(reason.contains("checksum"), "{reason}");
        }
        Err(other) => panic!("expected a bad record, got {other}"),
        Ok(_) => panic!("a corrupt log opened"),
    }
}

#[tokio::test]
async fn a_log_without_its_vote_is_refused() {
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft-log");
    {
        let (mut log, _) = LogStore::open(&path).unwrap();
        let entry = Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Blank,
        };
        log.blocking_append([entry]).await.unwrap();
    }
    assert!(matches!(
        when_released(|| LogStore::open(&path)),
        Err(CorruptLog::MissingVote)
    ));
}

/// Postmortem: the start-up check wanted only that a vote exists. A vote write lost under a
/// newer term's entries (the disk's cache dropped it) left a node free to vote again in a term
/// it had already voted in.
#[tokio::test]
async fn a_vote_older_than_the_last_entry_is_refused() {
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft-log");
    let entry = |term: u64, index: u64| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Blank,
    };
    let vote_record = || {
        let db = when_released(|| sled::open(&path)).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.get("vote").unwrap().expect("a vote record")
    };

    // Phase 1: the node votes in term 1 and appends; the vote record is kept aside.
    {
        let (mut log, _) = LogStore::open(&path).unwrap();
        log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
        log.blocking_append([entry(1, 1)]).await.unwrap();
    }
    let vote_of_term_1 = vote_record();

    // Phase 2: it votes in term 2 and appends that term's entries; the log is consistent.
    {
        let (mut log, _) = when_released(|| LogStore::open(&path)).unwrap();
        log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
        log.blocking_append([entry(2, 2), entry(2, 3)])
            .await
            .unwrap();
    }
    let (_, summary) = when_released(|| LogStore::open(&path)).expect("a consistent log opens");
    assert_eq!(summary.last_index, Some(3));

    // Phase 3: the term-2 vote write is lost (the term-1 record is back); the start-up check
    // finds the vote behind the log.
    {
        let db = when_released(|| sled::open(&path)).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("vote", vote_of_term_1).unwrap();
        db.flush().unwrap();
    }
    match when_released(|| LogStore::open(&path)) {
        Err(
            error @ CorruptLog::VoteBehindLog {
                vote_term: 1,
                index: 3,
                entry_term: 2,
            },
        ) => {
            let message = error.to_string();
            assert!(message.contains("vote write was lost"), "{message}");
        }
        Err(other) => panic!("expected a vote behind the log, got {other:?}"),
        Ok(_) => panic!("a log whose vote is older than its entries opened"),
    }
}
