//! The decision rules of `DESIGN.md` §4.2, one test per rule, then their precedence.

mod common;

use common::*;
use ledger_state_machine::*;

fn rejected(reason: RejectReason) -> Verdict {
    Verdict::Rejected(reason)
}

#[test]
fn rule_1_a_request_id_is_decided_once() {
    let mut h = Harness::new();
    h.create_deal("d", "1000", 2);
    assert_eq!(h.submit(1, "d", "ana", "10"), Verdict::Pending);

    // Resubmitting the same request returns the first decision and its position, unchanged.
    let first = h.state.decision(rid(1)).unwrap();
    let again = h.apply_one(submit(1, "d", "ana", "10"));
    assert_eq!(
        again,
        Ok(Outcome::Submitted {
            decision: first,
            replayed: true
        })
    );
    assert_eq!(h.state.deal("d").unwrap().investor_count, 1);

    // A rejected request stays rejected even once there would be room.
    h.apply_one(Command::CloseDeal {
        deal_id: "d".into(),
    })
    .unwrap();
    assert_eq!(
        h.submit(2, "d", "bob", "10"),
        rejected(RejectReason::DealClosed)
    );
    assert_eq!(
        h.submit(2, "d", "bob", "10"),
        rejected(RejectReason::DealClosed)
    );
}

#[test]
fn rule_1_a_reused_id_with_another_payload_is_a_conflict_that_changes_nothing() {
    let mut h = Harness::new();
    h.create_deal("d", "1000", 2);
    h.create_deal("e", "1000", 2);
    h.submit(1, "d", "ana", "10");
    let recorded = h.state.investment(rid(1));
    for other in [
        submit(1, "d", "ana", "11"),
        submit(1, "d", "bob", "10"),
        submit(1, "e", "ana", "10"),
    ] {
        let before = h.state.investment_count();
        assert_eq!(
            h.apply_one(other),
            Err(CommandError::RequestConflict { request_id: rid(1) })
        );
        assert_eq!(h.state.investment_count(), before);
    }
    assert_eq!(h.state.deal("d").unwrap().investor_count, 1);
    assert_eq!(h.state.deal("e").unwrap().investor_count, 0);
    assert_eq!(h.state.investment(rid(1)), recorded);
}

#[test]
fn rule_2_unknown_and_closed_deals_are_rejected_and_recorded() {
    let mut h = Harness::new();
    assert_eq!(
        h.submit(1, "nope", "ana", "10"),
        rejected(RejectReason::DealNotFound)
    );
    let recorded = h.state.investment(rid(1)).unwrap();
    assert_eq!(recorded.status, Status::Rejected);
    assert_eq!(recorded.reject_reason, Some(RejectReason::DealNotFound));
    assert_eq!(recorded.deal_id, "nope");
    assert!(
        h.state.deal("nope").is_none(),
        "naming a deal does not create it"
    );

    h.create_deal("d", "1000", 2);
    h.apply_one(Command::CloseDeal {
        deal_id: "d".into(),
    })
    .unwrap();
    assert_eq!(
        h.submit(2, "d", "ana", "10"),
        rejected(RejectReason::DealClosed)
    );
    assert_eq!(h.state.deal("d").unwrap().status, DealStatus::Closed);
    // Rejections are part of the deal's decision list (audit trail), unknown-deal ones are not.
    let page = h.state.deal_investments("d", 0, 10).unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].request_id, rid(2));
}

#[test]
fn rule_3_tickets_outside_the_range_are_rejected() {
    let mut h = Harness::new();
    h.apply_one(create_deal("d", "1000", 10, Some("10"), Some("100")))
        .unwrap();
    assert_eq!(
        h.submit(1, "d", "a", "9.99"),
        rejected(RejectReason::TicketOutOfRange)
    );
    assert_eq!(
        h.submit(2, "d", "b", "100.01"),
        rejected(RejectReason::TicketOutOfRange)
    );
    assert_eq!(h.submit(3, "d", "c", "10"), Verdict::Pending);
    assert_eq!(h.submit(4, "d", "d", "100"), Verdict::Pending);
}

#[test]
fn rule_4_one_active_investment_per_user_and_deal() {
    let mut h = Harness::new();
    h.create_deal("d", "1000", 10);
    h.create_deal("e", "1000", 10);
    assert_eq!(h.submit(1, "d", "ana", "10"), Verdict::Pending);
    assert_eq!(
        h.submit(2, "d", "ana", "20"),
        rejected(RejectReason::DuplicateInvestor)
    );
    assert_eq!(
        h.submit(3, "e", "ana", "20"),
        Verdict::Pending,
        "other deals are fine"
    );
}

#[test]
fn rule_5_the_investor_limit_holds() {
    let mut h = Harness::new();
    h.create_deal("d", "1000", 2);
    assert_eq!(h.submit(1, "d", "a", "1"), Verdict::Pending);
    assert_eq!(h.submit(2, "d", "b", "1"), Verdict::Pending);
    assert_eq!(
        h.submit(3, "d", "c", "1"),
        rejected(RejectReason::InvestorLimitReached)
    );
}

#[test]
fn rule_6_the_deal_amount_holds_to_the_cent() {
    let mut h = Harness::new();
    h.create_deal("d", "100.00", 10);
    assert_eq!(h.submit(1, "d", "a", "60"), Verdict::Pending);
    assert_eq!(
        h.submit(2, "d", "b", "40.01"),
        rejected(RejectReason::AmountExceedsRemaining)
    );
    assert_eq!(h.submit(3, "d", "c", "40.00"), Verdict::Pending);
    let deal = h.state.deal("d").unwrap();
    assert_eq!(deal.reserved_amount, money("100"));
    assert_eq!(
        h.submit(4, "d", "e", "0.01"),
        rejected(RejectReason::AmountExceedsRemaining)
    );
}

#[test]
fn rule_7_admission_reserves_and_cancellation_gives_back() {
    let mut h = Harness::new();
    h.heartbeat(2);
    h.create_deal("d", "100", 1);
    assert_eq!(h.submit(1, "d", "ana", "100"), Verdict::Pending);
    let deal = h.state.deal("d").unwrap();
    assert_eq!(
        (deal.investor_count, deal.reserved_amount),
        (1, money("100"))
    );
    let user = h.state.user("ana").unwrap();
    assert_eq!(user.pending.len(), 1);
    assert!(h.saga(1).assignee.is_some(), "the saga opened");

    // The seat is full; once the payment is declined it is free again, for anyone.
    assert_eq!(
        h.submit(2, "d", "bob", "1"),
        rejected(RejectReason::InvestorLimitReached)
    );
    h.record(
        1,
        StepResult::PaymentDeclined {
            reason: "card".into(),
        },
    );
    assert_eq!(h.status(1), Status::Cancelled);
    let deal = h.state.deal("d").unwrap();
    assert_eq!(
        (deal.investor_count, deal.reserved_amount),
        (0, Money::ZERO)
    );
    assert!(h.state.user("ana").unwrap().pending.is_empty());
    assert_eq!(
        h.submit(3, "d", "ana", "100"),
        Verdict::Pending,
        "re-admissible"
    );
}

#[test]
fn rules_apply_in_their_documented_precedence() {
    // Each row breaks every rule from its own onwards; the first broken rule must win.
    let mut h = Harness::new();
    h.apply_one(create_deal("full", "100", 1, Some("10"), Some("50")))
        .unwrap();
    h.submit(1, "full", "ana", "50");
    h.apply_one(create_deal("closed", "100", 1, Some("10"), Some("50")))
        .unwrap();
    h.submit(2, "closed", "ana", "50");
    h.apply_one(Command::CloseDeal {
        deal_id: "closed".into(),
    })
    .unwrap();

    let rows = [
        // unknown deal beats everything
        (10, "missing", "ana", "5000", RejectReason::DealNotFound),
        // closed beats ticket range, duplicate, limit and amount
        (11, "closed", "ana", "5000", RejectReason::DealClosed),
        // ticket range beats duplicate, limit and amount
        (12, "full", "ana", "5000", RejectReason::TicketOutOfRange),
        // duplicate beats limit and amount
        (13, "full", "ana", "50", RejectReason::DuplicateInvestor),
        // limit beats amount
        (14, "full", "bob", "50", RejectReason::InvestorLimitReached),
    ];
    for (request, deal, user, amount, reason) in rows {
        assert_eq!(
            h.submit(request, deal, user, amount),
            rejected(reason),
            "request {request}"
        );
    }
    h.apply_one(create_deal("small", "10", 5, None, None))
        .unwrap();
    assert_eq!(
        h.submit(15, "small", "bob", "11"),
        rejected(RejectReason::AmountExceedsRemaining)
    );
}

#[test]
fn malformed_commands_are_refused_and_change_nothing() {
    let mut h = Harness::new();
    h.create_deal("d", "1000", 2);
    let bad = [
        Command::Submit(Submit {
            request_id: rid(1),
            deal_id: "d".into(),
            user_id: "ana".into(),
            amount: Money::ZERO,
            waitlist: false,
            waitlist_ttl_ms: None,
        }),
        Command::Submit(Submit {
            request_id: rid(1),
            deal_id: "d".into(),
            user_id: "ana".into(),
            amount: Money::from_cents(Money::MAX.cents() + 1),
            waitlist: false,
            waitlist_ttl_ms: None,
        }),
        // A time to live without the waitlist, or past 30 days.
        Command::Submit(Submit {
            request_id: rid(1),
            deal_id: "d".into(),
            user_id: "ana".into(),
            amount: money("1"),
            waitlist: false,
            waitlist_ttl_ms: Some(1_000),
        }),
        submit_waitlisted(1, "d", "ana", "1", Some(0)),
        submit_waitlisted(1, "d", "ana", "1", Some(WAITLIST_TTL_MS_MAX + 1)),
        submit(1, "", "ana", "1"),
        submit(1, "d", "", "1"),
        submit(1, &"d".repeat(65), "ana", "1"),
        submit(1, "d", "a b", "1"),
        create_deal("x", "1000", 0, None, None),
        create_deal("x", "1000", 100_001, None, None),
        create_deal("x", "1000", 1, Some("2000"), None),
        create_deal("x", "1000", 1, Some("20"), Some("10")),
        Command::CreateDeal(CreateDeal {
            max_waitlist: 0,
            ..deal_terms("x")
        }),
        Command::CreateDeal(CreateDeal {
            max_waitlist: MAX_WAITLIST_LIMIT + 1,
            ..deal_terms("x")
        }),
        Command::CreateDeal(CreateDeal {
            opens_at_ms: Some(T0_MS + 10),
            closes_at_ms: Some(T0_MS + 10),
            ..deal_terms("x")
        }),
        Command::CloseDeal {
            deal_id: "bad id".into(),
        },
        Command::SetParams(Params {
            saga_deadline_ms: 1,
            executor_lease_ms: 10_000,
            ..Params::default()
        }),
        Command::SetParams(Params {
            executor_lag_max_entries: 0,
            ..Params::default()
        }),
        Command::SetParams(Params {
            log_time_step_max_ms: 99,
            ..Params::default()
        }),
        Command::AbortSaga {
            request_id: rid(1),
            reason: "x".repeat(ERROR_TEXT_LEN_MAX + 1),
        },
        Command::Withdraw {
            // The nil UUID, which only a decoded command can carry.
            request_id: codec::decode(&codec::encode(&0u128)).expect("a nil id"),
        },
    ];
    for command in bad {
        let before = h.state.investment_count();
        let result = h.apply_one(command.clone());
        assert!(
            matches!(result, Err(CommandError::InvalidArgument { .. })),
            "{command:?} gave {result:?}"
        );
        assert_eq!(h.state.investment_count(), before);
        assert!(h.state.deal("x").is_none());
    }
    assert_eq!(h.state.deal("d").unwrap().investor_count, 0);
    assert_eq!(h.state.params(), Params::default());
}

#[test]
fn deals_are_created_idempotently_and_closed_once_created() {
    let mut h = Harness::new();
    h.create_deal("d", "1000", 2);
    assert_eq!(
        h.apply_one(create_deal("d", "1000", 2, None, None)),
        Ok(Outcome::DealCreated { created: false })
    );
    assert_eq!(
        h.apply_one(create_deal("d", "2000", 2, None, None)),
        Err(CommandError::DealConflict {
            deal_id: "d".into()
        })
    );
    assert_eq!(
        h.apply_one(Command::CloseDeal {
            deal_id: "nope".into()
        }),
        Err(CommandError::DealNotFound {
            deal_id: "nope".into()
        })
    );
    // An id first named by a rejected request can still be created later.
    h.submit(1, "later", "ana", "1");
    h.create_deal("later", "10", 1);
    assert_eq!(h.submit(2, "later", "ana", "1"), Verdict::Pending);
    let ids: Vec<String> = h
        .state
        .deals(0, 10)
        .items
        .into_iter()
        .map(|d| d.deal_id)
        .collect();
    assert_eq!(ids, ["d", "later"]);
    let listed = h.state.deal_investments("later", 0, 10).unwrap();
    assert_eq!(
        listed.items.len(),
        1,
        "the unknown-deal rejection is not in its list"
    );
}

#[test]
fn lists_page_in_decision_order() {
    let mut h = Harness::new();
    h.create_deal("d", "1000", 200);
    let commands = (1..=25)
        .map(|n| submit(n, "d", &format!("u{n}"), "1"))
        .collect();
    h.apply(commands);
    let mut seen = Vec::new();
    let mut cursor = Some(0);
    while let Some(start) = cursor {
        let page = h.state.deal_investments("d", start, 10).unwrap();
        assert!(page.items.len() <= 10);
        seen.extend(
            page.items
                .iter()
                .map(|i| (i.request_id, i.log_index, i.offset)),
        );
        cursor = page.next;
    }
    let expected: Vec<_> = (1..=25)
        .map(|n| (rid(n), h.log_index, n as u32 - 1))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        h.state.deal_investments("nope", 0, 10),
        Err(QueryError::DealNotFound("nope".into()))
    );
}

#[test]
fn entries_apply_in_order_only_and_time_never_goes_back() {
    let mut h = Harness::new();
    h.create_deal("d", "1000", 2);
    let entry = Entry {
        header: EntryHeader {
            leader_id: 1,
            time_ms: T0_MS,
        },
        commands: vec![submit(1, "d", "ana", "1")],
    };
    let mut events = Vec::new();
    let digest = h.state.digest();
    assert_eq!(
        h.state.apply_entry(h.log_index, &entry, &mut events),
        Err(EntryError::OutOfOrder {
            last: h.log_index,
            got: h.log_index
        })
    );
    assert_eq!(h.state.digest(), digest);

    h.time_ms = T0_MS + 5_000;
    h.advance(0);
    h.time_ms = T0_MS; // a new leader with a slower clock
    h.advance(0);
    assert_eq!(h.state.now_ms(), T0_MS + 5_000);
}
