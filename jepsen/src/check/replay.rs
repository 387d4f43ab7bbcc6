//! Replay (I4, I5): the final log order, replayed through `ledger-state-machine`, reproduces
//! every decision of the final state and every ok reply.
//!
//! Nodes purge their log behind snapshots, so the part of the log that decides capacity is
//! rebuilt from the final state: a setup entry at index 1, then one entry per real log index
//! holding each `Submit` at its decision position, a `PaymentDeclined` step at each
//! cancellation position (the saga is still in PAYMENT in the replay, so this releases the seat
//! exactly there), and harmless fillers in the gaps. Every header carries the same time, so no
//! deadline or lease ever moves.

use ledger_state_machine::{
    AdmissionState, Applied, Command, CreateDeal, Entry, EntryError, EntryHeader, Money, NodeId,
    Outcome, Params, RecordStep, RequestId, Status, StepResult, Submit, Verdict as SmVerdict,
    ENTRY_COMMANDS_MAX,
};

use super::context::{
    describe_final, describe_reply, ok_decision, parse_rid, same_decision, Context, FinalIndex,
    Pos, Submitted,
};
use super::verdict::{CheckName, CheckResult, Verdict, Violation, Violations};
use crate::history::{DealTerms, FinalInvestment, InvStatus};

/// The only executor of the replay: every saga is assigned to it, with epoch 1.
const REPLAY_EXECUTOR: NodeId = 1;
const REPLAY_EPOCH: u64 = 1;
const REPLAY_LEADER: NodeId = 1;
/// One time for every entry: log time never moves, so no deadline or lease expires.
const REPLAY_TIME_MS: u64 = 1;
const SETUP_INDEX: u64 = 1;
/// Most commands (decisions, cancellations and fillers) a synthetic log may hold, so that odd
/// offsets cannot make the replay run for ever.
const SYNTHETIC_COMMANDS_MAX: u64 = 100_000_000;

/// Why the replay could not run. Each is odd input, which makes the verdict unknown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReplayError {
    /// Index 1 is the replay's setup entry.
    #[error("request {request_id} is decided at log index {log_index}; the replay needs every decision at index 2 or later")]
    BeforeSetup {
        /// The request.
        request_id: String,
        /// Its decision's log index.
        log_index: u64,
    },
    /// An entry holds at most `ENTRY_COMMANDS_MAX` commands.
    #[error(
        "request {request_id} has a command at offset {offset}, beyond what an entry may hold"
    )]
    OffsetTooLarge {
        /// The request.
        request_id: String,
        /// The offset.
        offset: u32,
    },
    /// Without its position, a cancellation cannot be replayed.
    #[error("request {0} is CANCELLED but its cancellation position is missing")]
    NoCancelPosition(String),
    /// The state machine only knows UUID request ids.
    #[error("request id {0:?} in the final state is not a UUID")]
    NotAUuid(String),
    /// A deal of the workload has terms the state machine refuses.
    #[error("deal {deal_id} cannot be created: {reason}")]
    BadDeal {
        /// The deal.
        deal_id: String,
        /// The state machine's answer.
        reason: String,
    },
    /// The filler, executor or params commands were refused.
    #[error("the replay's setup entry failed: {0}")]
    Setup(String),
    /// Bounded work on any input.
    #[error("the synthetic log would hold {0} commands, more than the replay allows")]
    TooLarge(u64),
    /// The state machine refused a whole entry.
    #[error("the state machine refused entry {index}: {error}")]
    Entry {
        /// The entry's log index.
        index: u64,
        /// Why.
        error: EntryError,
    },
}

/// SetParams with the longest saga deadline and executor lease, and a heartbeat of the replay's
/// executor: every new saga goes to it with epoch 1 and stays there. The one place that builds
/// these two commands.
pub(crate) fn executor_setup() -> [Command; 2] {
    let params = Params {
        saga_deadline_ms: *Params::SAGA_DEADLINE_MS_RANGE.end(),
        executor_lease_ms: *Params::EXECUTOR_LEASE_MS_RANGE.end(),
        executor_lag_max_entries: *Params::EXECUTOR_LAG_MAX_ENTRIES_RANGE.end(),
        ..Params::default()
    };
    [
        Command::SetParams(params),
        // Sent "before anything applied": well within the lag bound at the setup entry.
        Command::ExecutorHeartbeat {
            node_id: REPLAY_EXECUTOR,
            applied_index: 0,
        },
    ]
}

/// The header of every replayed entry.
pub(crate) fn replay_header() -> EntryHeader {
    EntryHeader {
        leader_id: REPLAY_LEADER,
        time_ms: REPLAY_TIME_MS,
    }
}

/// The setup entry: params, the executor, and every deal of the workload.
pub(crate) fn setup_entry(deals: &[DealTerms]) -> Entry {
    let mut commands = executor_setup().to_vec();
    commands.extend(deals.iter().map(create_deal));
    Entry {
        header: replay_header(),
        commands,
    }
}

pub(crate) fn create_deal(terms: &DealTerms) -> Command {
    Command::CreateDeal(CreateDeal {
        deal_id: terms.deal_id.clone(),
        amount: Money::from_cents(terms.amount_cents),
        max_investors: terms.max_investors,
        min_ticket: terms.min_ticket_cents.map(Money::from_cents),
        max_ticket: terms.max_ticket_cents.map(Money::from_cents),
        opens_at_ms: None,
        closes_at_ms: None,
        max_waitlist: ledger_state_machine::MAX_WAITLIST_DEFAULT,
    })
}

pub(super) fn check(ctx: &Context<'_>) -> CheckResult {
    let Some(reference) = &ctx.reference else {
        return CheckResult::new(
            CheckName::Replay,
            Verdict::unknown("no node's final state was read"),
        );
    };
    let mut out = Violations::new();
    report_duplicates(ctx, reference, &mut out);
    compare_replies(ctx, reference, &mut out);
    match replay(ctx, reference, &mut out) {
        Ok(()) => CheckResult::new(CheckName::Replay, out.into_verdict()),
        Err(error) => {
            let reason = format!("replay stopped: {error}");
            CheckResult::new(CheckName::Replay, out.or_unknown(reason.clone())).with_note(reason)
        }
    }
}

/// I4: a request id is decided once.
fn report_duplicates(ctx: &Context<'_>, index: &FinalIndex<'_>, out: &mut Violations) {
    for &at in &index.duplicates {
        let Some(inv) = index.node.investments.get(at) else {
            continue;
        };
        let rid = parse_rid(&inv.request_id);
        out.report(|| {
            Violation::new(format!(
                "node {} holds request {} twice (decided more than once)",
                index.node.node_id, inv.request_id
            ))
            .ops(rid.map(|rid| ctx.ok_ops_of(rid)).unwrap_or_default())
            .requests([inv.request_id.as_str()])
        });
    }
}

/// Every ok reply names the decision the reference holds for its request. Replies whose
/// request is absent are the no-loss check's business.
fn compare_replies(ctx: &Context<'_>, index: &FinalIndex<'_>, out: &mut Violations) {
    // Built at the first mismatch only: a valid run never needs it.
    let mut by_pos: Option<Vec<(Pos, usize)>> = None;
    for Submitted { op, recorded, .. } in ctx.submits() {
        let (Some(reply), Some(inv)) = (ok_decision(op), recorded) else {
            continue;
        };
        if same_decision(reply, inv) {
            continue;
        }
        let by_pos = by_pos.get_or_insert_with(|| positions(index));
        out.report(|| {
            let there = holder(by_pos, index, Pos::of_reply(reply), &inv.request_id);
            Violation::new(format!(
                "reply to {} says {}, but the final state has it {}{}",
                inv.request_id,
                describe_reply(reply),
                describe_final(inv),
                there.map_or(String::new(), |other| format!(
                    "; {} holds {other}",
                    Pos::of_reply(reply)
                )),
            ))
            .ops([op.index])
            .requests([inv.request_id.as_str()])
        });
    }
}

/// The decision positions of a final state, sorted, for "who is at this position".
fn positions(index: &FinalIndex<'_>) -> Vec<(Pos, usize)> {
    let mut by_pos: Vec<(Pos, usize)> = index
        .primaries()
        .map(|(at, _, inv)| (Pos::of_decision(inv), at))
        .collect();
    by_pos.sort_unstable();
    by_pos
}

/// Which other request the final state decided at `pos`, if any.
fn holder(
    by_pos: &[(Pos, usize)],
    index: &FinalIndex<'_>,
    pos: Pos,
    request_id: &str,
) -> Option<String> {
    let at = by_pos.partition_point(|&(p, _)| p < pos);
    let &(p, inv) = by_pos.get(at)?;
    let inv = index.node.investments.get(inv)?;
    (p == pos && inv.request_id != request_id).then(|| format!("request {}", inv.request_id))
}

/// A command of the synthetic log at its real position.
#[derive(Clone, Copy, Debug)]
struct Placed {
    pos: Pos,
    /// The investment's position in the node's list.
    inv: usize,
    request_id: RequestId,
    cancel: bool,
}

fn replay(
    ctx: &Context<'_>,
    index: &FinalIndex<'_>,
    out: &mut Violations,
) -> Result<(), ReplayError> {
    let placed = place(ctx, index, out)?;
    let mut state = AdmissionState::new();
    let mut events = Vec::new();
    apply_setup(&mut state, &ctx.input.deals)?;
    let filler = filler(&ctx.input.deals);
    for group in placed.chunk_by(|a, b| a.pos.log_index == b.pos.log_index) {
        let Some(first) = group.first() else {
            continue;
        };
        let log_index = first.pos.log_index;
        let entry = entry_of(group, index, &filler);
        let results = state
            .apply_entry(log_index, &entry, &mut events)
            .map_err(|error| ReplayError::Entry {
                index: log_index,
                error,
            })?;
        events.clear();
        for placed in group {
            let applied = usize::try_from(placed.pos.offset)
                .ok()
                .and_then(|o| results.get(o));
            judge(ctx, index, placed, applied, out);
        }
    }
    if let Err(violation) = state.check_invariants() {
        out.report(|| Violation::new(format!("the replayed state breaks {violation}")));
    }
    Ok(())
}

/// The synthetic log's commands in log order; commands that collide or come too early are
/// reported and left out.
fn place(
    ctx: &Context<'_>,
    index: &FinalIndex<'_>,
    out: &mut Violations,
) -> Result<Vec<Placed>, ReplayError> {
    if let Some(&at) = index.unparsed.first() {
        let text = index
            .node
            .investments
            .get(at)
            .map(|inv| inv.request_id.clone())
            .unwrap_or_default();
        return Err(ReplayError::NotAUuid(text));
    }
    let mut placed = Vec::with_capacity(index.node.investments.len());
    for (at, rid, inv) in index.primaries() {
        let request_id = RequestId::from_u128(rid)
            .ok_or_else(|| ReplayError::NotAUuid(inv.request_id.clone()))?;
        let decided = Pos::of_decision(inv);
        check_position(inv, decided)?;
        placed.push(Placed {
            pos: decided,
            inv: at,
            request_id,
            cancel: false,
        });
        if inv.status != InvStatus::Cancelled {
            continue;
        }
        let cancelled = Pos::of_cancel(inv)
            .ok_or_else(|| ReplayError::NoCancelPosition(inv.request_id.clone()))?;
        check_position(inv, cancelled)?;
        if cancelled <= decided {
            out.report(|| {
                Violation::new(format!(
                    "request {} is cancelled at {cancelled}, not after its decision at {decided}",
                    inv.request_id
                ))
                .ops(ctx.ok_ops_of(request_id.as_u128()))
                .requests([inv.request_id.as_str()])
            });
            continue;
        }
        placed.push(Placed {
            pos: cancelled,
            inv: at,
            request_id,
            cancel: true,
        });
    }
    placed.sort_unstable_by_key(|p| (p.pos, p.cancel, p.inv));
    report_collisions(ctx, index, &mut placed, out);
    bound_size(&placed)?;
    Ok(placed)
}

fn check_position(inv: &FinalInvestment, pos: Pos) -> Result<(), ReplayError> {
    if pos.log_index <= SETUP_INDEX {
        return Err(ReplayError::BeforeSetup {
            request_id: inv.request_id.clone(),
            log_index: pos.log_index,
        });
    }
    if usize::try_from(pos.offset).map_or(true, |o| o >= ENTRY_COMMANDS_MAX) {
        return Err(ReplayError::OffsetTooLarge {
            request_id: inv.request_id.clone(),
            offset: pos.offset,
        });
    }
    Ok(())
}

/// One command per position: a second command claiming a taken position is reported and
/// dropped, so the replay goes on with the first.
fn report_collisions(
    ctx: &Context<'_>,
    index: &FinalIndex<'_>,
    placed: &mut Vec<Placed>,
    out: &mut Violations,
) {
    let request = |p: &Placed| {
        index
            .node
            .investments
            .get(p.inv)
            .map_or_else(String::new, |inv| inv.request_id.clone())
    };
    placed.dedup_by(|later, first| {
        if later.pos != first.pos {
            return false;
        }
        out.report(|| {
            Violation::new(format!(
                "requests {} and {} both claim position {}",
                request(first),
                request(later),
                later.pos
            ))
            .ops(ctx.ok_ops_of(later.request_id.as_u128()))
            .requests([request(first), request(later)])
        });
        true
    });
}

fn bound_size(placed: &[Placed]) -> Result<(), ReplayError> {
    let commands: u64 = placed
        .chunk_by(|a, b| a.pos.log_index == b.pos.log_index)
        .filter_map(|group| group.last())
        .map(|last| u64::from(last.pos.offset) + 1)
        .sum();
    if commands > SYNTHETIC_COMMANDS_MAX {
        return Err(ReplayError::TooLarge(commands));
    }
    Ok(())
}

fn apply_setup(state: &mut AdmissionState, deals: &[DealTerms]) -> Result<(), ReplayError> {
    let entry = setup_entry(deals);
    let results = state
        .apply_entry(SETUP_INDEX, &entry, &mut Vec::new())
        .map_err(|error| ReplayError::Setup(error.to_string()))?;
    let setup_len = executor_setup().len();
    for (at, result) in results.iter().enumerate() {
        let Err(error) = result else {
            continue;
        };
        return Err(match at.checked_sub(setup_len).and_then(|d| deals.get(d)) {
            Some(deal) => ReplayError::BadDeal {
                deal_id: deal.deal_id.clone(),
                reason: error.to_string(),
            },
            None => ReplayError::Setup(error.to_string()),
        });
    }
    Ok(())
}

/// A valid deal id the workload never created: closing it fails with `DealNotFound` and
/// changes nothing, which makes it a harmless filler.
fn filler(deals: &[DealTerms]) -> Command {
    let taken = |id: &str| deals.iter().any(|d| d.deal_id == id);
    let mut deal_id = String::from("jepsen-replay-filler");
    while taken(&deal_id) {
        deal_id.push('_');
    }
    Command::CloseDeal { deal_id }
}

fn entry_of(group: &[Placed], index: &FinalIndex<'_>, filler: &Command) -> Entry {
    let len = group.last().map_or(0, |p| p.pos.offset as usize + 1);
    let mut commands = Vec::with_capacity(len);
    for placed in group {
        while commands.len() < placed.pos.offset as usize {
            commands.push(filler.clone());
        }
        commands.push(command_of(placed, index).unwrap_or_else(|| filler.clone()));
    }
    Entry {
        header: replay_header(),
        commands,
    }
}

fn command_of(placed: &Placed, index: &FinalIndex<'_>) -> Option<Command> {
    let inv = index.node.investments.get(placed.inv)?;
    Some(if placed.cancel {
        Command::RecordStep(RecordStep {
            request_id: placed.request_id,
            executor: REPLAY_EXECUTOR,
            epoch: REPLAY_EPOCH,
            result: StepResult::PaymentDeclined {
                reason: "jepsen replay: released here".into(),
            },
        })
    } else {
        Command::Submit(Submit {
            request_id: placed.request_id,
            deal_id: inv.deal_id.clone(),
            user_id: inv.user_id.clone(),
            amount: Money::from_cents(inv.amount_cents),
            waitlist: false,
            waitlist_ttl_ms: None,
        })
    })
}

/// Compares what the state machine did with a placed command to what the final state says.
fn judge(
    ctx: &Context<'_>,
    index: &FinalIndex<'_>,
    placed: &Placed,
    applied: Option<&Applied>,
    out: &mut Violations,
) {
    let Some(inv) = index.node.investments.get(placed.inv) else {
        return;
    };
    let agrees = if placed.cancel {
        matches!(
            applied,
            Some(Ok(Outcome::StepRecorded {
                status: Status::Cancelled,
                ..
            }))
        )
    } else {
        replayed_verdict(applied).is_some_and(|verdict| verdicts_agree(verdict, inv))
    };
    if agrees {
        return;
    }
    out.report(|| {
        let what = if placed.cancel {
            format!(
                "the replay cannot cancel {} at {} ({})",
                inv.request_id,
                placed.pos,
                describe_applied(applied)
            )
        } else {
            format!(
                "the replay decides {} at {} as {}, but the final state has it {}",
                inv.request_id,
                placed.pos,
                describe_applied(applied),
                describe_final(inv)
            )
        };
        Violation::new(what)
            .ops(ctx.ok_ops_of(placed.request_id.as_u128()))
            .requests([inv.request_id.as_str()])
    });
}

fn replayed_verdict(applied: Option<&Applied>) -> Option<SmVerdict> {
    match applied {
        Some(Ok(Outcome::Submitted {
            decision,
            replayed: false,
        })) => Some(decision.verdict),
        _ => None,
    }
}

fn verdicts_agree(verdict: SmVerdict, inv: &FinalInvestment) -> bool {
    match verdict {
        SmVerdict::Pending => inv.status != InvStatus::Rejected,
        SmVerdict::Rejected(reason) => {
            inv.status == InvStatus::Rejected
                && inv.reject_reason.as_deref() == Some(reason.as_str())
        }
        // Waiting, admitted from the waitlist since, or ended on it.
        SmVerdict::Waitlisted => {
            inv.status != InvStatus::Rejected
                || inv.reject_reason.as_deref()
                    == Some(ledger_state_machine::RejectReason::WaitlistClosed.as_str())
        }
    }
}

fn describe_applied(applied: Option<&Applied>) -> String {
    match applied {
        None => "no result".to_owned(),
        Some(Err(error)) => format!("error: {error}"),
        Some(Ok(Outcome::Submitted {
            replayed: true,
            decision,
        })) => format!(
            "a replay of the decision at ({}, {})",
            decision.log_index, decision.offset
        ),
        Some(Ok(Outcome::Submitted { decision, .. })) => match decision.verdict {
            SmVerdict::Pending => "admitted".to_owned(),
            SmVerdict::Rejected(reason) => format!("rejected ({reason})"),
            SmVerdict::Waitlisted => "waitlisted".to_owned(),
        },
        Some(Ok(other)) => format!("{other:?}"),
    }
}
