//! Read-only views of the state for the API, the executors and operators. Views are owned
//! copies: a reader never holds the state while it formats a reply.

use std::collections::{BTreeMap, BTreeSet};

use crate::command::Params;
use crate::error::QueryError;
use crate::ids::{NodeId, RequestId};
use crate::money::Money;
use crate::outcome::{Decision, RejectReason, Status};
use crate::saga::{Saga, SagaStep};
use crate::state::{
    decision_of, unknown_deal_decision, AdmissionState, Deal, DealStatus, DealTerms, InvIdx,
    Investment,
};
use crate::unknown_deals::UnknownDealRejection;

/// Default page size of list queries.
pub const PAGE_SIZE_DEFAULT: usize = 100;
/// Largest page size of list queries.
pub const PAGE_SIZE_MAX: usize = 1_000;

/// A deal with its live totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DealView {
    /// Its id.
    pub deal_id: String,
    /// Its terms.
    pub terms: DealTerms,
    /// Open or closed.
    pub status: DealStatus,
    /// PENDING + CONFIRMED investments.
    pub investor_count: u32,
    /// Sum of PENDING + CONFIRMED amounts.
    pub reserved_amount: Money,
    /// CONFIRMED investments.
    pub confirmed_count: u32,
    /// Sum of CONFIRMED amounts.
    pub confirmed_amount: Money,
    /// Log time of creation.
    pub created_at_ms: u64,
    /// WAITLISTED requests now.
    pub waitlist_length: u32,
    /// The head of the deal's receipt chain: its number of decisions and the last hash.
    pub receipt_head: crate::Receipt,
    /// Where it closed, once closed: the command's position, or `(index, 0)` for a scheduled
    /// closing (before that entry's commands).
    pub closed_at: Option<(u64, u32)>,
}

/// An investment as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvestmentView {
    /// The request id.
    pub request_id: RequestId,
    /// The deal asked for.
    pub deal_id: String,
    /// The investor.
    pub user_id: String,
    /// The ticket.
    pub amount: Money,
    /// Current status.
    pub status: Status,
    /// For REJECTED: why.
    pub reject_reason: Option<RejectReason>,
    /// The entry that decided it.
    pub log_index: u64,
    /// Its position in that entry.
    pub offset: u32,
    /// The leader whose entry decided it; `None` when not known (a request naming an unknown
    /// deal, or one decided before snapshot format 6).
    pub decided_by: Option<NodeId>,
    /// Log time of the decision.
    pub decided_at_ms: u64,
    /// For admitted investments: the saga's progress and history.
    pub saga: Option<Saga>,
    /// The request asked for the waitlist (`Submit::waitlist`), with this `waitlist_ttl_ms`.
    pub waitlist_requested: bool,
    /// Its `waitlist_ttl_ms`, as submitted.
    pub waitlist_ttl_ms: Option<u64>,
    /// It was waitlisted when decided.
    pub waitlisted: bool,
    /// While WAITLISTED: its 1-based rank among the deal's waitlisted requests, in log order.
    pub waitlist_position: Option<u32>,
    /// Once admitted from the waitlist: the position (log index, offset) of the command whose
    /// effect admitted it.
    pub admitted_at: Option<(u64, u32)>,
    /// Once it left the waitlist without a seat (REJECTED WAITLIST_CLOSED): the position of the
    /// command that ended it, or `(index, 0)` when log time did (before that entry's commands).
    pub waitlist_ended_at: Option<(u64, u32)>,
    /// Its place in the deal's receipt chain (none for a request naming an unknown deal).
    pub receipt: Option<crate::Receipt>,
}

impl InvestmentView {
    /// The decision as first made (what `Submit` answered).
    pub fn decision(&self) -> Decision {
        Decision {
            request_id: self.request_id,
            verdict: match self.reject_reason {
                _ if self.waitlisted => crate::Verdict::Waitlisted,
                Some(reason) => crate::Verdict::Rejected(reason),
                None => crate::Verdict::Pending,
            },
            log_index: self.log_index,
            offset: self.offset,
        }
    }
}

/// A user's active and waiting requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserView {
    /// The user.
    pub user_id: String,
    /// PENDING investments, in decision order.
    pub pending: Vec<InvestmentView>,
    /// CONFIRMED investments, in decision order.
    pub confirmed: Vec<InvestmentView>,
    /// WAITLISTED requests, in decision order.
    pub waitlisted: Vec<InvestmentView>,
}

/// An executor as the state sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutorView {
    /// Its node.
    pub node_id: NodeId,
    /// Log time of its last heartbeat.
    pub last_heartbeat_ms: u64,
    /// Whether its lease holds.
    pub live: bool,
    /// Open sagas assigned to it.
    pub open_sagas: usize,
}

/// Which open sagas [`AdmissionState::open_sagas`] returns. The default keeps every one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SagaFilter {
    /// When non-zero: sagas decided at least this long ago, in log time. Decision time rather
    /// than the saga's last change, because retries and reassignments touch the latter without
    /// any progress.
    pub older_than_ms: u64,
    /// Sagas whose current step is failing: more than one attempt, or a non-empty error.
    pub failing: bool,
}

impl SagaFilter {
    /// With both criteria set, a saga matching either is kept: an operator's "stuck" view is
    /// "old or failing".
    fn keeps(&self, decided_at_ms: u64, saga: &Saga, now_ms: u64) -> bool {
        let old = now_ms.saturating_sub(decided_at_ms) >= self.older_than_ms;
        // An empty error reads as none on the wire, so it does not count here either.
        let failing =
            saga.attempts > 1 || saga.last_error.as_deref().is_some_and(|e| !e.is_empty());
        match (self.older_than_ms > 0, self.failing) {
            (false, false) => true,
            (true, false) => old,
            (false, true) => failing,
            (true, true) => old || failing,
        }
    }
}

/// Open sagas counted for monitoring ([`AdmissionState::saga_census`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SagaCensus {
    /// Open sagas by current step and executor (`None`: no live executor).
    pub open: BTreeMap<(SagaStep, Option<NodeId>), u64>,
    /// Open sagas decided at least the given time ago, in log time.
    pub older: u64,
}

/// An open deal's load, for monitoring ([`AdmissionState::open_deal_loads`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenDealLoad {
    /// The deal.
    pub deal_id: String,
    /// Investors holding a seat (PENDING or CONFIRMED).
    pub investors: u32,
    /// Requests waiting on its waitlist.
    pub waitlisted: usize,
}

/// One page of a list, with the cursor of the next page if there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `start` to get the next page; `None` at the end.
    pub next: Option<u64>,
}

impl AdmissionState {
    /// The tunables in force.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Log time: the largest leader timestamp applied so far.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The log index of the last entry applied (0 for an empty state).
    pub fn last_log_index(&self) -> u64 {
        self.last_log_index
    }

    /// Counter updates that found this state already wrong while applying ([`Breaches`](crate::Breaches)).
    pub fn breaches(&self) -> &crate::state::Breaches {
        &self.breaches
    }

    /// Open sagas by step and executor, and how many were decided at least `older_than_ms`
    /// ago in log time (what an operator calls stuck). Walks the open sagas only.
    pub fn saga_census(&self, older_than_ms: u64) -> SagaCensus {
        let mut census = SagaCensus::default();
        let assigned = self
            .sagas
            .by_executor
            .iter()
            .flat_map(|(&node_id, sagas)| sagas.iter().map(move |&idx| (Some(node_id), idx)));
        let unassigned = self.sagas.unassigned.iter().map(|&idx| (None, idx));
        for (executor, idx) in assigned.chain(unassigned) {
            let Some(inv) = self.investments.at(idx) else {
                continue;
            };
            let Some(saga) = inv.saga.as_deref() else {
                continue;
            };
            *census.open.entry((saga.step, executor)).or_default() += 1;
            if self.now_ms.saturating_sub(inv.decided_at_ms) >= older_than_ms {
                census.older += 1;
            }
        }
        census
    }

    /// Every open deal's seats taken and waitlist length, in creation order.
    pub fn open_deal_loads(&self) -> Vec<OpenDealLoad> {
        self.deals
            .items()
            .iter()
            .filter(|deal| deal.status == DealStatus::Open)
            .map(|deal| OpenDealLoad {
                deal_id: deal.deal_id.to_string(),
                investors: deal.counters.investor_count,
                waitlisted: deal.waitlist.len(),
            })
            .collect()
    }

    /// What applying decided since this state was created or loaded.
    pub fn tally(&self) -> &crate::state::Tally {
        &self.tally
    }

    /// How many requests for existing deals were decided (admitted or rejected).
    pub fn investment_count(&self) -> usize {
        self.investments.len()
    }

    /// Rejections of requests naming a deal that does not exist: how many are kept (at most
    /// [`crate::UNKNOWN_DEAL_REJECTIONS_KEPT`]) and how many were forgotten since the ledger
    /// began.
    pub fn unknown_deal_rejections(&self) -> (usize, u64) {
        (
            self.unknown_deals.kept().len(),
            self.unknown_deals.forgotten(),
        )
    }

    /// A created deal.
    pub fn deal(&self, deal_id: &str) -> Option<DealView> {
        self.deals.get(deal_id).map(deal_view)
    }

    /// Created deals in creation order, from cursor `start`.
    pub fn deals(&self, start: u64, limit: usize) -> Page<DealView> {
        let limit = page_size(limit);
        let mut items = Vec::new();
        let mut cursor = start;
        while let Some(deal) = usize::try_from(cursor)
            .ok()
            .and_then(|c| self.deals.items().get(c))
        {
            if items.len() == limit {
                return Page {
                    items,
                    next: Some(cursor),
                };
            }
            items.push(deal_view(deal));
            cursor += 1;
        }
        Page { items, next: None }
    }

    /// An investment by its request id; a request rejected for naming an unknown deal while its
    /// rejection is kept.
    pub fn investment(&self, request_id: RequestId) -> Option<InvestmentView> {
        match self.investments.position(&request_id) {
            Some(idx) => self.investment_at(idx),
            None => self.unknown_deals.get(request_id).map(unknown_deal_view),
        }
    }

    /// The executor an open saga is assigned to, without building the investment's view (the
    /// leader checks it for every step result another node forwards).
    pub fn saga_assignee(&self, request_id: RequestId) -> Option<NodeId> {
        self.investments.get(&request_id)?.saga.as_deref()?.assignee
    }

    /// The decision recorded for a request id, as `Submit` answered it.
    pub fn decision(&self, request_id: RequestId) -> Option<Decision> {
        match self.investments.get(&request_id) {
            Some(inv) => Some(decision_of(inv)),
            None => self
                .unknown_deals
                .get(request_id)
                .map(unknown_deal_decision),
        }
    }

    /// A deal's investments in decision order (admitted and rejected), from position `start`.
    pub fn deal_investments(
        &self,
        deal_id: &str,
        start: u64,
        limit: usize,
    ) -> Result<Page<InvestmentView>, QueryError> {
        let Some(deal) = self.deals.get(deal_id) else {
            if self.archived.contains_key(deal_id) {
                return Err(QueryError::DealArchived(deal_id.to_owned()));
            }
            return Err(QueryError::DealNotFound(deal_id.to_owned()));
        };
        let limit = page_size(limit);
        let from = usize::try_from(start)
            .unwrap_or(usize::MAX)
            .min(deal.decisions.len());
        let to = from.saturating_add(limit).min(deal.decisions.len());
        let items = deal.decisions[from..to]
            .iter()
            .filter_map(|&idx| self.investment_at(idx))
            .collect();
        let next = (to < deal.decisions.len()).then_some(to as u64);
        Ok(Page { items, next })
    }

    /// A user's PENDING and CONFIRMED investments; `None` for a user never seen.
    pub fn user(&self, user_id: &str) -> Option<UserView> {
        let user_idx = self.users.position(user_id)?;
        let mut view = UserView {
            user_id: user_id.to_owned(),
            pending: Vec::new(),
            confirmed: Vec::new(),
            waitlisted: Vec::new(),
        };
        for &(_, idx) in self.holdings.get(&user_idx).into_iter().flatten() {
            let Some(inv) = self.investment_at(idx) else {
                continue;
            };
            match inv.status {
                Status::Confirmed => view.confirmed.push(inv),
                Status::Waitlisted => view.waitlisted.push(inv),
                _ => view.pending.push(inv),
            }
        }
        Some(view)
    }

    /// The open sagas (not yet done) assigned to `node_id`'s executor, in decision order: what
    /// that executor has to work on.
    pub fn executor_sagas(&self, node_id: NodeId) -> Vec<InvestmentView> {
        self.sagas
            .by_executor
            .get(&node_id)
            .into_iter()
            .flatten()
            .filter_map(|&idx| self.investment_at(idx))
            .collect()
    }

    /// The request ids of [`AdmissionState::executor_sagas`], in the same order, without
    /// building their views: what an executor's periodic sweep needs. Behind a burst of
    /// admissions an executor holds hundreds of thousands of sagas, and building every view
    /// every 5 s cost 9% of its node's CPU (issue #15).
    pub fn executor_saga_ids(&self, node_id: NodeId) -> Vec<RequestId> {
        self.sagas
            .by_executor
            .get(&node_id)
            .into_iter()
            .flatten()
            .filter_map(|&idx| self.investments.at(idx).map(|inv| inv.request_id))
            .collect()
    }

    /// Open sagas waiting for any executor to be live.
    pub fn unassigned_sagas(&self) -> Vec<InvestmentView> {
        self.sagas
            .unassigned
            .iter()
            .filter_map(|&idx| self.investment_at(idx))
            .collect()
    }

    /// Open sagas (every step before DONE, assigned or not) that `filter` keeps, in decision
    /// order, at most `limit`. Ages are measured against [`AdmissionState::now_ms`].
    pub fn open_sagas(&self, filter: SagaFilter, limit: usize) -> Vec<InvestmentView> {
        let mut open: Vec<InvIdx> = self
            .sagas
            .by_executor
            .values()
            .flatten()
            .chain(&self.sagas.unassigned)
            .copied()
            .collect();
        // Investment positions are decision order.
        open.sort_unstable();
        open.into_iter()
            .filter(|&idx| {
                self.investments.at(idx).is_some_and(|inv| {
                    inv.saga.as_deref().is_some_and(|saga| {
                        saga.step != SagaStep::Done
                            && filter.keeps(inv.decided_at_ms, saga, self.now_ms)
                    })
                })
            })
            .take(limit)
            .filter_map(|idx| self.investment_at(idx))
            .collect()
    }

    /// How many sagas are open (before DONE), assigned or not, from the indexes' sizes: cheap
    /// enough for every submission (`--open-sagas-max`).
    pub fn open_saga_count(&self) -> usize {
        self.sagas
            .by_executor
            .values()
            .map(BTreeSet::len)
            .sum::<usize>()
            + self.sagas.unassigned.len()
    }

    /// Every executor ever seen, by node id.
    pub fn executors(&self) -> Vec<ExecutorView> {
        self.executors
            .iter()
            .map(|(&node_id, executor)| ExecutorView {
                node_id,
                last_heartbeat_ms: executor.last_heartbeat_ms,
                live: executor.live,
                open_sagas: self.sagas.by_executor.get(&node_id).map_or(0, |s| s.len()),
            })
            .collect()
    }

    /// How many executors were ever seen (live or not), without building their views.
    pub fn executor_count(&self) -> usize {
        self.executors.len()
    }

    pub(crate) fn investment_at(&self, idx: InvIdx) -> Option<InvestmentView> {
        self.investments.at(idx).map(|inv| self.view_of(idx, inv))
    }

    /// The 1-based rank of a WAITLISTED request among its deal's.
    fn waitlist_position(&self, idx: InvIdx, inv: &Investment) -> Option<u32> {
        if inv.status != Status::Waitlisted {
            return None;
        }
        let deal = self.deals.at(inv.deal)?;
        Some(deal.waitlist.range(..idx).count() as u32 + 1)
    }

    /// The receipt of the investment at `idx`.
    fn receipt_of(&self, idx: InvIdx, inv: &Investment) -> Option<crate::Receipt> {
        let deal = self.deals.at(inv.deal)?;
        let seq = deal.decisions.binary_search(&idx).ok()? as u64 + 1;
        let hash = *self.receipts.get(idx as usize)?;
        Some(crate::Receipt {
            deal_seq: seq,
            hash,
        })
    }

    /// The view of `inv`, the investment at `idx`.
    fn view_of(&self, idx: InvIdx, inv: &Investment) -> InvestmentView {
        let waitlist = inv.waitlist.as_deref();
        InvestmentView {
            request_id: inv.request_id,
            deal_id: self
                .deals
                .at(inv.deal)
                .map(|d| d.deal_id.to_string())
                .unwrap_or_default(),
            user_id: self
                .users
                .at(inv.user)
                .map(|u| u.to_string())
                .unwrap_or_default(),
            amount: inv.amount,
            status: inv.status,
            reject_reason: inv.reject,
            log_index: inv.log_index,
            offset: inv.offset,
            decided_by: (inv.leader_id != 0).then_some(inv.leader_id),
            decided_at_ms: inv.decided_at_ms,
            saga: inv.saga.as_deref().cloned(),
            waitlist_requested: waitlist.is_some(),
            waitlist_ttl_ms: waitlist.and_then(|w| w.ttl_ms),
            waitlisted: waitlist.is_some_and(|w| w.waitlisted),
            waitlist_position: self.waitlist_position(idx, inv),
            admitted_at: waitlist.and_then(|w| w.admitted_at),
            waitlist_ended_at: waitlist.and_then(|w| w.ended_at),
            receipt: self.receipt_of(idx, inv),
        }
    }
}

fn unknown_deal_view(seen: &UnknownDealRejection) -> InvestmentView {
    InvestmentView {
        request_id: seen.request_id,
        deal_id: seen.deal_id.to_string(),
        user_id: seen.user_id.to_string(),
        amount: seen.amount,
        status: Status::Rejected,
        reject_reason: Some(RejectReason::DealNotFound),
        log_index: seen.log_index,
        offset: seen.offset,
        decided_by: None,
        decided_at_ms: seen.decided_at_ms,
        saga: None,
        waitlist_requested: seen.waitlist,
        waitlist_ttl_ms: seen.waitlist_ttl_ms,
        waitlisted: false,
        waitlist_position: None,
        admitted_at: None,
        waitlist_ended_at: None,
        receipt: None,
    }
}

fn deal_view(deal: &Deal) -> DealView {
    DealView {
        deal_id: deal.deal_id.to_string(),
        terms: deal.terms,
        status: deal.status,
        investor_count: deal.counters.investor_count,
        reserved_amount: deal.counters.reserved,
        confirmed_count: deal.counters.confirmed_count,
        confirmed_amount: deal.counters.confirmed_amount,
        created_at_ms: deal.created_at_ms,
        waitlist_length: deal.waitlist.len() as u32,
        receipt_head: deal.receipt_head,
        closed_at: deal.closed_at,
    }
}

fn page_size(limit: usize) -> usize {
    match limit {
        0 => PAGE_SIZE_DEFAULT,
        n => n.min(PAGE_SIZE_MAX),
    }
}
