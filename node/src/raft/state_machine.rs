//! The state machine store: the replica's [`AdmissionState`] in memory, applied to by openraft,
//! and its snapshots on disk.
//!
//! A snapshot is one file, `snapshot.bin` in the node's data folder: a record of
//! `codec::record` (checksum, format version) holding openraft's snapshot meta (last applied log
//! id, membership) and the state's own snapshot bytes (`AdmissionState::encode_snapshot`). It is written to a temporary file, fsynced and renamed,
//! so a crash leaves either the old or the new snapshot. openraft builds snapshots and installs
//! the leader's concurrently, so each write has its own temporary file, and the file only moves
//! forward: a write older than the stored snapshot is dropped (`SnapshotFiles`). On start the
//! node loads it and openraft re-applies the committed log after it.
//!
//! In the simulation the same file's bytes live on the node's [`MemDisk`] instead
//! (`SnapshotPlace::Memory`), and encoding and writing run inline: a blocking thread would
//! finish at a moment the simulation does not decide.

use std::collections::{BTreeMap, VecDeque};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ledger_state_machine::{
    codec, AdmissionState, InvestmentView, RequestId, SagaEvent, StateDigest,
};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError,
    StoredMembership,
};
use tokio::sync::{mpsc, watch, Notify};

use super::mem_log::MemDisk;
use super::{records, ApplyReply, LogEntry, LogId, StorageError, TypeConfig};
use crate::clock::LogClock;
use crate::metrics::Metrics;

pub(crate) const SNAPSHOT_FILE: &str = "snapshot.bin";
/// Prefix of the writers' temporary files, `snapshot.bin.tmp.<n>`; leftovers of a crash are
/// removed on open.
const SNAPSHOT_TMP_PREFIX: &str = "snapshot.bin.tmp";
/// Numbers the temporary files, so no two writes in this process share one.
static SNAPSHOT_TMP_SERIAL: AtomicU64 = AtomicU64::new(0);

/// The part of the replica that readers share with the applier.
pub struct ReplicaState {
    /// The admission state.
    pub state: AdmissionState,
    /// The last log entry applied (of any kind).
    pub last_applied: Option<LogId>,
    /// The last membership applied.
    pub membership: StoredMembership<u64, openraft::BasicNode>,
}

/// The replica as the rest of the node sees it: read it, and learn when it changes.
pub struct Replica {
    inner: RwLock<ReplicaState>,
    applied: watch::Sender<u64>,
    /// Readers following one investment: each gets the investment's state after every entry
    /// that changed it (captured while applying, so none is skipped when a replica applies
    /// several entries at once or the reader wakes late) and a wake-up; a watch costs nothing
    /// while other investments change. Ordered, so that a snapshot wakes every watcher in the
    /// same order: a simulation replays.
    watchers: Mutex<BTreeMap<RequestId, Vec<Arc<WatchSlot>>>>,
    /// How many watches are registered: applying looks at `watchers` only when some are.
    watching: AtomicUsize,
    /// Signalled when a snapshot replaced the whole state (no saga events say what changed).
    replaced: Notify,
    /// The last digest computed and the applied index it is for: hashing the whole state takes
    /// the read lock for as long as it runs, so many callers at one index hash it once.
    digest_memo: Mutex<Option<(u64, StateDigest)>>,
    /// How many times the whole state was hashed, for tests and diagnosis.
    digests_computed: AtomicU64,
    /// Hash on a blocking thread ([`Replica::digest_async`]); off in a simulation, where a
    /// blocking thread's real duration would let the paused clock run on meanwhile, so that a
    /// seed's simulated time came to depend on the machine's load.
    hash_off_runtime: bool,
}

/// States queued for one watch before it reads them; beyond this the oldest go (a reader that
/// far behind still gets the latest states, in order).
const WATCH_QUEUE_MAX: usize = 256;

/// One registered watch: its wake-up and the states captured for it, oldest first.
#[derive(Default)]
struct WatchSlot {
    notify: Notify,
    /// `(log index after which the state held, the state)`.
    states: Mutex<VecDeque<(u64, InvestmentView)>>,
}

/// A registration returned by [`Replica::watch`]; dropping it unregisters.
pub struct InvestmentWatch<'a> {
    replica: &'a Replica,
    request_id: RequestId,
    slot: Arc<WatchSlot>,
}

impl InvestmentWatch<'_> {
    /// Completes after the investment's saga changed (or at once if it changed since the last
    /// call).
    pub async fn changed(&self) {
        self.slot.notify.notified().await;
    }

    /// The states captured since the last call, in log order, each with the log index after
    /// which it held. Empty after a snapshot install (read the replica then).
    pub fn states(&self) -> Vec<(u64, InvestmentView)> {
        self.slot
            .states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect()
    }
}

impl Drop for InvestmentWatch<'_> {
    fn drop(&mut self) {
        let mut watchers = self
            .replica
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = watchers.get_mut(&self.request_id) {
            list.retain(|slot| !Arc::ptr_eq(slot, &self.slot));
            if list.is_empty() {
                watchers.remove(&self.request_id);
            }
        }
        self.replica.watching.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Replica {
    /// Reads the state; never hold the guard across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, ReplicaState> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, ReplicaState> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Completes when a snapshot next replaces the whole state (register before reading).
    pub fn replaced(&self) -> tokio::sync::futures::Notified<'_> {
        self.replaced.notified()
    }

    /// The index of the last applied entry, updated after every applied batch.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Follows one investment's saga: register before reading, then await
    /// [`InvestmentWatch::changed`] between reads, and no change is missed.
    pub fn watch(&self, request_id: RequestId) -> InvestmentWatch<'_> {
        let slot = Arc::new(WatchSlot::default());
        self.watching.fetch_add(1, Ordering::Relaxed);
        self.watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(request_id)
            .or_default()
            .push(slot.clone());
        InvestmentWatch {
            replica: self,
            request_id,
            slot,
        }
    }

    /// While applying (write lock held): queues, for every watch of an investment that
    /// `events` name, its state after the entry at `log_index`.
    fn capture(&self, state: &AdmissionState, log_index: u64, events: &[SagaEvent]) {
        if events.is_empty() || self.watching.load(Ordering::Relaxed) == 0 {
            return;
        }
        let watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        for event in events {
            let Some(slots) = watchers.get(&event.request_id) else {
                continue;
            };
            let Some(view) = state.investment(event.request_id) else {
                continue;
            };
            for slot in slots {
                let mut states = slot.states.lock().unwrap_or_else(PoisonError::into_inner);
                // One entry may name an investment twice; its state after the entry is one.
                if states.back().is_some_and(|(index, _)| *index == log_index) {
                    continue;
                }
                if states.len() == WATCH_QUEUE_MAX {
                    states.pop_front();
                }
                states.push_back((log_index, view.clone()));
            }
        }
    }

    fn wake(&self, events: &[SagaEvent]) {
        let watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        if watchers.is_empty() {
            return;
        }
        for event in events {
            for slot in watchers.get(&event.request_id).into_iter().flatten() {
                // Stores a permit when the watcher is not waiting yet: no lost wake-up.
                slot.notify.notify_one();
            }
        }
    }

    /// Wakes every registered watch: after a snapshot replaced the state, any investment may
    /// have changed without a saga event saying so.
    fn wake_all(&self) {
        let watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        for slot in watchers.values().flatten() {
            slot.notify.notify_one();
        }
    }

    /// The applied index and the state digest at that index, read together. Hashes the whole
    /// state (under the read lock, so applies wait) only for an index not hashed before; a
    /// replica's state at an applied index never changes, so the memo is exact.
    pub fn digest(&self) -> (u64, StateDigest) {
        let guard = self.read();
        let index = guard.last_applied.map_or(0, |id| id.index);
        // Held while hashing, so concurrent callers at this index wait for this hash.
        let mut memo = self
            .digest_memo
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((memo_index, digest)) = *memo {
            if memo_index == index {
                return (index, digest);
            }
        }
        let digest = guard.state.digest();
        self.digests_computed.fetch_add(1, Ordering::Relaxed);
        *memo = Some((index, digest));
        (index, digest)
    }

    /// [`Replica::digest`], hashing on a blocking thread: only a copy of the state is taken
    /// under the read lock (for 1,000,000 investments, ~0.3 s instead of ~0.7 s with the hash,
    /// docs/performance.md), so a `Status` with its digest does not stall the node's runtime
    /// for the whole hash.
    pub async fn digest_async(&self) -> (u64, StateDigest) {
        if !self.hash_off_runtime {
            return self.digest();
        }
        let (index, copy) = {
            let guard = self.read();
            let index = guard.last_applied.map_or(0, |id| id.index);
            let memo = *self
                .digest_memo
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((memo_index, digest)) = memo {
                if memo_index == index {
                    return (index, digest);
                }
            }
            (index, guard.state.snapshot_copy())
        };
        let digest = match tokio::task::spawn_blocking(move || copy.digest()).await {
            Ok(digest) => digest,
            // The hash cannot fail; a panic there is a bug, hashed again here rather than lost.
            Err(_) => return self.digest(),
        };
        self.digests_computed.fetch_add(1, Ordering::Relaxed);
        *self
            .digest_memo
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((index, digest));
        (index, digest)
    }

    /// How many times [`Replica::digest`] hashed the whole state.
    pub fn digests_computed(&self) -> u64 {
        self.digests_computed.load(Ordering::Relaxed)
    }
}

/// The on-disk snapshot: openraft's meta and the state's snapshot bytes, laid out by
/// `codec::record` (`records.rs`).
struct SnapshotFile {
    meta: SnapshotMeta<u64, openraft::BasicNode>,
    data: Vec<u8>,
}

/// Why the stored snapshot could not be loaded; the node refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotLoadError {
    /// The file could not be read.
    #[error("snapshot file {path} cannot be read: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file does not check out.
    #[error("snapshot file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// openraft's handle on the state machine.
pub struct StateMachineStore {
    replica: Arc<Replica>,
    files: Arc<SnapshotPlace>,
    events: Option<mpsc::UnboundedSender<SagaEvent>>,
    /// Told the log time of what this replica applies (a new leader's fallback clock).
    clock: Option<Arc<LogClock>>,
    /// Where snapshot build and install times and sizes go.
    metrics: Option<Arc<Metrics>>,
}

fn sm_error(verb: ErrorVerb, error: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::error(error)).into()
}

fn snapshot_error(verb: ErrorVerb, error: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::error(error)).into()
}

impl StateMachineStore {
    /// Opens the store under `dir`, loading the stored snapshot if there is one. Saga events
    /// produced by applying entries go to `events` when given.
    pub fn open(
        dir: &Path,
        events: Option<mpsc::UnboundedSender<SagaEvent>>,
    ) -> Result<(StateMachineStore, Arc<Replica>), SnapshotLoadError> {
        let path = dir.join(SNAPSHOT_FILE);
        let loaded = match std::fs::read(&path) {
            Ok(bytes) => Some(load(&path, &bytes)?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(SnapshotLoadError::Io { path, error }),
        };
        let files = SnapshotFiles::open(
            dir,
            loaded
                .as_ref()
                .map(|(file, _)| snapshot_position(&file.meta)),
        );
        Ok(Self::start(loaded, SnapshotPlace::Dir(files), events, true))
    }

    /// Opens the store on the simulation's `disk`, as [`StateMachineStore::open`] does a folder.
    pub fn open_in_memory(
        disk: &MemDisk,
        events: Option<mpsc::UnboundedSender<SagaEvent>>,
    ) -> Result<(StateMachineStore, Arc<Replica>), SnapshotLoadError> {
        let loaded = match disk.snapshot() {
            Some(bytes) => Some(load(Path::new("memory"), &bytes)?),
            None => None,
        };
        Ok(Self::start(
            loaded,
            SnapshotPlace::Memory(disk.clone()),
            events,
            false,
        ))
    }

    fn start(
        loaded: Option<(SnapshotFile, AdmissionState)>,
        files: SnapshotPlace,
        events: Option<mpsc::UnboundedSender<SagaEvent>>,
        hash_off_runtime: bool,
    ) -> (StateMachineStore, Arc<Replica>) {
        let inner = match loaded {
            Some((file, state)) => ReplicaState {
                state,
                last_applied: file.meta.last_log_id,
                membership: file.meta.last_membership,
            },
            None => ReplicaState {
                state: AdmissionState::new(),
                last_applied: None,
                membership: StoredMembership::default(),
            },
        };
        let (applied, _) = watch::channel(inner.last_applied.map_or(0, |id| id.index));
        let replica = Arc::new(Replica {
            inner: RwLock::new(inner),
            applied,
            watchers: Mutex::new(BTreeMap::new()),
            watching: AtomicUsize::new(0),
            replaced: Notify::new(),
            digest_memo: Mutex::new(None),
            digests_computed: AtomicU64::new(0),
            hash_off_runtime,
        });
        let store = StateMachineStore {
            replica: replica.clone(),
            files: Arc::new(files),
            events,
            clock: None,
            metrics: None,
        };
        (store, replica)
    }

    /// Tells `clock` the log time of every entry and snapshot this replica applies, starting
    /// with what it holds now.
    pub fn set_log_clock(&mut self, clock: Arc<LogClock>) {
        clock.observe_log_time(self.replica.read().state.now_ms());
        self.clock = Some(clock);
    }

    /// Records snapshot build and install times and sizes in `metrics`.
    pub fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        self.metrics = Some(metrics);
    }
}

/// Checks the file's checksum and decodes it; the state bytes stay encoded.
fn read_snapshot_file(bytes: &[u8]) -> Result<SnapshotFile, String> {
    let (meta, data) = records::decode_snapshot(bytes).map_err(|e| e.to_string())?;
    Ok(SnapshotFile { meta, data })
}

/// [`load_snapshot_file`], failing as the start-up check does.
fn load(path: &Path, bytes: &[u8]) -> Result<(SnapshotFile, AdmissionState), SnapshotLoadError> {
    load_snapshot_file(bytes).map_err(|reason| SnapshotLoadError::Corrupt {
        path: path.to_owned(),
        reason,
    })
}

/// Reads the file and decodes the state it holds, checking the two agree.
fn load_snapshot_file(bytes: &[u8]) -> Result<(SnapshotFile, AdmissionState), String> {
    let file = read_snapshot_file(bytes)?;
    let state = AdmissionState::decode_snapshot(&file.data).map_err(|e| e.to_string())?;
    let expected = file.meta.last_log_id.map_or(0, |id| id.index);
    if state.last_log_index() > expected {
        return Err(format!(
            "state is at index {} but the snapshot claims {expected}",
            state.last_log_index()
        ));
    }
    Ok((file, state))
}

/// How much of a snapshot file is written between two syncs (see [`SnapshotFiles::write`]).
const SNAPSHOT_WRITE_PIECE: usize = 256 * 1024;
/// Pause after each piece: a snapshot is not urgent (the log still holds what it covers), the
/// appends waiting behind its writes are.
const SNAPSHOT_WRITE_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Where a snapshot stands in the log: the last index it covers (`None` for a snapshot of
/// nothing, older than any other). Applied log ids all lie on one committed chain, so the index
/// alone orders them.
type SnapshotPosition = Option<u64>;

fn snapshot_position(meta: &SnapshotMeta<u64, openraft::BasicNode>) -> SnapshotPosition {
    meta.last_log_id.map(|id| id.index)
}

/// Writes `dir`'s snapshot file (a restore's: nothing else may use the folder meanwhile).
pub(crate) fn write_snapshot_file(
    dir: &Path,
    meta: SnapshotMeta<u64, openraft::BasicNode>,
    data: Vec<u8>,
) -> std::io::Result<()> {
    SnapshotFiles::open(dir, None)
        .write_blocking(&SnapshotFile { meta, data })
        .map(|_| ())
}

/// The snapshot file of one data folder, shared by the snapshot builder and `install_snapshot`,
/// which openraft runs concurrently. Each write goes through its own temporary file (a shared
/// one let two writers interleave bytes or rename each other's file away), and the rename is
/// made under [`SnapshotFiles::stored`] only when the new snapshot is newer than the stored one,
/// so an older snapshot finishing last never replaces a newer one.
struct SnapshotFiles {
    dir: PathBuf,
    /// The position of the snapshot in `snapshot.bin`; `None` while there is no file.
    stored: Mutex<Option<SnapshotPosition>>,
}

impl SnapshotFiles {
    /// The snapshot file under `dir`, holding a snapshot at `stored` (`None`: no file). Removes
    /// the temporary files of writes a crash interrupted.
    fn open(dir: &Path, stored: Option<SnapshotPosition>) -> SnapshotFiles {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(SNAPSHOT_TMP_PREFIX)
                {
                    // Best effort: a leftover only costs disk space.
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        SnapshotFiles {
            dir: dir.to_owned(),
            stored: Mutex::new(stored),
        }
    }

    fn newer_than_stored(stored: Option<SnapshotPosition>, candidate: SnapshotPosition) -> bool {
        stored.is_none_or(|stored| candidate > stored)
    }

    /// Stores `file` unless the stored snapshot is as new or newer; returns whether it did.
    /// Atomic: temporary file, fsync, rename, fsync of the folder.
    fn write_blocking(&self, file: &SnapshotFile) -> std::io::Result<bool> {
        let position = snapshot_position(&file.meta);
        let stored = *self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        if !Self::newer_than_stored(stored, position) {
            return Ok(false);
        }
        let serial = SNAPSHOT_TMP_SERIAL.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("{SNAPSHOT_TMP_PREFIX}.{serial}"));
        let written = self.write_and_rename(file, position, &tmp);
        if !matches!(written, Ok(true)) {
            // Best effort: the file is ours alone, and a leftover goes on the next start.
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    fn write_and_rename(
        &self,
        file: &SnapshotFile,
        position: SnapshotPosition,
        tmp: &Path,
    ) -> std::io::Result<bool> {
        use std::io::Write;
        let payload = seal_snapshot(file);
        let mut out = std::fs::File::create(tmp)?;
        // Written and synced a piece at a time: on ext4 (data=ordered) every other fsync on the
        // file system, such as the log's after each append, waits for dirty data like this file's
        // to reach the disk. Megabytes left dirty made the log's fsyncs of all replicas (which
        // snapshot at the same index) wait 0.3-0.5 s at once.
        for piece in payload.chunks(SNAPSHOT_WRITE_PIECE) {
            out.write_all(piece)?;
            out.sync_data()?;
            // Pacing, not synchronisation: leave the disk to the log's fsyncs in between.
            std::thread::sleep(SNAPSHOT_WRITE_PAUSE);
        }
        out.sync_all()?;
        // Compare and replace under one lock: another writer may have stored a newer snapshot
        // while this one was writing.
        let mut stored = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        if !Self::newer_than_stored(*stored, position) {
            return Ok(false);
        }
        std::fs::rename(tmp, self.dir.join(SNAPSHOT_FILE))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        *stored = Some(position);
        Ok(true)
    }
}

/// Where the snapshot file is kept.
enum SnapshotPlace {
    /// `snapshot.bin` in the node's data folder.
    Dir(SnapshotFiles),
    /// On the simulation's disk.
    Memory(MemDisk),
}

impl SnapshotPlace {
    /// Stores `file` unless the stored snapshot is as new or newer; returns whether it did.
    async fn write(self: &Arc<Self>, file: SnapshotFile) -> Result<bool, StorageError> {
        match &**self {
            SnapshotPlace::Dir(_) => {
                let place = self.clone();
                tokio::task::spawn_blocking(move || match &*place {
                    SnapshotPlace::Dir(files) => files.write_blocking(&file),
                    SnapshotPlace::Memory(_) => unreachable!("matched above"),
                })
                .await
                .map_err(|e| snapshot_error(ErrorVerb::Write, e))?
                .map_err(|e| snapshot_error(ErrorVerb::Write, e))
            }
            SnapshotPlace::Memory(disk) => {
                Ok(disk.store_snapshot(snapshot_position(&file.meta), seal_snapshot(&file)))
            }
        }
    }

    /// The stored file's bytes.
    async fn read(&self) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            SnapshotPlace::Dir(files) => match tokio::fs::read(files.dir.join(SNAPSHOT_FILE)).await
            {
                Ok(bytes) => Ok(Some(bytes)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(error),
            },
            SnapshotPlace::Memory(disk) => Ok(disk.snapshot()),
        }
    }

    /// Encodes `state` off the async workers on a real disk, inline in the simulation.
    async fn encode(&self, state: codec::SnapshotCopy) -> Result<Vec<u8>, StorageError> {
        match self {
            SnapshotPlace::Dir(_) => tokio::task::spawn_blocking(move || state.encode())
                .await
                .map_err(|e| snapshot_error(ErrorVerb::Write, e)),
            SnapshotPlace::Memory(_) => Ok(state.encode()),
        }
    }
}

/// The file's bytes.
fn seal_snapshot(file: &SnapshotFile) -> Vec<u8> {
    records::encode_snapshot(&file.meta, &file.data)
}

/// Builds snapshots from the live replica.
pub struct SnapshotBuilder {
    replica: Arc<Replica>,
    files: Arc<SnapshotPlace>,
    metrics: Option<Arc<Metrics>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // A copy is taken under the read lock (applies wait only for the copy), and encoded on a
        // blocking thread, so neither applies nor the async workers wait for the encoding.
        let started = std::time::Instant::now();
        let (state, last_log_id, last_membership) = {
            let guard = self.replica.read();
            (
                guard.state.snapshot_copy(),
                guard.last_applied,
                guard.membership.clone(),
            )
        };
        let copied = started.elapsed();
        let data = self.files.encode(state).await?;
        let encoded = started.elapsed();
        let snapshot_id = match last_log_id {
            Some(id) => format!(
                "{}-{}-{}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let stored = self
            .files
            .write(SnapshotFile {
                meta: meta.clone(),
                data: data.clone(),
            })
            .await?;
        tracing::info!(
            stored,
            index = last_log_id.map_or(0, |id| id.index),
            bytes = data.len(),
            copy_ms = copied.as_millis() as u64,
            encode_ms = (encoded - copied).as_millis() as u64,
            write_ms = (started.elapsed() - encoded).as_millis() as u64,
            "snapshot built"
        );
        if let Some(metrics) = &self.metrics {
            metrics
                .snapshot_build_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.snapshot_bytes.observe(data.len() as f64);
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, openraft::BasicNode>), StorageError> {
        let guard = self.replica.read();
        Ok((guard.last_applied, guard.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyReply>, StorageError>
    where
        I: IntoIterator<Item = LogEntry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut replies = Vec::new();
        let mut events = Vec::new();
        let (applied_index, archived) = {
            let mut guard = self.replica.write();
            let archived_before = guard.state.archived_deal_count();
            let clock = self.clock.clone();
            for entry in entries {
                let _span = tracing::debug_span!("apply", log_index = entry.log_id.index).entered();
                let reply = match entry.payload {
                    EntryPayload::Blank => ApplyReply::default(),
                    EntryPayload::Normal(batch) => {
                        let before = events.len();
                        let breaches = guard.state.breaches().count;
                        let batch = batch.entry().map_err(|e| sm_error(ErrorVerb::Read, e))?;
                        let results = guard
                            .state
                            .apply_entry(entry.log_id.index, batch, &mut events)
                            .map_err(|e| sm_error(ErrorVerb::Write, e))?;
                        if guard.state.breaches().count != breaches {
                            tracing::error!(
                                log_index = entry.log_id.index,
                                breach = ?guard.state.breaches().last,
                                "applying found the state already inconsistent (clamped; see \
                                 ledger_state_breaches)"
                            );
                        }
                        self.replica
                            .capture(&guard.state, entry.log_id.index, &events[before..]);
                        ApplyReply { results }
                    }
                    EntryPayload::Membership(membership) => {
                        guard.membership = StoredMembership::new(Some(entry.log_id), membership);
                        ApplyReply::default()
                    }
                };
                guard.last_applied = Some(entry.log_id);
                replies.push(reply);
            }
            if let Some(clock) = clock {
                clock.observe_log_time(guard.state.now_ms());
            }
            // A deal left the state: give its memory back (outside the lock).
            let archived = guard.state.archived_deal_count() > archived_before;
            (guard.last_applied.map_or(0, |id| id.index), archived)
        };
        self.replica.applied.send_replace(applied_index);
        if archived {
            crate::memory::release_freed();
        }
        self.replica.wake(&events);
        if let Some(sink) = &self.events {
            for event in events {
                // A closed sink means the executor stopped; applying goes on regardless.
                let _ = sink.send(event);
            }
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            replica: self.replica.clone(),
            files: self.files.clone(),
            metrics: self.metrics.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        let data = snapshot.into_inner();
        let size = data.len();
        let state = AdmissionState::decode_snapshot(&data)
            .map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        let stored = self
            .files
            .write(SnapshotFile {
                meta: meta.clone(),
                data,
            })
            .await?;
        if !stored {
            // openraft installs only snapshots newer than what this node applied; the file is
            // newer still, so the next start loads that one.
            tracing::warn!(index = ?meta.last_log_id, "installed snapshot not stored: a newer one is on disk");
        }
        let applied_index = meta.last_log_id.map_or(0, |id| id.index);
        {
            let mut guard = self.replica.write();
            guard.state = state;
            guard.last_applied = meta.last_log_id;
            guard.membership = meta.last_membership.clone();
        }
        self.replica.applied.send_replace(applied_index);
        // A snapshot carries no saga events: without this, a watch on an investment the
        // snapshot changed would wait for a change this replica already has.
        self.replica.wake_all();
        if let Some(metrics) = &self.metrics {
            metrics
                .snapshot_install_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.snapshot_bytes.observe(size as f64);
        }
        self.replica.replaced.notify_waiters();
        if let Some(clock) = &self.clock {
            clock.observe_log_time(self.replica.read().state.now_ms());
        }
        tracing::info!(index = applied_index, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let bytes = match self.files.read().await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(error) => return Err(snapshot_error(ErrorVerb::Read, error)),
        };
        let file = read_snapshot_file(&bytes).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use ledger_state_machine::codec::record::EncodedEntry;
    use openraft::{CommittedLeaderId, LogId};

    use super::*;

    fn snapshot_at(index: u64, bytes: usize) -> SnapshotFile {
        SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
                last_membership: StoredMembership::default(),
                snapshot_id: format!("1-1-{index}"),
            },
            // Every byte names its writer, so a file mixing two writers' bytes is told apart.
            data: vec![index as u8; bytes],
        }
    }

    fn log_entry(index: u64, commands: Vec<ledger_state_machine::Command>) -> LogEntry {
        LogEntry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(EncodedEntry::new(ledger_state_machine::Entry {
                header: ledger_state_machine::EntryHeader {
                    leader_id: 1,
                    time_ms: 1_000 + index,
                },
                commands,
            })),
        }
    }

    /// The simulation's disk keeps the snapshot a crash cannot take (it was stored whole), and
    /// a node restarting on it loads that state; an older snapshot never replaces it.
    #[tokio::test(start_paused = true)]
    async fn a_snapshot_on_the_memory_disk_survives_a_crash() {
        let disk = MemDisk::new(std::time::Duration::from_millis(1));
        let (mut store, _) = StateMachineStore::open_in_memory(&disk, None).expect("open");
        store
            .apply([log_entry(1, Vec::new()), log_entry(2, Vec::new())])
            .await
            .expect("apply");
        let built = store
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(2));
        let older = SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 1)),
                ..built.meta.clone()
            },
            data: Vec::new(),
        };
        assert!(!store.files.write(older).await.expect("write"));
        disk.crash();

        let (mut reopened, replica) = StateMachineStore::open_in_memory(&disk, None).expect("open");
        assert_eq!(replica.read().last_applied.map(|l| l.index), Some(2));
        let current = reopened
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("a snapshot");
        assert_eq!(current.meta, built.meta);
    }

    /// Postmortem: `install_snapshot` woke no `WatchInvestment` watcher, so a follower that
    /// caught up by snapshot kept its watchers waiting for a state it already had.
    #[tokio::test]
    async fn installing_a_snapshot_wakes_the_watchers() {
        use ledger_state_machine::{Command, Money, SagaStep, Submit};

        let request_id = RequestId::parse("6f1c2b1e-8f3a-4c55-9a6e-0d1b2c3d4e5f").unwrap();
        let admitted = vec![
            create(1, "d"),
            log_entry(
                2,
                vec![Command::Submit(Submit {
                    request_id,
                    deal_id: "d".into(),
                    user_id: "ana".into(),
                    amount: Money::parse("10.00").unwrap(),
                    waitlist: false,
                    waitlist_ttl_ms: None,
                })],
            ),
        ];
        let aborted = log_entry(
            3,
            vec![Command::AbortSaga {
                request_id,
                reason: "test".into(),
            }],
        );

        // Phase 1: a follower holds the investment, PENDING in PAYMENT, and a watch follows it.
        let follower_dir = tempfile::tempdir().unwrap();
        let (mut follower, replica) = StateMachineStore::open(follower_dir.path(), None).unwrap();
        follower.apply(admitted.clone()).await.unwrap();
        let step = |replica: &Replica| {
            let view = replica.read().state.investment(request_id);
            view.and_then(|v| v.saga).map(|saga| saga.step)
        };
        assert_eq!(step(&replica), Some(SagaStep::Payment));
        let watch = replica.watch(request_id);

        // Phase 2: the leader's state moved on (the saga is being compensated); the follower
        // gets it as a snapshot, with no saga event.
        let leader_dir = tempfile::tempdir().unwrap();
        let (mut leader, _) = StateMachineStore::open(leader_dir.path(), None).unwrap();
        leader.apply(admitted).await.unwrap();
        leader.apply([aborted]).await.unwrap();
        let snapshot = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        follower
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        assert_eq!(step(&replica), Some(SagaStep::Void));

        // Phase 3: the watch wakes up to read it.
        tokio::time::timeout(std::time::Duration::from_secs(5), watch.changed())
            .await
            .expect("the watch wakes after the snapshot is installed");
    }

    /// Postmortem (found by tests/tests/watch_investment.rs): a watch read the replica when it
    /// woke, so a replica applying several entries at once (a follower catching up, a busy
    /// leader) or a watcher waking late streamed only the last state, skipping the ones between.
    /// Every state is now captured for the watch as its entry applies.
    #[tokio::test]
    async fn a_watch_gets_every_state_of_entries_applied_together() {
        use ledger_state_machine::{
            Command, Money, RecordStep, SagaStep, Status, StepResult, Submit,
        };

        let request_id = RequestId::parse("6f1c2b1e-8f3a-4c55-9a6e-0d1b2c3d4e5f").unwrap();
        let step = |epoch: u64, result: StepResult| {
            Command::RecordStep(RecordStep {
                request_id,
                executor: 2,
                epoch,
                result,
            })
        };
        let dir = tempfile::tempdir().unwrap();
        let (mut store, replica) = StateMachineStore::open(dir.path(), None).unwrap();
        store
            .apply([
                log_entry(
                    1,
                    vec![
                        Command::ExecutorHeartbeat {
                            node_id: 2,
                            applied_index: 0,
                        },
                        create_deal("d"),
                    ],
                ),
                log_entry(
                    2,
                    vec![Command::Submit(Submit {
                        request_id,
                        deal_id: "d".into(),
                        user_id: "ana".into(),
                        amount: Money::parse("10.00").unwrap(),
                        waitlist: false,
                        waitlist_ttl_ms: None,
                    })],
                ),
            ])
            .await
            .unwrap();
        let watch = replica.watch(request_id);
        // Three entries applied in one call, as a follower catching up does.
        let epoch = replica
            .read()
            .state
            .investment(request_id)
            .unwrap()
            .saga
            .unwrap()
            .epoch;
        store
            .apply([
                log_entry(
                    3,
                    vec![step(
                        epoch,
                        StepResult::PaymentSucceeded {
                            payment_id: "pay".into(),
                        },
                    )],
                ),
                log_entry(
                    4,
                    vec![step(
                        epoch,
                        StepResult::DocumentsGenerated {
                            document_id: "doc".into(),
                        },
                    )],
                ),
                log_entry(
                    5,
                    vec![step(
                        epoch,
                        StepResult::NotifySent {
                            message_id: "msg".into(),
                        },
                    )],
                ),
            ])
            .await
            .unwrap();
        let seen: Vec<(u64, Status, SagaStep)> = watch
            .states()
            .into_iter()
            .map(|(index, view)| (index, view.status, view.saga.unwrap().step))
            .collect();
        assert_eq!(
            seen,
            [
                (3, Status::Pending, SagaStep::Documents),
                (4, Status::Confirmed, SagaStep::Notify),
                (5, Status::Confirmed, SagaStep::Done),
            ]
        );
        assert!(watch.states().is_empty(), "each state is handed out once");
    }

    /// The log entry at `index` creating deal `deal_id`.
    fn create(index: u64, deal_id: &str) -> LogEntry {
        log_entry(index, vec![create_deal(deal_id)])
    }

    /// A command creating deal `deal_id`: 1,000.00, 10 seats.
    fn create_deal(deal_id: &str) -> ledger_state_machine::Command {
        use ledger_state_machine::{Command, CreateDeal, Money};
        Command::CreateDeal(CreateDeal {
            deal_id: deal_id.into(),
            amount: Money::parse("1000.00").unwrap(),
            max_investors: 10,
            min_ticket: None,
            max_ticket: None,
            opens_at_ms: None,
            closes_at_ms: None,
            max_waitlist: ledger_state_machine::MAX_WAITLIST_DEFAULT,
        })
    }

    /// Found by the determinism test on a loaded machine: seed 11's simulated time came out
    /// 12,782 ms or 12,813 ms. `Status` hashed the state on a blocking thread, and turmoil's
    /// clock moves on while a host waits for a real thread, by as many steps as the machine's
    /// load makes the thread take. In a simulation the hash runs inline: the answer is ready
    /// at the first poll, with no other thread to wait for.
    #[tokio::test]
    async fn a_simulated_replica_hashes_inline() {
        use futures_util::FutureExt;

        let disk = MemDisk::new(std::time::Duration::from_millis(1));
        let (mut store, replica) = StateMachineStore::open_in_memory(&disk, None).unwrap();
        store.apply([create(1, "a")]).await.unwrap();
        let digest = replica
            .digest_async()
            .now_or_never()
            .expect("the hash waited for another thread");
        assert_eq!(digest, (1, replica.read().state.digest()));
    }

    /// Postmortem: every client's leader discovery asked every node for `Status`, which hashed
    /// the whole state under the read lock each time; during a leader change that stalled
    /// applies. Callers at one applied index now share one hash.
    #[tokio::test]
    async fn the_digest_is_computed_once_per_applied_index() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, replica) = StateMachineStore::open(dir.path(), None).unwrap();
        store.apply([create(1, "a")]).await.unwrap();

        // Many callers at one index: one hash, one answer.
        let first = replica.digest();
        for _ in 0..10 {
            assert_eq!(replica.digest(), first);
        }
        assert_eq!(first.0, 1);
        assert_eq!(replica.digests_computed(), 1);

        // A new index is hashed again, and its digest differs.
        store.apply([create(2, "b")]).await.unwrap();
        let second = replica.digest();
        assert_eq!(second.0, 2);
        assert_ne!(second.1, first.1);
        assert_eq!(replica.digest(), second);
        assert_eq!(replica.digests_computed(), 2);

        // Hashed away from the lock, from a copy: the same digest as the state's own, memoized.
        assert_eq!(replica.digest_async().await, second);
        assert_eq!(replica.digests_computed(), 2);
        store.apply([create(3, "c")]).await.unwrap();
        let third = replica.digest_async().await;
        assert_eq!(third, (3, replica.read().state.digest()));
        assert_eq!(replica.digests_computed(), 3);
        assert_eq!(replica.digest(), third);
        assert_eq!(replica.digests_computed(), 3);
    }

    /// Postmortem: the builder and `install_snapshot` both wrote `snapshot.bin.tmp`; run
    /// together, they interleaved bytes, renamed each other's file away, or let the older
    /// snapshot, finishing last, replace the newer one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_snapshot_writes_leave_the_newest_intact() {
        const WRITERS: u64 = 24;
        let dir = tempfile::tempdir().unwrap();
        let files = Arc::new(SnapshotPlace::Dir(SnapshotFiles::open(dir.path(), None)));
        // The older a snapshot, the larger: the oldest take longest and finish last.
        let mut writers = tokio::task::JoinSet::new();
        for index in 1..=WRITERS {
            let files = files.clone();
            let bytes = (WRITERS + 1 - index) as usize * 40 * 1024;
            writers.spawn(async move { files.write(snapshot_at(index, bytes)).await });
        }
        while let Some(written) = writers.join_next().await {
            written
                .expect("the writer did not panic")
                .expect("no write fails");
        }

        let bytes = std::fs::read(dir.path().join(SNAPSHOT_FILE)).expect("a snapshot file");
        let file = read_snapshot_file(&bytes).expect("the stored file decodes");
        assert_eq!(
            file.meta.last_log_id.map(|id| id.index),
            Some(WRITERS),
            "the newest snapshot is the one stored"
        );
        assert_eq!(file.data, snapshot_at(WRITERS, 40 * 1024).data);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| name != SNAPSHOT_FILE)
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

        // An older snapshot written afterwards is dropped; a newer one replaces it.
        assert!(!files.write(snapshot_at(3, 10)).await.unwrap());
        assert!(files.write(snapshot_at(WRITERS + 1, 10)).await.unwrap());
        let bytes = std::fs::read(dir.path().join(SNAPSHOT_FILE)).unwrap();
        let file = read_snapshot_file(&bytes).unwrap();
        assert_eq!(file.meta.last_log_id.map(|id| id.index), Some(WRITERS + 1));
    }
}
