//! Fairness receipts (issue #12 §4, rule 9): every decision on a deal extends its hash chain;
//! the canonical bytes are those of `docs/receipts.md`.

mod common;

use common::*;
use ledger_state_machine::receipts::{DecisionRecord, RECEIPT_MAGIC};
use ledger_state_machine::*;

fn receipt(h: &Harness, request: u128) -> Receipt {
    h.state
        .investment(rid(request))
        .and_then(|inv| inv.receipt)
        .expect("a decision on an existing deal has a receipt")
}

fn record_of(view: &InvestmentView, deal_seq: u64) -> DecisionRecord<'_> {
    DecisionRecord {
        deal_seq,
        request_id: view.request_id,
        deal_id: &view.deal_id,
        user_id: &view.user_id,
        amount: view.amount,
        waitlist_ttl_ms: view
            .waitlist_requested
            .then(|| view.waitlist_ttl_ms.unwrap_or(0)),
        log_index: view.log_index,
        offset: view.offset,
        decided_at_ms: view.decided_at_ms,
        verdict: view.decision().verdict,
    }
}

#[test]
fn each_decision_extends_its_deal_s_chain_in_log_order() {
    let mut h = Harness::new();
    h.create_deal("d", "1000", 1);
    h.create_deal("e", "1000", 1);
    h.submit(1, "d", "ana", "100");
    h.submit(2, "e", "ana", "100");
    h.submit(3, "d", "bob", "100");
    h.apply_one(submit_waitlisted(4, "d", "cyd", "100", Some(5_000)))
        .unwrap();
    h.submit(5, "ghost", "dee", "1");

    // Recomputed by hand from the views: h_k = BLAKE3(h_{k-1} ‖ canonical bytes of k).
    let mut head = Receipt::GENESIS;
    for (seq, request) in [1u128, 3, 4].into_iter().enumerate() {
        let view = h.state.investment(rid(request)).unwrap();
        head = head.next(&record_of(&view, seq as u64 + 1).canonical_bytes());
        assert_eq!(receipt(&h, request), head, "request {request}");
    }
    assert_eq!(h.state.deal("d").unwrap().receipt_head, head);
    assert_eq!(h.state.deal("e").unwrap().receipt_head.deal_seq, 1);
    assert_eq!(receipt(&h, 2).deal_seq, 1, "another deal, another chain");
    assert_eq!(
        h.state.investment(rid(5)).unwrap().receipt,
        None,
        "an unknown deal has no chain"
    );

    // What happens later (admission from the waitlist, endings) does not change a receipt: it
    // covers the decision as made.
    let before = receipt(&h, 4);
    h.advance(5_000);
    assert_eq!(h.status(4), Status::Rejected);
    assert_eq!(receipt(&h, 4), before);

    // Rebuilt from a snapshot, the chains are the same.
    let restored = AdmissionState::decode_snapshot(&h.state.encode_snapshot()).unwrap();
    for request in 1..=4 {
        assert_eq!(
            restored.investment(rid(request)).unwrap().receipt,
            Some(receipt(&h, request))
        );
    }
    assert_eq!(restored.deal("d").unwrap().receipt_head, head);
}

/// A known answer, so that an independent verifier can check its reading of
/// `docs/receipts.md`.
#[test]
fn the_canonical_bytes_and_the_first_hash_are_as_documented() {
    let record = DecisionRecord {
        deal_seq: 1,
        request_id: RequestId::parse("0b5e2d0c-6f1e-4c1a-9a57-6c0b8c3b1f2e").unwrap(),
        deal_id: "seed-round",
        user_id: "ana",
        amount: Money::parse("2500.00").unwrap(),
        waitlist_ttl_ms: None,
        log_index: 42,
        offset: 7,
        decided_at_ms: 1_790_000_000_000,
        verdict: Verdict::Pending,
    };
    let bytes = record.canonical_bytes();
    let mut expected = Vec::new();
    expected.extend_from_slice(&RECEIPT_MAGIC);
    expected.extend_from_slice(&1u64.to_be_bytes());
    expected.extend_from_slice(&0x0b5e2d0c_6f1e_4c1a_9a57_6c0b8c3b1f2e_u128.to_be_bytes());
    expected.push(10);
    expected.extend_from_slice(b"seed-round");
    expected.push(3);
    expected.extend_from_slice(b"ana");
    expected.extend_from_slice(&250_000u64.to_be_bytes());
    expected.push(0);
    expected.extend_from_slice(&42u64.to_be_bytes());
    expected.extend_from_slice(&7u32.to_be_bytes());
    expected.extend_from_slice(&1_790_000_000_000u64.to_be_bytes());
    expected.extend_from_slice(&[1, 0]);
    assert_eq!(bytes, expected);
    assert_eq!(
        Receipt::GENESIS.next(&bytes).hash_hex(),
        KNOWN_FIRST_HASH,
        "docs/receipts.md quotes this hash"
    );

    // Waitlisted with a time to live, and a rejection, as the document describes.
    let waitlisted = DecisionRecord {
        waitlist_ttl_ms: Some(60_000),
        verdict: Verdict::Waitlisted,
        ..record
    };
    let tail = &waitlisted.canonical_bytes()[bytes.len() - 2 - 20 - 1..];
    assert_eq!(tail[0], 1);
    assert_eq!(&tail[1..9], &60_000u64.to_be_bytes());
    assert_eq!(&tail[tail.len() - 2..], &[3, 0]);
    let rejected = DecisionRecord {
        verdict: Verdict::Rejected(RejectReason::InvestorLimitReached),
        ..record
    };
    assert_eq!(&rejected.canonical_bytes()[bytes.len() - 2..], &[2, 5]);
}

/// Also computed from the document alone, in Python with the `blake3` package.
const KNOWN_FIRST_HASH: &str = "85f3716b5b75b08cb09b564cb8bbd5b7386d6f65acbce37349797f867c57efbd";
