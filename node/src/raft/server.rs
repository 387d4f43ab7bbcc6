//! The openraft side of the Raft service (`grpc/raft.rs` is the protocol side): decodes a peer's
//! openraft message, refuses terms and indexes that would overflow and snapshot chunks past the
//! size limit, hands the rest to the local Raft, and encodes its answer or its error.

use std::fmt::Display;

use ledger_state_machine::codec;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{LogId, Raft, TypeConfig};
use crate::config::RaftTuning;
use crate::error::ApiError;

/// Terms and log indexes above this are refused. openraft adds to them (the next term, the next
/// index): a vote for term `u64::MAX` would be persisted, then wrap or panic at the next
/// election, an outage that survives restarts. No honest cluster reaches 2^62 of either.
pub const RAFT_NUMBER_MAX: u64 = 1 << 62;

/// Which of openraft's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaftRpc {
    /// `AppendEntries`.
    AppendEntries,
    /// `Vote`.
    Vote,
    /// `InstallSnapshot`.
    InstallSnapshot,
}

/// Raft's answer, encoded: its response, or its error (`error` not empty) and that error's
/// encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The encoded response or error.
    pub payload: Vec<u8>,
    /// Empty on success, else the error's text.
    pub error: String,
}

impl Answer {
    /// Encodes `result`.
    pub fn of<T: Serialize, E: Serialize + Display>(result: Result<T, E>) -> Answer {
        match result {
            Ok(value) => Answer {
                payload: codec::encode(&value),
                error: String::new(),
            },
            Err(error) => Answer {
                payload: codec::encode(&error),
                error: error.to_string(),
            },
        }
    }
}

/// Decodes `payload` as `rpc`, checks its numbers, and hands it to `raft`. `Err`: refused before
/// Raft saw it.
pub async fn handle(
    raft: &Raft,
    rpc: RaftRpc,
    payload: &[u8],
    limits: &RaftTuning,
) -> Result<Answer, ApiError> {
    Ok(match rpc {
        RaftRpc::AppendEntries => {
            let request: AppendEntriesRequest<TypeConfig> = open(payload, limits)?;
            Answer::of(raft.append_entries(request).await)
        }
        RaftRpc::Vote => {
            let request: VoteRequest<u64> = open(payload, limits)?;
            Answer::of(raft.vote(request).await)
        }
        RaftRpc::InstallSnapshot => {
            let request: InstallSnapshotRequest<TypeConfig> = open(payload, limits)?;
            Answer::of(raft.install_snapshot(request).await)
        }
    })
}

fn open<T: DeserializeOwned + PeerMessage>(
    payload: &[u8],
    limits: &RaftTuning,
) -> Result<T, ApiError> {
    let message: T = codec::decode(payload)
        .map_err(|e| ApiError::invalid("payload", format!("undecodable Raft message: {e}")))?;
    message.check(limits)?;
    Ok(message)
}

/// What a peer's message must satisfy before openraft sees it.
trait PeerMessage {
    fn check(&self, limits: &RaftTuning) -> Result<(), ApiError>;
}

fn bounded(field: &'static str, value: u64) -> Result<(), ApiError> {
    if value > RAFT_NUMBER_MAX {
        return Err(ApiError::invalid(
            field,
            format!("{value} is beyond {RAFT_NUMBER_MAX}, where Raft's arithmetic would overflow"),
        ));
    }
    Ok(())
}

fn bounded_log_id(field: &'static str, log_id: Option<&LogId>) -> Result<(), ApiError> {
    match log_id {
        Some(log_id) => {
            bounded(field, log_id.leader_id.term)?;
            bounded(field, log_id.index)
        }
        None => Ok(()),
    }
}

impl PeerMessage for VoteRequest<u64> {
    fn check(&self, _: &RaftTuning) -> Result<(), ApiError> {
        bounded("vote.term", self.vote.leader_id.term)?;
        bounded_log_id("last_log_id", self.last_log_id.as_ref())
    }
}

impl PeerMessage for AppendEntriesRequest<TypeConfig> {
    fn check(&self, _: &RaftTuning) -> Result<(), ApiError> {
        bounded("vote.term", self.vote.leader_id.term)?;
        bounded_log_id("prev_log_id", self.prev_log_id.as_ref())?;
        bounded_log_id("leader_commit", self.leader_commit.as_ref())?;
        self.entries
            .iter()
            .try_for_each(|entry| bounded_log_id("entries.log_id", Some(&entry.log_id)))
    }
}

impl PeerMessage for InstallSnapshotRequest<TypeConfig> {
    fn check(&self, limits: &RaftTuning) -> Result<(), ApiError> {
        bounded("vote.term", self.vote.leader_id.term)?;
        bounded_log_id("meta.last_log_id", self.meta.last_log_id.as_ref())?;
        // openraft writes the chunk at `offset` into an in-memory buffer, zero-filling any gap.
        let end = self.offset.checked_add(self.data.len() as u64);
        match end {
            Some(end) if end <= limits.snapshot_bytes_max => Ok(()),
            _ => Err(ApiError::invalid(
                "offset",
                format!(
                    "a snapshot chunk at {} of {} bytes reaches past the {} bytes this node \
                     accepts (--snapshot-max-mib)",
                    self.offset,
                    self.data.len(),
                    limits.snapshot_bytes_max
                ),
            )),
        }
    }
}
