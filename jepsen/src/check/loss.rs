//! No loss (I6): every acknowledged decision, and every acknowledged withdrawal from a
//! waitlist, is in every node's final state, unchanged; and determinism (I9): equal state
//! digests at equal applied index.

use std::collections::{BTreeMap, HashSet};

use super::context::{
    describe_final, describe_reply, ok_decision, parse_rid, same_decision, Context, FinalIndex,
    Pos, SubmitCall, Submitted,
};
use ledger_state_machine::RejectReason;

use super::verdict::{CheckName, CheckResult, Verdict, Violation, Violations};
use crate::history::{Call, CheckInput, Decision, InvStatus, NodeFinal, Op, OpResult, Reply};

/// The reject reason of a request naming a deal that does not exist.
const DEAL_NOT_FOUND: &str = "DEAL_NOT_FOUND";

pub(super) fn check_no_loss(ctx: &Context<'_>) -> CheckResult {
    if ctx.input.finals.is_empty() {
        return CheckResult::new(
            CheckName::NoLoss,
            Verdict::unknown("no node's final state was read"),
        );
    }
    let mut out = Violations::new();
    for node in &ctx.input.finals {
        check_deals_present(ctx, node, &mut out);
    }
    for group in identical_finals(&ctx.input.finals) {
        check_decisions(ctx, &group, &mut out);
    }
    CheckResult::new(CheckName::NoLoss, out.into_verdict())
}

fn check_deals_present(ctx: &Context<'_>, node: &NodeFinal, out: &mut Violations) {
    let held: HashSet<&str> = node
        .deals
        .iter()
        .map(|d| d.terms.deal_id.as_str())
        .collect();
    for deal in &ctx.input.deals {
        if !held.contains(deal.deal_id.as_str()) {
            out.report(|| {
                Violation::new(format!(
                    "node {} lacks deal {} of the workload",
                    node.node_id, deal.deal_id
                ))
            });
        }
    }
}

/// Nodes holding the very same investments, grouped (after convergence, usually all of them
/// in one group): each group is checked once, which matters with a million decisions.
fn identical_finals(finals: &[NodeFinal]) -> Vec<Vec<&NodeFinal>> {
    let mut groups: Vec<Vec<&NodeFinal>> = Vec::new();
    for node in finals {
        let same = groups.iter_mut().find(|group| {
            group
                .first()
                .is_some_and(|n| n.investments == node.investments)
        });
        match same {
            Some(group) => group.push(node),
            None => groups.push(vec![node]),
        }
    }
    groups
}

fn check_decisions(ctx: &Context<'_>, group: &[&NodeFinal], out: &mut Violations) {
    let Some(&first) = group.first() else {
        return;
    };
    let built;
    let index = match &ctx.reference {
        Some(reference) if std::ptr::eq(reference.node, first) => reference,
        _ => {
            built = FinalIndex::new(first);
            &built
        }
    };
    // "node 2 lacks", "nodes 1, 3 lack".
    let nodes = |singular: &str, plural: &str| {
        let ids: Vec<String> = group.iter().map(|n| n.node_id.to_string()).collect();
        match ids.len() {
            1 => format!("node {} {singular}", ids.join("")),
            _ => format!("nodes {} {plural}", ids.join(", ")),
        }
    };
    let is_reference = ctx
        .reference
        .as_ref()
        .is_some_and(|reference| std::ptr::eq(reference.node, first));
    for submitted in ctx.submits() {
        let Submitted { op, call, rid, .. } = submitted;
        let Some(reply) = ok_decision(op) else {
            continue;
        };
        if !kept_in_final(ctx, call, reply) {
            continue;
        }
        let found = if is_reference {
            submitted.recorded
        } else {
            rid.and_then(|rid| index.get(rid))
        };
        match found {
            Some(inv) if same_decision(reply, inv) => {}
            Some(inv) => out.report(|| {
                violation(
                    op,
                    call,
                    format!(
                        "{} request {} {}, but its reply said {}",
                        nodes("holds", "hold"),
                        call.request_id,
                        describe_final(inv),
                        describe_reply(reply)
                    ),
                )
            }),
            None => out.report(|| {
                violation(
                    op,
                    call,
                    format!(
                        "{} request {}, acknowledged as {}",
                        nodes("lacks", "lack"),
                        call.request_id,
                        describe_reply(reply)
                    ),
                )
            }),
        }
    }
    check_withdrawals(ctx, index, &nodes, out);
}

/// Every acknowledged `Withdraw` left its request REJECTED (WAITLIST_CLOSED), ended where the
/// reply said.
fn check_withdrawals(
    ctx: &Context<'_>,
    index: &FinalIndex<'_>,
    nodes: &dyn Fn(&str, &str) -> String,
    out: &mut Violations,
) {
    for op in &ctx.input.history {
        let (Call::Withdraw { request_id }, OpResult::Ok(Reply::Withdrawn { log_index, offset })) =
            (&op.call, &op.result)
        else {
            continue;
        };
        let said = Pos::new(*log_index, *offset);
        let found = parse_rid(request_id).and_then(|rid| index.get(rid));
        let ended = found
            .and_then(|inv| inv.waitlist_ended_at)
            .map(|(i, o)| Pos::new(i, o));
        let kept = found.is_some_and(|inv| {
            inv.status == InvStatus::Rejected
                && inv.reject_reason.as_deref() == Some(RejectReason::WaitlistClosed.as_str())
                && ended == Some(said)
        });
        if kept {
            continue;
        }
        out.report(|| {
            let holds = match found {
                None => format!("{} no request {request_id}", nodes("holds", "hold")),
                Some(inv) => format!(
                    "{} request {request_id} {:?}{}",
                    nodes("holds", "hold"),
                    inv.status,
                    ended.map_or(String::new(), |at| format!(", off the waitlist at {at}"))
                ),
            };
            Violation::new(format!(
                "{holds}, but its withdrawal was acknowledged at {said}"
            ))
            .ops([op.index])
            .requests([request_id.as_str()])
        });
    }
}

/// A final state lists the investments of the workload's deals: a request rejected for naming
/// another deal has no place in it.
fn kept_in_final(ctx: &Context<'_>, call: SubmitCall<'_>, reply: &Decision) -> bool {
    let unknown_deal = !ctx.deals.contains_key(call.deal_id);
    !(unknown_deal && !reply.admitted && reply.reject_reason.as_deref() == Some(DEAL_NOT_FOUND))
}

fn violation(op: &Op, call: SubmitCall<'_>, message: String) -> Violation {
    Violation::new(message)
        .ops([op.index])
        .requests([call.request_id])
}

pub(super) fn check_digests(input: &CheckInput) -> CheckResult {
    // applied index → digest → nodes that reported it.
    let mut seen: BTreeMap<u64, BTreeMap<&str, Vec<u64>>> = BTreeMap::new();
    let samples = input
        .digests
        .iter()
        .map(|s| (s.node_id, s.applied_index, s.digest.as_str()))
        .chain(
            input
                .finals
                .iter()
                .map(|n| (n.node_id, n.applied_index, n.digest.as_str())),
        )
        // An empty digest is a node that was not asked for one, not a state.
        .filter(|(_, _, digest)| !digest.is_empty());
    for (node_id, applied_index, digest) in samples {
        let nodes = seen
            .entry(applied_index)
            .or_default()
            .entry(digest)
            .or_default();
        if !nodes.contains(&node_id) {
            nodes.push(node_id);
        }
    }
    let mut out = Violations::new();
    let mut compared = 0u64;
    for (applied_index, digests) in &seen {
        let nodes: usize = digests.values().map(Vec::len).sum();
        if nodes >= 2 {
            compared += 1;
        }
        if digests.len() > 1 {
            out.report(|| {
                let listed: Vec<String> = digests
                    .iter()
                    .map(|(digest, nodes)| format!("{digest} on nodes {nodes:?}"))
                    .collect();
                Violation::new(format!(
                    "different digests at applied index {applied_index}: {}",
                    listed.join(", ")
                ))
            });
        }
    }
    let note = format!("{compared} applied indexes sampled on two or more nodes");
    let verdict = if compared == 0 {
        out.or_unknown("no two nodes were sampled at the same applied index")
    } else {
        out.into_verdict()
    };
    CheckResult::new(CheckName::Determinism, verdict).with_note(note)
}
