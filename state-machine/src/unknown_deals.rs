//! Rejections of requests that name a deal that does not exist (rule 2, `DEAL_NOT_FOUND`).
//!
//! Such a request creates nothing: no deal entry, no user, no place among the investments, so a
//! client inventing deal or user ids cannot grow those tables (issue #11). What is kept is the
//! rejection itself, so that rule 1 (a request id is decided once, a resubmission gets the same
//! answer) holds for it, but only for the most recent [`UNKNOWN_DEAL_REJECTIONS_KEPT`]: past that
//! the oldest is forgotten, and its request id, should it come again, is decided anew.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::ids::RequestId;
use crate::money::Money;
use crate::table::{key_hash_builder, KeyHasher};

/// How many rejections for unknown deals a replica keeps: at most about 20 MiB with the longest
/// ids, and, at the 500 requests/s the system is sized for, over two minutes of nothing else.
pub const UNKNOWN_DEAL_REJECTIONS_KEPT: usize = 65_536;

/// One rejected request that named a deal that did not exist when it was decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UnknownDealRejection {
    pub(crate) request_id: RequestId,
    #[serde(deserialize_with = "crate::codec::text::boxed")]
    pub(crate) deal_id: Box<str>,
    #[serde(deserialize_with = "crate::codec::text::boxed")]
    pub(crate) user_id: Box<str>,
    pub(crate) amount: Money,
    pub(crate) waitlist: bool,
    pub(crate) waitlist_ttl_ms: Option<u64>,
    pub(crate) log_index: u64,
    pub(crate) offset: u32,
    pub(crate) decided_at_ms: u64,
}

/// The most recent [`UNKNOWN_DEAL_REJECTIONS_KEPT`] rejections, oldest first, found by request
/// id. The index is only looked up, never iterated, so its per-process seed changes nothing a
/// replica decides.
#[derive(Clone, Debug)]
pub(crate) struct UnknownDealRejections {
    kept: VecDeque<UnknownDealRejection>,
    /// How many were forgotten so far: `kept[i]` is rejection number `forgotten + i`.
    forgotten: u64,
    /// Request id → rejection number (derived).
    index: HashMap<RequestId, u64, KeyHasher>,
}

/// A request id appears twice, or more are kept than the bound allows; only possible in
/// decoded, corrupt data.
#[derive(Debug)]
pub(crate) struct CorruptRejections(pub(crate) &'static str);

impl Default for UnknownDealRejections {
    fn default() -> UnknownDealRejections {
        UnknownDealRejections {
            kept: VecDeque::new(),
            forgotten: 0,
            index: HashMap::with_hasher(key_hash_builder()),
        }
    }
}

impl UnknownDealRejections {
    /// Rebuilds the table from a snapshot's content.
    pub(crate) fn from_parts(
        kept: Vec<UnknownDealRejection>,
        forgotten: u64,
    ) -> Result<UnknownDealRejections, CorruptRejections> {
        if kept.len() > UNKNOWN_DEAL_REJECTIONS_KEPT {
            return Err(CorruptRejections(
                "more rejections for unknown deals than kept",
            ));
        }
        let mut table = UnknownDealRejections {
            kept: VecDeque::with_capacity(kept.len()),
            forgotten,
            index: HashMap::with_capacity_and_hasher(kept.len(), key_hash_builder()),
        };
        for rejection in kept {
            if table.get(rejection.request_id).is_some() {
                return Err(CorruptRejections("duplicate request ids"));
            }
            table.record(rejection);
        }
        Ok(table)
    }

    /// The kept rejection of `request_id`, if any.
    pub(crate) fn get(&self, request_id: RequestId) -> Option<&UnknownDealRejection> {
        let number = *self.index.get(&request_id)?;
        let at = usize::try_from(number.checked_sub(self.forgotten)?).ok()?;
        self.kept.get(at)
    }

    /// Keeps `rejection`, whose request id is not kept yet, forgetting the oldest at the bound.
    pub(crate) fn record(&mut self, rejection: UnknownDealRejection) {
        if self.kept.len() >= UNKNOWN_DEAL_REJECTIONS_KEPT {
            if let Some(oldest) = self.kept.pop_front() {
                self.index.remove(&oldest.request_id);
                self.forgotten += 1;
            }
        }
        let number = self.forgotten + self.kept.len() as u64;
        self.index.insert(rejection.request_id, number);
        self.kept.push_back(rejection);
    }

    /// The kept rejections, oldest first.
    pub(crate) fn kept(&self) -> &VecDeque<UnknownDealRejection> {
        &self.kept
    }

    /// How many were forgotten since the ledger began.
    pub(crate) fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Whether the index finds every kept rejection at its place, and nothing else.
    pub(crate) fn index_is_coherent(&self) -> bool {
        self.index.len() == self.kept.len()
            && self
                .kept
                .iter()
                .zip(self.forgotten..)
                .all(|(rejection, number)| self.index.get(&rejection.request_id) == Some(&number))
    }
}
