//! The derived part of the state, computed from scratch from the investments in decision order.
//!
//! The hot path maintains these values incrementally; loading a snapshot installs them from
//! here, and [`crate::AdmissionState::check_invariants`] compares the two, so both paths are
//! held to one definition.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use crate::outcome::Status;
use crate::receipts::Receipt;
use crate::saga::SagaStep;
use crate::state::{
    decision_record, AdmissionState, DealCounters, DealIdx, DealStatus, InvIdx, SagaIndex, Timers,
    UserIdx,
};
use crate::table::FixedHasher;

/// Everything derivable; the deal vectors are parallel to the deal table.
pub(crate) struct Derived {
    pub(crate) deal_counters: Vec<DealCounters>,
    pub(crate) deal_decisions: Vec<Vec<InvIdx>>,
    pub(crate) deal_waitlists: Vec<BTreeSet<InvIdx>>,
    pub(crate) receipt_heads: Vec<Receipt>,
    pub(crate) receipts: Vec<[u8; 32]>,
    pub(crate) holdings: HashMap<UserIdx, Vec<(DealIdx, InvIdx)>, FixedHasher>,
    pub(crate) sagas: SagaIndex,
    pub(crate) timers: Timers,
}

/// An investment naming a deal or user the state does not have.
#[derive(Debug)]
pub(crate) struct DanglingReference(pub(crate) crate::RequestId);

impl AdmissionState {
    pub(crate) fn derive(&self) -> Result<Derived, DanglingReference> {
        let mut derived = Derived {
            deal_counters: vec![DealCounters::default(); self.deals.len()],
            deal_decisions: vec![Vec::new(); self.deals.len()],
            deal_waitlists: vec![BTreeSet::new(); self.deals.len()],
            receipt_heads: vec![Receipt::GENESIS; self.deals.len()],
            receipts: Vec::with_capacity(self.investments.len()),
            holdings: HashMap::default(),
            sagas: SagaIndex::default(),
            timers: Timers::default(),
        };
        let mut deadlines = Vec::new();
        let mut expiries = Vec::new();
        for (idx, inv) in self.investments.items().iter().enumerate() {
            let idx = idx as InvIdx;
            let (
                Some(counters),
                Some(decisions),
                Some(waitlist),
                Some(head),
                Some(deal),
                Some(user),
            ) = (
                derived.deal_counters.get_mut(inv.deal as usize),
                derived.deal_decisions.get_mut(inv.deal as usize),
                derived.deal_waitlists.get_mut(inv.deal as usize),
                derived.receipt_heads.get_mut(inv.deal as usize),
                self.deals.at(inv.deal),
                self.users.at(inv.user),
            )
            else {
                return Err(DanglingReference(inv.request_id));
            };
            decisions.push(idx);
            let record = decision_record(inv, decisions.len() as u64, &deal.deal_id, user);
            *head = head.next(&record.canonical_bytes());
            derived.receipts.push(head.hash);
            if inv.status.is_active() {
                counters.investor_count += 1;
                counters.reserved = counters.reserved.saturating_add(inv.amount);
            }
            if inv.status.holds_place() {
                derived
                    .holdings
                    .entry(inv.user)
                    .or_default()
                    .push((inv.deal, idx));
            }
            if inv.status == Status::Waitlisted {
                waitlist.insert(idx);
                let expires = inv
                    .waitlist
                    .as_deref()
                    .and_then(|w| w.expires_at_ms(inv.decided_at_ms));
                if let Some(expires_at_ms) = expires {
                    expiries.push(Reverse((expires_at_ms, idx)));
                }
            }
            if inv.status == Status::Confirmed {
                counters.confirmed_count += 1;
                counters.confirmed_amount = counters.confirmed_amount.saturating_add(inv.amount);
            }
            if let Some(saga) = inv.saga.as_deref().filter(|s| s.step != SagaStep::Done) {
                match saga.assignee {
                    Some(node_id) => {
                        derived
                            .sagas
                            .by_executor
                            .entry(node_id)
                            .or_default()
                            .insert(idx);
                    }
                    None => {
                        derived.sagas.unassigned.insert(idx);
                    }
                }
                if saga.step.is_compensable() {
                    deadlines.push(Reverse((saga.deadline_ms, idx)));
                }
            }
        }
        derived.sagas.deadlines = deadlines.into();
        derived.timers.waitlist_expiries = expiries.into();
        derived.timers.closings = self
            .deals
            .items()
            .iter()
            .enumerate()
            .filter(|(_, deal)| deal.status == DealStatus::Open)
            .filter_map(|(idx, deal)| {
                deal.terms
                    .closes_at_ms
                    .map(|closes_at_ms| Reverse((closes_at_ms, idx as DealIdx)))
            })
            .collect();
        Ok(derived)
    }

    /// Replaces every derived value with `derived`.
    pub(crate) fn install(&mut self, derived: Derived) {
        let deals = self.deals.items_mut().iter_mut();
        for ((((deal, counters), decisions), waitlist), head) in deals
            .zip(derived.deal_counters)
            .zip(derived.deal_decisions)
            .zip(derived.deal_waitlists)
            .zip(derived.receipt_heads)
        {
            deal.counters = counters;
            deal.decisions = decisions;
            deal.waitlist = waitlist;
            deal.receipt_head = head;
        }
        self.receipts = derived.receipts;
        self.holdings = derived.holdings;
        self.sagas = derived.sagas;
        self.timers = derived.timers;
    }
}
