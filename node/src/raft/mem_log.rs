//! An in-memory Raft log for the deterministic simulation, behind the same `RaftLogStorage`
//! trait as the sled store ([`super::log_store`]).
//!
//! It models a disk, not a map: a write is seen by readers at once (as sled's page cache makes
//! it), but survives a crash only once synced. A [`MemDisk`] is that disk; the simulator keeps it
//! across a node's crash and restart and calls [`MemDisk::crash`], which drops every write made
//! since the last sync. As the sled store does, an append is synced before openraft is told it
//! is durable (after the disk's fsync delay, which the simulation can raise to model a slow
//! disk), a vote and a purge marker are synced before their call returns, and the committed
//! marker is not synced at all. The disk also holds the node's snapshot file, replaced
//! atomically, as the rename of the real file is.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, Vote};

use super::{LogEntry, LogId, StorageError, TypeConfig};

/// What a disk holds.
#[derive(Clone, Debug, Default)]
struct Image {
    logs: BTreeMap<u64, LogEntry>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

/// One write, kept until the next sync makes it durable.
#[derive(Debug)]
enum Write {
    Append(Vec<LogEntry>),
    Vote(Vote<u64>),
    Committed(Option<LogId>),
    /// Removes the entries from this index on.
    Truncate(u64),
    /// Sets the purge marker and removes the entries up to it.
    Purge(LogId),
}

impl Image {
    fn apply(&mut self, write: &Write) {
        match write {
            Write::Append(entries) => {
                for entry in entries {
                    self.logs.insert(entry.log_id.index, entry.clone());
                }
            }
            Write::Vote(vote) => self.vote = Some(*vote),
            Write::Committed(committed) => self.committed = *committed,
            Write::Truncate(from) => {
                self.logs.split_off(from);
            }
            Write::Purge(upto) => {
                self.purged = Some(*upto);
                self.logs = self.logs.split_off(&(upto.index + 1));
            }
        }
    }
}

#[derive(Debug, Default)]
struct Disk {
    /// What survives a crash.
    durable: Image,
    /// What readers see: `durable` with `unsynced` applied.
    current: Image,
    unsynced: Vec<Write>,
    /// Counts crashes: a sync that was scheduled before a crash does nothing after it.
    generation: u64,
    fsync_delay: Duration,
    syncs: u64,
    /// The snapshot file's bytes and the last index it covers.
    snapshot: Option<(Option<u64>, Vec<u8>)>,
}

impl Disk {
    fn write(&mut self, write: Write) {
        self.current.apply(&write);
        self.unsynced.push(write);
    }

    fn sync(&mut self) {
        for write in self.unsynced.drain(..) {
            self.durable.apply(&write);
        }
        self.syncs += 1;
    }
}

/// A simulated disk holding one node's Raft log. Cheap to clone: clones share the disk.
#[derive(Clone, Debug, Default)]
pub struct MemDisk(Arc<Mutex<Disk>>);

impl MemDisk {
    /// An empty disk whose syncs take `fsync_delay`.
    pub fn new(fsync_delay: Duration) -> MemDisk {
        let disk = MemDisk::default();
        disk.set_fsync_delay(fsync_delay);
        disk
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes every later sync take `delay` (a slow disk).
    pub fn set_fsync_delay(&self, delay: Duration) {
        self.lock().fsync_delay = delay;
    }

    /// The process holding this disk died: every write since the last sync is lost, and syncs
    /// still under way never happen.
    pub fn crash(&self) {
        let mut disk = self.lock();
        disk.unsynced.clear();
        disk.current = disk.durable.clone();
        disk.generation += 1;
    }

    /// How many syncs completed.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// A log store on this disk, for a node starting on it.
    pub fn open(&self) -> MemLog {
        MemLog { disk: self.clone() }
    }

    /// The snapshot file's bytes, if one was stored.
    pub(crate) fn snapshot(&self) -> Option<Vec<u8>> {
        self.lock()
            .snapshot
            .as_ref()
            .map(|(_, bytes)| bytes.clone())
    }

    /// Stores a snapshot file covering up to `position` unless the stored one is as new or
    /// newer; returns whether it did.
    pub(crate) fn store_snapshot(&self, position: Option<u64>, bytes: Vec<u8>) -> bool {
        let mut disk = self.lock();
        if disk
            .snapshot
            .as_ref()
            .is_some_and(|(stored, _)| position <= *stored)
        {
            return false;
        }
        disk.snapshot = Some((position, bytes));
        true
    }

    /// Waits the disk's fsync delay, then syncs, unless the disk crashed meanwhile. `Ok` once
    /// the writes made before the call are durable.
    async fn sync(&self) -> Result<(), StorageError> {
        let (generation, delay) = {
            let disk = self.lock();
            (disk.generation, disk.fsync_delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut disk = self.lock();
        if disk.generation != generation {
            return Err(StorageError::IO {
                source: openraft::StorageIOError::write(openraft::AnyError::error(
                    "the disk crashed before the sync",
                )),
            });
        }
        disk.sync();
        Ok(())
    }
}

/// The log store of one node on a [`MemDisk`]; clones serve as log readers.
#[derive(Clone, Debug)]
pub struct MemLog {
    disk: MemDisk,
}

impl RaftLogReader<TypeConfig> for MemLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let disk = self.disk.lock();
        Ok(disk
            .current
            .logs
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for MemLog {
    type LogReader = MemLog;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let disk = self.disk.lock();
        let last_purged_log_id = disk.current.purged;
        let last_log_id = disk
            .current
            .logs
            .last_key_value()
            .map(|(_, entry)| entry.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> MemLog {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.disk.lock().write(Write::Vote(*vote));
        self.disk.sync().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        Ok(self.disk.lock().current.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced, as on sled: a lost marker only means re-applying from the snapshot.
        self.disk.lock().write(Write::Committed(committed));
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.disk.lock().current.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = LogEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.disk
            .lock()
            .write(Write::Append(entries.into_iter().collect()));
        // Durable later, as sled's flusher makes it: openraft counts the entries towards a
        // quorum only once the callback says so. After a crash the callback never comes.
        let disk = self.disk.clone();
        tokio::spawn(async move {
            if disk.sync().await.is_ok() {
                callback.log_io_completed(Ok(()));
            }
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.disk.lock().write(Write::Truncate(log_id.index));
        self.disk.sync().await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.disk.lock().write(Write::Purge(log_id));
        self.disk.sync().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_state_machine::codec::record::EncodedEntry;
    use ledger_state_machine::{Entry, EntryHeader};
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> LogEntry {
        LogEntry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(EncodedEntry::new(Entry {
                header: EntryHeader {
                    leader_id: 1,
                    time_ms: index,
                },
                commands: Vec::new(),
            })),
        }
    }

    async fn indexes(log: &mut MemLog) -> Vec<u64> {
        let entries = log.try_get_log_entries(..).await.expect("read");
        entries.iter().map(|e| e.log_id.index).collect()
    }

    /// Appends as openraft does and waits until the disk says they are durable.
    async fn append_synced(log: &mut MemLog, range: std::ops::RangeInclusive<u64>) {
        log.blocking_append(range.map(entry)).await.expect("synced");
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_loses_exactly_the_writes_not_synced() {
        let disk = MemDisk::new(Duration::from_millis(5));
        let mut log = disk.open();
        append_synced(&mut log, 1..=3).await;
        let vote = Vote::new(2, 1);
        log.save_vote(&vote).await.expect("vote");
        log.save_committed(Some(entry(3).log_id))
            .await
            .expect("committed");

        // An append whose sync has not happened yet: readers see it, a crash takes it.
        let mut writer = log.clone();
        let pending = tokio::spawn(async move { writer.blocking_append([entry(4)]).await });
        for _ in 0..100 {
            if indexes(&mut log).await.len() == 4 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(indexes(&mut log).await, [1, 2, 3, 4]);
        disk.crash();
        let told = pending.await.expect("the append task ends");
        assert!(
            told.is_err(),
            "a crashed disk told openraft the append was durable"
        );

        let mut log = disk.open();
        assert_eq!(indexes(&mut log).await, [1, 2, 3]);
        assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
        // The committed marker was written after the last sync: lost, as on sled.
        assert_eq!(log.read_committed().await.expect("committed"), None);
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id.map(|l| l.index), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn purge_and_truncate_are_durable_when_they_return() {
        let disk = MemDisk::new(Duration::from_millis(1));
        let mut log = disk.open();
        append_synced(&mut log, 1..=6).await;
        log.purge(entry(2).log_id).await.expect("purge");
        log.truncate(entry(5).log_id).await.expect("truncate");
        disk.crash();
        let mut log = disk.open();
        assert_eq!(indexes(&mut log).await, [3, 4]);
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(2));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(4));
        // Everything purged: the last log id is the purge marker's.
        log.purge(entry(4).log_id).await.expect("purge all");
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id.map(|l| l.index), Some(4));
        assert!(indexes(&mut log).await.is_empty());
    }
}
