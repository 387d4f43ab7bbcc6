//! `deal verify`'s second half: every decision of an export decided again, in log order, by
//! `ledger-state-machine` itself, and compared with the one recorded.
//!
//! The export holds what changes a deal's capacity between decisions: where each cancellation
//! freed a seat, where each waitlisted request left the waitlist without one, and where the deal
//! closed. The replay is a synthetic log of one event per entry, in log position order (at
//! equal positions: what log time did at the start of an entry, then the command there), with
//! log time standing still so that no lease, deadline or TTL acts by itself:
//! - a decision is its `Submit` again (without a TTL: endings come from their positions);
//! - a cancellation is a declined payment of that saga (the replay's sagas never leave PAYMENT);
//! - an ending is a `Withdraw`, unless the closing ended it;
//! - the closing is a `CloseDeal`.
//!
//! Then each decision must come out as recorded, and each admission from the waitlist must
//! happen at the cancellation recorded for it: first come, first served, never over capacity,
//! and the waitlist served in order. DEAL_NOT_OPEN depends on log time only, so those requests
//! are checked against the opening time instead of replayed.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use ledger_state_machine::{
    AdmissionState, Applied, Command, CreateDeal, Entry, EntryHeader, Money, Outcome, RecordStep,
    RejectReason, RequestId, Status, StepResult, Submit, Verdict,
};
use serde_json::Value;

use crate::export::{verdict_of, ExportLine};

/// The replay's only executor and leader.
const NODE: u64 = 1;
/// Log time of every replayed entry.
const TIME_MS: u64 = 1;

/// What the replay found.
pub struct Redecided {
    /// Decisions decided again and found equal.
    pub decisions: u64,
    /// Admissions from the waitlist found at their recorded cancellation.
    pub admitted_from_waitlist: u64,
}

/// What happens at one log position, in the order of equal positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Close,
    End(usize),
    Cancel(usize),
    Decide(usize),
}

fn position(value: &Value) -> Result<Option<(u64, u32)>> {
    match value {
        Value::Null => Ok(None),
        Value::Array(pair) if pair.len() == 2 => {
            let index = pair[0].as_u64().context("a log index")?;
            let offset = pair[1]
                .as_u64()
                .and_then(|o| u32::try_from(o).ok())
                .context("an offset")?;
            Ok(Some((index, offset)))
        }
        other => bail!("not a log position: {other}"),
    }
}

fn money(value: &Value, field: &str) -> Result<Option<Money>> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Money::parse(text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("the manifest's {field}: {e}")),
        Some(other) => bail!("the manifest's {field} is not money: {other}"),
    }
}

/// Decides every line again; `deal` is the manifest's deal.
pub fn check(deal: &Value, lines: &[ExportLine]) -> Result<Redecided> {
    let deal_id = deal["deal_id"]
        .as_str()
        .context("the manifest names no deal")?;
    let terms = CreateDeal {
        deal_id: deal_id.to_owned(),
        amount: money(deal, "amount")?.context("the manifest's deal has no amount")?,
        max_investors: deal["max_investors"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .context("the manifest's deal has no max_investors")?,
        min_ticket: money(deal, "min_ticket")?,
        max_ticket: money(deal, "max_ticket")?,
        // Log time stands still in the replay: the opening is checked apart, the closing
        // comes from its position.
        opens_at_ms: None,
        closes_at_ms: None,
        max_waitlist: deal["max_waitlist"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .context("the manifest's deal has no max_waitlist")?,
    };
    let opens_at_ms = deal["opens_at_ms"].as_u64();
    let closed_at = position(&deal["closed_at"]).context("the manifest's closed_at")?;
    if deal["status"] == "CLOSED" && closed_at.is_none() {
        bail!("the export does not say where the deal closed (made by an older node?)");
    }

    let mut events: Vec<((u64, u32), Event)> = Vec::with_capacity(lines.len() * 2 + 1);
    if let Some(at) = closed_at {
        events.push((at, Event::Close));
    }
    for (n, line) in lines.iter().enumerate() {
        let verdict = verdict_of(line).with_context(|| format!("line {}", n + 1))?;
        if verdict == Verdict::Rejected(RejectReason::DealNotOpen) {
            if opens_at_ms.is_some_and(|opens| line.decided_at_ms >= opens) {
                bail!(
                    "line {}: DEAL_NOT_OPEN at {} ms, after the opening at {:?} ms",
                    n + 1,
                    line.decided_at_ms,
                    opens_at_ms
                );
            }
            continue;
        }
        if opens_at_ms.is_some_and(|opens| line.decided_at_ms < opens) {
            bail!(
                "line {}: decided at {} ms, before the opening at {:?} ms, yet not DEAL_NOT_OPEN",
                n + 1,
                line.decided_at_ms,
                opens_at_ms
            );
        }
        events.push(((line.log_index, line.offset), Event::Decide(n)));
        if let Some(at) = line.cancelled_at {
            events.push((at, Event::Cancel(n)));
        }
        if verdict == Verdict::Waitlisted && line.status == "REJECTED" {
            match line.waitlist_ended_at {
                Some(at) if Some(at) == closed_at => {} // the closing ends it
                Some(at) => events.push((at, Event::End(n))),
                None => bail!(
                    "line {}: left the waitlist, but the export does not say where (made by an \
                     older node?)",
                    n + 1
                ),
            }
        }
    }
    events.sort();

    let mut state = AdmissionState::new();
    let mut index = 0u64;
    let mut apply = |state: &mut AdmissionState, command: Command| -> Result<(u64, Applied)> {
        index += 1;
        let entry = Entry {
            header: EntryHeader {
                leader_id: NODE,
                time_ms: TIME_MS,
            },
            commands: vec![command],
        };
        let result = state
            .apply_entry(index, &entry, &mut Vec::new())
            .map_err(|e| anyhow::anyhow!("the replay's entry {index}: {e}"))?
            .pop()
            .context("the replay's entry gave no result")?;
        Ok((index, result))
    };
    apply(
        &mut state,
        Command::ExecutorHeartbeat {
            node_id: NODE,
            applied_index: 0,
        },
    )?
    .1?;
    apply(&mut state, Command::CreateDeal(terms))?
        .1
        .map_err(|e| anyhow::anyhow!("the deal's terms: {e}"))?;

    // The replay's entry index of each cancellation, to its recorded position.
    let mut cancelled_at: HashMap<u64, (u64, u32)> = HashMap::new();
    let mut decisions = 0u64;
    for (at, event) in events {
        match event {
            Event::Decide(n) => {
                let line = &lines[n];
                let recorded = verdict_of(line)?;
                let submit = Submit {
                    request_id: request_id(line)?,
                    deal_id: deal_id.to_owned(),
                    user_id: line.user_id.clone(),
                    amount: Money::parse(&line.amount)
                        .map_err(|e| anyhow::anyhow!("line {}: amount: {e}", n + 1))?,
                    waitlist: line.waitlist,
                    waitlist_ttl_ms: None,
                };
                let decided = match apply(&mut state, Command::Submit(submit))?.1 {
                    Ok(Outcome::Submitted {
                        decision,
                        replayed: false,
                    }) => decision.verdict,
                    other => bail!(
                        "line {}: {} cannot be decided again: {other:?}",
                        n + 1,
                        line.request_id
                    ),
                };
                if decided != recorded {
                    bail!(
                        "line {}: {} was recorded as {recorded:?}, but the rules decide \
                         {decided:?} at that point of the log",
                        n + 1,
                        line.request_id
                    );
                }
                decisions += 1;
            }
            Event::Cancel(n) => {
                let line = &lines[n];
                let rid = request_id(line)?;
                let saga = state
                    .investment(rid)
                    .filter(|inv| inv.status == Status::Pending)
                    .and_then(|inv| inv.saga)
                    .with_context(|| {
                        format!(
                            "line {}: {} is cancelled at {at:?}, but it holds no seat there",
                            n + 1,
                            line.request_id
                        )
                    })?;
                let step = RecordStep {
                    request_id: rid,
                    executor: saga.assignee.unwrap_or(NODE),
                    epoch: saga.epoch,
                    result: StepResult::PaymentDeclined {
                        reason: "replayed cancellation".into(),
                    },
                };
                let (entry, recorded) = apply(&mut state, Command::RecordStep(step))?;
                match recorded {
                    Ok(Outcome::StepRecorded {
                        status: Status::Cancelled,
                        ..
                    }) => {
                        cancelled_at.insert(entry, at);
                    }
                    other => bail!(
                        "line {}: the cancellation of {} does not replay: {other:?}",
                        n + 1,
                        line.request_id
                    ),
                }
            }
            Event::End(n) => {
                let line = &lines[n];
                let withdrawn = apply(
                    &mut state,
                    Command::Withdraw {
                        request_id: request_id(line)?,
                    },
                )?
                .1;
                if withdrawn != Ok(Outcome::Withdrawn) {
                    bail!(
                        "line {}: {} left the waitlist at {at:?}, but it was not waiting there \
                         ({withdrawn:?})",
                        n + 1,
                        line.request_id
                    );
                }
            }
            Event::Close => {
                apply(
                    &mut state,
                    Command::CloseDeal {
                        deal_id: deal_id.to_owned(),
                    },
                )?
                .1
                .map_err(|e| anyhow::anyhow!("closing the deal: {e}"))?;
            }
        }
    }

    // Every admission from the waitlist happened at the cancellation recorded for it.
    let mut admitted_from_waitlist = 0u64;
    for (n, line) in lines.iter().enumerate() {
        let Some(view) = state.investment(request_id(line)?) else {
            continue; // DEAL_NOT_OPEN, checked apart
        };
        let replayed = view
            .admitted_at
            .map(|(entry, _)| cancelled_at.get(&entry).copied());
        match (line.admitted_at, replayed) {
            (None, None) => {}
            (Some(recorded), Some(Some(at))) if recorded == at => admitted_from_waitlist += 1,
            (recorded, replayed) => bail!(
                "line {}: {} was admitted from the waitlist at {recorded:?}, but the rules \
                 admit it at {:?}",
                n + 1,
                line.request_id,
                replayed.flatten()
            ),
        }
    }
    Ok(Redecided {
        decisions,
        admitted_from_waitlist,
    })
}

fn request_id(line: &ExportLine) -> Result<RequestId> {
    RequestId::parse(&line.request_id).map_err(|e| anyhow::anyhow!("request_id: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn line(n: u128, user: &str, amount: &str, at: (u64, u32), verdict: &str) -> ExportLine {
        let (verdict, reject_reason) = match verdict.split_once(' ') {
            Some((v, reason)) => (v.to_owned(), Some(reason.to_owned())),
            None => (verdict.to_owned(), None),
        };
        ExportLine {
            deal_seq: n as u64,
            request_id: RequestId::from_u128(n).unwrap().to_string(),
            deal_id: "d".into(),
            user_id: user.into(),
            amount: amount.into(),
            waitlist: verdict == "WAITLISTED",
            waitlist_ttl_ms: None,
            log_index: at.0,
            offset: at.1,
            decided_at_ms: 1_000,
            status: match verdict.as_str() {
                "PENDING" => "CONFIRMED".into(),
                other => other.into(),
            },
            verdict,
            reject_reason,
            receipt: String::new(),
            admitted_at: None,
            cancelled_at: None,
            waitlist_ended_at: None,
        }
    }

    fn deal(status: &str, closed_at: Option<(u64, u32)>) -> Value {
        json!({"deal_id": "d", "amount": "1000.00", "max_investors": 2, "min_ticket": null,
               "max_ticket": null, "max_waitlist": 10, "opens_at_ms": null,
               "status": status, "closed_at": closed_at})
    }

    /// Two seats: ana and bob get them, cyd and dee wait, eve is turned away; ana's payment is
    /// declined at (5, 0) and cyd takes her seat; dee withdraws at (6, 1); the deal closes at
    /// (7, 0) with fay still waiting.
    fn history() -> Vec<ExportLine> {
        let mut lines = vec![
            line(1, "ana", "100.00", (2, 0), "PENDING"),
            line(2, "bob", "100.00", (2, 1), "PENDING"),
            line(3, "cyd", "100.00", (3, 0), "WAITLISTED"),
            line(4, "dee", "100.00", (3, 1), "WAITLISTED"),
            line(
                5,
                "eve",
                "100.00",
                (4, 0),
                "REJECTED INVESTOR_LIMIT_REACHED",
            ),
            line(6, "fay", "100.00", (6, 0), "WAITLISTED"),
        ];
        lines[0].status = "CANCELLED".into();
        lines[0].cancelled_at = Some((5, 0));
        lines[2].status = "CONFIRMED".into();
        lines[2].admitted_at = Some((5, 0));
        lines[3].status = "REJECTED".into();
        lines[3].waitlist_ended_at = Some((6, 1));
        lines[5].status = "REJECTED".into();
        lines[5].waitlist_ended_at = Some((7, 0));
        lines
    }

    #[test]
    fn a_history_that_follows_the_rules_is_decided_again_as_recorded() {
        let again = check(&deal("CLOSED", Some((7, 0))), &history()).unwrap();
        assert_eq!((again.decisions, again.admitted_from_waitlist), (6, 1));
    }

    fn refused(deal_value: Value, lines: &[ExportLine]) -> String {
        match check(&deal_value, lines) {
            Ok(_) => panic!("accepted"),
            Err(error) => format!("{error:#}"),
        }
    }

    #[test]
    fn a_consistent_history_that_breaks_the_rules_is_refused() {
        let closed = || deal("CLOSED", Some((7, 0)));
        // eve recorded as admitted: a third seat.
        let mut over = history();
        over[4].verdict = "PENDING".into();
        over[4].reject_reason = None;
        let error = refused(closed(), &over);
        assert!(
            error.contains("line 5") && error.contains("rules decide"),
            "{error}"
        );

        // dee, behind cyd, let in first.
        let mut passed_over = history();
        passed_over[2].admitted_at = None;
        passed_over[2].status = "REJECTED".into();
        passed_over[2].waitlist_ended_at = Some((4, 1));
        passed_over[3].admitted_at = Some((5, 0));
        passed_over[3].waitlist_ended_at = None;
        passed_over[3].status = "CONFIRMED".into();
        assert!(
            check(&closed(), &passed_over).is_ok(),
            "cyd left first: fair"
        );
        passed_over[2].waitlist_ended_at = Some((6, 1));
        passed_over[3].admitted_at = Some((5, 0));
        // The rules give cyd that seat, so she cannot leave the waitlist later.
        let error = refused(closed(), &passed_over);
        assert!(
            error.contains("line 3") && error.contains("not waiting"),
            "{error}"
        );
        // Nor can dee be recorded as admitted while cyd is recorded as waiting to the end.
        passed_over[2].waitlist_ended_at = Some((7, 0));
        let error = refused(closed(), &passed_over);
        assert!(error.contains("admitted from the waitlist"), "{error}");

        // A cancellation that did not happen where recorded, and no record of the closing.
        let mut moved = history();
        moved[0].cancelled_at = Some((1, 0));
        assert!(refused(closed(), &moved).contains("holds no seat"));
        assert!(refused(deal("CLOSED", None), &history()).contains("where the deal closed"));
    }
}
