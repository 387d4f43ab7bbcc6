//! The one place that knows how replicated and persisted data is laid out in bytes: log entry
//! payloads, snapshots, and the state digest. Everything is bincode 2 (standard config: varint
//! integers, little endian) over the serde derives of the domain types, so a format change is a
//! change to this file and a new `FORMAT_VERSION`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::Write;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::archive::ArchivedDeal;
use crate::command::{Entry, Params};
use crate::error::SnapshotError;
use crate::ids::NodeId;
use crate::state::{AdmissionState, Deal, DealCounters, Executor, InvIdx, Investment, SagaIndex};
use crate::table::KeyedVec;
use crate::unknown_deals::{UnknownDealRejection, UnknownDealRejections};

pub mod backup;
pub mod record;

/// First bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"ALSM";
/// Version of the snapshot payload layout written by this build.
/// Version 2: executor heartbeats carry the replica's applied index, params bound executor lag
/// and log time steps, sagas record where they were cancelled.
/// Version 3: requests naming an unknown deal are kept apart, bounded, and create no deal or
/// user; every deal has terms.
/// Version 4: waitlists (requests carry what they asked of the waitlist and where they were
/// admitted from it), scheduled openings and closings, `max_waitlist`.
/// Version 5: what is kept of archived deals; where each deal closed and each waitlisted
/// request ended.
/// Version 6: each saga's history (assignments, step results, compensations) and each
/// decision's leader.
/// Versions 2 to 5 are read and converted (`legacy`).
pub const FORMAT_VERSION: u32 = 6;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Most bytes one [`decode`] may claim for owned strings and byte buffers together. bincode
/// allocates (and zero-fills) an owned `String` or `Vec<u8>` at the length the input claims
/// before reading it; without a limit, a 17-byte Raft message claiming a 2^40-byte string
/// aborted the node (found by fuzzing `decode_raft`). Under the limit, such a claim is an error;
/// a claim past the input within it reserves untouched pages and then fails on the first read.
/// Twice the largest Raft message (64 MiB): strings and buffers claim what they hold, so
/// nothing honest comes near it.
pub const DECODE_CLAIM_MAX: usize = 128 << 20;

/// The same for [`decode_large`]: a node's own snapshot file (read after its checksum matched),
/// at most 4 GiB (`--snapshot-max-mib`).
pub const DECODE_LARGE_CLAIM_MAX: usize = 1 << 32;

fn limited<const LIMIT: usize>() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<LIMIT>,
> {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("payload does not decode: {0}")]
pub struct DecodeError(#[from] bincode::error::DecodeError);

/// Encodes a value in the replicated and persisted format: log entry payloads, and whatever
/// the node stores or sends around them (openraft's log entries, votes and RPCs).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Encoding into a Vec only fails for maps of unknown length, which serde derives never make.
    bincode::serde::encode_to_vec(value, config()).unwrap_or_default()
}

/// Decodes what [`encode`] wrote; trailing bytes are an error. Text fields of this crate's types
/// are read through borrowed strings; owned ones (openraft's, errors') claim at most
/// [`DECODE_CLAIM_MAX`] together, so a corrupt length cannot trigger a huge allocation.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, limited::<DECODE_CLAIM_MAX>())?;
    whole(value, read, bytes)
}

/// [`decode`] for a large local file (the node's snapshot file), claiming up to
/// [`DECODE_LARGE_CLAIM_MAX`].
pub fn decode_large<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, limited::<DECODE_LARGE_CLAIM_MAX>())?;
    whole(value, read, bytes)
}

fn whole<T>(value: T, read: usize, bytes: &[u8]) -> Result<T, DecodeError> {
    if read != bytes.len() {
        return Err(DecodeError(bincode::error::DecodeError::Other(
            "trailing bytes after the value",
        )));
    }
    Ok(value)
}

/// Version of the log entry layout written by this build. Entries start with a 0 (a leader id
/// never is, so entries from before versions existed are told apart and converted), then this
/// version.
/// Version 1: `Submit` carries `waitlist` and `waitlist_ttl_ms`, `CreateDeal` its schedule and
/// `max_waitlist`, and `Withdraw` exists.
/// Version 2: `ArchiveDeal` exists. Version 1 entries read as they are (the layout of every
/// command they can hold is unchanged).
/// Version 3: `SubmitTraced` exists. Version 1 and 2 entries read as they are.
pub const ENTRY_FORMAT_VERSION: u32 = 3;

pub(crate) mod entry_format {
    use std::fmt;

    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ENTRY_FORMAT_VERSION;
    use crate::command::{Command, CreateDeal, Entry, EntryHeader, Params, RecordStep, Submit};
    use crate::ids::{NodeId, RequestId};
    use crate::money::Money;

    /// Marks a versioned entry: the first field of an unversioned one was its leader id.
    const VERSIONED: u64 = 0;

    impl Serialize for Entry {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut tuple = serializer.serialize_tuple(4)?;
            tuple.serialize_element(&VERSIONED)?;
            tuple.serialize_element(&ENTRY_FORMAT_VERSION)?;
            tuple.serialize_element(&self.header)?;
            tuple.serialize_element(&self.commands)?;
            tuple.end()
        }
    }

    impl<'de> Deserialize<'de> for Entry {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Entry, D::Error> {
            deserializer.deserialize_tuple(4, EntryVisitor)
        }
    }

    struct EntryVisitor;

    impl<'de> Visitor<'de> for EntryVisitor {
        type Value = Entry;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a log entry")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entry, A::Error> {
            let missing = || A::Error::custom("a log entry ends early");
            let first: u64 = seq.next_element()?.ok_or_else(missing)?;
            if first != VERSIONED {
                // Unversioned (before version 1): leader id, time, commands of that layout.
                let time_ms: u64 = seq.next_element()?.ok_or_else(missing)?;
                let commands: Vec<CommandV0> = seq.next_element()?.ok_or_else(missing)?;
                return Ok(Entry {
                    header: EntryHeader {
                        leader_id: first,
                        time_ms,
                    },
                    commands: commands.into_iter().map(CommandV0::upgrade).collect(),
                });
            }
            versioned_rest(&mut seq)
        }
    }

    /// The rest of a versioned entry, after its leading `VERSIONED` (also read by
    /// `record::EncodedEntry`, which tells a peer's inline entry from its own encoded bytes).
    pub(crate) fn versioned_rest<'de, A: SeqAccess<'de>>(seq: &mut A) -> Result<Entry, A::Error> {
        let missing = || A::Error::custom("a log entry ends early");
        let version: u32 = seq.next_element()?.ok_or_else(missing)?;
        if !(1..=ENTRY_FORMAT_VERSION).contains(&version) {
            return Err(A::Error::custom(format!(
                "log entry format version {version} is newer than this build reads \
                 ({ENTRY_FORMAT_VERSION}): upgrade this node"
            )));
        }
        let header = seq.next_element()?.ok_or_else(missing)?;
        let commands = seq.next_element()?.ok_or_else(missing)?;
        Ok(Entry { header, commands })
    }

    /// [`Command`] before entry format versions: no waitlist, schedules or `Withdraw`.
    #[derive(Deserialize)]
    enum CommandV0 {
        CreateDeal(CreateDealV0),
        CloseDeal {
            #[serde(deserialize_with = "super::text::string")]
            deal_id: String,
        },
        Submit(SubmitV0),
        ExecutorHeartbeat {
            node_id: NodeId,
            applied_index: u64,
        },
        ExecutorRetire {
            node_id: NodeId,
        },
        RecordStep(RecordStep),
        AbortSaga {
            request_id: RequestId,
            #[serde(deserialize_with = "super::text::string")]
            reason: String,
        },
        SetParams(Params),
    }

    #[derive(Deserialize)]
    struct CreateDealV0 {
        #[serde(deserialize_with = "super::text::string")]
        deal_id: String,
        amount: Money,
        max_investors: u32,
        min_ticket: Option<Money>,
        max_ticket: Option<Money>,
    }

    #[derive(Deserialize)]
    struct SubmitV0 {
        request_id: RequestId,
        #[serde(deserialize_with = "super::text::string")]
        deal_id: String,
        #[serde(deserialize_with = "super::text::string")]
        user_id: String,
        amount: Money,
    }

    impl CommandV0 {
        fn upgrade(self) -> Command {
            match self {
                CommandV0::CreateDeal(c) => Command::CreateDeal(CreateDeal {
                    deal_id: c.deal_id,
                    amount: c.amount,
                    max_investors: c.max_investors,
                    min_ticket: c.min_ticket,
                    max_ticket: c.max_ticket,
                    opens_at_ms: None,
                    closes_at_ms: None,
                    max_waitlist: crate::MAX_WAITLIST_DEFAULT,
                }),
                CommandV0::CloseDeal { deal_id } => Command::CloseDeal { deal_id },
                CommandV0::Submit(s) => Command::Submit(Submit {
                    request_id: s.request_id,
                    deal_id: s.deal_id,
                    user_id: s.user_id,
                    amount: s.amount,
                    waitlist: false,
                    waitlist_ttl_ms: None,
                }),
                CommandV0::ExecutorHeartbeat {
                    node_id,
                    applied_index,
                } => Command::ExecutorHeartbeat {
                    node_id,
                    applied_index,
                },
                CommandV0::ExecutorRetire { node_id } => Command::ExecutorRetire { node_id },
                CommandV0::RecordStep(record) => Command::RecordStep(record),
                CommandV0::AbortSaga { request_id, reason } => {
                    Command::AbortSaga { request_id, reason }
                }
                CommandV0::SetParams(params) => Command::SetParams(params),
            }
        }
    }
}

/// Encodes a log entry payload.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    encode(entry)
}

/// Decodes a log entry payload.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, DecodeError> {
    decode(bytes)
}

/// A BLAKE3 hash of a state's logical content (its snapshot encoding). Replicas that applied the
/// same entries have equal digests, however their memory is laid out.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateDigest(pub [u8; 32]);

impl fmt::Display for StateDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for StateDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateDigest({self})")
    }
}

/// The persisted part of the state, borrowed for writing. Derived values are left out.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    params: &'a Params,
    now_ms: u64,
    last_log_index: u64,
    deals: &'a [Deal],
    users: &'a [Box<str>],
    investments: &'a [Investment],
    executors: &'a BTreeMap<NodeId, Executor>,
    unknown_deal_rejections: &'a VecDeque<UnknownDealRejection>,
    unknown_deal_rejections_forgotten: u64,
    archived_deals: Vec<&'a ArchivedDeal>,
}

/// What [`AdmissionState::snapshot_copy`] took: a state's snapshot content, owned.
#[derive(Debug)]
pub struct SnapshotCopy {
    params: Params,
    now_ms: u64,
    last_log_index: u64,
    deals: Vec<Deal>,
    users: Vec<Box<str>>,
    investments: Vec<Investment>,
    executors: BTreeMap<NodeId, Executor>,
    unknown_deal_rejections: VecDeque<UnknownDealRejection>,
    unknown_deal_rejections_forgotten: u64,
    archived_deals: Vec<ArchivedDeal>,
}

impl SnapshotCopy {
    /// The snapshot as bytes, identical to [`AdmissionState::encode_snapshot`] of the state the
    /// copy was taken from.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = write_snapshot_of(self.as_ref(), &mut bytes);
        bytes
    }
}

impl SnapshotCopy {
    /// The digest of the state the copy was taken from ([`AdmissionState::digest`]), computed
    /// from the copy: a host can hash it away from whoever owns the state.
    pub fn digest(&self) -> StateDigest {
        let mut hasher = blake3::Hasher::new();
        // Hashing is writing the snapshot into the hasher, which cannot fail.
        let _ = write_snapshot_of(self.as_ref(), &mut hasher);
        StateDigest(*hasher.finalize().as_bytes())
    }

    fn as_ref(&self) -> SnapshotRef<'_> {
        SnapshotRef {
            params: &self.params,
            now_ms: self.now_ms,
            last_log_index: self.last_log_index,
            deals: &self.deals,
            users: &self.users,
            investments: &self.investments,
            executors: &self.executors,
            unknown_deal_rejections: &self.unknown_deal_rejections,
            unknown_deal_rejections_forgotten: self.unknown_deal_rejections_forgotten,
            archived_deals: self.archived_deals.iter().collect(),
        }
    }
}

fn write_snapshot_of<W: Write>(
    snapshot: SnapshotRef<'_>,
    mut writer: W,
) -> Result<(), SnapshotError> {
    writer
        .write_all(&SNAPSHOT_MAGIC)
        .and_then(|()| writer.write_all(&FORMAT_VERSION.to_le_bytes()))
        .map_err(|e| {
            SnapshotError::Encode(bincode::error::EncodeError::Io { inner: e, index: 0 })
        })?;
    bincode::serde::encode_into_std_write(snapshot, &mut writer, config())?;
    Ok(())
}

/// The same layout as [`SnapshotRef`], owned, for reading.
#[derive(Deserialize)]
struct SnapshotOwned {
    params: Params,
    now_ms: u64,
    last_log_index: u64,
    deals: Vec<Deal>,
    users: Vec<text::Text>,
    investments: Vec<Investment>,
    executors: BTreeMap<NodeId, Executor>,
    unknown_deal_rejections: Vec<UnknownDealRejection>,
    unknown_deal_rejections_forgotten: u64,
    archived_deals: Vec<ArchivedDeal>,
}

impl AdmissionState {
    fn snapshot_ref(&self) -> SnapshotRef<'_> {
        SnapshotRef {
            params: &self.params,
            now_ms: self.now_ms,
            last_log_index: self.last_log_index,
            deals: self.deals.items(),
            users: self.users.items(),
            investments: self.investments.items(),
            executors: &self.executors,
            unknown_deal_rejections: self.unknown_deals.kept(),
            unknown_deal_rejections_forgotten: self.unknown_deals.forgotten(),
            archived_deals: self.archived.values().collect(),
        }
    }

    /// Writes a snapshot (magic, format version, payload) to `writer`, streaming.
    pub fn write_snapshot<W: Write>(&self, writer: W) -> Result<(), SnapshotError> {
        write_snapshot_of(self.snapshot_ref(), writer)
    }

    /// A copy of exactly what a snapshot holds (the ground truth, none of the derived indexes),
    /// to encode later without holding up whoever owns the state. Cheaper to take than a
    /// [`Clone`] of the whole state: no hash tables, per-user holdings or saga indexes.
    pub fn snapshot_copy(&self) -> SnapshotCopy {
        SnapshotCopy {
            params: self.params,
            now_ms: self.now_ms,
            last_log_index: self.last_log_index,
            deals: self
                .deals
                .items()
                .iter()
                .map(|deal| Deal {
                    deal_id: deal.deal_id.clone(),
                    terms: deal.terms,
                    status: deal.status,
                    created_at_ms: deal.created_at_ms,
                    closed_at: deal.closed_at,
                    counters: DealCounters::default(),
                    decisions: Vec::new(),
                    waitlist: Default::default(),
                    receipt_head: Default::default(),
                })
                .collect(),
            users: self.users.items().to_vec(),
            investments: self.investments.items().to_vec(),
            executors: self.executors.clone(),
            unknown_deal_rejections: self.unknown_deals.kept().clone(),
            unknown_deal_rejections_forgotten: self.unknown_deals.forgotten(),
            archived_deals: self.archived.values().cloned().collect(),
        }
    }

    /// The snapshot as bytes.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.write_snapshot(&mut bytes);
        bytes
    }

    /// Reads a snapshot back, rebuilding every derived index and checking the invariants; a
    /// snapshot that decodes to an impossible state is refused, never half-loaded.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<AdmissionState, SnapshotError> {
        let rest = bytes
            .strip_prefix(&SNAPSHOT_MAGIC)
            .ok_or(SnapshotError::BadMagic)?;
        let (version, payload) = rest
            .split_first_chunk::<4>()
            .ok_or(SnapshotError::BadMagic)?;
        let owned = match u32::from_le_bytes(*version) {
            FORMAT_VERSION => decode_payload::<SnapshotOwned>(payload)?,
            5 => legacy::upgrade_v5(decode_payload(payload)?),
            4 => legacy::upgrade_v4(decode_payload(payload)?),
            3 => legacy::upgrade_v3(decode_payload(payload)?),
            2 => legacy::upgrade_v2(decode_payload(payload)?)?,
            version => return Err(SnapshotError::UnsupportedVersion(version)),
        };
        AdmissionState::from_snapshot(owned)
    }

    /// The digest of the state's logical content.
    pub fn digest(&self) -> StateDigest {
        let mut hasher = blake3::Hasher::new();
        // Hashing is writing the snapshot into the hasher, which cannot fail.
        let _ = self.write_snapshot(&mut hasher);
        StateDigest(*hasher.finalize().as_bytes())
    }

    fn from_snapshot(snapshot: SnapshotOwned) -> Result<AdmissionState, SnapshotError> {
        let inconsistent = |what: &str| SnapshotError::Inconsistent(what.to_owned());
        snapshot
            .params
            .validate()
            .map_err(|e| inconsistent(&e.to_string()))?;
        if snapshot.investments.len() > InvIdx::MAX as usize
            || snapshot.deals.len() > u32::MAX as usize
            || snapshot.users.len() > u32::MAX as usize
        {
            return Err(inconsistent("too many entries"));
        }
        let duplicate = |_| inconsistent("duplicate ids");
        let mut state = AdmissionState {
            params: snapshot.params,
            now_ms: snapshot.now_ms,
            last_log_index: snapshot.last_log_index,
            deals: KeyedVec::from_vec(snapshot.deals).map_err(duplicate)?,
            users: KeyedVec::from_vec(snapshot.users.into_iter().map(|name| name.0).collect())
                .map_err(duplicate)?,
            investments: KeyedVec::from_vec(snapshot.investments).map_err(duplicate)?,
            unknown_deals: UnknownDealRejections::from_parts(
                snapshot.unknown_deal_rejections,
                snapshot.unknown_deal_rejections_forgotten,
            )
            .map_err(|corrupt| inconsistent(corrupt.0))?,
            executors: snapshot.executors,
            holdings: Default::default(),
            sagas: SagaIndex::default(),
            timers: Default::default(),
            receipts: Vec::new(),
            archived: Default::default(),
            breaches: Default::default(),
            tally: Default::default(),
        };
        for archived in snapshot.archived_deals {
            let deal_id = archived.deal_id.clone();
            if state.archived.insert(deal_id, archived).is_some() {
                return Err(inconsistent("duplicate archived deal ids"));
            }
        }
        let derived = state.derive().map_err(|dangling| {
            SnapshotError::Inconsistent(format!("{} names a missing deal or user", dangling.0))
        })?;
        state.install(derived);
        state
            .check_invariants()
            .map_err(|violation| SnapshotError::Inconsistent(violation.to_string()))?;
        Ok(state)
    }
}

fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, SnapshotError> {
    let (owned, read): (T, usize) = bincode::serde::decode_from_slice(payload, config())?;
    if read != payload.len() {
        return Err(SnapshotError::Inconsistent(
            "trailing bytes after the payload".into(),
        ));
    }
    Ok(owned)
}

/// Earlier formats, read to be converted to the current one.
///
/// Format 2: every deal id a request named had a deal entry (without terms if never created),
/// and requests rejected for naming an unknown deal were investments with users of their own.
/// Format 3: those rejections kept apart (bounded); no waitlist or scheduled openings yet.
///
/// Converting format 2 moves such rejections to the bounded table (the most recent
/// [`crate::UNKNOWN_DEAL_REJECTIONS_KEPT`], in decision order) and drops deal entries without
/// terms and users named by nothing else. Deals keep their order, which is where the conversion
/// can differ from a replay of the same log by this build: a deal that a rejected request named
/// before it was created sits where it was first named, not where it was created. Both orders
/// are the same on every replica that converts the same snapshot. Converting format 3 adds the
/// defaults: no waitlist, no schedule, `max_waitlist` 1,000. Converting format 5 and earlier
/// leaves every saga's history empty and each decision's leader unknown (0).
mod legacy {
    use super::*;
    use crate::ids::RequestId;
    use crate::money::Money;
    use crate::outcome::{RejectReason, Status};
    use crate::saga::{CancelCause, Saga, SagaStep};
    use crate::state::{DealStatus, DealTerms, WaitlistEntry};

    /// A saga before format 6: no history.
    #[derive(Deserialize)]
    pub(super) struct SagaV5 {
        step: SagaStep,
        assignee: Option<NodeId>,
        epoch: u64,
        deadline_ms: u64,
        attempts: u32,
        #[serde(deserialize_with = "text::optional")]
        last_error: Option<Box<str>>,
        cancel_cause: Option<CancelCause>,
        #[serde(deserialize_with = "text::optional")]
        payment_id: Option<Box<str>>,
        refunded: bool,
        #[serde(deserialize_with = "text::optional")]
        document_id: Option<Box<str>>,
        #[serde(deserialize_with = "text::optional")]
        message_id: Option<Box<str>>,
        notify_failed: bool,
        updated_at_ms: u64,
        cancelled_at: Option<(u64, u32)>,
    }

    impl SagaV5 {
        fn upgrade(self) -> Box<Saga> {
            Box::new(Saga {
                step: self.step,
                assignee: self.assignee,
                epoch: self.epoch,
                deadline_ms: self.deadline_ms,
                attempts: self.attempts,
                last_error: self.last_error,
                cancel_cause: self.cancel_cause,
                payment_id: self.payment_id,
                refunded: self.refunded,
                document_id: self.document_id,
                message_id: self.message_id,
                notify_failed: self.notify_failed,
                updated_at_ms: self.updated_at_ms,
                cancelled_at: self.cancelled_at,
                history: Vec::new(),
                history_dropped: 0,
            })
        }
    }

    /// An investment in format 5: no leader.
    #[derive(Deserialize)]
    struct InvestmentV5 {
        request_id: RequestId,
        deal: u32,
        user: u32,
        amount: Money,
        log_index: u64,
        offset: u32,
        status: Status,
        reject: Option<RejectReason>,
        decided_at_ms: u64,
        saga: Option<Box<SagaV5>>,
        waitlist: Option<Box<WaitlistEntry>>,
    }

    impl InvestmentV5 {
        fn upgrade(self) -> Investment {
            Investment {
                request_id: self.request_id,
                deal: self.deal,
                user: self.user,
                amount: self.amount,
                log_index: self.log_index,
                offset: self.offset,
                leader_id: 0,
                status: self.status,
                reject: self.reject,
                decided_at_ms: self.decided_at_ms,
                saga: self.saga.map(|saga| saga.upgrade()),
                waitlist: self.waitlist,
            }
        }
    }

    /// Format 5: the current layout but for investments and sagas.
    #[derive(Deserialize)]
    pub(super) struct SnapshotV5 {
        params: Params,
        now_ms: u64,
        last_log_index: u64,
        deals: Vec<Deal>,
        users: Vec<text::Text>,
        investments: Vec<InvestmentV5>,
        executors: BTreeMap<NodeId, Executor>,
        unknown_deal_rejections: Vec<UnknownDealRejection>,
        unknown_deal_rejections_forgotten: u64,
        archived_deals: Vec<ArchivedDeal>,
    }

    pub(super) fn upgrade_v5(old: SnapshotV5) -> SnapshotOwned {
        SnapshotOwned {
            params: old.params,
            now_ms: old.now_ms,
            last_log_index: old.last_log_index,
            deals: old.deals,
            users: old.users,
            investments: old
                .investments
                .into_iter()
                .map(InvestmentV5::upgrade)
                .collect(),
            executors: old.executors,
            unknown_deal_rejections: old.unknown_deal_rejections,
            unknown_deal_rejections_forgotten: old.unknown_deal_rejections_forgotten,
            archived_deals: old.archived_deals,
        }
    }

    #[derive(Clone, Copy, Deserialize)]
    struct TermsV3 {
        amount: Money,
        max_investors: u32,
        min_ticket: Option<Money>,
        max_ticket: Option<Money>,
    }

    impl TermsV3 {
        fn upgrade(self) -> DealTerms {
            DealTerms {
                amount: self.amount,
                max_investors: self.max_investors,
                min_ticket: self.min_ticket,
                max_ticket: self.max_ticket,
                opens_at_ms: None,
                closes_at_ms: None,
                max_waitlist: crate::MAX_WAITLIST_DEFAULT,
            }
        }
    }

    #[derive(Deserialize)]
    struct DealV2 {
        #[serde(deserialize_with = "text::boxed")]
        deal_id: Box<str>,
        terms: Option<TermsV3>,
        status: DealStatus,
        created_at_ms: u64,
    }

    #[derive(Deserialize)]
    struct DealV3 {
        #[serde(deserialize_with = "text::boxed")]
        deal_id: Box<str>,
        terms: TermsV3,
        status: DealStatus,
        created_at_ms: u64,
    }

    fn deal(deal_id: Box<str>, terms: TermsV3, status: DealStatus, created_at_ms: u64) -> Deal {
        deal_v4(deal_id, terms.upgrade(), status, created_at_ms)
    }

    /// Before format 5, where a deal closed and a waitlisted request ended was not kept.
    fn deal_v4(
        deal_id: Box<str>,
        terms: DealTerms,
        status: DealStatus,
        created_at_ms: u64,
    ) -> Deal {
        Deal {
            deal_id,
            terms,
            status,
            created_at_ms,
            closed_at: None,
            counters: DealCounters::default(),
            decisions: Vec::new(),
            waitlist: Default::default(),
            receipt_head: Default::default(),
        }
    }

    #[derive(Deserialize)]
    struct InvestmentV3 {
        request_id: RequestId,
        deal: u32,
        user: u32,
        amount: Money,
        log_index: u64,
        offset: u32,
        status: Status,
        reject: Option<RejectReason>,
        decided_at_ms: u64,
        saga: Option<Box<SagaV5>>,
    }

    impl InvestmentV3 {
        fn upgrade(self, deal: u32, user: u32) -> Investment {
            Investment {
                request_id: self.request_id,
                deal,
                user,
                amount: self.amount,
                log_index: self.log_index,
                offset: self.offset,
                leader_id: 0,
                status: self.status,
                reject: self.reject,
                decided_at_ms: self.decided_at_ms,
                saga: self.saga.map(|saga| saga.upgrade()),
                waitlist: None,
            }
        }
    }

    #[derive(Deserialize)]
    struct RejectionV3 {
        request_id: RequestId,
        #[serde(deserialize_with = "text::boxed")]
        deal_id: Box<str>,
        #[serde(deserialize_with = "text::boxed")]
        user_id: Box<str>,
        amount: Money,
        log_index: u64,
        offset: u32,
        decided_at_ms: u64,
    }

    impl RejectionV3 {
        fn upgrade(self) -> UnknownDealRejection {
            UnknownDealRejection {
                request_id: self.request_id,
                deal_id: self.deal_id,
                user_id: self.user_id,
                amount: self.amount,
                waitlist: false,
                waitlist_ttl_ms: None,
                log_index: self.log_index,
                offset: self.offset,
                decided_at_ms: self.decided_at_ms,
            }
        }
    }

    #[derive(Deserialize)]
    struct DealV4 {
        #[serde(deserialize_with = "super::text::boxed")]
        deal_id: Box<str>,
        terms: DealTerms,
        status: DealStatus,
        created_at_ms: u64,
    }

    #[derive(Deserialize)]
    struct WaitlistEntryV4 {
        ttl_ms: Option<u64>,
        waitlisted: bool,
        admitted_at: Option<(u64, u32)>,
    }

    #[derive(Deserialize)]
    struct InvestmentV4 {
        request_id: RequestId,
        deal: u32,
        user: u32,
        amount: Money,
        log_index: u64,
        offset: u32,
        status: Status,
        reject: Option<RejectReason>,
        decided_at_ms: u64,
        saga: Option<Box<SagaV5>>,
        waitlist: Option<Box<WaitlistEntryV4>>,
    }

    impl InvestmentV4 {
        fn upgrade(self) -> Investment {
            Investment {
                request_id: self.request_id,
                deal: self.deal,
                user: self.user,
                amount: self.amount,
                log_index: self.log_index,
                offset: self.offset,
                leader_id: 0,
                status: self.status,
                reject: self.reject,
                decided_at_ms: self.decided_at_ms,
                saga: self.saga.map(|saga| saga.upgrade()),
                waitlist: self.waitlist.map(|w| {
                    Box::new(WaitlistEntry {
                        ttl_ms: w.ttl_ms,
                        waitlisted: w.waitlisted,
                        admitted_at: w.admitted_at,
                        ended_at: None,
                    })
                }),
            }
        }
    }

    /// Format 4: no archived deals, and no positions of closings and waitlist endings.
    #[derive(Deserialize)]
    pub(super) struct SnapshotV4 {
        params: Params,
        now_ms: u64,
        last_log_index: u64,
        deals: Vec<DealV4>,
        users: Vec<text::Text>,
        investments: Vec<InvestmentV4>,
        executors: BTreeMap<NodeId, Executor>,
        unknown_deal_rejections: Vec<UnknownDealRejection>,
        unknown_deal_rejections_forgotten: u64,
    }

    pub(super) fn upgrade_v4(old: SnapshotV4) -> SnapshotOwned {
        SnapshotOwned {
            params: old.params,
            now_ms: old.now_ms,
            last_log_index: old.last_log_index,
            deals: old
                .deals
                .into_iter()
                .map(|d| deal_v4(d.deal_id, d.terms, d.status, d.created_at_ms))
                .collect(),
            users: old.users,
            investments: old
                .investments
                .into_iter()
                .map(InvestmentV4::upgrade)
                .collect(),
            executors: old.executors,
            unknown_deal_rejections: old.unknown_deal_rejections,
            unknown_deal_rejections_forgotten: old.unknown_deal_rejections_forgotten,
            archived_deals: Vec::new(),
        }
    }

    #[derive(Deserialize)]
    pub(super) struct SnapshotV3 {
        params: Params,
        now_ms: u64,
        last_log_index: u64,
        deals: Vec<DealV3>,
        users: Vec<text::Text>,
        investments: Vec<InvestmentV3>,
        executors: BTreeMap<NodeId, Executor>,
        unknown_deal_rejections: Vec<RejectionV3>,
        unknown_deal_rejections_forgotten: u64,
    }

    pub(super) fn upgrade_v3(old: SnapshotV3) -> SnapshotOwned {
        SnapshotOwned {
            params: old.params,
            now_ms: old.now_ms,
            last_log_index: old.last_log_index,
            deals: old
                .deals
                .into_iter()
                .map(|d| deal(d.deal_id, d.terms, d.status, d.created_at_ms))
                .collect(),
            users: old.users,
            investments: old
                .investments
                .into_iter()
                .map(|inv| {
                    let (deal, user) = (inv.deal, inv.user);
                    inv.upgrade(deal, user)
                })
                .collect(),
            executors: old.executors,
            unknown_deal_rejections: old
                .unknown_deal_rejections
                .into_iter()
                .map(RejectionV3::upgrade)
                .collect(),
            unknown_deal_rejections_forgotten: old.unknown_deal_rejections_forgotten,
            archived_deals: Vec::new(),
        }
    }

    #[derive(Deserialize)]
    pub(super) struct SnapshotV2 {
        params: Params,
        now_ms: u64,
        last_log_index: u64,
        deals: Vec<DealV2>,
        users: Vec<text::Text>,
        investments: Vec<InvestmentV3>,
        executors: BTreeMap<NodeId, Executor>,
    }

    pub(super) fn upgrade_v2(old: SnapshotV2) -> Result<SnapshotOwned, SnapshotError> {
        let dangling = |request_id: RequestId| {
            SnapshotError::Inconsistent(format!("{request_id} names a missing deal or user"))
        };
        // New positions of the deals that were created and of the users that stay.
        let mut deal_at = Vec::with_capacity(old.deals.len());
        let mut deals = Vec::new();
        for old_deal in &old.deals {
            deal_at.push(old_deal.terms.map(|terms| {
                deals.push(deal(
                    old_deal.deal_id.clone(),
                    terms,
                    old_deal.status,
                    old_deal.created_at_ms,
                ));
                (deals.len() - 1) as u32
            }));
        }
        let mut user_kept = vec![false; old.users.len()];
        for inv in &old.investments {
            if inv.reject != Some(RejectReason::DealNotFound) {
                *user_kept
                    .get_mut(inv.user as usize)
                    .ok_or_else(|| dangling(inv.request_id))? = true;
            }
        }
        let mut user_at = Vec::with_capacity(old.users.len());
        let mut users = Vec::new();
        for (name, kept) in old.users.iter().zip(&user_kept) {
            user_at.push(kept.then(|| {
                users.push(name.clone());
                (users.len() - 1) as u32
            }));
        }

        let mut investments = Vec::with_capacity(old.investments.len());
        let mut rejections = Vec::new();
        for inv in old.investments {
            if inv.reject == Some(RejectReason::DealNotFound) {
                let deal = old.deals.get(inv.deal as usize);
                let user = old.users.get(inv.user as usize);
                let (Some(deal), Some(user)) = (deal, user) else {
                    return Err(dangling(inv.request_id));
                };
                rejections.push(UnknownDealRejection {
                    request_id: inv.request_id,
                    deal_id: deal.deal_id.clone(),
                    user_id: user.0.clone(),
                    amount: inv.amount,
                    waitlist: false,
                    waitlist_ttl_ms: None,
                    log_index: inv.log_index,
                    offset: inv.offset,
                    decided_at_ms: inv.decided_at_ms,
                });
                continue;
            }
            let deal = deal_at.get(inv.deal as usize).copied().flatten();
            let user = user_at.get(inv.user as usize).copied().flatten();
            let (Some(deal), Some(user)) = (deal, user) else {
                return Err(dangling(inv.request_id));
            };
            investments.push(inv.upgrade(deal, user));
        }
        let forgotten = rejections
            .len()
            .saturating_sub(crate::UNKNOWN_DEAL_REJECTIONS_KEPT);
        rejections.drain(..forgotten);

        Ok(SnapshotOwned {
            params: old.params,
            now_ms: old.now_ms,
            last_log_index: old.last_log_index,
            deals,
            users,
            investments,
            executors: old.executors,
            unknown_deal_rejections: rejections,
            unknown_deal_rejections_forgotten: forgotten as u64,
            archived_deals: Vec::new(),
        })
    }
}

/// Deserializers for text fields that read through a borrowed `&str` when the input allows it.
///
/// bincode's owned-string path allocates the length a string claims before it reads the bytes,
/// so one corrupt length could ask for terabytes. Borrowing first checks the claimed length
/// against the bytes actually there; only then is the text copied.
pub(crate) mod text {
    use std::fmt;

    use serde::de::{Deserializer, Error, Visitor};
    use serde::Deserialize;

    struct TextVisitor;

    impl Visitor<'_> for TextVisitor {
        type Value = Box<str>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: Error>(self, text: &str) -> Result<Box<str>, E> {
            Ok(text.into())
        }
    }

    /// A `Box<str>` deserialized through [`text`](self).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(crate) struct Text(pub(crate) Box<str>);

    impl<'de> Deserialize<'de> for Text {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
            boxed(deserializer).map(Text)
        }
    }

    pub(crate) fn boxed<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Box<str>, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }

    pub(crate) fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        boxed(deserializer).map(String::from)
    }

    pub(crate) fn optional<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Box<str>>, D::Error> {
        Option::<Text>::deserialize(deserializer).map(|text| text.map(|t| t.0))
    }
}
