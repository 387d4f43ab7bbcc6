//! Capacity (I1–I3), checked independently of the state machine (which could be what is
//! wrong): walking each deal's timeline in log order, the active seats stay within
//! `max_investors`, the reserved amount within the deal's amount, and no user holds two active
//! investments in one deal, at every point. Every node's final counters equal what its final
//! investments imply, and every ok read is within the limits.

use std::collections::HashMap;

use super::context::{Context, FinalIndex};
use super::timeline::{DealLine, Step, Timelines};
use super::verdict::{CheckName, CheckResult, Verdict, Violation, Violations};
use crate::history::{Call, DealRead, DealTerms, InvStatus, NodeFinal, OpResult, Reply};

pub(super) fn check(ctx: &Context<'_>, timelines: Result<&Timelines<'_>, String>) -> CheckResult {
    let (Some(reference), Ok(timelines)) = (&ctx.reference, timelines.as_ref()) else {
        let reason = match timelines {
            Err(reason) => reason,
            Ok(_) => "no node's final state was read".to_owned(),
        };
        return CheckResult::new(CheckName::Capacity, Verdict::unknown(reason));
    };
    let mut out = Violations::new();
    let mut deal_ids: Vec<&str> = timelines.deals.keys().copied().collect();
    // Deterministic report order.
    deal_ids.sort_unstable();
    for deal_id in deal_ids {
        if let Some(line) = timelines.deals.get(deal_id) {
            walk_deal(ctx, reference, deal_id, line, &mut out);
        }
    }
    for node in &ctx.input.finals {
        check_final_counters(ctx, node, &mut out);
    }
    check_reads(ctx, &mut out);
    CheckResult::new(CheckName::Capacity, out.into_verdict())
}

fn walk_deal(
    ctx: &Context<'_>,
    index: &FinalIndex<'_>,
    deal_id: &str,
    line: &DealLine,
    out: &mut Violations,
) {
    let Some(terms) = ctx.deals.get(deal_id) else {
        for step in line.steps.iter().filter(|s| s.admit) {
            report_step(ctx, index, step, out, |request| {
                format!("{request} is admitted to deal {deal_id}, which the workload never created")
            });
        }
        return;
    };
    // The active investment of each user, by position in the node's list.
    let mut active: HashMap<&str, usize> = HashMap::new();
    for step in &line.steps {
        let Some(inv) = index.node.investments.get(step.inv) else {
            continue;
        };
        if step.admit {
            if let Some(&held) = active.get(inv.user_id.as_str()) {
                let other = request_at(index, held);
                report_step(ctx, index, step, out, |request| {
                    format!(
                        "{request} is admitted at {} while user {} already holds {other} in deal {deal_id} (I3)",
                        step.pos, inv.user_id
                    )
                });
            }
            active.insert(inv.user_id.as_str(), step.inv);
            check_limits(ctx, index, terms, step, out);
        } else {
            if active.get(inv.user_id.as_str()) == Some(&step.inv) {
                active.remove(inv.user_id.as_str());
            }
            if step.count < 0 || step.reserved < 0 {
                report_step(ctx, index, step, out, |request| {
                    format!(
                        "releasing {request} at {} leaves deal {deal_id} with {} investors and {} cents",
                        step.pos, step.count, step.reserved
                    )
                });
            }
        }
    }
}

fn check_limits(
    ctx: &Context<'_>,
    index: &FinalIndex<'_>,
    terms: &DealTerms,
    step: &Step,
    out: &mut Violations,
) {
    if step.count > i64::from(terms.max_investors) {
        report_step(ctx, index, step, out, |request| {
            format!(
                "admitting {request} at {} gives deal {} {} investors, above its {} (I1)",
                step.pos, terms.deal_id, step.count, terms.max_investors
            )
        });
    }
    if step.reserved > i128::from(terms.amount_cents) {
        report_step(ctx, index, step, out, |request| {
            format!(
                "admitting {request} at {} reserves {} cents of deal {}, above its {} (I2)",
                step.pos, step.reserved, terms.deal_id, terms.amount_cents
            )
        });
    }
}

fn request_at(index: &FinalIndex<'_>, at: usize) -> String {
    index
        .node
        .investments
        .get(at)
        .map_or_else(String::new, |inv| inv.request_id.clone())
}

/// Reports a violation about a step's investment, pointing at the ops that acknowledged it.
fn report_step(
    ctx: &Context<'_>,
    index: &FinalIndex<'_>,
    step: &Step,
    out: &mut Violations,
    message: impl FnOnce(&str) -> String,
) {
    let rid = index.rid_at(step.inv);
    let request = request_at(index, step.inv);
    out.report(|| {
        Violation::new(message(&format!("request {request}")))
            .ops(rid.map(|rid| ctx.ok_ops_of(rid)).unwrap_or_default())
            .requests([request.clone()])
    });
}

/// The counters a node shows for each deal equal what its investments imply, and the terms are
/// the workload's.
fn check_final_counters(ctx: &Context<'_>, node: &NodeFinal, out: &mut Violations) {
    let mut implied: HashMap<&str, DealRead> = HashMap::new();
    for inv in &node.investments {
        let counters = implied
            .entry(inv.deal_id.as_str())
            .or_insert_with(no_investments);
        if matches!(inv.status, InvStatus::Pending | InvStatus::Confirmed) {
            counters.investor_count = counters.investor_count.saturating_add(1);
            counters.reserved_cents = counters.reserved_cents.saturating_add(inv.amount_cents);
        }
        if inv.status == InvStatus::Confirmed {
            counters.confirmed_count = counters.confirmed_count.saturating_add(1);
            counters.confirmed_cents = counters.confirmed_cents.saturating_add(inv.amount_cents);
        }
    }
    for deal in &node.deals {
        let deal_id = deal.terms.deal_id.as_str();
        if ctx
            .deals
            .get(deal_id)
            .is_some_and(|terms| **terms != deal.terms)
        {
            out.report(|| {
                Violation::new(format!(
                    "node {} holds deal {deal_id} with terms {:?}, not the workload's",
                    node.node_id, deal.terms
                ))
            });
        }
        let expected = implied.get(deal_id).cloned().unwrap_or_else(no_investments);
        if deal.counters != expected {
            out.report(|| {
                Violation::new(format!(
                    "node {} shows deal {deal_id} with {:?}, but its investments imply {:?}",
                    node.node_id, deal.counters, expected
                ))
            });
        }
        let source = || format!("node {}'s final state", node.node_id);
        check_counters_within(ctx, deal_id, &deal.counters, source, None, out);
    }
}

/// Every ok read is within the deal's limits.
fn check_reads(ctx: &Context<'_>, out: &mut Violations) {
    for op in &ctx.input.history {
        if let (Call::ReadDeal { deal_id }, OpResult::Ok(Reply::Deal(read))) =
            (&op.call, &op.result)
        {
            let source = || format!("read op {}", op.index);
            check_counters_within(ctx, deal_id, read, source, Some(op.index), out);
        }
    }
}

fn check_counters_within(
    ctx: &Context<'_>,
    deal_id: &str,
    counters: &DealRead,
    source: impl Fn() -> String,
    op: Option<u64>,
    out: &mut Violations,
) {
    let Some(terms) = ctx.deals.get(deal_id) else {
        return;
    };
    let problems = [
        (counters.investor_count > terms.max_investors).then_some("more investors than seats"),
        (counters.reserved_cents > terms.amount_cents).then_some("more reserved than the amount"),
        (counters.confirmed_count > counters.investor_count)
            .then_some("more confirmed than active investors"),
        (counters.confirmed_cents > counters.reserved_cents)
            .then_some("more confirmed than reserved"),
    ];
    for problem in problems.into_iter().flatten() {
        out.report(|| {
            Violation::new(format!(
                "{} shows deal {deal_id} with {problem}: {counters:?} against {} seats and {} cents",
                source(),
                terms.max_investors, terms.amount_cents
            ))
            .ops(op)
        });
    }
}

fn no_investments() -> DealRead {
    DealRead {
        investor_count: 0,
        reserved_cents: 0,
        confirmed_count: 0,
        confirmed_cents: 0,
    }
}
