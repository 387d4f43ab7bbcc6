//! Replay (I4, I5, I10): the final log order, replayed through `ledger-state-machine`,
//! reproduces every decision of the final state, every ok reply, and every admission from a
//! waitlist.
//!
//! Nodes purge their log behind snapshots, so the part of the log that decides capacity is
//! rebuilt from the final state as a synthetic log of one event per entry, in log position
//! order (at equal positions: a deal's closing, a request leaving the waitlist at the start of
//! an entry, then the command there):
//! - a decision is its `Submit` again (the waitlist asked for as recorded, without a TTL: where
//!   a request left the waitlist is recorded);
//! - a cancellation is a declined payment of that saga (the replay's sagas never leave PAYMENT,
//!   so this releases the seat exactly there, and admits from the waitlist what the rules admit
//!   there);
//! - a request leaving the waitlist without a seat is a `Withdraw`, unless its deal's closing
//!   ended it;
//! - a deal's closing is a `CloseDeal`.
//!
//! Every header carries the same time, so no deadline, lease or TTL ever acts by itself. Then
//! every decision must come out as recorded, every request must end in the state recorded for
//! it, and every admission from a waitlist must happen at the cancellation recorded for it: a
//! request passed over on its waitlist, or admitted where no seat was free, shows here.

use std::collections::{BTreeSet, HashMap};

use ledger_state_machine::{
    AdmissionState, Applied, Command, CreateDeal, Entry, EntryHeader, Money, NodeId, Outcome,
    Params, RecordStep, RequestId, Status, StepResult, Submit, Verdict as SmVerdict,
    ENTRY_COMMANDS_MAX,
};

use super::context::{
    describe_final, describe_reply, ok_decision, parse_rid, same_decision, Context, Decided,
    FinalIndex, Pos, Submitted,
};
use super::verdict::{CheckName, CheckResult, Verdict, Violation, Violations};
use crate::history::{DealTerms, FinalInvestment, InvStatus};

/// The only executor of the replay: every saga is assigned to it.
const REPLAY_EXECUTOR: NodeId = 1;
const REPLAY_LEADER: NodeId = 1;
/// One time for every entry: log time never moves, so no deadline, lease or TTL expires.
const REPLAY_TIME_MS: u64 = 1;
const SETUP_INDEX: u64 = 1;

/// Why the replay could not run. Each is odd input, which makes the verdict unknown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReplayError {
    /// An entry holds at most `ENTRY_COMMANDS_MAX` commands: no real log has this position.
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
    /// Without its position, a request's leaving the waitlist cannot be replayed.
    #[error("request {0} left the waitlist, but where is missing")]
    NoEndPosition(String),
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
    /// The executor or params commands were refused.
    #[error("the replay's setup entry failed: {0}")]
    Setup(String),
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

/// What happens at one log position, in the order of equal positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A deal of the reference's list closes.
    Close(usize),
    /// An investment leaves the waitlist without a seat.
    End(usize),
    /// An investment is cancelled: its seat and amount are released.
    Cancel(usize),
    /// An investment is decided.
    Decide(usize),
}

impl Event {
    fn investment(self) -> Option<usize> {
        match self {
            Event::Close(_) => None,
            Event::End(at) | Event::Cancel(at) | Event::Decide(at) => Some(at),
        }
    }

    /// Decisions and cancellations are commands of their own: no two share a position.
    fn is_command(self) -> bool {
        matches!(self, Event::Cancel(_) | Event::Decide(_))
    }
}

/// What the state machine did with a replayed command, or why it refused the whole entry.
type Replayed = Result<Applied, String>;

/// An event of the synthetic log at its real position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Placed {
    pos: Pos,
    event: Event,
}

/// The replay as it goes: the state, the synthetic index, the real position of each
/// cancellation, and the requests already reported (one violation per request is enough).
struct Replay<'c, 'i> {
    ctx: &'c Context<'c>,
    index: &'c FinalIndex<'i>,
    state: AdmissionState,
    next_index: u64,
    /// Synthetic entry index of a cancellation → its real position.
    cancelled_at: HashMap<u64, Pos>,
    reported: BTreeSet<usize>,
}

fn replay(
    ctx: &Context<'_>,
    index: &FinalIndex<'_>,
    out: &mut Violations,
) -> Result<(), ReplayError> {
    let placed = place(ctx, index, out)?;
    let mut replay = Replay {
        ctx,
        index,
        state: AdmissionState::new(),
        next_index: SETUP_INDEX + 1,
        cancelled_at: HashMap::new(),
        reported: BTreeSet::new(),
    };
    apply_setup(&mut replay.state, &ctx.input.deals)?;
    for placed in &placed {
        replay.apply(placed, out);
    }
    replay.compare_ends(out);
    if let Err(violation) = replay.state.check_invariants() {
        out.report(|| Violation::new(format!("the replayed state breaks {violation}")));
    }
    Ok(())
}

/// The synthetic log's events in log order; decisions and cancellations that collide or come
/// in the wrong order are reported and left out.
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
    let mut placed = Vec::with_capacity(index.node.investments.len() + index.node.deals.len());
    let mut closed_at: HashMap<&str, Pos> = HashMap::new();
    for (at, deal) in index.node.deals.iter().enumerate() {
        if let Some((log_index, offset)) = deal.closed_at {
            let pos = Pos::new(log_index, offset);
            closed_at.insert(deal.terms.deal_id.as_str(), pos);
            placed.push(Placed {
                pos,
                event: Event::Close(at),
            });
        }
    }
    for (at, rid, inv) in index.primaries() {
        let decided = Pos::of_decision(inv);
        check_offset(inv, decided)?;
        placed.push(Placed {
            pos: decided,
            event: Event::Decide(at),
        });
        if inv.status == InvStatus::Cancelled {
            let cancelled = Pos::of_cancel(inv)
                .ok_or_else(|| ReplayError::NoCancelPosition(inv.request_id.clone()))?;
            check_offset(inv, cancelled)?;
            if cancelled <= decided {
                out.report(|| {
                    Violation::new(format!(
                        "request {} is cancelled at {cancelled}, not after its decision at {decided}",
                        inv.request_id
                    ))
                    .ops(ctx.ok_ops_of(rid))
                    .requests([inv.request_id.as_str()])
                });
            } else {
                placed.push(Placed {
                    pos: cancelled,
                    event: Event::Cancel(at),
                });
            }
        }
        let ended = inv.waitlisted && inv.status == InvStatus::Rejected;
        if ended {
            let (log_index, offset) = inv
                .waitlist_ended_at
                .ok_or_else(|| ReplayError::NoEndPosition(inv.request_id.clone()))?;
            let pos = Pos::new(log_index, offset);
            // The closing ends every request still waiting.
            if closed_at.get(inv.deal_id.as_str()) != Some(&pos) {
                placed.push(Placed {
                    pos,
                    event: Event::End(at),
                });
            }
        }
    }
    placed.sort_unstable();
    report_collisions(ctx, index, &mut placed, out);
    Ok(placed)
}

fn check_offset(inv: &FinalInvestment, pos: Pos) -> Result<(), ReplayError> {
    if usize::try_from(pos.offset).map_or(true, |o| o >= ENTRY_COMMANDS_MAX) {
        return Err(ReplayError::OffsetTooLarge {
            request_id: inv.request_id.clone(),
            offset: pos.offset,
        });
    }
    Ok(())
}

/// One command per position: a second decision or cancellation claiming a taken position is
/// reported and dropped, so the replay goes on with the first.
fn report_collisions(
    ctx: &Context<'_>,
    index: &FinalIndex<'_>,
    placed: &mut Vec<Placed>,
    out: &mut Violations,
) {
    let request = |p: &Placed| {
        p.event
            .investment()
            .and_then(|at| index.node.investments.get(at))
            .map_or_else(String::new, |inv| inv.request_id.clone())
    };
    let mut last_command: Option<Placed> = None;
    placed.retain(|p| {
        if !p.event.is_command() {
            return true;
        }
        let Some(first) = last_command.filter(|first| first.pos == p.pos) else {
            last_command = Some(*p);
            return true;
        };
        out.report(|| {
            let rid = p.event.investment().and_then(|at| index.rid_at(at));
            Violation::new(format!(
                "requests {} and {} both claim position {}",
                request(&first),
                request(p),
                p.pos
            ))
            .ops(rid.map(|rid| ctx.ok_ops_of(rid)).unwrap_or_default())
            .requests([request(&first), request(p)])
        });
        false
    });
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

impl<'c, 'i> Replay<'c, 'i> {
    /// Applies one command as an entry of its own; `(its synthetic index, its result)`.
    fn apply_one(&mut self, command: Command) -> (u64, Replayed) {
        let index = self.next_index;
        self.next_index += 1;
        let entry = Entry {
            header: replay_header(),
            commands: vec![command],
        };
        let result = self
            .state
            .apply_entry(index, &entry, &mut Vec::new())
            .map_err(|error| format!("entry refused: {error}"))
            .and_then(|mut results| results.pop().ok_or_else(|| "no result".to_owned()));
        (index, result)
    }

    fn apply(&mut self, placed: &Placed, out: &mut Violations) {
        match placed.event {
            Event::Close(at) => {
                let Some(deal) = self.index.node.deals.get(at) else {
                    return;
                };
                let deal_id = deal.terms.deal_id.clone();
                let (_, result) = self.apply_one(Command::CloseDeal {
                    deal_id: deal_id.clone(),
                });
                if !matches!(result, Ok(Ok(Outcome::DealClosed))) {
                    out.report(|| {
                        Violation::new(format!(
                            "the replay cannot close deal {deal_id} at {} ({})",
                            placed.pos,
                            describe_applied(&result)
                        ))
                    });
                }
            }
            Event::Decide(at) => {
                let Some((inv, request_id)) = self.request(at) else {
                    return;
                };
                let (_, result) = self.apply_one(Command::Submit(Submit {
                    request_id,
                    deal_id: inv.deal_id.clone(),
                    user_id: inv.user_id.clone(),
                    amount: Money::from_cents(inv.amount_cents),
                    waitlist: inv.waitlist,
                    waitlist_ttl_ms: None,
                }));
                let agrees = replayed_verdict(&result)
                    .is_some_and(|v| Decided::of_verdict(v) == Decided::of_final(inv));
                if !agrees {
                    self.report(at, out, || {
                        format!(
                            "the replay decides {} at {} as {}, but the final state has it {}",
                            inv.request_id,
                            placed.pos,
                            describe_applied(&result),
                            describe_final(inv)
                        )
                    });
                }
            }
            Event::Cancel(at) => {
                let Some((inv, request_id)) = self.request(at) else {
                    return;
                };
                let saga = self
                    .state
                    .investment(request_id)
                    .filter(|view| view.status == Status::Pending)
                    .and_then(|view| view.saga);
                let (executor, epoch) = saga.map_or((REPLAY_EXECUTOR, 0), |saga| {
                    (saga.assignee.unwrap_or(REPLAY_EXECUTOR), saga.epoch)
                });
                let (entry, result) = self.apply_one(Command::RecordStep(RecordStep {
                    request_id,
                    executor,
                    epoch,
                    result: StepResult::PaymentDeclined {
                        reason: "jepsen replay: released here".into(),
                    },
                }));
                if matches!(
                    result,
                    Ok(Ok(Outcome::StepRecorded {
                        status: Status::Cancelled,
                        ..
                    }))
                ) {
                    self.cancelled_at.insert(entry, placed.pos);
                } else {
                    self.report(at, out, || {
                        format!(
                            "the replay cannot cancel {} at {}: it holds no seat there ({})",
                            inv.request_id,
                            placed.pos,
                            describe_applied(&result)
                        )
                    });
                }
            }
            Event::End(at) => {
                let Some((inv, request_id)) = self.request(at) else {
                    return;
                };
                let (_, result) = self.apply_one(Command::Withdraw { request_id });
                if !matches!(result, Ok(Ok(Outcome::Withdrawn))) {
                    self.report(at, out, || {
                        format!(
                            "request {} left the waitlist at {}, but the replay has it no longer \
                             waiting there ({})",
                            inv.request_id,
                            placed.pos,
                            describe_applied(&result)
                        )
                    });
                }
            }
        }
    }

    fn request(&self, at: usize) -> Option<(&'i FinalInvestment, RequestId)> {
        let inv = self.index.node.investments.get(at)?;
        let request_id = RequestId::from_u128(self.index.rid_at(at)?)?;
        Some((inv, request_id))
    }

    /// Reports a violation about the investment at `at`, once per investment.
    fn report(&mut self, at: usize, out: &mut Violations, message: impl FnOnce() -> String) {
        if !self.reported.insert(at) {
            return;
        }
        let Some(inv) = self.index.node.investments.get(at) else {
            return;
        };
        let ops = self
            .index
            .rid_at(at)
            .map(|rid| self.ctx.ok_ops_of(rid))
            .unwrap_or_default();
        out.report(|| {
            Violation::new(message())
                .ops(ops)
                .requests([inv.request_id.as_str()])
        });
    }

    /// Every request ends where the final state has it, and every admission from a waitlist
    /// happened at the cancellation recorded for it.
    fn compare_ends(&mut self, out: &mut Violations) {
        let index = self.index;
        for (at, rid, inv) in index.primaries() {
            let Some(request_id) = RequestId::from_u128(rid) else {
                continue;
            };
            let Some(view) = self.state.investment(request_id) else {
                continue;
            };
            let replayed_admission = view
                .admitted_at
                .map(|(entry, _)| self.cancelled_at.get(&entry).copied());
            let recorded_admission = inv.admitted_at.map(|(i, o)| Pos::new(i, o));
            let status = view.status;
            match (recorded_admission, replayed_admission) {
                (None, None) => {}
                (Some(recorded), Some(Some(replayed))) if recorded == replayed => {}
                (recorded, replayed) => {
                    let say =
                        |pos: Option<Pos>| pos.map_or("nowhere".to_owned(), |p| p.to_string());
                    self.report(at, out, || {
                        format!(
                            "request {} was admitted from the waitlist at {}, but the rules \
                             admit it at {}",
                            inv.request_id,
                            say(recorded),
                            say(replayed.flatten())
                        )
                    });
                    continue;
                }
            }
            if !same_end(status, inv.status) {
                self.report(at, out, || {
                    format!(
                        "request {} ends {:?} in the replay, but {:?} in the final state",
                        inv.request_id, status, inv.status
                    )
                });
            }
        }
    }
}

/// The replay's sagas never leave PAYMENT: PENDING there is PENDING or CONFIRMED in the run.
fn same_end(replayed: Status, recorded: InvStatus) -> bool {
    match replayed {
        Status::Pending => matches!(recorded, InvStatus::Pending | InvStatus::Confirmed),
        Status::Confirmed => recorded == InvStatus::Confirmed,
        Status::Cancelled => recorded == InvStatus::Cancelled,
        Status::Rejected => recorded == InvStatus::Rejected,
        Status::Waitlisted => recorded == InvStatus::Waitlisted,
    }
}

fn replayed_verdict(applied: &Replayed) -> Option<SmVerdict> {
    match applied {
        Ok(Ok(Outcome::Submitted {
            decision,
            replayed: false,
        })) => Some(decision.verdict),
        _ => None,
    }
}

fn describe_applied(applied: &Replayed) -> String {
    match applied {
        Err(refused) => refused.clone(),
        Ok(Err(error)) => format!("error: {error}"),
        Ok(Ok(Outcome::Submitted {
            replayed: true,
            decision,
        })) => format!(
            "a replay of the decision at ({}, {})",
            decision.log_index, decision.offset
        ),
        Ok(Ok(Outcome::Submitted { decision, .. })) => match decision.verdict {
            SmVerdict::Pending => "admitted".to_owned(),
            SmVerdict::Rejected(reason) => format!("rejected ({reason})"),
            SmVerdict::Waitlisted => "waitlisted".to_owned(),
        },
        Ok(Ok(other)) => format!("{other:?}"),
    }
}
