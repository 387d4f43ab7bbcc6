//! Rule 8, the waitlist, and scheduled openings and closings (issue #12), one behaviour per test.

mod common;

use common::*;
use ledger_state_machine::*;

fn declined() -> StepResult {
    StepResult::PaymentDeclined {
        reason: "card declined".into(),
    }
}

fn decided(applied: Applied) -> Decision {
    match applied {
        Ok(Outcome::Submitted { decision, .. }) => decision,
        other => panic!("expected a decision, got {other:?}"),
    }
}

/// A deal with `seats` seats and `amount`, and an executor so that sagas are assigned.
fn deal(h: &mut Harness, amount: &str, seats: u32) {
    h.create_deal("d", amount, seats);
    h.heartbeat(2);
}

/// A one-seat deal "d": ana's request 1 holds the seat, bob's request 2 waits.
fn one_seat_taken_one_waiting() -> Harness {
    let mut h = Harness::new();
    deal(&mut h, "1000", 1);
    h.submit(1, "d", "ana", "1");
    let waiting = decided(h.apply_one(submit_waitlisted(2, "d", "bob", "1", None)));
    assert_eq!(waiting.verdict, Verdict::Waitlisted);
    h
}

fn position(h: &Harness, request: u128) -> Option<u32> {
    h.state.investment(rid(request)).unwrap().waitlist_position
}

#[test]
fn a_full_deal_waitlists_those_who_opt_in_and_rejects_the_others() {
    let mut h = Harness::new();
    deal(&mut h, "1000", 1);
    assert_eq!(h.submit(1, "d", "ana", "100"), Verdict::Pending);
    assert_eq!(
        h.submit(2, "d", "bob", "100"),
        Verdict::Rejected(RejectReason::InvestorLimitReached)
    );
    let waiting = decided(h.apply_one(submit_waitlisted(3, "d", "cyd", "100", None)));
    assert_eq!(waiting.verdict, Verdict::Waitlisted);
    assert_eq!(
        decided(h.apply_one(submit_waitlisted(4, "d", "dee", "100", None))).verdict,
        Verdict::Waitlisted
    );
    assert_eq!(h.status(3), Status::Waitlisted);
    assert_eq!((position(&h, 3), position(&h, 4)), (Some(1), Some(2)));
    assert_eq!(h.state.deal("d").unwrap().waitlist_length, 2);
    // Waiting holds no seat and no amount.
    let d = h.state.deal("d").unwrap();
    assert_eq!((d.investor_count, d.reserved_amount), (1, money("100")));
    // Rule 1: the same request again is the same decision.
    assert_eq!(
        h.apply_one(submit_waitlisted(3, "d", "cyd", "100", None)),
        Ok(Outcome::Submitted {
            decision: waiting,
            replayed: true
        })
    );
    // Asking without the waitlist (or with another time to live) is another payload.
    assert_eq!(
        h.apply_one(submit(3, "d", "cyd", "100")),
        Err(CommandError::RequestConflict { request_id: rid(3) })
    );
    assert_eq!(
        h.apply_one(submit_waitlisted(3, "d", "cyd", "100", Some(1_000))),
        Err(CommandError::RequestConflict { request_id: rid(3) })
    );
}

#[test]
fn an_amount_that_does_not_fit_is_waitlisted_too() {
    let mut h = Harness::new();
    deal(&mut h, "1000", 10);
    assert_eq!(h.submit(1, "d", "ana", "900"), Verdict::Pending);
    assert_eq!(
        decided(h.apply_one(submit_waitlisted(2, "d", "bob", "200", None))).verdict,
        Verdict::Waitlisted
    );
    // A smaller request that fits is admitted at once: it needs less than anyone waiting.
    assert_eq!(h.submit(3, "d", "cyd", "100"), Verdict::Pending);
}

#[test]
fn a_freed_seat_goes_to_the_waitlist_in_log_order_keeping_each_request_s_position() {
    let mut h = Harness::new();
    deal(&mut h, "1000", 2);
    h.submit(1, "d", "ana", "500");
    h.submit(2, "d", "bob", "300");
    let first = decided(h.apply_one(submit_waitlisted(3, "d", "cyd", "600", None)));
    let second = decided(h.apply_one(submit_waitlisted(4, "d", "dee", "200", None)));
    let third = decided(h.apply_one(submit_waitlisted(5, "d", "eve", "100", None)));

    // bob's payment is declined: a seat and 300 free (500 reserved). cyd (600) does not fit by
    // amount and keeps her place; dee (200) fits and takes the seat; eve waits.
    h.record(2, declined());
    let freed_at = h.log_index;
    assert_eq!(h.status(2), Status::Cancelled);
    assert_eq!(h.status(3), Status::Waitlisted);
    assert_eq!(h.status(4), Status::Pending);
    assert_eq!(h.status(5), Status::Waitlisted);
    assert_eq!((position(&h, 3), position(&h, 5)), (Some(1), Some(2)));
    let admitted = h.state.investment(rid(4)).unwrap();
    // The request keeps its original position, and records where it was admitted.
    assert_eq!((admitted.log_index, admitted.offset), (second.log_index, 0));
    assert_eq!(admitted.admitted_at, Some((freed_at, 0)));
    assert!(admitted.waitlisted);
    assert_eq!(admitted.decision(), second);
    assert_eq!(
        admitted.saga.as_ref().and_then(|s| s.assignee),
        Some(2),
        "its saga opens as for a direct admission"
    );
    assert!(h
        .events
        .iter()
        .any(|e| e.request_id == rid(4) && e.status == Status::Pending));

    // ana's payment is declined too: only dee's 200 stays reserved, so cyd (600) fits now.
    h.record(1, declined());
    assert_eq!(h.status(3), Status::Pending);
    assert_eq!(h.status(5), Status::Waitlisted, "no seat left for eve");
    assert_eq!(
        h.state.investment(rid(3)).unwrap().decision(),
        first,
        "a resubmission still gets the first decision"
    );
    assert_eq!(h.state.investment(rid(5)).unwrap().decision(), third);
    let d = h.state.deal("d").unwrap();
    assert_eq!((d.investor_count, d.reserved_amount), (2, money("800")));
}

#[test]
fn the_waitlist_is_bounded_per_deal() {
    let mut h = Harness::new();
    h.apply_one(Command::CreateDeal(CreateDeal {
        max_investors: 1,
        max_waitlist: 2,
        ..deal_terms("d")
    }))
    .unwrap();
    h.submit(1, "d", "ana", "1");
    for (request, user) in [(2, "bob"), (3, "cyd")] {
        assert_eq!(
            decided(h.apply_one(submit_waitlisted(request, "d", user, "1", None))).verdict,
            Verdict::Waitlisted
        );
    }
    assert_eq!(
        decided(h.apply_one(submit_waitlisted(4, "d", "dee", "1", None))).verdict,
        Verdict::Rejected(RejectReason::InvestorLimitReached)
    );
}

#[test]
fn one_user_holds_one_place_per_deal_waitlisted_included() {
    let mut h = one_seat_taken_one_waiting();
    assert_eq!(
        decided(h.apply_one(submit_waitlisted(3, "d", "bob", "2", None))).verdict,
        Verdict::Rejected(RejectReason::DuplicateInvestor)
    );
    let user = h.state.user("bob").unwrap();
    assert_eq!(user.waitlisted.len(), 1);
    assert!(user.pending.is_empty());
}

#[test]
fn closing_the_deal_ends_the_waitlist() {
    let mut h = Harness::new();
    deal(&mut h, "1000", 1);
    h.submit(1, "d", "ana", "1");
    let waiting = decided(h.apply_one(submit_waitlisted(2, "d", "bob", "1", None)));
    h.apply_one(Command::CloseDeal {
        deal_id: "d".into(),
    })
    .unwrap();
    let ended = h.state.investment(rid(2)).unwrap();
    assert_eq!(
        (ended.status, ended.reject_reason),
        (Status::Rejected, Some(RejectReason::WaitlistClosed))
    );
    assert_eq!(ended.waitlist_position, None);
    // Both at the CloseDeal command's position, for `deal verify` to replay.
    let closed_at = Some((h.log_index, 0));
    assert_eq!(h.state.deal("d").unwrap().closed_at, closed_at);
    assert_eq!(ended.waitlist_ended_at, closed_at);
    assert!(h
        .events
        .iter()
        .any(|e| e.request_id == rid(2) && e.status == Status::Rejected));
    // The decision stays what it was: WAITLISTED.
    assert_eq!(
        h.apply_one(submit_waitlisted(2, "d", "bob", "1", None)),
        Ok(Outcome::Submitted {
            decision: waiting,
            replayed: true
        })
    );
    // A seat freed after the closing goes to nobody.
    h.record(1, declined());
    assert_eq!(h.status(2), Status::Rejected);
}

#[test]
fn a_waitlisted_request_ends_when_its_time_to_live_passes() {
    let mut h = Harness::new();
    deal(&mut h, "1000", 1);
    h.submit(1, "d", "ana", "1");
    h.apply_one(submit_waitlisted(2, "d", "bob", "1", Some(60_000)))
        .unwrap();
    h.apply_one(submit_waitlisted(3, "d", "cyd", "1", None))
        .unwrap();
    h.advance(59_999);
    assert_eq!(h.status(2), Status::Waitlisted);
    h.advance(1);
    let ended = h.state.investment(rid(2)).unwrap();
    assert_eq!(ended.reject_reason, Some(RejectReason::WaitlistClosed));
    assert_eq!(
        ended.waitlist_ended_at,
        Some((h.log_index, 0)),
        "log time ended it at the start of the entry"
    );
    assert_eq!(position(&h, 3), Some(1), "the next one moves up");
    // And it survives a snapshot: the timer is rebuilt on load.
    h.apply_one(submit_waitlisted(4, "d", "dee", "1", Some(10_000)))
        .unwrap();
    let restored = AdmissionState::decode_snapshot(&h.state.encode_snapshot()).unwrap();
    h.state = restored;
    h.advance(10_000);
    assert_eq!(h.status(4), Status::Rejected);
    assert_eq!(h.status(3), Status::Waitlisted);
}

#[test]
fn only_a_waitlisted_request_can_be_withdrawn() {
    let mut h = one_seat_taken_one_waiting();
    assert_eq!(
        h.apply_one(Command::Withdraw { request_id: rid(2) }),
        Ok(Outcome::Withdrawn)
    );
    assert_eq!(
        h.state.investment(rid(2)).unwrap().reject_reason,
        Some(RejectReason::WaitlistClosed)
    );
    assert_eq!(
        h.state.investment(rid(2)).unwrap().waitlist_ended_at,
        Some((h.log_index, 0)),
        "the Withdraw command's position"
    );
    for (request, status) in [(1, Status::Pending), (2, Status::Rejected)] {
        assert_eq!(
            h.apply_one(Command::Withdraw {
                request_id: rid(request)
            }),
            Err(CommandError::NotWaitlisted {
                request_id: rid(request),
                status
            })
        );
    }
    assert_eq!(
        h.apply_one(Command::Withdraw { request_id: rid(9) }),
        Err(CommandError::InvestmentNotFound { request_id: rid(9) })
    );
    // Withdrawn, bob may ask again under a new id.
    assert_eq!(
        decided(h.apply_one(submit_waitlisted(3, "d", "bob", "1", None))).verdict,
        Verdict::Waitlisted
    );
}

#[test]
fn a_scheduled_deal_opens_and_closes_by_log_time() {
    let mut h = Harness::new();
    h.heartbeat(2);
    h.apply_one(Command::CreateDeal(CreateDeal {
        max_investors: 1,
        opens_at_ms: Some(T0_MS + 30_000),
        closes_at_ms: Some(T0_MS + 90_000),
        ..deal_terms("d")
    }))
    .unwrap();
    assert_eq!(
        h.submit(1, "d", "ana", "1"),
        Verdict::Rejected(RejectReason::DealNotOpen)
    );
    h.advance(30_000);
    assert_eq!(h.submit(2, "d", "ana", "1"), Verdict::Pending);
    h.apply_one(submit_waitlisted(3, "d", "bob", "1", None))
        .unwrap();
    assert_eq!(h.state.deal("d").unwrap().status, DealStatus::Open);
    h.advance(60_000);
    assert_eq!(h.state.deal("d").unwrap().status, DealStatus::Closed);
    let closed_at = h.state.deal("d").unwrap().closed_at;
    assert_eq!(
        closed_at.map(|(_, offset)| offset),
        Some(0),
        "an entry's start"
    );
    assert_eq!(
        h.state.investment(rid(3)).unwrap().waitlist_ended_at,
        closed_at
    );
    assert_eq!(
        h.state.investment(rid(3)).unwrap().reject_reason,
        Some(RejectReason::WaitlistClosed)
    );
    assert_eq!(
        h.submit(4, "d", "cyd", "1"),
        Verdict::Rejected(RejectReason::DealClosed)
    );
    // Creating it again with the same terms is still idempotent.
    assert_eq!(
        h.apply_one(Command::CreateDeal(CreateDeal {
            max_investors: 1,
            opens_at_ms: Some(T0_MS + 30_000),
            closes_at_ms: Some(T0_MS + 90_000),
            ..deal_terms("d")
        })),
        Ok(Outcome::DealCreated { created: false })
    );
}
