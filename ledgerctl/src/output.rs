//! How `ledgerctl` shows things: one JSON shape per message (`--json`) and one table or line.

use anyhow::Result;
use ledger_client::pb;
use serde_json::{json, Value};

use crate::cli::Cli;

fn name<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str) -> &'static str {
    E::try_from(value).map(name).unwrap_or("?")
}

pub fn investment_status(inv: &pb::Investment) -> &'static str {
    name(inv.status, |s: pb::InvestmentStatus| s.as_str_name())
}

pub fn reject_reason(inv: &pb::Investment) -> &'static str {
    name(inv.reject_reason, |s: pb::RejectReason| s.as_str_name())
}

pub fn saga_step(inv: &pb::Investment) -> &'static str {
    name(inv.saga_step, |s: pb::SagaStep| s.as_str_name())
}

pub fn deal_json(deal: &pb::Deal) -> Value {
    json!({
        "deal_id": deal.deal_id, "amount": deal.amount, "max_investors": deal.max_investors,
        "min_ticket": deal.min_ticket, "max_ticket": deal.max_ticket,
        "status": name(deal.status, |s: pb::DealStatus| s.as_str_name()),
        "investor_count": deal.investor_count, "reserved_amount": deal.reserved_amount,
        "confirmed_count": deal.confirmed_count, "confirmed_amount": deal.confirmed_amount,
        "created_at_ms": deal.created_at_ms, "opens_at_ms": deal.opens_at_ms,
        "closes_at_ms": deal.closes_at_ms, "max_waitlist": deal.max_waitlist,
        "waitlist_length": deal.waitlist_length,
        "receipt_head": deal.receipt_head.as_ref().map(receipt_json),
        "closed_at": (deal.closed_log_index != 0).then_some((deal.closed_log_index, deal.closed_offset)),
    })
}

pub fn receipt_json(receipt: &pb::Receipt) -> Value {
    json!({"deal_seq": receipt.deal_seq, "hash": hex(&receipt.hash)})
}

use crate::export::hex;

pub fn deal_line(deal: &pb::Deal) -> String {
    let mut line = format!(
        "{:<24} {:<6} seats {:>4}/{:<4} reserved {:>14} of {:>14}  confirmed {:>4} / {}",
        deal.deal_id,
        name(deal.status, |s: pb::DealStatus| s.as_str_name()),
        deal.investor_count,
        deal.max_investors,
        deal.reserved_amount,
        deal.amount,
        deal.confirmed_count,
        deal.confirmed_amount
    );
    if deal.waitlist_length > 0 {
        line += &format!("  waitlist {}", deal.waitlist_length);
    }
    if let Some(opens) = deal.opens_at_ms {
        line += &format!("  opens_at_ms {opens}");
    }
    if let Some(closes) = deal.closes_at_ms {
        line += &format!("  closes_at_ms {closes}");
    }
    line
}

pub fn investment_json(inv: &pb::Investment) -> Value {
    json!({
        "request_id": inv.request_id, "deal_id": inv.deal_id, "user_id": inv.user_id,
        "amount": inv.amount, "status": investment_status(inv),
        "reject_reason": (inv.reject_reason != 0).then(|| reject_reason(inv)),
        "log_index": inv.log_index, "offset": inv.offset, "decided_at_ms": inv.decided_at_ms,
        "decided_by": (inv.decided_by != 0).then_some(inv.decided_by),
        "saga_step": (inv.saga_step != 0).then(|| saga_step(inv)),
        "attempts": inv.attempts, "last_error": (!inv.last_error.is_empty()).then_some(&inv.last_error),
        "cancel_cause": (inv.cancel_cause != 0).then(|| name(inv.cancel_cause, |c: pb::CancelCause| c.as_str_name())),
        "executor": inv.executor, "epoch": inv.epoch, "updated_at_ms": inv.updated_at_ms,
        "waitlist": inv.waitlist, "waitlist_ttl_ms": inv.waitlist_ttl_ms,
        "waitlisted": inv.waitlisted,
        "waitlist_position": (inv.waitlist_position != 0).then_some(inv.waitlist_position),
        "admitted_log_index": (inv.admitted_log_index != 0).then_some(inv.admitted_log_index),
        "admitted_offset": (inv.admitted_log_index != 0).then_some(inv.admitted_offset),
        "receipt": inv.receipt.as_ref().map(receipt_json),
    })
}

pub fn investment_line(inv: &pb::Investment) -> String {
    let mut line = format!(
        "{} {:<9} deal={} user={} amount={} at {}:{}",
        inv.request_id,
        investment_status(inv),
        inv.deal_id,
        inv.user_id,
        inv.amount,
        inv.log_index,
        inv.offset
    );
    if inv.reject_reason != 0 {
        line += &format!(" reason={}", reject_reason(inv));
    }
    if inv.waitlist_position != 0 {
        line += &format!(" waitlist_position={}", inv.waitlist_position);
    }
    if inv.admitted_log_index != 0 {
        line += &format!(
            " admitted_from_waitlist_at {}:{}",
            inv.admitted_log_index, inv.admitted_offset
        );
    }
    if let Some(receipt) = &inv.receipt {
        line += &format!(" receipt={}:{}", receipt.deal_seq, hex(&receipt.hash));
    }
    if inv.saga_step != 0 {
        line += &format!(" saga={} attempts={}", saga_step(inv), inv.attempts);
        if let Some(executor) = inv.executor {
            line += &format!(" executor={executor}");
        }
        if !inv.last_error.is_empty() {
            line += &format!(" last_error={:?}", inv.last_error);
        }
    }
    line
}

/// A log time (Unix milliseconds) as RFC 3339 UTC.
fn log_time(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

fn step_end_name(ended: &pb::SagaStepEnded) -> &'static str {
    name(ended.result, |e: pb::StepEnd| e.as_str_name())
}

pub fn trace_json(trace: &pb::InvestmentTrace) -> Value {
    let history: Vec<Value> = trace
        .history
        .iter()
        .map(|mark| {
            let mut entry = json!({
                "log_index": mark.log_index, "at_ms": mark.at_ms, "epoch": mark.epoch,
            });
            let change = match &mark.change {
                Some(pb::saga_mark::Change::Assigned(a)) => {
                    json!({"change": "ASSIGNED", "executor": a.executor})
                }
                Some(pb::saga_mark::Change::StepEnded(e)) => json!({
                    "change": "STEP_ENDED",
                    "step": name(e.step, |s: pb::SagaStep| s.as_str_name()),
                    "result": step_end_name(e), "refunded": e.refunded, "retries": e.retries,
                }),
                Some(pb::saga_mark::Change::Compensating(c)) => json!({
                    "change": "COMPENSATING",
                    "cause": name(c.cause, |c: pb::CancelCause| c.as_str_name()),
                }),
                None => json!({"change": null}),
            };
            if let (Some(entry), Value::Object(change)) = (entry.as_object_mut(), change) {
                entry.extend(change);
            }
            entry
        })
        .collect();
    json!({
        "investment": trace.investment.as_ref().map(investment_json),
        "history": history,
        "history_dropped": trace.history_dropped,
    })
}

/// The story of a request, oldest first: the decision, each saga change, the outcome.
pub fn trace_text(trace: &pb::InvestmentTrace) -> String {
    let Some(inv) = &trace.investment else {
        return "no investment in the answer".into();
    };
    let mut out = format!(
        "request  {}  deal={} user={} amount={}\n",
        inv.request_id, inv.deal_id, inv.user_id, inv.amount
    );
    let leader = match inv.decided_by {
        0 => "leader unknown".to_owned(),
        id => format!("leader {id}"),
    };
    let decided_as = match (inv.waitlisted, inv.reject_reason) {
        (true, _) => "WAITLISTED".to_owned(),
        (false, 0) => "admitted (PENDING)".to_owned(),
        (false, _) => format!("REJECTED {}", reject_reason(inv)),
    };
    out += &format!(
        "decided  at {}:{} by {}, log time {}: {decided_as}\n",
        inv.log_index,
        inv.offset,
        leader,
        log_time(inv.decided_at_ms)
    );
    if let Some(receipt) = &inv.receipt {
        out += &format!("receipt  {}:{}\n", receipt.deal_seq, hex(&receipt.hash));
    }
    if inv.admitted_log_index != 0 {
        out += &format!(
            "admitted from the waitlist at {}:{}\n",
            inv.admitted_log_index, inv.admitted_offset
        );
    }
    if trace.history_dropped > 0 {
        out += &format!(
            "saga     ({} earlier changes not kept)\n",
            trace.history_dropped
        );
    }
    for mark in &trace.history {
        let what = match &mark.change {
            Some(pb::saga_mark::Change::Assigned(a)) => match a.executor {
                Some(executor) => format!("assigned to executor {executor}"),
                None => "unassigned (no executor live)".to_owned(),
            },
            Some(pb::saga_mark::Change::StepEnded(e)) => {
                let step = name(e.step, |s: pb::SagaStep| s.as_str_name());
                let result = step_end_name(e).trim_start_matches("STEP_END_");
                let mut what = format!("{step:<9} {result}");
                if e.result == pb::StepEnd::PaymentVoided as i32 {
                    what += if e.refunded {
                        " (refunded)"
                    } else {
                        " (nothing charged)"
                    };
                }
                let detail = match pb::StepEnd::try_from(e.result) {
                    Ok(pb::StepEnd::PaymentSucceeded) => &inv.payment_id,
                    Ok(pb::StepEnd::DocumentsGenerated) => &inv.document_id,
                    Ok(pb::StepEnd::NotifySent) => &inv.message_id,
                    _ => "",
                };
                if !detail.is_empty() {
                    what += &format!(" id={detail}");
                }
                if e.retries > 0 {
                    what += &format!(", after at least {} failed attempts", e.retries);
                }
                what
            }
            Some(pb::saga_mark::Change::Compensating(c)) => format!(
                "compensation started: {}",
                name(c.cause, |c: pb::CancelCause| c.as_str_name())
            ),
            None => "?".to_owned(),
        };
        out += &format!(
            "saga     {:>8}  {}  epoch {:<3} {what}\n",
            mark.log_index,
            log_time(mark.at_ms),
            mark.epoch
        );
    }
    out += &format!("outcome  {}", investment_status(inv));
    if inv.cancel_cause != 0 {
        out += &format!(
            " ({})",
            name(inv.cancel_cause, |c: pb::CancelCause| c.as_str_name())
        );
    }
    if inv.saga_step != 0 {
        out += &format!(", saga {}", saga_step(inv));
        if let Some(executor) = inv.executor {
            out += &format!(" with executor {executor} (epoch {})", inv.epoch);
        }
    }
    if inv.cancelled_log_index != 0 {
        out += &format!(
            ", seat released at {}:{}",
            inv.cancelled_log_index, inv.cancelled_offset
        );
    }
    if inv.notify_failed {
        out += ", e-mail not delivered";
    }
    if !inv.last_error.is_empty() {
        out += &format!(", last error {:?}", inv.last_error);
    }
    out
}

pub fn status_json(addr: &str, s: &pb::StatusResponse) -> Value {
    json!({
        "endpoint": addr, "node_id": s.node_id, "role": s.role, "leader_id": s.leader_id,
        "term": s.term, "last_log_index": s.last_log_index, "applied_index": s.applied_index,
        "snapshot_index": s.snapshot_index, "purged_index": s.purged_index,
        "state_digest": s.state_digest,
        "members": s.members.iter().map(member_json).collect::<Vec<_>>(),
        "executors": s.executors.iter().map(|e| json!({
            "node_id": e.node_id, "live": e.live, "open_sagas": e.open_sagas,
        })).collect::<Vec<_>>(),
    })
}

pub fn member_json(m: &pb::Member) -> Value {
    json!({
        "node_id": m.node_id, "addr": m.addr,
        "role": name(m.role, |r: pb::MemberRole| r.as_str_name()),
        "matched_index": m.matched_index,
    })
}

/// Members as `1:VOTER 2:VOTER 4:LEARNER`.
pub fn members_line(members: &[pb::Member]) -> String {
    members
        .iter()
        .map(|m| {
            format!(
                "{}:{}",
                m.node_id,
                name(m.role, |r: pb::MemberRole| r.as_str_name())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints `value` with `--json`, else the text line.
pub fn print_or_json(
    cli: &Cli,
    value: serde_json::Value,
    text: impl FnOnce() -> String,
) -> Result<()> {
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{}", text());
    }
    Ok(())
}
