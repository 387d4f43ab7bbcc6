//! Fairness receipts: every decision on a deal extends the deal's hash chain,
//! `h_k = BLAKE3(h_{k-1} ‖ canonical bytes of decision k)`, with `h_0` all zeros. An investor
//! holding `(deal_seq, hash)` can check, against an export of the deal, that their decision is
//! the `deal_seq`-th and that nothing before it was changed, dropped or reordered. The byte
//! layout is specified in `docs/receipts.md`, so that anyone can write a verifier.

use crate::ids::RequestId;
use crate::money::Money;
use crate::outcome::{RejectReason, Verdict};

/// First bytes of every decision's canonical form (and its version).
pub const RECEIPT_MAGIC: [u8; 4] = *b"ALR1";

/// A decision's place in its deal's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// 1-based position among the deal's decisions, in log order.
    pub deal_seq: u64,
    /// The chain's hash after this decision.
    pub hash: [u8; 32],
}

impl Default for Receipt {
    fn default() -> Receipt {
        Receipt::GENESIS
    }
}

impl Receipt {
    /// Before any decision: sequence 0, all-zero hash.
    pub const GENESIS: Receipt = Receipt {
        deal_seq: 0,
        hash: [0; 32],
    };

    /// The receipt of the next decision, whose canonical bytes are `decision`.
    pub fn next(&self, decision: &[u8]) -> Receipt {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.hash);
        hasher.update(decision);
        Receipt {
            deal_seq: self.deal_seq + 1,
            hash: *hasher.finalize().as_bytes(),
        }
    }

    /// The hash as 64 lowercase hex digits.
    pub fn hash_hex(&self) -> String {
        self.hash.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What a decision's canonical bytes hold: the request as submitted, where and when it was
/// decided, and the decision made then.
#[derive(Clone, Copy, Debug)]
pub struct DecisionRecord<'a> {
    /// Its 1-based position among the deal's decisions.
    pub deal_seq: u64,
    /// The request id.
    pub request_id: RequestId,
    /// The deal.
    pub deal_id: &'a str,
    /// The investor.
    pub user_id: &'a str,
    /// The ticket.
    pub amount: Money,
    /// `Some(ttl)` when the request asked for the waitlist (`ttl` 0: none).
    pub waitlist_ttl_ms: Option<u64>,
    /// The log position that decided it.
    pub log_index: u64,
    /// Its offset in that entry.
    pub offset: u32,
    /// Log time of the decision.
    pub decided_at_ms: u64,
    /// The decision.
    pub verdict: Verdict,
}

impl DecisionRecord<'_> {
    /// The canonical bytes (`docs/receipts.md`).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 + 16 + 2 + 64 + 64 + 8 + 9 + 8 + 4 + 8 + 2);
        out.extend_from_slice(&RECEIPT_MAGIC);
        out.extend_from_slice(&self.deal_seq.to_be_bytes());
        out.extend_from_slice(&self.request_id.as_u128().to_be_bytes());
        for text in [self.deal_id, self.user_id] {
            // Ids are at most 64 bytes (validated), so one length byte holds them.
            out.push(text.len().min(255) as u8);
            out.extend_from_slice(&text.as_bytes()[..text.len().min(255)]);
        }
        out.extend_from_slice(&self.amount.cents().to_be_bytes());
        match self.waitlist_ttl_ms {
            None => out.push(0),
            Some(ttl) => {
                out.push(1);
                out.extend_from_slice(&ttl.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.log_index.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.decided_at_ms.to_be_bytes());
        let (verdict, reason) = match self.verdict {
            Verdict::Pending => (1, 0),
            Verdict::Rejected(reason) => (2, reason_code(reason)),
            Verdict::Waitlisted => (3, 0),
        };
        out.push(verdict);
        out.push(reason);
        out
    }
}

/// The reason's number in the API (`admission.v1.RejectReason`).
pub fn reason_code(reason: RejectReason) -> u8 {
    match reason {
        RejectReason::DealNotFound => 1,
        RejectReason::DealClosed => 2,
        RejectReason::TicketOutOfRange => 3,
        RejectReason::DuplicateInvestor => 4,
        RejectReason::InvestorLimitReached => 5,
        RejectReason::AmountExceedsRemaining => 6,
        RejectReason::DealNotOpen => 7,
        RejectReason::WaitlistClosed => 8,
    }
}
