//! The state machine store: the replica's [`AdmissionState`] in memory, applied to by openraft,
//! and its snapshots on disk.
//!
//! A snapshot is one file, `snapshot.bin` in the node's data folder: `crc32 ‖ bincode` of the
//! openraft snapshot meta (last applied log id, membership) and the state's own snapshot bytes
//! (`AdmissionState::encode_snapshot`). It is written to a temporary file, fsynced and renamed,
//! so a crash leaves either the old or the new snapshot. On start the node loads it and openraft
//! re-applies the committed log after it.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ledger_state_machine::{codec, AdmissionState, RequestId, SagaEvent, StateDigest};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify};

use super::{ApplyReply, LogEntry, LogId, StorageError, TypeConfig};

const SNAPSHOT_FILE: &str = "snapshot.bin";

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
    /// Wake-ups for readers following one investment, woken by its saga events, so a watch
    /// costs nothing while other investments change.
    watchers: Mutex<HashMap<RequestId, Vec<Arc<Notify>>>>,
}

/// A registration returned by [`Replica::watch`]; dropping it unregisters.
pub struct InvestmentWatch<'a> {
    replica: &'a Replica,
    request_id: RequestId,
    notify: Arc<Notify>,
}

impl InvestmentWatch<'_> {
    /// Completes after the investment's saga changed (or at once if it changed since the last
    /// call).
    pub async fn changed(&self) {
        self.notify.notified().await;
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
            list.retain(|n| !Arc::ptr_eq(n, &self.notify));
            if list.is_empty() {
                watchers.remove(&self.request_id);
            }
        }
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

    /// The index of the last applied entry, updated after every applied batch.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Follows one investment's saga: register before reading, then await
    /// [`InvestmentWatch::changed`] between reads, and no change is missed.
    pub fn watch(&self, request_id: RequestId) -> InvestmentWatch<'_> {
        let notify = Arc::new(Notify::new());
        self.watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(request_id)
            .or_default()
            .push(notify.clone());
        InvestmentWatch {
            replica: self,
            request_id,
            notify,
        }
    }

    fn wake(&self, events: &[SagaEvent]) {
        let watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        if watchers.is_empty() {
            return;
        }
        for event in events {
            for notify in watchers.get(&event.request_id).into_iter().flatten() {
                // Stores a permit when the watcher is not waiting yet: no lost wake-up.
                notify.notify_one();
            }
        }
    }

    /// The applied index and the state digest at that index, read together.
    pub fn digest(&self) -> (u64, StateDigest) {
        let guard = self.read();
        (
            guard.last_applied.map_or(0, |id| id.index),
            guard.state.digest(),
        )
    }
}

/// The on-disk snapshot: openraft's meta and the state's snapshot bytes.
#[derive(Serialize, Deserialize)]
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
    dir: PathBuf,
    events: Option<mpsc::UnboundedSender<SagaEvent>>,
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
        let loaded =
            match std::fs::read(&path) {
                Ok(bytes) => Some(load_snapshot_file(&bytes).map_err(|reason| {
                    SnapshotLoadError::Corrupt {
                        path: path.clone(),
                        reason,
                    }
                })?),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => return Err(SnapshotLoadError::Io { path, error }),
            };
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
            watchers: Mutex::new(HashMap::new()),
        });
        let store = StateMachineStore {
            replica: replica.clone(),
            dir: dir.to_owned(),
            events,
        };
        Ok((store, replica))
    }
}

/// Checks the file's checksum and decodes it; the state bytes stay encoded.
fn read_snapshot_file(bytes: &[u8]) -> Result<SnapshotFile, String> {
    let (checksum, payload) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| "shorter than its checksum".to_owned())?;
    if crc32fast::hash(payload) != u32::from_le_bytes(*checksum) {
        return Err("checksum mismatch".into());
    }
    codec::decode(payload).map_err(|e| e.to_string())
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

/// Writes the snapshot file atomically: temporary file, fsync, rename, fsync of the folder.
/// How much of a snapshot file is written between two syncs (see [`write_snapshot_file`]).
const SNAPSHOT_WRITE_PIECE: usize = 256 * 1024;
/// Pause after each piece: a snapshot is not urgent (the log still holds what it covers), the
/// appends waiting behind its writes are.
const SNAPSHOT_WRITE_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

async fn write_snapshot_file(dir: PathBuf, file: SnapshotFile) -> Result<(), StorageError> {
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        let payload = codec::encode(&file);
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let mut out = std::fs::File::create(&tmp)?;
        out.write_all(&crc32fast::hash(&payload).to_le_bytes())?;
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
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .map_err(|e| snapshot_error(ErrorVerb::Write, e))?
    .map_err(|e| snapshot_error(ErrorVerb::Write, e))
}

/// Builds snapshots from the live replica.
pub struct SnapshotBuilder {
    replica: Arc<Replica>,
    dir: PathBuf,
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
        let data = tokio::task::spawn_blocking(move || state.encode())
            .await
            .map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
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
        write_snapshot_file(
            self.dir.clone(),
            SnapshotFile {
                meta: meta.clone(),
                data: data.clone(),
            },
        )
        .await?;
        tracing::info!(
            index = last_log_id.map_or(0, |id| id.index),
            bytes = data.len(),
            copy_ms = copied.as_millis() as u64,
            encode_ms = (encoded - copied).as_millis() as u64,
            write_ms = (started.elapsed() - encoded).as_millis() as u64,
            "snapshot built"
        );
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
        let applied_index = {
            let mut guard = self.replica.write();
            for entry in entries {
                let _span = tracing::debug_span!("apply", log_index = entry.log_id.index).entered();
                let reply = match entry.payload {
                    EntryPayload::Blank => ApplyReply::default(),
                    EntryPayload::Normal(batch) => {
                        let results = guard
                            .state
                            .apply_entry(entry.log_id.index, &batch, &mut events)
                            .map_err(|e| sm_error(ErrorVerb::Write, e))?;
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
            guard.last_applied.map_or(0, |id| id.index)
        };
        self.replica.applied.send_replace(applied_index);
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
            dir: self.dir.clone(),
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
        let data = snapshot.into_inner();
        let state = AdmissionState::decode_snapshot(&data)
            .map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        write_snapshot_file(
            self.dir.clone(),
            SnapshotFile {
                meta: meta.clone(),
                data,
            },
        )
        .await?;
        let applied_index = meta.last_log_id.map_or(0, |id| id.index);
        {
            let mut guard = self.replica.write();
            guard.state = state;
            guard.last_applied = meta.last_log_id;
            guard.membership = meta.last_membership.clone();
        }
        self.replica.applied.send_replace(applied_index);
        tracing::info!(index = applied_index, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(snapshot_error(ErrorVerb::Read, error)),
        };
        let file = read_snapshot_file(&bytes).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        }))
    }
}
