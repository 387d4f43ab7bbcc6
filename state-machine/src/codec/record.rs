//! The node's persisted records: Raft log entries, the vote, the committed and purged log ids,
//! and the snapshot file. The layout is the project's own, not openraft's serde derives, so an
//! openraft upgrade cannot change what is on disk.
//!
//! Every record is `crc32 ‖ 0xFF ‖ version ‖ kind ‖ body`: the checksum (u32, little endian)
//! covers everything after it; `0xFF` marks this layout; `version` is
//! [`RECORD_FORMAT_VERSION`]; `kind` says what the body is. Integers are fixed-width little
//! endian; a byte string is its length (u32, or u64 for snapshot data) then the bytes. A log
//! entry's commands are the entry payload bytes of [`super::encode_entry`], stored as they were
//! encoded once by the leader's batcher and sent to the followers ([`EncodedEntry`]).
//!
//! Format 0, what builds before this layout wrote, is `crc32 ‖ bincode` of openraft 0.9's serde
//! derives. Its bincode never starts with `0xFF` (a varint's first byte is at most 254, an
//! `Option` tag 0 or 1), so a record of either format tells which it is, and format 0 records are
//! read and converted (`format0`). A record of a version newer than this build's is refused
//! with a message naming both versions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{decode_entry, encode_entry, DecodeError};
use crate::command::Entry;

/// The layout version this build writes.
pub const RECORD_FORMAT_VERSION: u8 = 1;
/// Second byte after the checksum of every record of version 1 or later; never the first byte
/// of a format 0 record.
const MARK: u8 = 0xFF;

const KIND_ENTRY: u8 = 1;
const KIND_VOTE: u8 = 2;
const KIND_LOG_ID: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;

const PAYLOAD_BLANK: u8 = 0;
const PAYLOAD_NORMAL: u8 = 1;
const PAYLOAD_MEMBERSHIP: u8 = 2;

/// Why a record cannot be read. The node refuses to use it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Too short to hold its checksum.
    #[error("shorter than its checksum")]
    Short,
    /// The checksum does not match the bytes.
    #[error("checksum mismatch")]
    Checksum,
    /// Written by a newer build.
    #[error(
        "record format version {found} is newer than this build's ({RECORD_FORMAT_VERSION}): \
         upgrade this node"
    )]
    FutureVersion {
        /// The version the record names.
        found: u8,
    },
    /// Another kind of record than the one asked for.
    #[error("expected a {expected} record, found kind {found}")]
    Kind {
        /// What was asked for.
        expected: &'static str,
        /// The kind byte found.
        found: u8,
    },
    /// The body does not decode.
    #[error("malformed {what}")]
    Malformed {
        /// What could not be read.
        what: &'static str,
    },
    /// The log entry's commands do not decode.
    #[error("undecodable entry payload: {0}")]
    Entry(String),
    /// A format 0 record does not decode.
    #[error("undecodable format 0 record: {0}")]
    Format0(String),
}

/// Where an entry sits in the log: Raft's log id (term, leader node, index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    /// The term of the leader that proposed it.
    pub term: u64,
    /// That leader's node id.
    pub node_id: u64,
    /// The log index.
    pub index: u64,
}

/// A Raft membership: the joint configurations (voter sets) and every node's address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipRecord {
    /// One voter set, or two while a change is joint.
    pub configs: Vec<BTreeSet<u64>>,
    /// Voters and learners, with their addresses.
    pub nodes: BTreeMap<u64, String>,
}

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadRecord {
    /// A new leader's blank entry.
    Blank,
    /// Commands for the state machine.
    Normal(EncodedEntry),
    /// A membership change.
    Membership(MembershipRecord),
}

/// One log entry, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Its log id.
    pub position: LogPosition,
    /// What it carries.
    pub payload: PayloadRecord,
}

/// The saved vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteRecord {
    /// The term.
    pub term: u64,
    /// The node voted for (or the leader, once committed).
    pub node_id: u64,
    /// Whether a quorum granted it.
    pub committed: bool,
}

/// What the snapshot file says of its snapshot: where it stands in the log, the membership it
/// includes, and its id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotHead {
    /// The last entry the snapshot includes.
    pub last_log_id: Option<LogPosition>,
    /// The entry of the membership it includes.
    pub membership_log_id: Option<LogPosition>,
    /// That membership.
    pub membership: MembershipRecord,
    /// The snapshot's id.
    pub snapshot_id: String,
}

/// The snapshot file: its head and the state bytes ([`crate::AdmissionState::encode_snapshot`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// Where the snapshot stands.
    pub head: SnapshotHead,
    /// The state bytes.
    pub data: Vec<u8>,
}

/// A log entry's commands, encoded once ([`encode_entry`]): the leader's batcher encodes them,
/// and the same bytes go to its disk and to every follower, which store them as they came.
/// The decoded [`Entry`] is kept when known, and decoded once on first use otherwise (a record
/// read back from disk for replication is never decoded).
#[derive(Clone)]
pub struct EncodedEntry {
    bytes: Arc<[u8]>,
    entry: OnceLock<Arc<Entry>>,
}

impl EncodedEntry {
    /// Encodes `entry`.
    pub fn new(entry: Entry) -> EncodedEntry {
        let bytes = encode_entry(&entry).into();
        let decoded = OnceLock::new();
        let _ = decoded.set(Arc::new(entry));
        EncodedEntry {
            bytes,
            entry: decoded,
        }
    }

    /// Takes bytes from elsewhere (a peer), checking that they decode.
    pub fn decoded_from(bytes: &[u8]) -> Result<EncodedEntry, DecodeError> {
        let entry = decode_entry(bytes)?;
        let decoded = OnceLock::new();
        let _ = decoded.set(Arc::new(entry));
        Ok(EncodedEntry {
            bytes: bytes.into(),
            entry: decoded,
        })
    }

    /// Takes bytes read from this node's own checksummed record; decoded on first use.
    fn stored(bytes: &[u8]) -> EncodedEntry {
        EncodedEntry {
            bytes: bytes.into(),
            entry: OnceLock::new(),
        }
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The commands, decoded on first use.
    pub fn entry(&self) -> Result<&Entry, DecodeError> {
        if let Some(entry) = self.entry.get() {
            return Ok(entry);
        }
        let entry = decode_entry(&self.bytes)?;
        Ok(self.entry.get_or_init(|| Arc::new(entry)))
    }
}

impl PartialEq for EncodedEntry {
    fn eq(&self, other: &EncodedEntry) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for EncodedEntry {}

impl fmt::Debug for EncodedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry.get() {
            Some(entry) => entry.fmt(f),
            None => write!(f, "EncodedEntry({} bytes)", self.bytes.len()),
        }
    }
}

/// On the wire (openraft's `AppendEntries`), an entry is `1` then its encoded bytes as one byte
/// string (bincode: varint 1, varint length, bytes). Builds before the record layout sent the
/// entry inline, which starts with a 0 (`entry_format`'s versioned mark); such an entry from a
/// leader of the previous build is still read, so followers can be upgraded before the leader.
const WIRE_ENCODED: u64 = 1;

impl Serialize for EncodedEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&WIRE_ENCODED)?;
        tuple.serialize_element(&WireBytes(&self.bytes))?;
        tuple.end()
    }
}

struct WireBytes<'a>(&'a [u8]);

impl Serialize for WireBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

struct WireBuf(Vec<u8>);

impl<'de> Deserialize<'de> for WireBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<WireBuf, D::Error> {
        struct Buf;
        impl<'de> serde::de::Visitor<'de> for Buf {
            type Value = WireBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an encoded log entry")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<WireBuf, E> {
                Ok(WireBuf(bytes.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<WireBuf, E> {
                Ok(WireBuf(bytes))
            }
        }
        deserializer.deserialize_byte_buf(Buf)
    }
}

impl<'de> Deserialize<'de> for EncodedEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<EncodedEntry, D::Error> {
        struct Wire;
        impl<'de> serde::de::Visitor<'de> for Wire {
            type Value = EncodedEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an encoded log entry")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<EncodedEntry, A::Error> {
                use serde::de::Error;
                let missing = || A::Error::custom("a log entry ends early");
                match seq.next_element::<u64>()?.ok_or_else(missing)? {
                    WIRE_ENCODED => {
                        let WireBuf(bytes) = seq.next_element()?.ok_or_else(missing)?;
                        EncodedEntry::decoded_from(&bytes).map_err(A::Error::custom)
                    }
                    0 => super::entry_format::versioned_rest(&mut seq).map(EncodedEntry::new),
                    other => Err(A::Error::custom(format!(
                        "unknown log entry wire form {other}"
                    ))),
                }
            }
        }
        // At most 4 elements: the previous build's inline entry (mark, version, header,
        // commands); this build's form has 2.
        deserializer.deserialize_tuple(4, Wire)
    }
}

// ---- writing ----

struct Writer(Vec<u8>);

impl Writer {
    fn new(kind: u8) -> Writer {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&[MARK, RECORD_FORMAT_VERSION, kind]);
        Writer(bytes)
    }

    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn len(&mut self, len: usize) {
        // Every length is bounded far below 4 GiB by the node's limits (a Raft message is at
        // most 64 MiB); snapshot data has its own u64 length.
        self.u32(u32::try_from(len).unwrap_or(u32::MAX));
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.len(bytes.len());
        self.0.extend_from_slice(bytes);
    }

    fn position(&mut self, position: &LogPosition) {
        self.u64(position.term);
        self.u64(position.node_id);
        self.u64(position.index);
    }

    fn optional_position(&mut self, position: Option<&LogPosition>) {
        match position {
            None => self.u8(0),
            Some(position) => {
                self.u8(1);
                self.position(position);
            }
        }
    }

    fn membership(&mut self, membership: &MembershipRecord) {
        self.len(membership.configs.len());
        for config in &membership.configs {
            self.len(config.len());
            for &id in config {
                self.u64(id);
            }
        }
        self.len(membership.nodes.len());
        for (&id, addr) in &membership.nodes {
            self.u64(id);
            self.bytes(addr.as_bytes());
        }
    }

    fn seal(mut self) -> Vec<u8> {
        let checksum = crc32fast::hash(&self.0[4..]);
        self.0[..4].copy_from_slice(&checksum.to_le_bytes());
        self.0
    }
}

/// Encodes a log entry record.
pub fn encode_log_record(record: &LogRecord) -> Vec<u8> {
    let mut writer = Writer::new(KIND_ENTRY);
    writer.position(&record.position);
    match &record.payload {
        PayloadRecord::Blank => writer.u8(PAYLOAD_BLANK),
        PayloadRecord::Normal(entry) => {
            writer.u8(PAYLOAD_NORMAL);
            writer.bytes(entry.bytes());
        }
        PayloadRecord::Membership(membership) => {
            writer.u8(PAYLOAD_MEMBERSHIP);
            writer.membership(membership);
        }
    }
    writer.seal()
}

/// Encodes the vote record.
pub fn encode_vote_record(vote: &VoteRecord) -> Vec<u8> {
    let mut writer = Writer::new(KIND_VOTE);
    writer.u64(vote.term);
    writer.u64(vote.node_id);
    writer.u8(u8::from(vote.committed));
    writer.seal()
}

/// Encodes a log id record (the committed or purged marker).
pub fn encode_log_id_record(position: Option<&LogPosition>) -> Vec<u8> {
    let mut writer = Writer::new(KIND_LOG_ID);
    writer.optional_position(position);
    writer.seal()
}

/// Encodes the snapshot file.
pub fn encode_snapshot_record(head: &SnapshotHead, data: &[u8]) -> Vec<u8> {
    let mut writer = Writer::new(KIND_SNAPSHOT);
    writer.0.reserve(data.len() + 128);
    writer.optional_position(head.last_log_id.as_ref());
    writer.optional_position(head.membership_log_id.as_ref());
    writer.membership(&head.membership);
    writer.bytes(head.snapshot_id.as_bytes());
    writer.u64(data.len() as u64);
    writer.0.extend_from_slice(data);
    writer.seal()
}

// ---- reading ----

/// A record's body after its checksum and version were checked, or its format 0 payload.
enum Opened<'a> {
    Current(Reader<'a>),
    Format0(&'a [u8]),
}

fn open<'a>(record: &'a [u8], kind: u8, expected: &'static str) -> Result<Opened<'a>, RecordError> {
    let (checksum, payload) = record.split_first_chunk::<4>().ok_or(RecordError::Short)?;
    if crc32fast::hash(payload) != u32::from_le_bytes(*checksum) {
        return Err(RecordError::Checksum);
    }
    match payload {
        [MARK, version, found, body @ ..] => {
            if *version > RECORD_FORMAT_VERSION || *version == 0 {
                return Err(RecordError::FutureVersion { found: *version });
            }
            if *found != kind {
                return Err(RecordError::Kind {
                    expected,
                    found: *found,
                });
            }
            Ok(Opened::Current(Reader(body)))
        }
        [MARK, ..] => Err(RecordError::Malformed { what: "header" }),
        _ => Ok(Opened::Format0(payload)),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Malformed { what });
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, RecordError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, RecordError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes(
            bytes
                .try_into()
                .map_err(|_| RecordError::Malformed { what })?,
        ))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, RecordError> {
        let bytes = self.take(8, what)?;
        Ok(u64::from_le_bytes(
            bytes
                .try_into()
                .map_err(|_| RecordError::Malformed { what })?,
        ))
    }

    /// A count of items at least `item_size` bytes each, checked against what is left before
    /// anything is allocated for it.
    fn count(&mut self, item_size: usize, what: &'static str) -> Result<usize, RecordError> {
        let count = self.u32(what)? as usize;
        if count.saturating_mul(item_size) > self.0.len() {
            return Err(RecordError::Malformed { what });
        }
        Ok(count)
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], RecordError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    fn string(&mut self, what: &'static str) -> Result<String, RecordError> {
        let bytes = self.bytes(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| RecordError::Malformed { what })
    }

    fn position(&mut self) -> Result<LogPosition, RecordError> {
        Ok(LogPosition {
            term: self.u64("log id")?,
            node_id: self.u64("log id")?,
            index: self.u64("log id")?,
        })
    }

    fn optional_position(&mut self) -> Result<Option<LogPosition>, RecordError> {
        match self.u8("log id")? {
            0 => Ok(None),
            1 => Ok(Some(self.position()?)),
            _ => Err(RecordError::Malformed { what: "log id" }),
        }
    }

    fn membership(&mut self) -> Result<MembershipRecord, RecordError> {
        let mut membership = MembershipRecord::default();
        for _ in 0..self.count(4, "membership")? {
            let mut config = BTreeSet::new();
            for _ in 0..self.count(8, "membership")? {
                config.insert(self.u64("membership")?);
            }
            membership.configs.push(config);
        }
        for _ in 0..self.count(12, "membership")? {
            let id = self.u64("membership")?;
            let addr = self.string("membership")?;
            membership.nodes.insert(id, addr);
        }
        Ok(membership)
    }

    fn end(self, what: &'static str) -> Result<(), RecordError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RecordError::Malformed { what })
        }
    }
}

/// Decodes a log entry record, of this format or format 0.
pub fn decode_log_record(record: &[u8]) -> Result<LogRecord, RecordError> {
    let mut reader = match open(record, KIND_ENTRY, "log entry")? {
        Opened::Current(reader) => reader,
        Opened::Format0(payload) => return format0::log_record(payload),
    };
    let position = reader.position()?;
    let payload = match reader.u8("payload")? {
        PAYLOAD_BLANK => PayloadRecord::Blank,
        PAYLOAD_NORMAL => PayloadRecord::Normal(EncodedEntry::stored(reader.bytes("entry")?)),
        PAYLOAD_MEMBERSHIP => PayloadRecord::Membership(reader.membership()?),
        _ => return Err(RecordError::Malformed { what: "payload" }),
    };
    reader.end("log entry")?;
    Ok(LogRecord { position, payload })
}

/// Decodes the vote record, of this format or format 0.
pub fn decode_vote_record(record: &[u8]) -> Result<VoteRecord, RecordError> {
    let mut reader = match open(record, KIND_VOTE, "vote")? {
        Opened::Current(reader) => reader,
        Opened::Format0(payload) => return format0::vote(payload),
    };
    let vote = VoteRecord {
        term: reader.u64("vote")?,
        node_id: reader.u64("vote")?,
        committed: match reader.u8("vote")? {
            0 => false,
            1 => true,
            _ => return Err(RecordError::Malformed { what: "vote" }),
        },
    };
    reader.end("vote")?;
    Ok(vote)
}

/// Decodes the committed marker, of this format or format 0 (where it was an optional log id).
pub fn decode_committed_record(record: &[u8]) -> Result<Option<LogPosition>, RecordError> {
    match open(record, KIND_LOG_ID, "log id")? {
        Opened::Current(reader) => log_id_body(reader),
        Opened::Format0(payload) => format0::optional_log_id(payload),
    }
}

/// Decodes the purged marker, of this format or format 0 (where it was a log id).
pub fn decode_purged_record(record: &[u8]) -> Result<Option<LogPosition>, RecordError> {
    match open(record, KIND_LOG_ID, "log id")? {
        Opened::Current(reader) => log_id_body(reader),
        Opened::Format0(payload) => format0::log_id(payload).map(Some),
    }
}

fn log_id_body(mut reader: Reader<'_>) -> Result<Option<LogPosition>, RecordError> {
    let position = reader.optional_position()?;
    reader.end("log id")?;
    Ok(position)
}

/// Decodes the snapshot file, of this format or format 0.
pub fn decode_snapshot_record(record: &[u8]) -> Result<SnapshotRecord, RecordError> {
    let mut reader = match open(record, KIND_SNAPSHOT, "snapshot file")? {
        Opened::Current(reader) => reader,
        Opened::Format0(payload) => return format0::snapshot(payload),
    };
    let last_log_id = reader.optional_position()?;
    let membership_log_id = reader.optional_position()?;
    let membership = reader.membership()?;
    let snapshot_id = reader.string("snapshot id")?;
    let len = reader.u64("snapshot data")?;
    let len = usize::try_from(len).map_err(|_| RecordError::Malformed {
        what: "snapshot data",
    })?;
    let data = reader.take(len, "snapshot data")?.to_vec();
    reader.end("snapshot file")?;
    Ok(SnapshotRecord {
        head: SnapshotHead {
            last_log_id,
            membership_log_id,
            membership,
            snapshot_id,
        },
        data,
    })
}

/// Format 0: bincode (standard config) of openraft 0.9's serde derives, mirrored here field for
/// field (`LogId { leader_id: LeaderId { term, node_id }, index }`, `Vote { leader_id,
/// committed }`, `EntryPayload::{Blank, Normal, Membership}`, `Membership { configs, nodes:
/// BTreeMap<id, BasicNode { addr }> }`, `SnapshotMeta { last_log_id, last_membership:
/// StoredMembership { log_id, membership }, snapshot_id }`). The node's tests check the mirror
/// against openraft's own encoding, and `tests/fixtures/format-0` is a data folder of that
/// format.
mod format0 {
    use super::*;

    #[derive(Deserialize)]
    struct LeaderId {
        term: u64,
        node_id: u64,
    }

    #[derive(Deserialize)]
    struct LogId {
        leader_id: LeaderId,
        index: u64,
    }

    #[derive(Deserialize)]
    struct Vote {
        leader_id: LeaderId,
        committed: bool,
    }

    #[derive(Deserialize)]
    struct BasicNode {
        addr: String,
    }

    #[derive(Deserialize)]
    struct Membership {
        configs: Vec<BTreeSet<u64>>,
        nodes: BTreeMap<u64, BasicNode>,
    }

    #[derive(Deserialize)]
    enum EntryPayload {
        Blank,
        Normal(Entry),
        Membership(Membership),
    }

    #[derive(Deserialize)]
    struct LogEntry {
        log_id: LogId,
        payload: EntryPayload,
    }

    #[derive(Deserialize)]
    struct StoredMembership {
        log_id: Option<LogId>,
        membership: Membership,
    }

    #[derive(Deserialize)]
    struct SnapshotMeta {
        last_log_id: Option<LogId>,
        last_membership: StoredMembership,
        snapshot_id: String,
    }

    #[derive(Deserialize)]
    struct SnapshotFile {
        meta: SnapshotMeta,
        data: Vec<u8>,
    }

    fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, RecordError> {
        super::super::decode_large(payload).map_err(|e| RecordError::Format0(e.to_string()))
    }

    fn position(id: LogId) -> LogPosition {
        LogPosition {
            term: id.leader_id.term,
            node_id: id.leader_id.node_id,
            index: id.index,
        }
    }

    fn membership(membership: Membership) -> MembershipRecord {
        MembershipRecord {
            configs: membership.configs,
            nodes: membership
                .nodes
                .into_iter()
                .map(|(id, node)| (id, node.addr))
                .collect(),
        }
    }

    pub(super) fn log_record(payload: &[u8]) -> Result<LogRecord, RecordError> {
        let entry: LogEntry = decode(payload)?;
        Ok(LogRecord {
            position: position(entry.log_id),
            payload: match entry.payload {
                EntryPayload::Blank => PayloadRecord::Blank,
                EntryPayload::Normal(entry) => PayloadRecord::Normal(EncodedEntry::new(entry)),
                EntryPayload::Membership(m) => PayloadRecord::Membership(membership(m)),
            },
        })
    }

    pub(super) fn vote(payload: &[u8]) -> Result<VoteRecord, RecordError> {
        let vote: Vote = decode(payload)?;
        Ok(VoteRecord {
            term: vote.leader_id.term,
            node_id: vote.leader_id.node_id,
            committed: vote.committed,
        })
    }

    pub(super) fn optional_log_id(payload: &[u8]) -> Result<Option<LogPosition>, RecordError> {
        decode::<Option<LogId>>(payload).map(|id| id.map(position))
    }

    pub(super) fn log_id(payload: &[u8]) -> Result<LogPosition, RecordError> {
        decode::<LogId>(payload).map(position)
    }

    pub(super) fn snapshot(payload: &[u8]) -> Result<SnapshotRecord, RecordError> {
        let file: SnapshotFile = decode(payload)?;
        Ok(SnapshotRecord {
            head: SnapshotHead {
                last_log_id: file.meta.last_log_id.map(position),
                membership_log_id: file.meta.last_membership.log_id.map(position),
                membership: membership(file.meta.last_membership.membership),
                snapshot_id: file.meta.snapshot_id,
            },
            data: file.data,
        })
    }
}
