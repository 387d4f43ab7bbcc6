//! Linearizable reads (I5): an ok `ReadDeal` saw the deal's `investor_count` and
//! `reserved_cents` as they stood after some position `q` of the log inside the read's window:
//! `q` is at or after every decision acknowledged before the read was sent, and before every
//! fresh decision sent after the read's reply came.
//!
//! The counters a deal went through come from its timeline; finding whether a value occurs in
//! a window is a binary search in the deal's steps sorted by value, so the check is O(n log n).
//! Only those two counters are compared: confirmations are not part of the timeline.

use std::collections::HashMap;

use super::context::{Context, Pos};
use super::timeline::{DealLine, Timelines};
use super::verdict::{CheckName, CheckResult, Verdict, Violation, Violations};
use crate::history::{Call, DealRead, Op, OpResult, Reply};

/// A deal's steps sorted by the counters after them: `(count, reserved, step)`.
type ByValue = Vec<(i64, i128, usize)>;

pub(super) fn check(ctx: &Context<'_>, timelines: Result<&Timelines<'_>, String>) -> CheckResult {
    let verdict = match (timelines, &ctx.clock_error) {
        (_, Some(reason)) => Verdict::unknown(reason.clone()),
        (Err(reason), _) => Verdict::unknown(reason),
        (Ok(timelines), None) => check_reads(ctx, timelines),
    };
    CheckResult::new(CheckName::LinearizableReads, verdict)
}

fn check_reads(ctx: &Context<'_>, timelines: &Timelines<'_>) -> Verdict {
    let by_value: HashMap<&str, ByValue> = timelines
        .deals
        .iter()
        .map(|(&deal_id, line)| (deal_id, sorted_by_value(line)))
        .collect();
    let empty = DealLine::default();
    let mut out = Violations::new();
    for op in &ctx.input.history {
        let Some((deal_id, read)) = ok_read(op) else {
            continue;
        };
        if !ctx.deals.contains_key(deal_id) {
            out.report(|| {
                Violation::new(format!(
                    "read of deal {deal_id}, which the workload never created, returned counters"
                ))
                .ops([op.index])
            });
            continue;
        }
        let line = timelines.deals.get(deal_id).unwrap_or(&empty);
        let values = by_value.get(deal_id).map_or(&[][..], Vec::as_slice);
        let lo = ctx
            .real_time
            .latest_acked_before(op.invoke_us)
            .map(|a| a.pos);
        let hi = ctx.real_time.earliest_fresh_after(op.complete_us);
        if !seen_in_window(line, values, lo, hi, read) {
            out.report(|| {
                Violation::new(format!(
                    "read of deal {deal_id} saw {} investors and {} cents reserved, which the deal \
                     never held between {} and {}",
                    read.investor_count,
                    read.reserved_cents,
                    lo.map_or("the start".to_owned(), |p| p.to_string()),
                    hi.map_or("the end".to_owned(), |p| format!("just before {p}"))
                ))
                .ops([op.index])
            });
        }
    }
    out.into_verdict()
}

fn ok_read(op: &Op) -> Option<(&str, &DealRead)> {
    match (&op.call, &op.result) {
        (Call::ReadDeal { deal_id }, OpResult::Ok(Reply::Deal(read))) => Some((deal_id, read)),
        _ => None,
    }
}

fn sorted_by_value(line: &DealLine) -> ByValue {
    let mut values: ByValue = line
        .steps
        .iter()
        .enumerate()
        .map(|(at, s)| (s.count, s.reserved, at))
        .collect();
    values.sort_unstable();
    values
}

/// Whether the deal held `read`'s counters after some position in `[lo, hi)`: either the state
/// at `lo` itself, or the state after a step strictly after `lo` and before `hi`.
fn seen_in_window(
    line: &DealLine,
    values: &[(i64, i128, usize)],
    lo: Option<Pos>,
    hi: Option<Pos>,
    read: &DealRead,
) -> bool {
    let wanted = (
        i64::from(read.investor_count),
        i128::from(read.reserved_cents),
    );
    let (first_after_lo, at_lo) = line.state_at(lo);
    if at_lo == wanted {
        return true;
    }
    let from =
        values.partition_point(|&(c, r, at)| (c, r, at) < (wanted.0, wanted.1, first_after_lo));
    let Some(&(c, r, at)) = values.get(from) else {
        return false;
    };
    (c, r) == wanted
        && line
            .steps
            .get(at)
            .is_some_and(|step| hi.is_none_or(|hi| step.pos < hi))
}
