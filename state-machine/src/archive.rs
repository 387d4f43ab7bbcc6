//! Archiving: a CLOSED deal whose sagas have all ended leaves the live state and every later
//! snapshot. What stays is one small record per archived deal ([`ArchivedDeal`]), so that its
//! id keeps answering "archived" (and is never reused), and the receipt head the operator
//! proved to hold an export of.
//!
//! Positions (`DealIdx`, `UserIdx`, `InvIdx`) are indexes into the tables, so removing a deal
//! compacts them and rebuilds every derived index, as loading a snapshot does. That costs time
//! in proportion to the live state, once per archived deal: an operator's action, not the
//! hot path.

use serde::{Deserialize, Serialize};

use crate::command::ArchiveDeal;
use crate::error::CommandError;
use crate::money::Money;
use crate::outcome::{Applied, Outcome, Status};
use crate::receipts::Receipt;
use crate::saga::SagaStep;
use crate::state::{AdmissionState, DealIdx, DealStatus, DealTerms};

/// What the ledger keeps of an archived deal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedDeal {
    /// The deal.
    #[serde(deserialize_with = "crate::codec::text::boxed")]
    pub deal_id: Box<str>,
    /// Its terms.
    pub terms: DealTerms,
    /// Log time of its creation.
    pub created_at_ms: u64,
    /// Its receipt head when archived: how many decisions it had ...
    pub receipt_seq: u64,
    /// ... and the chain's hash after the last one.
    pub receipt_hash: [u8; 32],
    /// Investments it confirmed, and their sum.
    pub confirmed_count: u32,
    /// The confirmed amounts' sum.
    pub confirmed_amount: Money,
    /// Log time and log index of the archiving.
    pub archived_at_ms: u64,
    /// The log index of the `ArchiveDeal` that archived it.
    pub archived_log_index: u64,
}

impl ArchivedDeal {
    /// The receipt head the deal was archived with.
    pub fn receipt_head(&self) -> Receipt {
        Receipt {
            deal_seq: self.receipt_seq,
            hash: self.receipt_hash,
        }
    }
}

impl AdmissionState {
    /// The record of an archived deal.
    pub fn archived_deal(&self, deal_id: &str) -> Option<&ArchivedDeal> {
        self.archived.get(deal_id)
    }

    /// How many deals were archived.
    pub fn archived_deal_count(&self) -> usize {
        self.archived.len()
    }

    /// `DealArchived` if `deal_id` names an archived deal.
    pub(crate) fn refuse_archived(&self, deal_id: &str) -> Result<(), CommandError> {
        match self.archived.contains_key(deal_id) {
            true => Err(CommandError::DealArchived {
                deal_id: deal_id.to_owned(),
            }),
            false => Ok(()),
        }
    }

    pub(crate) fn archive_deal(&mut self, log_index: u64, archive: &ArchiveDeal) -> Applied {
        let named = Receipt {
            deal_seq: archive.receipt_seq,
            hash: archive.receipt_hash,
        };
        if let Some(done) = self.archived.get(archive.deal_id.as_str()) {
            // A retry of the same archiving succeeds again; anything else is refused.
            return match done.receipt_head() == named {
                true => Ok(Outcome::DealArchived { archived: false }),
                false => Err(CommandError::DealArchived {
                    deal_id: archive.deal_id.clone(),
                }),
            };
        }
        let not_found = || CommandError::DealNotFound {
            deal_id: archive.deal_id.clone(),
        };
        let deal_idx = self
            .deals
            .position(&archive.deal_id)
            .ok_or_else(not_found)?;
        let deal = self.deals.at(deal_idx).ok_or_else(not_found)?;
        if deal.status != DealStatus::Closed {
            return Err(CommandError::DealOpen {
                deal_id: archive.deal_id.clone(),
            });
        }
        let open = deal
            .decisions
            .iter()
            .filter_map(|&inv_idx| self.investments.at(inv_idx))
            .filter(|inv| {
                inv.status == Status::Waitlisted
                    || inv
                        .saga
                        .as_deref()
                        .is_some_and(|s| s.step != SagaStep::Done)
            })
            .count();
        if open > 0 {
            return Err(CommandError::SagasOpen {
                deal_id: archive.deal_id.clone(),
                open,
            });
        }
        if deal.receipt_head != named {
            return Err(CommandError::ReceiptHeadMismatch {
                deal_id: archive.deal_id.clone(),
                deal_seq: deal.receipt_head.deal_seq,
                hash: deal.receipt_head.hash_hex(),
            });
        }
        let record = ArchivedDeal {
            deal_id: deal.deal_id.clone(),
            terms: deal.terms,
            created_at_ms: deal.created_at_ms,
            receipt_seq: deal.receipt_head.deal_seq,
            receipt_hash: deal.receipt_head.hash,
            confirmed_count: deal.counters.confirmed_count,
            confirmed_amount: deal.counters.confirmed_amount,
            archived_at_ms: self.now_ms,
            archived_log_index: log_index,
        };
        self.remove_deal(deal_idx);
        self.archived.insert(record.deal_id.clone(), record);
        Ok(Outcome::DealArchived { archived: true })
    }

    /// Drops the deal at `removed`, its investments and the users named by nothing else, then
    /// rebuilds the derived state over the compacted tables.
    fn remove_deal(&mut self, removed: DealIdx) {
        let mut user_kept = vec![false; self.users.len()];
        self.investments.retain(|inv| {
            if inv.deal == removed {
                return false;
            }
            if inv.deal > removed {
                inv.deal -= 1;
            }
            if let Some(kept) = user_kept.get_mut(inv.user as usize) {
                *kept = true;
            }
            true
        });
        // New positions of the users that stay.
        let mut user_at = Vec::with_capacity(user_kept.len());
        let mut next = 0u32;
        for &kept in &user_kept {
            user_at.push(next);
            next += u32::from(kept);
        }
        let mut position = 0usize;
        self.users.retain(|_| {
            let kept = user_kept.get(position).copied().unwrap_or(false);
            position += 1;
            kept
        });
        for inv in self.investments.items_mut() {
            if let Some(&at) = user_at.get(inv.user as usize) {
                inv.user = at;
            }
        }
        let mut position = 0u32;
        self.deals.retain(|_| {
            let kept = position != removed;
            position += 1;
            kept
        });
        // Every kept investment names a kept deal and user at their new positions, so this
        // cannot fail; should it ever, the invariant checks report the stale indexes.
        if let Ok(derived) = self.derive() {
            self.install(derived);
        }
    }
}
