//! Idempotence (W4, I4): a request id resubmitted with the same payload returns the same
//! decision; with another payload it fails `ALREADY_EXISTS` and the final state keeps the
//! first payload. And indefinite operations (W5): each `Info` submit resolved against the final
//! state, counted (not judged: it may or may not have taken effect; when it did, the other
//! checks already cover it).

use serde::{Deserialize, Serialize};

use super::context::{ok_decision, Context, Rid, SubmitCall, Submitted};
use super::verdict::{CheckName, CheckResult, Verdict, Violation, Violations};
use crate::history::{FinalInvestment, Op, OpResult};

/// The gRPC code of a request id reused with another payload.
const ALREADY_EXISTS: &str = "ALREADY_EXISTS";

pub(super) fn check(ctx: &Context<'_>) -> CheckResult {
    if ctx.reference.is_none() {
        return CheckResult::new(
            CheckName::Idempotence,
            Verdict::unknown("no node's final state was read"),
        );
    };
    let mut out = Violations::new();
    for submitted in ctx.submits() {
        check_op(ctx, submitted, &mut out);
    }
    check_decided_once(ctx, &mut out);
    CheckResult::new(CheckName::Idempotence, out.into_verdict())
}

fn check_op(ctx: &Context<'_>, submitted: Submitted<'_>, out: &mut Violations) {
    let Submitted {
        op,
        call,
        rid,
        recorded,
    } = submitted;
    let problem = match (&op.result, recorded) {
        (OpResult::Ok(_), Some(inv)) if !call.same_payload(inv) => Some(format!(
            "ok reply for a payload ({}) other than the recorded one ({})",
            payload(call),
            recorded_payload(inv)
        )),
        (OpResult::Fail { code, .. }, None)
            if code == ALREADY_EXISTS && !rid.is_some_and(|rid| names_other_deal(ctx, rid)) =>
        {
            Some("ALREADY_EXISTS, but the final state does not hold the request id".to_owned())
        }
        (OpResult::Fail { code, .. }, Some(inv))
            if code == ALREADY_EXISTS && call.same_payload(inv) =>
        {
            Some(format!(
                "ALREADY_EXISTS for the very payload ({}) that was recorded",
                payload(call)
            ))
        }
        _ => None,
    };
    if let Some(problem) = problem {
        out.report(|| {
            Violation::new(format!("request {}: {problem}", call.request_id))
                .ops([op.index])
                .requests([call.request_id])
        });
    }
}

/// Whether some submit of the request named a deal outside the workload: its decision
/// (DEAL_NOT_FOUND) has no place in a final state, which lists the workload's deals only.
fn names_other_deal(ctx: &Context<'_>, rid: Rid) -> bool {
    ctx.ops_of(rid)
        .filter_map(SubmitCall::of)
        .any(|call| !ctx.deals.contains_key(call.deal_id))
}

/// Only the first decision of a request id is fresh; any later ok reply is a replay of it.
fn check_decided_once(ctx: &Context<'_>, out: &mut Violations) {
    for (_, group) in ctx.requests() {
        let fresh: Vec<&Op> = group
            .iter()
            .filter_map(|&(_, at)| ctx.op(at))
            .filter(|op| ok_decision(op).is_some_and(|d| !d.replayed))
            .collect();
        if fresh.len() < 2 {
            continue;
        }
        let request = fresh
            .first()
            .and_then(|op| SubmitCall::of(op))
            .map_or("", |c| c.request_id);
        out.report(|| {
            Violation::new(format!(
                "request {request} was decided afresh {} times",
                fresh.len()
            ))
            .ops(fresh.iter().map(|op| op.index))
            .requests([request])
        });
    }
}

fn payload(call: SubmitCall<'_>) -> String {
    format!(
        "deal {}, user {}, {} cents",
        call.deal_id, call.user_id, call.amount_cents
    )
}

fn recorded_payload(inv: &FinalInvestment) -> String {
    format!(
        "deal {}, user {}, {} cents",
        inv.deal_id, inv.user_id, inv.amount_cents
    )
}

/// Indefinite submits, resolved against the final state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndefiniteCounts {
    /// `Info` submits whose request id the final state holds with their payload.
    pub took_effect: u64,
    /// `Info` submits the final state does not hold (or holds with another payload).
    pub no_effect: u64,
}

pub(crate) fn count_indefinite(ctx: &Context<'_>) -> Option<IndefiniteCounts> {
    ctx.reference.as_ref()?;
    let mut counts = IndefiniteCounts::default();
    for Submitted {
        op, call, recorded, ..
    } in ctx.submits()
    {
        if !matches!(op.result, OpResult::Info { .. }) {
            continue;
        }
        if recorded.is_some_and(|inv| call.same_payload(inv)) {
            counts.took_effect += 1;
        } else {
            counts.no_effect += 1;
        }
    }
    Some(counts)
}

pub(super) fn check_indefinite(counts: Option<&IndefiniteCounts>) -> CheckResult {
    match counts {
        None => CheckResult::new(
            CheckName::Indefinite,
            Verdict::unknown("no node's final state was read"),
        ),
        Some(counts) => CheckResult::new(CheckName::Indefinite, Verdict::Valid).with_note(format!(
            "{} indefinite submits: {} took effect, {} did not",
            counts.took_effect + counts.no_effect,
            counts.took_effect,
            counts.no_effect
        )),
    }
}
