//! What happened in a run, in numbers: operations by kind and outcome, decisions, sagas, the
//! partners' effects, and how indefinite operations resolved.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::context::Context;
use super::idempotence::IndefiniteCounts;
use super::money::MoneyCounts;
use crate::history::{Call, InvStatus, OpResult};

/// Operations of one kind, by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    /// Every operation of the kind.
    pub invoked: u64,
    /// Definite answers.
    pub ok: u64,
    /// Definite failures.
    pub fail: u64,
    /// Unknown outcomes.
    pub info: u64,
}

impl OpCounts {
    fn add(&mut self, result: &OpResult) {
        self.invoked += 1;
        match result {
            OpResult::Ok(_) => self.ok += 1,
            OpResult::Fail { .. } => self.fail += 1,
            OpResult::Info { .. } => self.info += 1,
        }
    }
}

/// A run in numbers. Decision and saga counts come from the reference final state (the node
/// with the highest applied index).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// `Submit` operations.
    pub submits: OpCounts,
    /// `ReadDeal` operations.
    pub reads: OpCounts,
    /// `Withdraw` operations.
    #[serde(default)]
    pub withdraws: OpCounts,
    /// Requests admitted (any status but REJECTED and WAITLISTED).
    pub admitted: u64,
    /// Requests rejected, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Investments CONFIRMED.
    pub confirmed: u64,
    /// Investments CANCELLED, by cause.
    pub cancelled: BTreeMap<String, u64>,
    /// Investments still PENDING at the end.
    pub pending: u64,
    /// Requests still WAITLISTED at the end.
    #[serde(default)]
    pub waitlisted: u64,
    /// Requests decided WAITLISTED and admitted since (counted in `admitted` too).
    #[serde(default)]
    pub admitted_from_waitlist: u64,
    /// The partners' effects; `None` without an audit.
    pub money: Option<MoneyCounts>,
    /// Indefinite submits; `None` without a final state.
    pub indefinite: Option<IndefiniteCounts>,
}

pub(super) fn summarize(
    ctx: &Context<'_>,
    money: Option<MoneyCounts>,
    indefinite: Option<IndefiniteCounts>,
) -> Summary {
    let mut summary = Summary {
        money,
        indefinite,
        ..Summary::default()
    };
    for op in &ctx.input.history {
        match op.call {
            Call::Submit { .. } => summary.submits.add(&op.result),
            Call::ReadDeal { .. } => summary.reads.add(&op.result),
            Call::Withdraw { .. } => summary.withdraws.add(&op.result),
        }
    }
    let Some(reference) = &ctx.reference else {
        return summary;
    };
    // Counted by borrowed name, owned only at the end: a million rejections, a handful of
    // reasons.
    let mut rejected: BTreeMap<&str, u64> = BTreeMap::new();
    let mut cancelled: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, _, inv) in reference.primaries() {
        match inv.status {
            InvStatus::Rejected => *rejected.entry(name(&inv.reject_reason)).or_default() += 1,
            InvStatus::Cancelled => *cancelled.entry(name(&inv.cancel_cause)).or_default() += 1,
            InvStatus::Confirmed => summary.confirmed += 1,
            InvStatus::Pending => summary.pending += 1,
            InvStatus::Waitlisted => summary.waitlisted += 1,
        }
        summary.admitted += u64::from(!matches!(
            inv.status,
            InvStatus::Rejected | InvStatus::Waitlisted
        ));
        summary.admitted_from_waitlist += u64::from(inv.admitted_at.is_some());
    }
    summary.rejected = owned(rejected);
    summary.cancelled = owned(cancelled);
    summary
}

fn name(reason: &Option<String>) -> &str {
    reason.as_deref().unwrap_or("UNSPECIFIED")
}

fn owned(counts: BTreeMap<&str, u64>) -> BTreeMap<String, u64> {
    counts.into_iter().map(|(k, n)| (k.to_owned(), n)).collect()
}
