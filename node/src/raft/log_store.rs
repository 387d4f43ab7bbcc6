//! The Raft log on sled: entries, vote, committed and purged markers.
//!
//! Every record is laid out by `ledger_state_machine::codec::record` (`records.rs` maps openraft's
//! types onto it): a crc32, a format version, and the project's own layout; records of the
//! previous format (openraft's serde layout in bincode) are read as well. The checksum is
//! verified on every read: sled survives process crashes, but its flush does not force the disk's
//! own write cache and it has known corruption reports after abrupt stops, so a record that does
//! not check out is reported as corrupt instead of being used. [`LogStore::open`] also checks the
//! whole log before the node starts (contiguous indices, nothing at or below the purge marker, a
//! vote present whenever entries are, and its term at least the last entry's), and the node
//! refuses to serve on any finding.
//!
//! An append is written at once as one sled batch; the `log-flusher` thread then fsyncs it
//! (`Db::flush`, one fsync for every append waiting) before openraft is told it is durable, so
//! an entry counts towards a quorum only once it is on disk. Votes and the purge marker are
//! flushed before their call returns; the committed marker is not (losing it only means
//! re-applying from the snapshot).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use ledger_state_machine::codec::record::RecordError;
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, StorageIOError, Vote};

use super::records;
use super::{LogEntry, LogId, StorageError, TypeConfig};
use crate::metrics::Metrics;

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const PURGED_KEY: &[u8] = b"purged";
/// An append (write and fsync) slower than this is logged: it delays every waiting request.
const SLOW_WRITE: Duration = Duration::from_millis(50);

/// What the start-up check found wrong with the log; the node refuses to serve.
#[derive(Debug, thiserror::Error)]
pub enum CorruptLog {
    /// sled itself failed to open or read.
    #[error("log storage cannot be read: {0}")]
    Sled(#[from] sled::Error),
    /// A record's checksum or encoding does not match.
    #[error("log record {key} is corrupt: {reason}")]
    BadRecord {
        /// The record's key (an index or a marker name).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Entries are not contiguous, or not where their keys say.
    #[error("log is not contiguous: expected index {expected}, found {found}")]
    Gap {
        /// The index that should come next.
        expected: u64,
        /// The index found.
        found: u64,
    },
    /// Entries exist but no vote was ever saved: the vote record was lost.
    #[error("log holds entries but no vote")]
    MissingVote,
    /// The saved vote is older than the log: a node saves the vote of a term before it accepts
    /// that term's entries, so a vote write was lost. Voting from it could grant a second vote
    /// in a term this node already voted in.
    #[error(
        "the saved vote (term {vote_term}) is older than log entry {index} (term {entry_term}): \
         a vote write was lost"
    )]
    VoteBehindLog {
        /// The saved vote's term.
        vote_term: u64,
        /// The last entry's (or the purge marker's) index.
        index: u64,
        /// Its term.
        entry_term: u64,
    },
}

/// The sled-backed log store. Cheap to clone (sled trees are shared handles); clones serve as
/// log readers.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    logs: sled::Tree,
    meta: sled::Tree,
    /// One past the purge marker's index (0: nothing purged): entries below it may still be in
    /// `logs` while a background purge removes them, and are never returned.
    first_kept: Arc<AtomicU64>,
    /// Held by the background purge, so that purges run one at a time.
    purging: Arc<Mutex<()>>,
    /// Appends waiting for the flusher thread's next fsync.
    flushes: mpsc::Sender<LogFlushed<TypeConfig>>,
    /// Where append and fsync times and the committed index go.
    metrics: Arc<Metrics>,
}

/// Entries a background purge removes between two pauses.
const PURGE_CHUNK: usize = 256;
/// Pause between two purge batches. Removing 20,000 entries costs ~150-250 ms of CPU; in one go
/// right after a snapshot (when every replica purges at once) that burst starved the nodes of
/// a small machine. Paced, the same purge takes under a second and stays out of the way; the
/// log grows far slower than this removes (256 entries per ~5 ms).
const PURGE_PAUSE: Duration = Duration::from_millis(4);

/// What [`LogStore::open`] found: the log's extent, for the start-up log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogSummary {
    /// The first entry's index, if any.
    pub first_index: Option<u64>,
    /// The last entry's index, if any.
    pub last_index: Option<u64>,
    /// The purge marker.
    pub purged_index: Option<u64>,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn read_error(subject: ErrorSubject<u64>, error: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(subject, ErrorVerb::Read, AnyError::error(error)).into()
}

fn write_error(subject: ErrorSubject<u64>, error: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(subject, ErrorVerb::Write, AnyError::error(error)).into()
}

/// sled's page cache. Its default (1 GiB) lets the log's pages pile up in memory far beyond
/// what a node reads back: the entries that matter (not yet replicated or applied) are the
/// newest few thousand. Measured in `docs/performance.md` (archiving).
const LOG_CACHE_BYTES: u64 = 16 * 1024 * 1024;

impl LogStore {
    /// Opens (or creates) the log under `dir` and checks it from end to end.
    pub fn open(dir: &Path) -> Result<(LogStore, LogSummary), CorruptLog> {
        LogStore::open_metered(dir, Arc::new(Metrics::new(0)))
    }

    /// [`LogStore::open`], recording append and fsync times and the committed index in
    /// `metrics`.
    pub fn open_metered(
        dir: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<(LogStore, LogSummary), CorruptLog> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(LOG_CACHE_BYTES)
            .open()?;
        let (flushes, waiting) = mpsc::channel();
        let flusher = db.clone();
        let fsyncs = metrics.clone();
        std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn(move || flush_in_groups(&flusher, &waiting, &fsyncs))
            .map_err(|e| CorruptLog::Sled(sled::Error::Io(e)))?;
        let store = LogStore {
            logs: db.open_tree("logs")?,
            meta: db.open_tree("meta")?,
            db,
            first_kept: Arc::new(AtomicU64::new(0)),
            purging: Arc::new(Mutex::new(())),
            flushes,
            metrics,
        };
        store.finish_interrupted_purge()?;
        let summary = store.check()?;
        if let Some(purged) = summary.purged_index {
            store.first_kept.store(purged + 1, Ordering::Release);
        }
        Ok((store, summary))
    }

    /// [`RaftLogStorage::purge`] saves the marker before it removes entries; entries left at or
    /// below the marker are the rest of a purge a crash interrupted.
    fn finish_interrupted_purge(&self) -> Result<(), CorruptLog> {
        let Some(record) = self.meta.get(PURGED_KEY)? else {
            return Ok(());
        };
        let purged = records::decode_purged(&record).map_err(|e| CorruptLog::BadRecord {
            key: "purged".into(),
            reason: e.to_string(),
        })?;
        remove_up_to(&self.logs, purged.index, Duration::ZERO)?;
        self.db.flush()?;
        Ok(())
    }

    fn check(&self) -> Result<LogSummary, CorruptLog> {
        let bad = |key: String, reason: String| CorruptLog::BadRecord { key, reason };
        let read_meta = |key: &[u8]| -> Result<Option<Vec<u8>>, CorruptLog> {
            Ok(self.meta.get(key)?.map(|v| v.to_vec()))
        };
        let vote: Option<Vote<u64>> = read_meta(VOTE_KEY)?
            .map(|v| records::decode_vote(&v).map_err(|e| bad("vote".into(), e.to_string())))
            .transpose()?;
        let purged: Option<LogId> = read_meta(PURGED_KEY)?
            .map(|v| records::decode_purged(&v).map_err(|e| bad("purged".into(), e.to_string())))
            .transpose()?;
        if let Some(committed) = read_meta(COMMITTED_KEY)? {
            records::decode_committed(&committed)
                .map_err(|e| bad("committed".into(), e.to_string()))?;
        }
        let mut summary = LogSummary {
            purged_index: purged.map(|p| p.index),
            ..LogSummary::default()
        };
        // The newest log id on disk: the last entry's, else the purge marker's.
        let mut last_log_id = purged;
        for record in self.logs.iter() {
            let (key, value) = record?;
            let key_index = <[u8; 8]>::try_from(key.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| bad(format!("{key:?}"), "key is not an index".into()))?;
            let entry = records::decode_entry(&value)
                .map_err(|e| bad(key_index.to_string(), e.to_string()))?;
            if entry.log_id.index != key_index {
                return Err(bad(
                    key_index.to_string(),
                    format!("holds entry {}", entry.log_id.index),
                ));
            }
            match summary.last_index {
                Some(last) if key_index != last + 1 => {
                    return Err(CorruptLog::Gap {
                        expected: last + 1,
                        found: key_index,
                    });
                }
                None => {
                    if let Some(purged) = summary.purged_index {
                        if key_index != purged + 1 {
                            return Err(CorruptLog::Gap {
                                expected: purged + 1,
                                found: key_index,
                            });
                        }
                    }
                    summary.first_index = Some(key_index);
                }
                _ => {}
            }
            summary.last_index = Some(key_index);
            last_log_id = Some(entry.log_id);
        }
        if summary.last_index.is_some() && vote.is_none() {
            return Err(CorruptLog::MissingVote);
        }
        if let (Some(vote), Some(last)) = (vote, last_log_id) {
            if vote.leader_id.term < last.leader_id.term {
                return Err(CorruptLog::VoteBehindLog {
                    vote_term: vote.leader_id.term,
                    index: last.index,
                    entry_term: last.leader_id.term,
                });
            }
        }
        Ok(summary)
    }

    fn read_meta<T>(
        &self,
        key: &'static [u8],
        subject: ErrorSubject<u64>,
        decode: fn(&[u8]) -> Result<T, RecordError>,
    ) -> Result<Option<T>, StorageError> {
        let Some(record) = self
            .meta
            .get(key)
            .map_err(|e| read_error(subject.clone(), e))?
        else {
            return Ok(None);
        };
        decode(&record)
            .map(Some)
            .map_err(|e| read_error(subject, e))
    }

    async fn write_meta(
        &self,
        key: &'static [u8],
        record: Vec<u8>,
        subject: ErrorSubject<u64>,
        durable: bool,
    ) -> Result<(), StorageError> {
        self.meta
            .insert(key, record)
            .map_err(|e| write_error(subject.clone(), e))?;
        if durable {
            self.db
                .flush_async()
                .await
                .map_err(|e| write_error(subject, e))?;
        }
        Ok(())
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        let Some((key, value)) = self
            .logs
            .last()
            .map_err(|e| read_error(ErrorSubject::Logs, e))?
        else {
            return Ok(None);
        };
        let entry = records::decode_entry(&value)
            .map_err(|e| read_error(ErrorSubject::Logs, format!("entry at key {key:?}: {e}")))?;
        Ok(Some(entry.log_id))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let first_kept = self.first_kept.load(Ordering::Acquire);
        let start = match range.start_bound() {
            Bound::Included(&i) if i >= first_kept => Bound::Included(index_key(i)),
            Bound::Excluded(&i) if i >= first_kept => Bound::Excluded(index_key(i)),
            _ => Bound::Included(index_key(first_kept)),
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(index_key(i)),
            Bound::Excluded(&i) => Bound::Excluded(index_key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for record in self.logs.range::<[u8; 8], _>((start, end)) {
            let (key, value) = record.map_err(|e| read_error(ErrorSubject::Logs, e))?;
            let entry = records::decode_entry(&value).map_err(|e| {
                read_error(ErrorSubject::Logs, format!("entry at key {key:?}: {e}"))
            })?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id =
            self.read_meta(PURGED_KEY, ErrorSubject::Store, records::decode_purged)?;
        // While a background purge runs, the last entry can be one it has yet to remove.
        let last_log_id = match (self.last_entry_id()?, last_purged_log_id) {
            (Some(last), Some(purged)) if last.index <= purged.index => Some(purged),
            (last, purged) => last.or(purged),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.write_meta(
            VOTE_KEY,
            records::encode_vote(vote),
            ErrorSubject::Vote,
            true,
        )
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.read_meta(VOTE_KEY, ErrorSubject::Vote, records::decode_vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: a lost committed marker only means re-applying from the snapshot on start.
        let record = records::encode_log_id(committed.as_ref());
        self.write_meta(COMMITTED_KEY, record, ErrorSubject::Store, false)
            .await?;
        if let Some(committed) = committed {
            self.metrics.committed_index.set(committed.index as i64);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .read_meta(
                COMMITTED_KEY,
                ErrorSubject::Store,
                records::decode_committed,
            )?
            .flatten())
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
        let mut batch = sled::Batch::default();
        for entry in entries {
            batch.insert(
                &index_key(entry.log_id.index),
                records::encode_entry(&entry),
            );
        }
        // The write now (readers see the entries when this returns; sled can block the calling
        // thread, so not on an async worker); the fsync by the flusher thread. openraft 0.9
        // awaits the callback before its next command, so a group rarely holds more than this
        // append, and the leader's own fsync is on the path of every commit.
        let (logs, metrics) = (self.logs.clone(), self.metrics.clone());
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let written = logs.apply_batch(batch);
            metrics
                .append_seconds
                .observe(started.elapsed().as_secs_f64());
            written
        })
        .await
        .map_err(|e| write_error(ErrorSubject::Logs, e))?
        .map_err(|e| write_error(ErrorSubject::Logs, e))?;
        self.flushes
            .send(callback)
            .map_err(|_| write_error(ErrorSubject::Logs, "the log flusher has stopped"))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for key in self.logs.range(index_key(log_id.index)..).keys() {
            batch.remove(key.map_err(|e| read_error(ErrorSubject::Logs, e))?);
        }
        self.logs
            .apply_batch(batch)
            .map_err(|e| write_error(ErrorSubject::Logs, e))?;
        self.db
            .flush_async()
            .await
            .map_err(|e| write_error(ErrorSubject::Logs, e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The marker first: a crash between the two steps leaves entries below the marker, which
        // are removed on the next start, never a marker below missing entries.
        let record = records::encode_log_id(Some(&log_id));
        self.write_meta(PURGED_KEY, record, ErrorSubject::Store, true)
            .await?;
        self.first_kept
            .fetch_max(log_id.index + 1, Ordering::AcqRel);
        // openraft awaits `purge` in its core loop, so removing thousands of entries here would
        // hold back every append and commit (a 0.2-0.5 s stall of the whole cluster right after
        // each snapshot). The removal runs in the background, in small batches; readers already
        // skip what is below the marker.
        let (logs, purging) = (self.logs.clone(), self.purging.clone());
        tokio::task::spawn_blocking(move || {
            let _one_at_a_time = purging.lock();
            let started = std::time::Instant::now();
            let removed = remove_up_to(&logs, log_id.index, PURGE_PAUSE);
            tracing::info!(
                upto = log_id.index,
                ms = started.elapsed().as_millis() as u64,
                "log purged"
            );
            if let Err(error) = removed {
                tracing::warn!(%error, upto = log_id.index, "purge left entries behind; they go on the next start");
            }
        });
        Ok(())
    }
}

/// Group commit: takes every append waiting, syncs once, and tells them all, until the store
/// is dropped. Under load one fsync covers several appends (each one an entry of a batch of
/// commands); a single append waits no longer than its own fsync.
fn flush_in_groups(
    db: &sled::Db,
    waiting: &mpsc::Receiver<LogFlushed<TypeConfig>>,
    metrics: &Metrics,
) {
    while let Ok(first) = waiting.recv() {
        let mut group = vec![first];
        group.extend(waiting.try_iter());
        let started = std::time::Instant::now();
        let flushed = db.flush().map(|_| ()).map_err(|e| e.to_string());
        metrics
            .fsync_seconds
            .observe(started.elapsed().as_secs_f64());
        if started.elapsed() > SLOW_WRITE {
            tracing::warn!(
                flush_ms = started.elapsed().as_millis() as u64,
                appends = group.len(),
                "slow log fsync"
            );
        }
        for callback in group {
            callback.log_io_completed(flushed.clone().map_err(std::io::Error::other));
        }
    }
}

/// Removes the entries at or below `index`, [`PURGE_CHUNK`] at a time, with `pause` between
/// batches (none at start-up, when nothing else waits).
fn remove_up_to(logs: &sled::Tree, index: u64, pause: Duration) -> sled::Result<()> {
    loop {
        let keys = logs
            .range(..=index_key(index))
            .keys()
            .take(PURGE_CHUNK)
            .collect::<sled::Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Ok(());
        }
        // One by one in ascending order, not a `sled::Batch`: a batch takes sled's global write
        // lock, which waits for any fsync in progress (ours, or sled's own background flush) and
        // holds up every other reader and writer meanwhile, appends included. Nothing here needs
        // the atomicity: a crash leaves the entries above some index, which the start-up check
        // removes.
        for key in keys {
            logs.remove(key)?;
        }
        // Pacing, not synchronisation: see PURGE_PAUSE.
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}
