//! Invariants I1–I3 of `DESIGN.md` §4.5, and the coherence of every derived value with the
//! investments. Tests call this after every command; loading a snapshot calls it to refuse an
//! impossible state. O(n): never on the hot path.

use crate::ids::RequestId;
use crate::outcome::{RejectReason, Status};
use crate::saga::{Saga, SagaChange, SagaStep, SAGA_HISTORY_MAX};
use crate::state::AdmissionState;

/// An invariant that does not hold, with what was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{invariant} violated: {detail}")]
pub struct InvariantViolation {
    /// Which invariant, e.g. `"I1 investor limit"`.
    pub invariant: &'static str,
    /// What was found.
    pub detail: String,
}

fn violated(invariant: &'static str, detail: String) -> Result<(), InvariantViolation> {
    Err(InvariantViolation { invariant, detail })
}

/// A saga's history is bounded and in log order, from the decision to the last applied entry
/// (in log index and log time), and never ahead of the saga's epoch; its last assignment is the
/// saga's current one.
fn check_history(
    request_id: RequestId,
    saga: &Saga,
    decided_at: u64,
    state: &AdmissionState,
) -> Result<(), InvariantViolation> {
    let history = &saga.history;
    let bad = |what: &str| violated("saga history", format!("{request_id}: {what}"));
    if history.len() > SAGA_HISTORY_MAX {
        return bad(&format!(
            "{} marks, at most {SAGA_HISTORY_MAX}",
            history.len()
        ));
    }
    let in_order = history.windows(2).all(|pair| {
        pair[0].log_index <= pair[1].log_index
            && pair[0].at_ms <= pair[1].at_ms
            && pair[0].epoch <= pair[1].epoch
    });
    if !in_order {
        return bad("marks out of order");
    }
    if let (Some(first), Some(last)) = (history.first(), history.last()) {
        if first.log_index < decided_at
            || last.log_index > state.last_log_index
            || last.at_ms > state.now_ms
        {
            return bad("a mark outside the log from the decision to the last applied entry");
        }
        if last.epoch > saga.epoch {
            return bad("a mark ahead of the saga's epoch");
        }
    }
    let last_assigned = history.iter().rev().find_map(|mark| match mark.change {
        SagaChange::Assigned { executor } => Some((mark.epoch, executor)),
        _ => None,
    });
    match last_assigned {
        Some(assigned) if assigned != (saga.epoch, saga.assignee) => {
            bad("the last assignment recorded is not the saga's")
        }
        _ => Ok(()),
    }
}

impl AdmissionState {
    /// Checks I1 (seats), I2 (amounts), I3 (one active investment per user and deal), that every
    /// investment's status fits its saga, that open sagas belong to live executors, and that
    /// every maintained counter and index equals what the investments imply.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let derived = match self.derive() {
            Ok(derived) => derived,
            Err(dangling) => {
                return violated(
                    "references",
                    format!("{} names a missing deal or user", dangling.0),
                )
            }
        };
        let any_live = self.executors.values().any(|e| e.live);
        for inv in self.investments.items() {
            let request_id = inv.request_id;
            check_status_fits_saga(request_id, inv.status, inv.reject, inv.saga.as_deref())?;
            check_waitlist_fits(
                request_id,
                inv.status,
                inv.reject,
                inv.saga.is_some(),
                inv.waitlist.as_deref(),
            )?;
            if inv.reject == Some(RejectReason::DealNotFound) {
                return violated(
                    "unknown deals",
                    format!("{request_id} names an unknown deal but is kept as an investment"),
                );
            }
            if let Some(saga) = inv.saga.as_deref() {
                check_history(request_id, saga, inv.log_index, self)?;
            }
            let Some(saga) = inv.saga.as_deref().filter(|s| s.step != SagaStep::Done) else {
                continue;
            };
            match saga.assignee {
                Some(node_id) if !self.executors.get(&node_id).is_some_and(|e| e.live) => {
                    return violated(
                        "saga ownership",
                        format!(
                            "{request_id} is assigned to executor {node_id}, which is not live"
                        ),
                    );
                }
                None if any_live => {
                    return violated(
                        "saga ownership",
                        format!("{request_id} is unassigned while an executor is live"),
                    );
                }
                _ => {}
            }
        }

        if self.receipts != derived.receipts {
            return violated(
                "receipt chain",
                "investments' receipts differ from their deals' chains".to_owned(),
            );
        }
        for (deal_idx, (deal, (expected, decisions))) in self
            .deals
            .items()
            .iter()
            .zip(derived.deal_counters.iter().zip(&derived.deal_decisions))
            .enumerate()
        {
            let name = &deal.deal_id;
            let counters = deal.counters;
            if counters.investor_count != expected.investor_count {
                return violated(
                    "I1 investor count",
                    format!(
                        "deal {name}: counter {} but {} active investments",
                        counters.investor_count, expected.investor_count
                    ),
                );
            }
            if counters.reserved != expected.reserved {
                return violated(
                    "I2 reserved amount",
                    format!(
                        "deal {name}: counter {} but active investments sum to {}",
                        counters.reserved, expected.reserved
                    ),
                );
            }
            if counters != *expected {
                return violated(
                    "confirmed totals",
                    format!("deal {name}: counters {counters:?}, investments say {expected:?}"),
                );
            }
            if deal.decisions != *decisions {
                return violated(
                    "decision order",
                    format!("deal {name}: decision list differs from the investments"),
                );
            }
            if derived.receipt_heads.get(deal_idx) != Some(&deal.receipt_head) {
                return violated(
                    "receipt chain",
                    format!("deal {name}: receipt head differs from the decisions' chain"),
                );
            }
            self.check_waitlist(deal)?;
            let terms = deal.terms;
            if counters.investor_count > terms.max_investors {
                return violated(
                    "I1 investor limit",
                    format!(
                        "deal {name}: {} investors, limit {}",
                        counters.investor_count, terms.max_investors
                    ),
                );
            }
            if counters.reserved > terms.amount {
                return violated(
                    "I2 deal amount",
                    format!(
                        "deal {name}: {} reserved, amount {}",
                        counters.reserved, terms.amount
                    ),
                );
            }
        }

        if self.holdings != derived.holdings {
            return violated(
                "user holdings",
                "users' active lists differ from the investments".to_owned(),
            );
        }
        for (user, held) in &self.holdings {
            // Holdings are in decision order; a repeated deal means two active investments.
            for (i, &(deal, _)) in held.iter().enumerate() {
                if held[..i].iter().any(|&(other, _)| other == deal) {
                    let name = self.users.at(*user).map_or("?", |u| &**u);
                    return violated(
                        "I3 one active or waitlisted request per user and deal",
                        format!("user {name} holds two active investments in one deal"),
                    );
                }
            }
        }

        if let Some(both) = self
            .archived
            .keys()
            .find(|deal_id| self.deals.position(deal_id).is_some())
        {
            return violated("archives", format!("deal {both} is both archived and live"));
        }

        if !self.unknown_deals.index_is_coherent() {
            return violated(
                "unknown deals",
                "the index of rejections for unknown deals differs from the list".to_owned(),
            );
        }
        if let Some(both) = self
            .unknown_deals
            .kept()
            .iter()
            .find(|seen| self.investments.position(&seen.request_id).is_some())
        {
            return violated(
                "I4 decided once",
                format!(
                    "{} is both an investment and a rejection for an unknown deal",
                    both.request_id
                ),
            );
        }

        if self.sagas.by_executor != derived.sagas.by_executor
            || self.sagas.unassigned != derived.sagas.unassigned
        {
            return violated(
                "saga index",
                "executor assignment index differs from the sagas".to_owned(),
            );
        }
        Ok(())
    }
}

impl AdmissionState {
    /// The deal's waitlist is exactly its WAITLISTED requests (empty once closed), and I10: no
    /// waiting request fits in what is free, and none was passed over by a later request, of
    /// the same deal, that was admitted while needing as much or more.
    fn check_waitlist(&self, deal: &crate::state::Deal) -> Result<(), InvariantViolation> {
        let name = &deal.deal_id;
        if deal.status == crate::state::DealStatus::Closed && !deal.waitlist.is_empty() {
            return violated(
                "waitlist",
                format!("deal {name} is closed but its waitlist is not empty"),
            );
        }
        let expected: std::collections::BTreeSet<_> = deal
            .decisions
            .iter()
            .copied()
            .filter(|&idx| {
                self.investments
                    .at(idx)
                    .is_some_and(|inv| inv.status == Status::Waitlisted)
            })
            .collect();
        if deal.waitlist != expected {
            return violated(
                "waitlist",
                format!("deal {name}: waitlist differs from its WAITLISTED requests"),
            );
        }
        if deal.waitlist.len() > deal.terms.max_waitlist as usize {
            return violated(
                "waitlist",
                format!(
                    "deal {name}: {} waiting, at most {}",
                    deal.waitlist.len(),
                    deal.terms.max_waitlist
                ),
            );
        }
        let seat_free = deal.counters.investor_count < deal.terms.max_investors;
        for &waiting_idx in &deal.waitlist {
            let Some(waiting) = self.investments.at(waiting_idx) else {
                continue;
            };
            let fits = seat_free
                && deal
                    .counters
                    .reserved
                    .checked_add(waiting.amount)
                    .is_some_and(|total| total <= deal.terms.amount);
            if fits {
                return violated(
                    "I10 waitlist order",
                    format!(
                        "deal {name}: {} waits while a seat and its amount are free",
                        waiting.request_id
                    ),
                );
            }
            let passed_by = deal
                .decisions
                .iter()
                .filter(|&&idx| idx > waiting_idx)
                .filter_map(|&idx| self.investments.at(idx))
                .find(|later| later.saga.is_some() && later.amount >= waiting.amount);
            if let Some(later) = passed_by {
                return violated(
                    "I10 waitlist order",
                    format!(
                        "deal {name}: {} (amount {}) was admitted while the earlier {} \
                         (amount {}) kept waiting",
                        later.request_id, later.amount, waiting.request_id, waiting.amount
                    ),
                );
            }
        }
        Ok(())
    }
}

/// How a request's waitlist record fits its status.
fn check_waitlist_fits(
    request_id: RequestId,
    status: Status,
    reject: Option<RejectReason>,
    admitted: bool,
    waitlist: Option<&crate::state::WaitlistEntry>,
) -> Result<(), InvariantViolation> {
    let waitlisted = waitlist.is_some_and(|w| w.waitlisted);
    let admitted_from_waitlist = waitlist.is_some_and(|w| w.admitted_at.is_some());
    let fits = match status {
        Status::Waitlisted => waitlisted && !admitted_from_waitlist,
        Status::Rejected if reject == Some(RejectReason::WaitlistClosed) => {
            waitlisted && !admitted_from_waitlist
        }
        Status::Rejected => !waitlisted,
        // Admitted at once, or from the waitlist (and then it says where).
        Status::Pending | Status::Confirmed | Status::Cancelled => {
            admitted && waitlisted == admitted_from_waitlist
        }
    };
    if fits {
        Ok(())
    } else {
        violated(
            "status and waitlist",
            format!("{request_id} is {status:?} with waitlist record {waitlist:?}"),
        )
    }
}

fn check_status_fits_saga(
    request_id: RequestId,
    status: Status,
    reject: Option<RejectReason>,
    saga: Option<&Saga>,
) -> Result<(), InvariantViolation> {
    let fits = match (status, saga) {
        (Status::Rejected, None) => reject.is_some(),
        (Status::Waitlisted, None) => reject.is_none(),
        (Status::Pending, Some(saga)) => {
            reject.is_none()
                && match saga.step {
                    SagaStep::Payment | SagaStep::Documents => saga.cancel_cause.is_none(),
                    SagaStep::Void => saga.cancel_cause.is_some(),
                    SagaStep::Notify | SagaStep::Done => false,
                }
        }
        (Status::Confirmed, Some(saga)) => {
            reject.is_none()
                && saga.cancel_cause.is_none()
                && matches!(saga.step, SagaStep::Notify | SagaStep::Done)
        }
        (Status::Cancelled, Some(saga)) => {
            reject.is_none()
                && saga.cancel_cause.is_some()
                && matches!(saga.step, SagaStep::Notify | SagaStep::Done)
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        violated(
            "status and saga",
            format!(
                "{request_id} is {status:?} with saga step {:?}",
                saga.map(|s| s.step)
            ),
        )
    }
}
