//! Backup and restore (`ledgerctl snapshot save` / `… restore`): a backup file from the live
//! replica, and a new node's data folder from a backup file, like etcd's `snapshot save` and
//! `etcdutl snapshot restore`. The file's layout is `ledger_state_machine::codec::backup`.
//!
//! A restored folder holds the backup's state as its snapshot, at the backup's log index, with
//! the membership given to the restore, and the new cluster's id: its nodes refuse to start
//! under another `--cluster-id`, and peers of another cluster refuse their messages, so a
//! restored cluster cannot mix with the one it came from. The snapshot's log id is
//! `(term 0, index)`: the restored cluster starts its own history of terms (its first election
//! is term 1) while log indexes, which receipts and decisions name, go on from the backup's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ledger_state_machine::codec::backup::{self, Backup, BackupError};
use ledger_state_machine::AdmissionState;
use openraft::{BasicNode, CommittedLeaderId, Membership, SnapshotMeta, StoredMembership};

use super::state_machine::{write_snapshot_file, Replica, SNAPSHOT_FILE};
use super::LogId;
use crate::{CLUSTER_ID_FILE, RAFT_LOG_DIR};

/// The bytes of a backup file of `replica`'s state as it is now, saved from `cluster_id`. The
/// state is copied under the read lock (applies wait only for the copy) and encoded on a
/// blocking thread.
pub async fn save(replica: &Replica, cluster_id: &str) -> Result<Backup, String> {
    let (copy, last_applied, log_time_ms) = {
        let guard = replica.read();
        (
            guard.state.snapshot_copy(),
            guard.last_applied,
            guard.state.now_ms(),
        )
    };
    let cluster_id = cluster_id.to_owned();
    tokio::task::spawn_blocking(move || {
        let state = copy.encode();
        Backup {
            log_index: last_applied.map_or(0, |id| id.index),
            term: last_applied.map_or(0, |id| id.leader_id.term),
            log_time_ms,
            cluster_id,
            // The state digest is the BLAKE3 of its snapshot encoding.
            digest: *blake3::hash(&state).as_bytes(),
            state,
        }
    })
    .await
    .map_err(|e| format!("encoding the backup: {e}"))
}

/// Why a restore wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The file is not a usable backup.
    #[error("{path}: {error}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        error: BackupError,
    },
    /// The file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The state inside does not decode or does not match its digest.
    #[error("{path}: the state inside {0}", path = .1.display())]
    State(String, PathBuf),
    /// The arguments are unusable.
    #[error("{0}")]
    Invalid(String),
    /// The folder already holds a node's data.
    #[error("{0} already holds a node's data (a Raft log or a snapshot): restore into an empty or new folder")]
    NotEmpty(PathBuf),
    /// Writing the folder failed.
    #[error("writing {path}: {error}")]
    Write {
        /// What was being written.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
}

/// What a restore wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The backup's log index, where the new node's log starts.
    pub log_index: u64,
    /// The term the backup was taken in (of the old cluster).
    pub term: u64,
    /// The state digest, checked against the file's.
    pub digest: String,
    /// The cluster the backup came from.
    pub old_cluster_id: String,
    /// The new cluster's id, which every restored node must be started with.
    pub cluster_id: String,
}

/// The default id of a cluster restored from `backup`: the old id and the backup's log index,
/// the same for every node restored from one file, and never the old id.
pub fn default_cluster_id(backup: &Backup) -> String {
    let suffix = format!("-r{}", backup.log_index);
    let keep = 64usize.saturating_sub(suffix.len());
    let old: String = backup.cluster_id.chars().take(keep).collect();
    format!("{old}{suffix}")
}

/// Reads and checks the backup file at `path`: checksum, state, digest.
pub fn read(path: &Path) -> Result<(Backup, AdmissionState), RestoreError> {
    let bytes = std::fs::read(path).map_err(|error| RestoreError::Read {
        path: path.to_owned(),
        error,
    })?;
    let backup = backup::decode(&bytes).map_err(|error| RestoreError::File {
        path: path.to_owned(),
        error,
    })?;
    let state = AdmissionState::decode_snapshot(&backup.state)
        .map_err(|e| RestoreError::State(format!("does not decode: {e}"), path.to_owned()))?;
    let digest = state.digest();
    if digest.0 != backup.digest {
        return Err(RestoreError::State(
            format!(
                "has digest {digest}, but the file says {}",
                ledger_state_machine::StateDigest(backup.digest)
            ),
            path.to_owned(),
        ));
    }
    Ok((backup, state))
}

/// Writes node `node_id`'s data folder `dir` from the backup file at `path`, for a new cluster
/// `cluster_id` (default [`default_cluster_id`]) whose voters are `members` (id → address).
pub fn restore(
    path: &Path,
    dir: &Path,
    node_id: u64,
    members: &BTreeMap<u64, String>,
    cluster_id: Option<&str>,
) -> Result<Restored, RestoreError> {
    let (backup, _) = read(path)?;
    if !members.contains_key(&node_id) {
        return Err(RestoreError::Invalid(format!(
            "--id {node_id} is not one of --members {:?}",
            members.keys().collect::<Vec<_>>()
        )));
    }
    let cluster_id = cluster_id.map_or_else(|| default_cluster_id(&backup), str::to_owned);
    if !ledger_proto::identity::is_valid_name(&cluster_id) {
        return Err(RestoreError::Invalid(format!(
            "cluster id {cluster_id:?}: 1 to 64 of A-Z a-z 0-9 . _ -"
        )));
    }
    if cluster_id == backup.cluster_id {
        return Err(RestoreError::Invalid(format!(
            "the restored cluster needs an id of its own, not {cluster_id:?} (the backup's), \
             so that its nodes cannot mix with the old cluster's"
        )));
    }
    if dir.join(RAFT_LOG_DIR).exists() || dir.join(SNAPSHOT_FILE).exists() {
        return Err(RestoreError::NotEmpty(dir.to_owned()));
    }
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |error| RestoreError::Write { path, error }
    };
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    let log_id = LogId::new(CommittedLeaderId::new(0, 0), backup.log_index);
    let nodes: BTreeMap<u64, BasicNode> = members
        .iter()
        .map(|(&id, addr)| (id, BasicNode::new(addr)))
        .collect();
    let voters = nodes.keys().copied().collect();
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(Some(log_id), Membership::new(vec![voters], nodes)),
        snapshot_id: format!("restored-{}", backup.log_index),
    };
    write_snapshot_file(dir, meta, backup.state.clone()).map_err(write_error(dir))?;
    let id_file = dir.join(CLUSTER_ID_FILE);
    std::fs::write(&id_file, format!("{cluster_id}\n")).map_err(write_error(&id_file))?;
    Ok(Restored {
        log_index: backup.log_index,
        term: backup.term,
        digest: ledger_state_machine::StateDigest(backup.digest).to_string(),
        old_cluster_id: backup.cluster_id,
        cluster_id,
    })
}
