//! [`AdmissionState`]: the replicated state and its one way to change, [`AdmissionState::apply_entry`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

use crate::archive::ArchivedDeal;
use crate::command::{Command, CreateDeal, Entry, Params, RecordStep, StepResult, Submit};
use crate::error::{CommandError, EntryError};
use crate::ids::{NodeId, RequestId};
use crate::money::Money;
use crate::outcome::{Applied, Decision, IgnoreReason, Outcome, RejectReason, Status, Verdict};
use crate::receipts::{DecisionRecord, Receipt};
use crate::saga::{CancelCause, Saga, SagaChange, SagaEvent, SagaStep, StepEnd};
use crate::table::{FixedHasher, Keyed, KeyedVec, Lookup};
use crate::unknown_deals::{UnknownDealRejection, UnknownDealRejections};

/// Most commands one entry may carry; bounds a batch and keeps offsets in a `u32`.
pub const ENTRY_COMMANDS_MAX: usize = 65_536;

/// The whole admission state of one replica.
///
/// Ground truth is kept in insertion-ordered tables (deals, user ids, investments in decision
/// order) and the executor table; everything else (deal counters, decision lists, users'
/// holdings, the saga indexes) is derived, maintained incrementally on the hot path and rebuilt
/// from the ground truth when a snapshot is loaded.
#[derive(Clone, Debug, Default)]
pub struct AdmissionState {
    pub(crate) params: Params,
    /// Log time: the largest leader timestamp applied so far.
    pub(crate) now_ms: u64,
    pub(crate) last_log_index: u64,
    /// Every deal created, in creation order.
    pub(crate) deals: KeyedVec<Deal>,
    /// Every user id named by a request for an existing deal; a user's position is its `UserIdx`.
    pub(crate) users: KeyedVec<Box<str>>,
    /// Every decided request for an existing deal, in decision order; an investment's position
    /// is its `InvIdx`.
    pub(crate) investments: KeyedVec<Investment>,
    /// Requests rejected for naming a deal that does not exist: kept apart, and bounded.
    pub(crate) unknown_deals: UnknownDealRejections,
    pub(crate) executors: BTreeMap<NodeId, Executor>,
    /// Each user's PENDING, CONFIRMED and WAITLISTED requests as `(deal, investment)`, in
    /// decision order (derived). Usually one or two, so rule 4 scans the list. Users without
    /// any are absent.
    pub(crate) holdings: HashMap<UserIdx, Vec<(DealIdx, InvIdx)>, FixedHasher>,
    pub(crate) sagas: SagaIndex,
    pub(crate) timers: Timers,
    /// Each investment's receipt hash, by `InvIdx` (derived).
    pub(crate) receipts: Vec<[u8; 32]>,
    /// What is kept of archived deals, by deal id; none of them is in `deals`.
    pub(crate) archived: BTreeMap<Box<str>, ArchivedDeal>,
    /// Counter updates that found the state already wrong (never persisted).
    pub(crate) breaches: Breaches,
    /// What applying decided since this state was created or loaded (never persisted).
    pub(crate) tally: Tally,
}

/// What applying decided since this state was created or loaded: the host exports these as
/// counters (they start again from 0 when a node restarts or installs a snapshot, as a
/// Prometheus counter may). Never persisted, so not part of a snapshot or the digest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests admitted when decided (PENDING).
    pub admitted: u64,
    /// Requests put on a waitlist when decided.
    pub waitlisted: u64,
    /// Requests rejected, by [`RejectReason::index`]: when decided, and (WAITLIST_CLOSED) when a
    /// wait ended without a seat.
    pub rejected: [u64; RejectReason::ALL.len()],
    /// Waitlisted requests admitted when a seat and the amount freed.
    pub admitted_from_waitlist: u64,
    /// Sagas turned toward cancellation, by [`CancelCause::index`]: a declined payment
    /// cancels at once, the other causes start compensation (void, then CANCELLED).
    pub cancellations: [u64; CancelCause::ALL.len()],
}

impl Tally {
    fn decided(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Pending => self.admitted += 1,
            Verdict::Waitlisted => self.waitlisted += 1,
            Verdict::Rejected(reason) => self.rejected[reason.index()] += 1,
        }
    }
}

/// Counter updates that could only fail if the state were already wrong (a seat released that
/// was never taken, a total past `u64`), found while applying. The update is clamped, so `apply`
/// goes on without panicking, and the breach is kept here for the host to report (the node logs
/// it and counts it in its metrics); `check_invariants` then names what is inconsistent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Breaches {
    /// How many were found since this state was created or loaded.
    pub count: u64,
    /// The latest: which deal, and which update.
    pub last: Option<String>,
}

impl Breaches {
    fn record(&mut self, deal: &Deal, what: &str) {
        self.count += 1;
        self.last = Some(format!("deal {}: {what}", deal.deal_id));
    }
}

/// What log time makes due, besides saga deadlines (derived). Entries for what changed since
/// are skipped when popped, not removed eagerly.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    /// `(expires_at_ms, request)` of waitlisted requests with a `waitlist_ttl_ms`.
    pub(crate) waitlist_expiries: BinaryHeap<Reverse<(u64, InvIdx)>>,
    /// `(closes_at_ms, deal)` of deals with a scheduled closing.
    pub(crate) closings: BinaryHeap<Reverse<(u64, DealIdx)>>,
}

/// Position of an investment in [`AdmissionState::investments`].
pub(crate) type InvIdx = u32;
/// Position of a deal in [`AdmissionState::deals`].
pub(crate) type DealIdx = u32;
/// Position of a user in [`AdmissionState::users`].
pub(crate) type UserIdx = u32;

/// The terms a deal was created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealTerms {
    /// The most admitted amounts may sum to.
    pub amount: Money,
    /// The most investors admitted at once.
    pub max_investors: u32,
    /// Smallest ticket accepted, if any.
    pub min_ticket: Option<Money>,
    /// Largest ticket accepted, if any.
    pub max_ticket: Option<Money>,
    /// Log time before which requests are rejected with `DEAL_NOT_OPEN`, if any.
    pub opens_at_ms: Option<u64>,
    /// Log time at which the deal closes by itself, if any.
    pub closes_at_ms: Option<u64>,
    /// The most requests on the deal's waitlist at once.
    pub max_waitlist: u32,
}

/// Whether a deal admits new requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DealStatus {
    /// Admitting.
    Open,
    /// No longer admitting; open sagas finish.
    Closed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Deal {
    #[serde(deserialize_with = "crate::codec::text::boxed")]
    pub(crate) deal_id: Box<str>,
    pub(crate) terms: DealTerms,
    pub(crate) status: DealStatus,
    pub(crate) created_at_ms: u64,
    /// Where the deal closed: the `CloseDeal` command's position, or `(index, 0)` of the
    /// entry whose log time reached `closes_at_ms` (before that entry's commands).
    pub(crate) closed_at: Option<(u64, u32)>,
    #[serde(skip)]
    pub(crate) counters: DealCounters,
    /// The deal's investments in decision order (derived).
    #[serde(skip)]
    pub(crate) decisions: Vec<InvIdx>,
    /// The deal's WAITLISTED requests; positions are decision (log) order (derived).
    #[serde(skip)]
    pub(crate) waitlist: BTreeSet<InvIdx>,
    /// The head of the deal's receipt chain (derived).
    #[serde(skip)]
    pub(crate) receipt_head: Receipt,
}

/// Derived per-deal totals, kept so that a decision is O(1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DealCounters {
    pub(crate) investor_count: u32,
    pub(crate) reserved: Money,
    pub(crate) confirmed_count: u32,
    pub(crate) confirmed_amount: Money,
}

impl DealCounters {
    /// A seat taken for `amount`, which the caller checked fits. An overflow means the counters
    /// were already wrong: clamped, and reported.
    fn admit(&mut self, amount: Money) -> Result<(), &'static str> {
        let seats = settle(
            &mut self.investor_count,
            |n| n.checked_add(1),
            |n| n.saturating_add(1),
        );
        let reserved = settle(
            &mut self.reserved,
            |m| m.checked_add(amount),
            |m| m.saturating_add(amount),
        );
        (seats && reserved)
            .then_some(())
            .ok_or("admitting overflows the seat count or the reserved amount")
    }

    /// A seat given back: it was counted, so neither counter can go below zero unless they
    /// were already wrong.
    fn release(&mut self, amount: Money) -> Result<(), &'static str> {
        let seats = settle(
            &mut self.investor_count,
            |n| n.checked_sub(1),
            |n| n.saturating_sub(1),
        );
        let reserved = settle(
            &mut self.reserved,
            |m| m.checked_sub(amount),
            |m| m.saturating_sub(amount),
        );
        (seats && reserved)
            .then_some(())
            .ok_or("releasing a seat takes the seat count or the reserved amount below zero")
    }

    /// An admitted investment confirmed: it is within the reserved totals, so these cannot
    /// overflow unless they were already wrong.
    fn confirm(&mut self, amount: Money) -> Result<(), &'static str> {
        let count = settle(
            &mut self.confirmed_count,
            |n| n.checked_add(1),
            |n| n.saturating_add(1),
        );
        let total = settle(
            &mut self.confirmed_amount,
            |m| m.checked_add(amount),
            |m| m.saturating_add(amount),
        );
        (count && total)
            .then_some(())
            .ok_or("confirming overflows the confirmed count or amount")
    }
}

/// Moves `slot` by the checked operation, or, when it fails (the state was already wrong), by
/// the clamping one; whether the checked operation held.
fn settle<T: Copy>(
    slot: &mut T,
    checked: impl FnOnce(T) -> Option<T>,
    clamped: impl FnOnce(T) -> T,
) -> bool {
    match checked(*slot) {
        Some(value) => {
            *slot = value;
            true
        }
        None => {
            *slot = clamped(*slot);
            false
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Investment {
    pub(crate) request_id: RequestId,
    pub(crate) deal: DealIdx,
    pub(crate) user: UserIdx,
    pub(crate) amount: Money,
    pub(crate) log_index: u64,
    pub(crate) offset: u32,
    /// The leader whose entry decided the request; 0 when not known (decided before snapshot
    /// format 6 kept it).
    pub(crate) leader_id: NodeId,
    pub(crate) status: Status,
    pub(crate) reject: Option<RejectReason>,
    pub(crate) decided_at_ms: u64,
    /// Present for admitted investments only, so a rejection costs no saga.
    pub(crate) saga: Option<Box<Saga>>,
    /// Present for requests that asked for the waitlist (`Submit::waitlist`).
    pub(crate) waitlist: Option<Box<WaitlistEntry>>,
}

/// What a request that asked for the waitlist carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WaitlistEntry {
    /// Its `waitlist_ttl_ms`, as submitted.
    pub(crate) ttl_ms: Option<u64>,
    /// Whether it was waitlisted when decided (rather than admitted or rejected at once).
    pub(crate) waitlisted: bool,
    /// The position (log index, offset) of the command whose effect admitted it from the
    /// waitlist, once admitted.
    pub(crate) admitted_at: Option<(u64, u32)>,
    /// Where it left the waitlist without a seat (REJECTED WAITLIST_CLOSED): the command's
    /// position (`Withdraw`, `CloseDeal`), or `(index, 0)` of the entry whose log time closed
    /// the deal or passed its `waitlist_ttl_ms` (before that entry's commands).
    pub(crate) ended_at: Option<(u64, u32)>,
}

impl WaitlistEntry {
    /// Log time at which a waitlisted request decided at `decided_at_ms` ends by itself.
    pub(crate) fn expires_at_ms(&self, decided_at_ms: u64) -> Option<u64> {
        self.ttl_ms.map(|ttl| decided_at_ms.saturating_add(ttl))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Executor {
    pub(crate) last_heartbeat_ms: u64,
    /// Cleared when the lease lapses or the executor retires, which is when its sagas move.
    pub(crate) live: bool,
}

/// Derived indexes over open sagas (step before `Done`).
#[derive(Clone, Debug, Default)]
pub(crate) struct SagaIndex {
    pub(crate) by_executor: BTreeMap<NodeId, BTreeSet<InvIdx>>,
    /// Open sagas that found no live executor.
    pub(crate) unassigned: BTreeSet<InvIdx>,
    /// `(deadline_ms, saga)` for sagas in a compensable step; entries of sagas that moved on
    /// are skipped when popped, not removed eagerly.
    pub(crate) deadlines: BinaryHeap<Reverse<(u64, InvIdx)>>,
}

impl Keyed for Deal {
    type Key = str;
    fn key(&self) -> &str {
        &self.deal_id
    }
}

impl Keyed for Investment {
    type Key = RequestId;
    fn key(&self) -> &RequestId {
        &self.request_id
    }
}

/// What one entry's commands share.
struct Ctx {
    log_index: u64,
    leader_id: NodeId,
}

/// Where and when a saga change is applied, and which leader's entry made it.
#[derive(Clone, Copy)]
pub(crate) struct Stamp {
    pub(crate) log_index: u64,
    pub(crate) at_ms: u64,
    pub(crate) leader_id: NodeId,
}

impl AdmissionState {
    /// An empty state with default [`Params`].
    pub fn new() -> AdmissionState {
        AdmissionState::default()
    }

    /// Applies one committed entry at `log_index`, returning one result per command in order.
    ///
    /// First the clock moves to the entry's timestamp (never backwards) and whatever that time
    /// makes due happens: lapsed executor leases move their sagas, passed saga deadlines start
    /// compensation. Then the commands apply in order. Saga changes are appended to `events`.
    ///
    /// Entries must come in increasing `log_index`, each once; otherwise nothing changes and an
    /// [`EntryError`] says why. Never panics, whatever the entry holds.
    pub fn apply_entry(
        &mut self,
        log_index: u64,
        entry: &Entry,
        events: &mut Vec<SagaEvent>,
    ) -> Result<Vec<Applied>, EntryError> {
        if log_index <= self.last_log_index {
            return Err(EntryError::OutOfOrder {
                last: self.last_log_index,
                got: log_index,
            });
        }
        if entry.commands.len() > ENTRY_COMMANDS_MAX {
            return Err(EntryError::TooManyCommands(entry.commands.len()));
        }
        self.last_log_index = log_index;
        self.now_ms = advance_log_time(self.now_ms, entry.header.time_ms, &self.params);
        let ctx = Ctx {
            log_index,
            leader_id: entry.header.leader_id,
        };
        self.expire_leases(ctx.leader_id, events);
        self.expire_deadlines(ctx.leader_id, events);
        // What log time makes due happens before the entry's commands: at `(index, 0)`.
        self.close_scheduled_deals((log_index, 0), events);
        self.expire_waitlisted((log_index, 0), events);
        let mut results = Vec::with_capacity(entry.commands.len());
        for (offset, command) in entry.commands.iter().enumerate() {
            // ENTRY_COMMANDS_MAX keeps offsets within u32.
            let offset = offset as u32;
            results.push(self.apply_command(&ctx, offset, command, events));
        }
        Ok(results)
    }

    fn apply_command(
        &mut self,
        ctx: &Ctx,
        offset: u32,
        command: &Command,
        events: &mut Vec<SagaEvent>,
    ) -> Applied {
        command.validate()?;
        match command {
            Command::CreateDeal(create) => self.create_deal(create),
            Command::CloseDeal { deal_id } => {
                self.close_deal(deal_id, (ctx.log_index, offset), events)
            }
            Command::Submit(submit) => self.submit(ctx, offset, submit, events),
            Command::SubmitTraced(traced) => {
                let before = events.len();
                let applied = self.submit(ctx, offset, &traced.submit, events);
                for event in &mut events[before..] {
                    event.trace = Some(traced.trace);
                }
                applied
            }
            Command::ExecutorHeartbeat {
                node_id,
                applied_index,
            } => {
                let lag = ctx.log_index.saturating_sub(*applied_index);
                if lag > self.params.executor_lag_max_entries {
                    return Ok(Outcome::HeartbeatRefused { lag });
                }
                self.heartbeat(*node_id, ctx.leader_id, events);
                Ok(Outcome::HeartbeatRecorded)
            }
            Command::ExecutorRetire { node_id } => {
                self.executor_gone(*node_id, ctx.leader_id, events);
                Ok(Outcome::ExecutorRetired)
            }
            Command::RecordStep(record) => Ok(self.record_step(ctx, offset, record, events)),
            Command::AbortSaga { request_id, reason } => {
                self.abort_saga(*request_id, reason, events)
            }
            Command::SetParams(params) => {
                self.params = *params;
                Ok(Outcome::ParamsSet)
            }
            Command::Withdraw { request_id } => {
                self.withdraw(*request_id, (ctx.log_index, offset), events)
            }
            Command::ArchiveDeal(archive) => self.archive_deal(ctx.log_index, archive),
        }
    }

    fn create_deal(&mut self, create: &CreateDeal) -> Applied {
        // An archived id stays taken: its receipts and exports must name one deal only.
        self.refuse_archived(&create.deal_id)?;
        let terms = DealTerms {
            amount: create.amount,
            max_investors: create.max_investors,
            min_ticket: create.min_ticket,
            max_ticket: create.max_ticket,
            opens_at_ms: create.opens_at_ms,
            closes_at_ms: create.closes_at_ms,
            max_waitlist: create.max_waitlist,
        };
        match self.deals.lookup(&create.deal_id) {
            Lookup::Found(idx) => match self.deals.at(idx) {
                Some(deal) if deal.terms == terms => Ok(Outcome::DealCreated { created: false }),
                _ => Err(CommandError::DealConflict {
                    deal_id: create.deal_id.clone(),
                }),
            },
            Lookup::Vacant(hash) => {
                let deal = Deal::created(&create.deal_id, terms, self.now_ms);
                let deal_idx = self.deals.insert_vacant(hash, deal);
                if let Some(closes_at_ms) = terms.closes_at_ms {
                    self.timers.closings.push(Reverse((closes_at_ms, deal_idx)));
                }
                Ok(Outcome::DealCreated { created: true })
            }
        }
    }

    fn close_deal(
        &mut self,
        deal_id: &str,
        position: (u64, u32),
        events: &mut Vec<SagaEvent>,
    ) -> Applied {
        match self.deals.position(deal_id) {
            Some(deal_idx) => {
                self.close_deal_at(deal_idx, position, events);
                Ok(Outcome::DealClosed)
            }
            None => {
                self.refuse_archived(deal_id)?;
                Err(CommandError::DealNotFound {
                    deal_id: deal_id.to_owned(),
                })
            }
        }
    }

    /// Closes a deal (by command or at its `closes_at_ms`); its waitlist ends.
    fn close_deal_at(
        &mut self,
        deal_idx: DealIdx,
        position: (u64, u32),
        events: &mut Vec<SagaEvent>,
    ) {
        let Some(deal) = self.deals.at_mut(deal_idx) else {
            return;
        };
        if deal.status == DealStatus::Open {
            deal.closed_at = Some(position);
        }
        deal.status = DealStatus::Closed;
        let waiting = std::mem::take(&mut deal.waitlist);
        for inv_idx in waiting {
            self.end_waitlisted(inv_idx, position, events);
        }
    }

    fn close_scheduled_deals(&mut self, position: (u64, u32), events: &mut Vec<SagaEvent>) {
        while let Some((_, deal_idx)) = pop_due(&mut self.timers.closings, self.now_ms) {
            let open = self
                .deals
                .at(deal_idx)
                .is_some_and(|deal| deal.status == DealStatus::Open);
            if open {
                self.close_deal_at(deal_idx, position, events);
            }
        }
    }

    fn expire_waitlisted(&mut self, position: (u64, u32), events: &mut Vec<SagaEvent>) {
        while let Some((_, inv_idx)) = pop_due(&mut self.timers.waitlist_expiries, self.now_ms) {
            let waiting = self
                .investments
                .at(inv_idx)
                .is_some_and(|inv| inv.status == Status::Waitlisted);
            if waiting {
                if let Some(deal) = self
                    .investments
                    .at(inv_idx)
                    .and_then(|inv| self.deals.at_mut(inv.deal))
                {
                    deal.waitlist.remove(&inv_idx);
                }
                self.end_waitlisted(inv_idx, position, events);
            }
        }
    }

    /// A WAITLISTED request ends as REJECTED(WAITLIST_CLOSED); the caller has taken it off
    /// its deal's waitlist.
    fn end_waitlisted(
        &mut self,
        inv_idx: InvIdx,
        position: (u64, u32),
        events: &mut Vec<SagaEvent>,
    ) {
        let Some(inv) = self.investments.at_mut(inv_idx) else {
            return;
        };
        if inv.status != Status::Waitlisted {
            return;
        }
        inv.status = Status::Rejected;
        inv.reject = Some(RejectReason::WaitlistClosed);
        self.tally.rejected[RejectReason::WaitlistClosed.index()] += 1;
        if let Some(entry) = inv.waitlist.as_deref_mut() {
            entry.ended_at = Some(position);
        }
        release_holding(&mut self.holdings, inv.user, inv_idx);
        events.push(SagaEvent {
            request_id: inv.request_id,
            status: inv.status,
            step: SagaStep::Done,
            executor: None,
            epoch: 0,
            trace: None,
        });
    }

    fn withdraw(
        &mut self,
        request_id: RequestId,
        position: (u64, u32),
        events: &mut Vec<SagaEvent>,
    ) -> Applied {
        let Some(inv_idx) = self.investments.position(&request_id) else {
            if self.unknown_deals.get(request_id).is_some() {
                return Err(CommandError::NotWaitlisted {
                    request_id,
                    status: Status::Rejected,
                });
            }
            return Err(CommandError::InvestmentNotFound { request_id });
        };
        let Some(inv) = self.investments.at(inv_idx) else {
            return Err(CommandError::InvestmentNotFound { request_id });
        };
        if inv.status != Status::Waitlisted {
            return Err(CommandError::NotWaitlisted {
                request_id,
                status: inv.status,
            });
        }
        if let Some(deal) = self.deals.at_mut(inv.deal) {
            deal.waitlist.remove(&inv_idx);
        }
        self.end_waitlisted(inv_idx, position, events);
        Ok(Outcome::Withdrawn)
    }

    /// Capacity freed in `deal_idx` at `position`: waitlisted requests that now fit are
    /// admitted, in log order; one that does not fit by amount keeps its place (rule 8).
    fn admit_waitlisted(
        &mut self,
        deal_idx: DealIdx,
        position: (u64, u32),
        leader_id: NodeId,
        events: &mut Vec<SagaEvent>,
    ) {
        let Some(deal) = self.deals.at(deal_idx) else {
            return;
        };
        if deal.status == DealStatus::Closed || deal.waitlist.is_empty() {
            return;
        }
        let waiting: Vec<InvIdx> = deal.waitlist.iter().copied().collect();
        let now_ms = self.now_ms;
        let stamp = self.stamp(leader_id);
        for inv_idx in waiting {
            let (Some(deal), Some(inv)) = (
                self.deals.at_mut(deal_idx),
                self.investments.at_mut(inv_idx),
            ) else {
                return;
            };
            if deal.counters.investor_count >= deal.terms.max_investors {
                // No seat: nobody behind fits either.
                return;
            }
            let fits = deal
                .counters
                .reserved
                .checked_add(inv.amount)
                .is_some_and(|total| total <= deal.terms.amount);
            if !fits {
                continue;
            }
            deal.waitlist.remove(&inv_idx);
            if let Err(what) = deal.counters.admit(inv.amount) {
                self.breaches.record(deal, what);
            }
            inv.status = Status::Pending;
            if let Some(entry) = inv.waitlist.as_deref_mut() {
                entry.admitted_at = Some(position);
            }
            self.tally.admitted_from_waitlist += 1;
            let deadline_ms = now_ms.saturating_add(self.params.saga_deadline_ms);
            let mut saga = Box::new(Saga::new(deadline_ms, now_ms));
            self.sagas.deadlines.push(Reverse((deadline_ms, inv_idx)));
            assign(&mut saga, inv_idx, &self.executors, &mut self.sagas, stamp);
            events.push(event_of(inv.request_id, Status::Pending, &saga));
            inv.saga = Some(saga);
        }
    }

    /// The decision rules of `DESIGN.md` §4.2, in their order.
    fn submit(
        &mut self,
        ctx: &Ctx,
        offset: u32,
        submit: &Submit,
        events: &mut Vec<SagaEvent>,
    ) -> Applied {
        let hash = match self.investments.lookup(&submit.request_id) {
            // Rule 1: a request id is decided once.
            Lookup::Found(seen) => {
                return self.replay(seen, submit);
            }
            Lookup::Vacant(hash) => hash,
        };
        if let Some(seen) = self.unknown_deals.get(submit.request_id) {
            return replay_unknown_deal(seen, submit);
        }
        let Some(deal_idx) = self.deals.position(&submit.deal_id) else {
            // An archived deal's requests are no longer known one by one: a resubmission, as
            // any new request, is refused without a decision.
            self.refuse_archived(&submit.deal_id)?;
            return Ok(self.reject_unknown_deal(ctx, offset, submit));
        };
        let inv_idx = self.investments.len() as InvIdx;
        let user_idx = match self.users.lookup(submit.user_id.as_str()) {
            Lookup::Found(idx) => idx,
            Lookup::Vacant(hash) => self
                .users
                .insert_vacant(hash, submit.user_id.as_str().into()),
        };
        let stamp = self.stamp(ctx.leader_id);
        let Some(deal) = self.deals.at_mut(deal_idx) else {
            return Err(CommandError::DealNotFound {
                deal_id: submit.deal_id.clone(),
            });
        };
        let holdings = self.holdings.get(&user_idx).map_or(&[][..], Vec::as_slice);
        let now_ms = self.now_ms;
        let verdict = decide(deal, deal_idx, holdings, submit, now_ms);
        self.tally.decided(verdict);
        let mut investment = Investment {
            request_id: submit.request_id,
            deal: deal_idx,
            user: user_idx,
            amount: submit.amount,
            log_index: ctx.log_index,
            offset,
            leader_id: ctx.leader_id,
            status: Status::Rejected,
            reject: None,
            decided_at_ms: now_ms,
            saga: None,
            waitlist: submit.waitlist.then(|| {
                Box::new(WaitlistEntry {
                    ttl_ms: submit.waitlist_ttl_ms,
                    waitlisted: verdict == Verdict::Waitlisted,
                    admitted_at: None,
                    ended_at: None,
                })
            }),
        };
        match verdict {
            Verdict::Rejected(reason) => {
                investment.reject = Some(reason);
                deal.decisions.push(inv_idx);
            }
            Verdict::Pending => {
                investment.status = Status::Pending;
                // `decide` checked that the seat and the amount fit.
                if let Err(what) = deal.counters.admit(submit.amount) {
                    self.breaches.record(deal, what);
                }
                deal.decisions.push(inv_idx);
                self.holdings
                    .entry(user_idx)
                    .or_default()
                    .push((deal_idx, inv_idx));
                let deadline_ms = now_ms.saturating_add(self.params.saga_deadline_ms);
                let mut saga = Box::new(Saga::new(deadline_ms, now_ms));
                self.sagas.deadlines.push(Reverse((deadline_ms, inv_idx)));
                assign(&mut saga, inv_idx, &self.executors, &mut self.sagas, stamp);
                events.push(event_of(submit.request_id, Status::Pending, &saga));
                investment.saga = Some(saga);
            }
            Verdict::Waitlisted => {
                investment.status = Status::Waitlisted;
                let expires_at_ms = submit.waitlist_ttl_ms.map(|ttl| now_ms.saturating_add(ttl));
                deal.decisions.push(inv_idx);
                deal.waitlist.insert(inv_idx);
                self.holdings
                    .entry(user_idx)
                    .or_default()
                    .push((deal_idx, inv_idx));
                if let Some(expires_at_ms) = expires_at_ms {
                    self.timers
                        .waitlist_expiries
                        .push(Reverse((expires_at_ms, inv_idx)));
                }
            }
        }
        // Rule 9: the decision extends the deal's receipt chain.
        let record = decision_record(
            &investment,
            deal.decisions.len() as u64,
            &submit.deal_id,
            &submit.user_id,
        );
        deal.receipt_head = deal.receipt_head.next(&record.canonical_bytes());
        self.receipts.push(deal.receipt_head.hash);
        self.investments.insert_vacant(hash, investment);
        Ok(Outcome::Submitted {
            decision: Decision {
                request_id: submit.request_id,
                verdict,
                log_index: ctx.log_index,
                offset,
            },
            replayed: false,
        })
    }

    /// Rule 2 for a deal that does not exist: the rejection is kept apart (bounded), and
    /// nothing else changes: no deal entry, no user.
    fn reject_unknown_deal(&mut self, ctx: &Ctx, offset: u32, submit: &Submit) -> Outcome {
        self.tally
            .decided(Verdict::Rejected(RejectReason::DealNotFound));
        self.unknown_deals.record(UnknownDealRejection {
            request_id: submit.request_id,
            deal_id: submit.deal_id.as_str().into(),
            user_id: submit.user_id.as_str().into(),
            amount: submit.amount,
            waitlist: submit.waitlist,
            waitlist_ttl_ms: submit.waitlist_ttl_ms,
            log_index: ctx.log_index,
            offset,
            decided_at_ms: self.now_ms,
        });
        Outcome::Submitted {
            decision: Decision {
                request_id: submit.request_id,
                verdict: Verdict::Rejected(RejectReason::DealNotFound),
                log_index: ctx.log_index,
                offset,
            },
            replayed: false,
        }
    }

    /// Rule 1 for a request id decided before: the recorded decision when the payload is the
    /// same, `RequestConflict` when it is not.
    fn replay(&self, seen: InvIdx, submit: &Submit) -> Applied {
        let conflict = CommandError::RequestConflict {
            request_id: submit.request_id,
        };
        let Some(inv) = self.investments.at(seen) else {
            return Err(conflict);
        };
        let same_payload = inv.amount == submit.amount
            && inv.waitlist.is_some() == submit.waitlist
            && inv.waitlist.as_deref().and_then(|w| w.ttl_ms) == submit.waitlist_ttl_ms
            && self.deals.at(inv.deal).map(|d| &*d.deal_id) == Some(&*submit.deal_id)
            && self.users.at(inv.user).map(|u| &**u) == Some(&*submit.user_id);
        if !same_payload {
            return Err(conflict);
        }
        Ok(Outcome::Submitted {
            decision: decision_of(inv),
            replayed: true,
        })
    }

    /// What rule 1 answers for a request id already decided, without changing anything; `None`
    /// for an id not decided yet. A decision never changes once made, so the node may answer a
    /// resubmission from any replica that has it, without proposing it again.
    pub fn resubmission(&self, submit: &Submit) -> Option<Applied> {
        match self.investments.position(&submit.request_id) {
            Some(seen) => Some(self.replay(seen, submit)),
            None => self
                .unknown_deals
                .get(submit.request_id)
                .map(|seen| replay_unknown_deal(seen, submit)),
        }
    }

    /// The stamp of a saga change made now, by the entry being applied.
    fn stamp(&self, leader_id: NodeId) -> Stamp {
        Stamp {
            log_index: self.last_log_index,
            at_ms: self.now_ms,
            leader_id,
        }
    }

    fn heartbeat(&mut self, node_id: NodeId, leader_id: NodeId, events: &mut Vec<SagaEvent>) {
        let executor = self.executors.entry(node_id).or_insert(Executor {
            last_heartbeat_ms: self.now_ms,
            live: true,
        });
        executor.last_heartbeat_ms = self.now_ms;
        executor.live = true;
        // Sagas that found nobody go to the executors live now.
        let orphans = std::mem::take(&mut self.sagas.unassigned);
        for inv_idx in orphans {
            self.reassign(inv_idx, leader_id, events);
        }
    }

    /// The executor is gone (lease lapsed or retired): its open sagas move, with a new epoch.
    fn executor_gone(&mut self, node_id: NodeId, leader_id: NodeId, events: &mut Vec<SagaEvent>) {
        if let Some(executor) = self.executors.get_mut(&node_id) {
            executor.live = false;
        }
        let orphans = self.sagas.by_executor.remove(&node_id).unwrap_or_default();
        for inv_idx in orphans {
            self.reassign(inv_idx, leader_id, events);
        }
    }

    fn reassign(&mut self, inv_idx: InvIdx, leader_id: NodeId, events: &mut Vec<SagaEvent>) {
        let stamp = self.stamp(leader_id);
        let Some(inv) = self.investments.at_mut(inv_idx) else {
            return;
        };
        let Some(saga) = inv.saga.as_deref_mut() else {
            return;
        };
        unindex(saga, inv_idx, &mut self.sagas);
        assign(saga, inv_idx, &self.executors, &mut self.sagas, stamp);
        saga.updated_at_ms = self.now_ms;
        events.push(event_of(inv.request_id, inv.status, saga));
    }

    fn expire_leases(&mut self, leader_id: NodeId, events: &mut Vec<SagaEvent>) {
        let now_ms = self.now_ms;
        let lease_ms = self.params.executor_lease_ms;
        let lapsed: Vec<NodeId> = self
            .executors
            .iter()
            .filter(|(_, e)| e.live && now_ms.saturating_sub(e.last_heartbeat_ms) > lease_ms)
            .map(|(&id, _)| id)
            .collect();
        for node_id in lapsed {
            self.executor_gone(node_id, leader_id, events);
        }
    }

    fn expire_deadlines(&mut self, leader_id: NodeId, events: &mut Vec<SagaEvent>) {
        let now_ms = self.now_ms;
        let stamp = self.stamp(leader_id);
        while let Some((deadline_ms, inv_idx)) = pop_due(&mut self.sagas.deadlines, now_ms) {
            let Some(inv) = self.investments.at_mut(inv_idx) else {
                continue;
            };
            let Some(saga) = inv.saga.as_deref_mut() else {
                continue;
            };
            // Skip index entries of sagas that moved on or whose deadline changed.
            if saga.step.is_compensable() && saga.deadline_ms == deadline_ms {
                start_compensation(
                    saga,
                    CancelCause::DeadlineExceeded,
                    None,
                    now_ms,
                    &mut self.tally,
                );
                saga.mark(
                    stamp.log_index,
                    now_ms,
                    SagaChange::Compensating {
                        cause: CancelCause::DeadlineExceeded,
                    },
                );
                // The owner let the deadline pass: whatever holds it up (a dead replica that
                // still renews its lease, a stuck worker) may hold up the void too, and with it
                // the seat. Another live executor takes the compensation, under a new epoch.
                let owner = saga.assignee;
                unindex(saga, inv_idx, &mut self.sagas);
                assign_avoiding(
                    saga,
                    inv_idx,
                    &self.executors,
                    &mut self.sagas,
                    stamp,
                    owner,
                );
                events.push(event_of(inv.request_id, inv.status, saga));
            }
        }
    }

    fn record_step(
        &mut self,
        ctx: &Ctx,
        offset: u32,
        record: &RecordStep,
        events: &mut Vec<SagaEvent>,
    ) -> Outcome {
        let now_ms = self.now_ms;
        let position = (ctx.log_index, offset);
        let Some(inv_idx) = self.investments.position(&record.request_id) else {
            if self.unknown_deals.get(record.request_id).is_some() {
                return Outcome::StepIgnored(IgnoreReason::NoSaga);
            }
            return Outcome::StepIgnored(IgnoreReason::UnknownInvestment);
        };
        let Some(inv) = self.investments.at_mut(inv_idx) else {
            return Outcome::StepIgnored(IgnoreReason::UnknownInvestment);
        };
        let Some(saga) = inv.saga.as_deref() else {
            return Outcome::StepIgnored(IgnoreReason::NoSaga);
        };
        if saga.epoch != record.epoch || saga.assignee != Some(record.executor) {
            return Outcome::StepIgnored(IgnoreReason::StaleEpoch);
        }
        if saga.step != record.result.step() {
            return Outcome::StepIgnored(IgnoreReason::WrongStep);
        }
        // Taken out for the transition so the investment and its saga can change side by side.
        let Some(mut saga) = inv.saga.take() else {
            return Outcome::StepIgnored(IgnoreReason::NoSaga);
        };
        // The deal whose seat and amount this step gave back, if any.
        let mut freed = None;
        let retries = saga.attempts;
        match &record.result {
            StepResult::PaymentSucceeded { payment_id } => {
                saga.payment_id = Some(payment_id.as_str().into());
                saga.enter(SagaStep::Documents, now_ms);
            }
            StepResult::PaymentDeclined { reason } => {
                saga.cancel_cause = Some(CancelCause::PaymentDeclined);
                self.tally.cancellations[CancelCause::PaymentDeclined.index()] += 1;
                if cancel(
                    inv_idx,
                    inv,
                    &mut self.deals,
                    &mut self.holdings,
                    &mut self.breaches,
                ) {
                    saga.cancelled_at = Some(position);
                    freed = Some(inv.deal);
                }
                saga.enter(SagaStep::Notify, now_ms);
                saga.last_error = Some(reason.as_str().into());
            }
            StepResult::DocumentsGenerated { document_id } => {
                saga.document_id = Some(document_id.as_str().into());
                confirm(inv, &mut self.deals, &mut self.breaches);
                saga.enter(SagaStep::Notify, now_ms);
            }
            StepResult::DocumentsFailed { error } => {
                start_compensation(
                    &mut saga,
                    CancelCause::DocumentsFailed,
                    Some(error),
                    now_ms,
                    &mut self.tally,
                );
            }
            StepResult::PaymentVoided { refunded } => {
                saga.refunded = *refunded;
                if cancel(
                    inv_idx,
                    inv,
                    &mut self.deals,
                    &mut self.holdings,
                    &mut self.breaches,
                ) {
                    saga.cancelled_at = Some(position);
                    freed = Some(inv.deal);
                }
                // Keep what caused the compensation visible after the step change.
                let cause_detail = saga.last_error.take();
                saga.enter(SagaStep::Notify, now_ms);
                saga.last_error = cause_detail;
            }
            StepResult::NotifySent { message_id } => {
                saga.message_id = Some(message_id.as_str().into());
                unindex(&saga, inv_idx, &mut self.sagas);
                // The last error (e.g. why documents failed) stays visible once the saga is done.
                let last_error = saga.last_error.take();
                saga.enter(SagaStep::Done, now_ms);
                saga.last_error = last_error;
            }
            StepResult::NotifyFailed { error } => {
                saga.notify_failed = true;
                unindex(&saga, inv_idx, &mut self.sagas);
                saga.enter(SagaStep::Done, now_ms);
                saga.last_error = Some(error.as_str().into());
            }
            StepResult::Retrying {
                attempts, error, ..
            } => {
                saga.attempts = *attempts;
                saga.last_error = Some(error.as_str().into());
                saga.updated_at_ms = now_ms;
            }
        }
        if let Some(result) = step_end(&record.result) {
            saga.mark(
                ctx.log_index,
                now_ms,
                SagaChange::StepEnded { result, retries },
            );
        }
        events.push(event_of(record.request_id, inv.status, &saga));
        let outcome = Outcome::StepRecorded {
            status: inv.status,
            step: saga.step,
        };
        inv.saga = Some(saga);
        if let Some(deal_idx) = freed {
            self.admit_waitlisted(deal_idx, position, ctx.leader_id, events);
        }
        outcome
    }

    fn abort_saga(
        &mut self,
        request_id: RequestId,
        reason: &str,
        events: &mut Vec<SagaEvent>,
    ) -> Applied {
        let Some(inv) = self.investments.get_mut(&request_id) else {
            if self.unknown_deals.get(request_id).is_some() {
                return Err(CommandError::NotCompensable {
                    request_id,
                    step: SagaStep::Done,
                });
            }
            return Err(CommandError::InvestmentNotFound { request_id });
        };
        let Some(saga) = inv.saga.as_deref_mut() else {
            return Err(CommandError::NotCompensable {
                request_id,
                step: SagaStep::Done,
            });
        };
        if !saga.step.is_compensable() {
            return Err(CommandError::NotCompensable {
                request_id,
                step: saga.step,
            });
        }
        start_compensation(
            saga,
            CancelCause::Aborted,
            Some(reason),
            self.now_ms,
            &mut self.tally,
        );
        saga.mark(
            self.last_log_index,
            self.now_ms,
            SagaChange::Compensating {
                cause: CancelCause::Aborted,
            },
        );
        events.push(event_of(request_id, inv.status, saga));
        Ok(Outcome::SagaAborted)
    }
}

/// Takes the earliest timer of `heap` if it is due at `now_ms`: `(due_ms, what)`.
fn pop_due<T: Ord + Copy>(
    heap: &mut BinaryHeap<Reverse<(u64, T)>>,
    now_ms: u64,
) -> Option<(u64, T)> {
    let &Reverse((due_ms, item)) = heap.peek()?;
    if due_ms > now_ms {
        return None;
    }
    heap.pop();
    Some((due_ms, item))
}

/// Rules 2–7 of `DESIGN.md` §4.2 for a request whose id is new.
fn decide(
    deal: &Deal,
    deal_idx: DealIdx,
    holdings: &[(DealIdx, InvIdx)],
    submit: &Submit,
    now_ms: u64,
) -> Verdict {
    let terms = &deal.terms;
    let amount = submit.amount;
    if terms.opens_at_ms.is_some_and(|opens| now_ms < opens) {
        return Verdict::Rejected(RejectReason::DealNotOpen);
    }
    if deal.status == DealStatus::Closed {
        return Verdict::Rejected(RejectReason::DealClosed);
    }
    if terms.min_ticket.is_some_and(|min| amount < min)
        || terms.max_ticket.is_some_and(|max| amount > max)
    {
        return Verdict::Rejected(RejectReason::TicketOutOfRange);
    }
    if holdings.iter().any(|&(deal, _)| deal == deal_idx) {
        return Verdict::Rejected(RejectReason::DuplicateInvestor);
    }
    // Rule 8: instead of a capacity rejection, the waitlist, while it has room.
    let waitlist_or = |reason| {
        if submit.waitlist && deal.waitlist.len() < terms.max_waitlist as usize {
            Verdict::Waitlisted
        } else {
            Verdict::Rejected(reason)
        }
    };
    if deal.counters.investor_count >= terms.max_investors
        && !cfg!(feature = "sabotage-skip-seat-check")
    {
        return waitlist_or(RejectReason::InvestorLimitReached);
    }
    match deal.counters.reserved.checked_add(amount) {
        Some(total) if total <= terms.amount => Verdict::Pending,
        _ => waitlist_or(RejectReason::AmountExceedsRemaining),
    }
}

/// What a decision's receipt covers; `deal_seq` is its 1-based place among the deal's decisions.
pub(crate) fn decision_record<'a>(
    inv: &Investment,
    deal_seq: u64,
    deal_id: &'a str,
    user_id: &'a str,
) -> DecisionRecord<'a> {
    DecisionRecord {
        deal_seq,
        request_id: inv.request_id,
        deal_id,
        user_id,
        amount: inv.amount,
        waitlist_ttl_ms: inv.waitlist.as_deref().map(|w| w.ttl_ms.unwrap_or(0)),
        log_index: inv.log_index,
        offset: inv.offset,
        decided_at_ms: inv.decided_at_ms,
        verdict: decision_of(inv).verdict,
    }
}

/// Rule 1 for a request id rejected before for naming an unknown deal.
fn replay_unknown_deal(seen: &UnknownDealRejection, submit: &Submit) -> Applied {
    let same_payload = seen.amount == submit.amount
        && seen.waitlist == submit.waitlist
        && seen.waitlist_ttl_ms == submit.waitlist_ttl_ms
        && *seen.deal_id == *submit.deal_id
        && *seen.user_id == *submit.user_id;
    if !same_payload {
        return Err(CommandError::RequestConflict {
            request_id: submit.request_id,
        });
    }
    Ok(Outcome::Submitted {
        decision: unknown_deal_decision(seen),
        replayed: true,
    })
}

pub(crate) fn unknown_deal_decision(seen: &UnknownDealRejection) -> Decision {
    Decision {
        request_id: seen.request_id,
        verdict: Verdict::Rejected(RejectReason::DealNotFound),
        log_index: seen.log_index,
        offset: seen.offset,
    }
}

pub(crate) fn decision_of(inv: &Investment) -> Decision {
    let waitlisted = inv.waitlist.as_deref().is_some_and(|w| w.waitlisted);
    Decision {
        request_id: inv.request_id,
        verdict: match inv.reject {
            _ if waitlisted => Verdict::Waitlisted,
            Some(reason) => Verdict::Rejected(reason),
            None => Verdict::Pending,
        },
        log_index: inv.log_index,
        offset: inv.offset,
    }
}

fn event_of(request_id: RequestId, status: Status, saga: &Saga) -> SagaEvent {
    SagaEvent {
        request_id,
        status,
        step: saga.step,
        executor: saga.assignee,
        epoch: saga.epoch,
        trace: None,
    }
}

/// Gives the saga to the least loaded live executor, preferring nodes other than the leader
/// (which is busy ordering the log), lowest node id on ties; unassigned if nobody is live.
pub(crate) fn assign(
    saga: &mut Saga,
    inv_idx: InvIdx,
    executors: &BTreeMap<NodeId, Executor>,
    index: &mut SagaIndex,
    at: Stamp,
) {
    assign_avoiding(saga, inv_idx, executors, index, at, None);
}

/// [`assign`], preferring any other live executor to `avoid` (which still gets the saga when
/// it is the only one live).
fn assign_avoiding(
    saga: &mut Saga,
    inv_idx: InvIdx,
    executors: &BTreeMap<NodeId, Executor>,
    index: &mut SagaIndex,
    at: Stamp,
    avoid: Option<NodeId>,
) {
    let leader_id = at.leader_id;
    let chosen = executors
        .iter()
        .filter(|(_, executor)| executor.live)
        .map(|(&node_id, _)| {
            let load = index.by_executor.get(&node_id).map_or(0, BTreeSet::len);
            (Some(node_id) == avoid, node_id == leader_id, load, node_id)
        })
        .min()
        .map(|(_, _, _, node_id)| node_id);
    saga.assignee = chosen;
    saga.epoch += 1;
    saga.mark(
        at.log_index,
        at.at_ms,
        SagaChange::Assigned { executor: chosen },
    );
    match chosen {
        Some(node_id) => {
            index
                .by_executor
                .entry(node_id)
                .or_default()
                .insert(inv_idx);
        }
        None => {
            index.unassigned.insert(inv_idx);
        }
    }
}

/// Removes an open saga from the executor indexes (when it finishes or moves).
fn unindex(saga: &Saga, inv_idx: InvIdx, index: &mut SagaIndex) {
    match saga.assignee {
        Some(node_id) => {
            if let Some(set) = index.by_executor.get_mut(&node_id) {
                set.remove(&inv_idx);
                if set.is_empty() {
                    index.by_executor.remove(&node_id);
                }
            }
        }
        None => {
            index.unassigned.remove(&inv_idx);
        }
    }
}

/// Turns a saga toward compensation: void the payment by its key, then CANCELLED.
fn start_compensation(
    saga: &mut Saga,
    cause: CancelCause,
    detail: Option<&str>,
    now_ms: u64,
    tally: &mut Tally,
) {
    tally.cancellations[cause.index()] += 1;
    saga.cancel_cause = Some(cause);
    saga.enter(SagaStep::Void, now_ms);
    saga.last_error = detail.map(Into::into);
}

/// How `result` ends its step, for the saga's history; `None` for progress within a step.
fn step_end(result: &StepResult) -> Option<StepEnd> {
    Some(match result {
        StepResult::PaymentSucceeded { .. } => StepEnd::PaymentSucceeded,
        StepResult::PaymentDeclined { .. } => StepEnd::PaymentDeclined,
        StepResult::DocumentsGenerated { .. } => StepEnd::DocumentsGenerated,
        StepResult::DocumentsFailed { .. } => StepEnd::DocumentsFailed,
        StepResult::PaymentVoided { refunded } => StepEnd::PaymentVoided {
            refunded: *refunded,
        },
        StepResult::NotifySent { .. } => StepEnd::NotifySent,
        StepResult::NotifyFailed { .. } => StepEnd::NotifyFailed,
        StepResult::Retrying { .. } => return None,
    })
}

/// CONFIRMED: the seat is held for good and counts as confirmed.
fn confirm(inv: &mut Investment, deals: &mut KeyedVec<Deal>, breaches: &mut Breaches) {
    if inv.status != Status::Pending {
        return;
    }
    inv.status = Status::Confirmed;
    if let Some(deal) = deals.at_mut(inv.deal) {
        if let Err(what) = deal.counters.confirm(inv.amount) {
            breaches.record(deal, what);
        }
    }
}

/// CANCELLED: the seat and the amount go back to the deal in the same step. False when the
/// investment was not PENDING (nothing to release).
fn cancel(
    inv_idx: InvIdx,
    inv: &mut Investment,
    deals: &mut KeyedVec<Deal>,
    holdings: &mut HashMap<UserIdx, Vec<(DealIdx, InvIdx)>, FixedHasher>,
    breaches: &mut Breaches,
) -> bool {
    if inv.status != Status::Pending {
        return false;
    }
    inv.status = Status::Cancelled;
    if let Some(deal) = deals.at_mut(inv.deal) {
        if let Err(what) = deal.counters.release(inv.amount) {
            breaches.record(deal, what);
        }
    }
    release_holding(holdings, inv.user, inv_idx);
    true
}

/// Takes a request off its user's holdings (it no longer holds a place in its deal).
fn release_holding(
    holdings: &mut HashMap<UserIdx, Vec<(DealIdx, InvIdx)>, FixedHasher>,
    user: UserIdx,
    inv_idx: InvIdx,
) {
    if let Some(held) = holdings.get_mut(&user) {
        // `retain` keeps the list in decision order, as a rebuild makes it.
        held.retain(|&(_, idx)| idx != inv_idx);
        if held.is_empty() {
            holdings.remove(&user);
        }
    }
}

/// Log time after an entry stamped `stamp_ms` (`DESIGN.md` §4.3): never backwards, and at most
/// `log_time_step_max_ms` forwards, so that a leader whose clock jumps ahead cannot expire every
/// lease and deadline with one entry. The first stamp ever seen sets log time as it is.
fn advance_log_time(now_ms: u64, stamp_ms: u64, params: &Params) -> u64 {
    if now_ms == 0 {
        return stamp_ms;
    }
    now_ms.max(stamp_ms.min(now_ms.saturating_add(params.log_time_step_max_ms)))
}

impl Deal {
    /// A deal created now, open.
    fn created(deal_id: &str, terms: DealTerms, now_ms: u64) -> Deal {
        Deal {
            deal_id: deal_id.into(),
            terms,
            status: DealStatus::Open,
            created_at_ms: now_ms,
            closed_at: None,
            counters: DealCounters::default(),
            decisions: Vec::new(),
            waitlist: BTreeSet::new(),
            receipt_head: Receipt::GENESIS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CreateDeal, EntryHeader, RecordStep, StepResult, Submit};
    use crate::ids::RequestId;

    /// Executor 2 reports that the payment of `request_id` was declined.
    fn decline_by_2(request_id: RequestId, epoch: u64) -> Command {
        Command::RecordStep(RecordStep {
            request_id,
            executor: 2,
            epoch,
            result: StepResult::PaymentDeclined {
                reason: "declined".into(),
            },
        })
    }

    /// Ana asks for 5.00 of deal `alpha`.
    fn ana_submits(request_id: RequestId) -> Command {
        Command::Submit(Submit {
            request_id,
            deal_id: "alpha".into(),
            user_id: "ana".into(),
            amount: Money::from_cents(500),
            waitlist: false,
            waitlist_ttl_ms: None,
        })
    }

    /// A state at index 1: executor 2 live, deal `alpha` (`cents` in all, `seats` investors),
    /// and Ana's request (the returned id) admitted.
    fn ana_admitted(cents: u64, seats: u32) -> (AdmissionState, RequestId) {
        let mut state = AdmissionState::new();
        let request_id = RequestId::from_u128(1).unwrap();
        state
            .apply_entry(
                1,
                &entry(vec![
                    heartbeat_of_2(),
                    deal_alpha(cents, seats, None),
                    ana_submits(request_id),
                ]),
                &mut Vec::new(),
            )
            .unwrap();
        (state, request_id)
    }

    /// Executor 2 is live.
    fn heartbeat_of_2() -> Command {
        Command::ExecutorHeartbeat {
            node_id: 2,
            applied_index: 0,
        }
    }

    /// Deal `alpha`: `cents` in all, `seats` investors, a waitlist of one.
    fn deal_alpha(cents: u64, seats: u32, max_ticket: Option<Money>) -> Command {
        Command::CreateDeal(CreateDeal {
            deal_id: "alpha".into(),
            amount: Money::from_cents(cents),
            max_investors: seats,
            min_ticket: None,
            max_ticket,
            opens_at_ms: None,
            closes_at_ms: None,
            max_waitlist: 1,
        })
    }

    fn entry(commands: Vec<Command>) -> Entry {
        Entry {
            header: EntryHeader {
                leader_id: 1,
                time_ms: 1_790_000_000_000,
            },
            commands,
        }
    }

    /// The tally counts each decision once (a resubmission is not a new one), admissions from
    /// the waitlist, waits that ended, and cancellations by cause.
    #[test]
    fn the_tally_counts_decisions_waitlist_admissions_and_cancellations() {
        let mut state = AdmissionState::new();
        let mut events = Vec::new();
        let id = |n: u128| RequestId::from_u128(n).unwrap();
        let submit = |n: u128, deal: &str, user: &str, cents: u64| {
            Command::Submit(Submit {
                request_id: id(n),
                deal_id: deal.into(),
                user_id: user.into(),
                amount: Money::from_cents(cents),
                waitlist: true,
                waitlist_ttl_ms: None,
            })
        };
        state
            .apply_entry(
                1,
                &entry(vec![
                    heartbeat_of_2(),
                    deal_alpha(1_000, 1, Some(Money::from_cents(1_000))),
                    submit(1, "alpha", "ana", 500),
                    submit(1, "alpha", "ana", 500),
                    submit(2, "alpha", "bob", 500),
                    submit(3, "alpha", "cid", 5_000),
                    submit(4, "nowhere", "dan", 500),
                ]),
                &mut events,
            )
            .unwrap();
        let tally = state.tally().clone();
        assert_eq!((tally.admitted, tally.waitlisted), (1, 1));
        assert_eq!(
            tally.rejected[RejectReason::TicketOutOfRange.index()],
            1,
            "{tally:?}"
        );
        assert_eq!(tally.rejected[RejectReason::DealNotFound.index()], 1);
        assert_eq!(tally.rejected.iter().sum::<u64>(), 2);

        let saga = state.investment(id(1)).unwrap().saga.unwrap();
        state
            .apply_entry(
                2,
                &entry(vec![decline_by_2(id(1), saga.epoch)]),
                &mut events,
            )
            .unwrap();
        let tally = state.tally();
        assert_eq!(tally.cancellations[CancelCause::PaymentDeclined.index()], 1);
        assert_eq!(tally.cancellations.iter().sum::<u64>(), 1);
        assert_eq!(tally.admitted_from_waitlist, 1, "bob takes the freed seat");
        assert_eq!(state.investment(id(2)).unwrap().status, Status::Pending);

        let census = state.saga_census(0);
        // Bob's saga pays; Ana's tells her of the decline.
        let open: Vec<_> = census.open.iter().map(|(k, n)| (*k, *n)).collect();
        assert_eq!(
            open,
            [
                ((SagaStep::Payment, Some(2)), 1),
                ((SagaStep::Notify, Some(2)), 1)
            ]
        );
        assert_eq!(census.older, 2);
        assert_eq!(state.saga_census(60_000).older, 0);
        let loads = state.open_deal_loads();
        assert_eq!((loads[0].investors, loads[0].waitlisted), (1, 0));
    }

    /// A traced submit is decided as the plain one (a resubmission without the trace replays
    /// it), and only the events of its own entry carry the trace.
    #[test]
    fn a_traced_submit_is_decided_as_a_submit_and_its_events_carry_the_trace() {
        let mut state = AdmissionState::new();
        let mut events = Vec::new();
        let trace =
            crate::TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                .unwrap();
        let submit = Submit {
            request_id: RequestId::from_u128(5).unwrap(),
            deal_id: "alpha".into(),
            user_id: "ana".into(),
            amount: Money::from_cents(500),
            waitlist: false,
            waitlist_ttl_ms: None,
        };
        let results = state
            .apply_entry(
                1,
                &entry(vec![
                    heartbeat_of_2(),
                    deal_alpha(100_000, 2, None),
                    Command::SubmitTraced(crate::TracedSubmit {
                        submit: submit.clone(),
                        trace,
                    }),
                ]),
                &mut events,
            )
            .unwrap();
        let Ok(Outcome::Submitted { decision, replayed }) = &results[2] else {
            panic!("{:?}", results[2]);
        };
        assert_eq!((decision.verdict, *replayed), (Verdict::Pending, false));
        let traced: Vec<_> = events.iter().filter(|e| e.trace == Some(trace)).collect();
        assert_eq!(traced.len(), 1, "{events:?}");
        assert_eq!(traced[0].request_id, submit.request_id);

        events.clear();
        let again = state
            .apply_entry(2, &entry(vec![Command::Submit(submit)]), &mut events)
            .unwrap();
        let Ok(Outcome::Submitted {
            decision: again,
            replayed,
        }) = &again[0]
        else {
            panic!("{again:?}");
        };
        assert_eq!((again, *replayed), (decision, true));
    }

    /// A seat released that the counters never held: `apply` neither panics nor wraps; it
    /// clamps at zero, reports the breach, and the invariant check names the inconsistency.
    #[test]
    fn a_counter_that_would_underflow_is_reported_not_wrapped() {
        let (mut state, request_id) = ana_admitted(100_000, 2);
        let mut events = Vec::new();
        assert_eq!(state.breaches(), &Breaches::default());
        let saga = state.investment(request_id).unwrap().saga.unwrap();
        assert_eq!(saga.assignee, Some(2));

        // Break the state: the deal's counters forget the admitted seat.
        state.deals.at_mut(0).unwrap().counters = DealCounters::default();
        state
            .apply_entry(
                2,
                &entry(vec![decline_by_2(request_id, saga.epoch)]),
                &mut events,
            )
            .unwrap();
        let counters = state.deals.at(0).unwrap().counters;
        assert_eq!(
            (counters.investor_count, counters.reserved),
            (0, Money::ZERO)
        );
        assert_eq!(state.breaches().count, 1, "{:?}", state.breaches());
        let last = state.breaches().last.clone().unwrap();
        assert!(
            last.contains("deal alpha") && last.contains("below zero"),
            "{last}"
        );
    }

    /// A snapshot whose saga history contradicts the saga is refused on load.
    #[test]
    fn a_history_that_contradicts_its_saga_is_refused() {
        let (state, request_id) = ana_admitted(1_000, 1);
        assert_eq!(state.check_invariants(), Ok(()));
        let tampered = |change: fn(&mut Saga)| {
            let mut broken = state.clone();
            let inv = broken.investments.get_mut(&request_id).unwrap();
            change(inv.saga.as_deref_mut().unwrap());
            AdmissionState::decode_snapshot(&broken.encode_snapshot())
                .expect_err("a contradicting history")
                .to_string()
        };
        let reassigned_elsewhere = tampered(|saga| saga.assignee = None);
        assert!(
            reassigned_elsewhere.contains("saga history"),
            "{reassigned_elsewhere}"
        );
        let from_the_future = tampered(|saga| saga.history[0].log_index = 9);
        assert!(
            from_the_future.contains("outside the log"),
            "{from_the_future}"
        );
        // Found by the fuzz target `decode_snapshot`: a mark ahead of log time loaded, and the
        // next mark (the heartbeat's reassignment) came before it.
        let ahead_of_log_time = tampered(|saga| saga.history[0].at_ms += 1);
        assert!(
            ahead_of_log_time.contains("outside the log"),
            "{ahead_of_log_time}"
        );
        let too_long = tampered(|saga| {
            let first = saga.history[0];
            saga.history = vec![first; crate::saga::SAGA_HISTORY_MAX + 1];
        });
        assert!(too_long.contains("at most"), "{too_long}");
    }
}
