//! Requests naming a deal that does not exist (rule 2, DEAL_NOT_FOUND) create nothing but a
//! bounded record of their rejection (issue #11): no deal entry, no user, no investment.

mod common;

use common::*;
use ledger_state_machine::*;

/// The entries behind `fixtures/snapshot-v2.bin`: unknown deals named, one deal ("beta") named
/// by a rejection before it was created, users only ever named by such rejections.
fn v2_fixture_entries() -> Vec<Vec<Command>> {
    vec![
        vec![create_deal("alpha", "10000", 3, None, None)],
        vec![Command::ExecutorHeartbeat {
            node_id: 2,
            applied_index: 1,
        }],
        vec![
            submit(1, "ghost", "ana", "100"),
            submit(2, "alpha", "ana", "500"),
            submit(3, "beta", "bob", "200"),
        ],
        vec![
            create_deal("beta", "5000", 2, None, None),
            submit(4, "beta", "cara", "300"),
        ],
        vec![submit(5, "ghost", "dan", "50")],
    ]
}

fn dnf() -> Verdict {
    Verdict::Rejected(RejectReason::DealNotFound)
}

fn decided(applied: &Applied) -> Decision {
    match applied {
        Ok(Outcome::Submitted { decision, .. }) => *decision,
        other => panic!("expected a decision, got {other:?}"),
    }
}

#[test]
fn an_unknown_deal_creates_no_deal_user_or_investment() {
    let mut h = Harness::new();
    h.create_deal("real", "1000", 2);
    assert_eq!(h.submit(1, "ghost", "ana", "10"), dnf());

    assert_eq!(h.state.investment_count(), 0);
    assert_eq!(h.state.deal("ghost"), None);
    let deals = h.state.deals(0, 10);
    assert_eq!(deals.items.len(), 1, "only the created deal is listed");
    assert_eq!(deals.items[0].deal_id, "real");
    assert_eq!(
        h.state.user("ana"),
        None,
        "the user was never named by a real request"
    );
    assert_eq!(
        h.state.deal_investments("ghost", 0, 10),
        Err(QueryError::DealNotFound("ghost".into()))
    );
    assert_eq!(h.state.unknown_deal_rejections(), (1, 0));

    // The rejection itself is kept and answers queries.
    let seen = h.state.investment(rid(1)).expect("a kept rejection");
    assert_eq!(seen.status, Status::Rejected);
    assert_eq!(seen.reject_reason, Some(RejectReason::DealNotFound));
    assert_eq!(
        (&*seen.deal_id, &*seen.user_id, seen.amount),
        ("ghost", "ana", money("10"))
    );
    assert_eq!((seen.log_index, seen.offset), (h.log_index, 0));
    assert_eq!(h.state.decision(rid(1)), Some(seen.decision()));
}

#[test]
fn a_kept_rejection_is_replayed_and_guards_its_request_id() {
    let mut h = Harness::new();
    let first = decided(&h.apply_one(submit(1, "ghost", "ana", "10")));

    // The deal exists now, but the request was decided: rule 1 gives the first decision.
    h.create_deal("ghost", "1000", 2);
    assert_eq!(
        h.apply_one(submit(1, "ghost", "ana", "10")),
        Ok(Outcome::Submitted {
            decision: first,
            replayed: true
        })
    );
    assert_eq!(
        h.state
            .resubmission(&match submit(1, "ghost", "ana", "10") {
                Command::Submit(s) => s,
                _ => unreachable!(),
            }),
        Some(Ok(Outcome::Submitted {
            decision: first,
            replayed: true
        }))
    );

    // Another payload under the same id is a conflict that changes nothing.
    let before = h.state.digest();
    for other in [
        submit(1, "ghost", "ana", "11"),
        submit(1, "ghost", "bob", "10"),
        submit(1, "other", "ana", "10"),
    ] {
        assert_eq!(
            h.apply_one(other),
            Err(CommandError::RequestConflict { request_id: rid(1) })
        );
    }
    // Only log position and time moved.
    assert_eq!(h.state.deal("ghost").unwrap().investor_count, 0);
    assert_eq!(h.state.investment_count(), 0);
    assert_ne!(before, h.state.digest(), "the applied index moved on");
    assert_eq!(h.state.unknown_deal_rejections(), (1, 0));
}

#[test]
fn only_the_most_recent_rejections_are_kept() {
    let mut h = Harness::new();
    let total = UNKNOWN_DEAL_REJECTIONS_KEPT as u128 + 10;
    let per_entry = 16_384u128;
    let mut next = 1u128;
    while next <= total {
        let last = (next + per_entry - 1).min(total);
        let commands = (next..=last)
            .map(|n| submit(n, &format!("ghost-{}", n % 7), &format!("u{n}"), "1"))
            .collect();
        for result in h.apply(commands) {
            assert_eq!(decided(&result).verdict, dnf());
        }
        next = last + 1;
    }
    assert_eq!(
        h.state.unknown_deal_rejections(),
        (UNKNOWN_DEAL_REJECTIONS_KEPT, 10)
    );
    assert_eq!(h.state.investment_count(), 0);
    assert_eq!(h.state.deals(0, 10).items.len(), 0);
    for n in 1..=10 {
        assert_eq!(h.state.investment(rid(n)), None, "request {n} is forgotten");
    }
    for n in [11, total / 2, total] {
        assert!(h.state.investment(rid(n)).is_some(), "request {n} is kept");
    }

    // A forgotten request id is decided anew: once its deal exists, by the rules.
    h.create_deal("ghost-1", "1000", 2);
    let again = decided(&h.apply_one(submit(1, "ghost-1", "u1", "1")));
    assert_eq!(again.verdict, Verdict::Pending);
    assert_eq!(again.log_index, h.log_index);
    // A kept one is not.
    let kept = decided(&h.apply_one(submit(
        total,
        &format!("ghost-{}", total % 7),
        &format!("u{total}"),
        "1",
    )));
    assert!(kept.log_index < again.log_index);

    // The bound survives a snapshot, and so does what it remembers.
    let bytes = h.state.encode_snapshot();
    let loaded = AdmissionState::decode_snapshot(&bytes).expect("own snapshot loads");
    assert_eq!(loaded.digest(), h.state.digest());
    assert_eq!(
        loaded.unknown_deal_rejections(),
        h.state.unknown_deal_rejections()
    );
    assert_eq!(loaded.investment(rid(11)), h.state.investment(rid(11)));
    assert_eq!(loaded.investment(rid(2)), None);
}

#[test]
fn a_format_2_snapshot_is_converted_to_what_a_replay_gives() {
    // Written by the build of commit 909507a (format 2) from `v2_fixture_entries`.
    let bytes = include_bytes!("fixtures/snapshot-v2.bin");
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 2);
    let converted = AdmissionState::decode_snapshot(bytes).expect("a format 2 snapshot loads");
    converted.check_invariants().unwrap();

    let replayed = Harness::replaying(v2_fixture_entries());
    assert_eq!(converted.deals(0, 10), replayed.state.deals(0, 10));
    assert_eq!(
        converted.unknown_deal_rejections(),
        replayed.state.unknown_deal_rejections()
    );
    assert_eq!(converted.investment_count(), 2);
    assert_eq!(converted.unknown_deal_rejections(), (3, 0));
    assert_eq!(converted.user("bob"), None);
    assert_eq!(converted.user("dan"), None);
    assert_eq!(converted.user("ana").unwrap().pending.len(), 1);
    let deals: Vec<String> = converted
        .deals(0, 10)
        .items
        .into_iter()
        .map(|d| d.deal_id)
        .collect();
    assert_eq!(deals, ["alpha", "beta"]);
    for n in 1..=5 {
        assert_eq!(
            converted.investment(rid(n)),
            replayed.state.investment(rid(n)).map(without_history),
            "request {n}"
        );
    }
    assert_eq!(
        converted.investment(rid(3)).unwrap().reject_reason,
        Some(RejectReason::DealNotFound)
    );

    // Written again, it is in the current format.
    let rewritten = converted.encode_snapshot();
    assert_eq!(
        u32::from_le_bytes(rewritten[4..8].try_into().unwrap()),
        codec::FORMAT_VERSION
    );
    assert_eq!(codec::FORMAT_VERSION, 6);
}

#[test]
fn an_unknown_future_format_is_refused() {
    let mut bytes = Harness::new().state.encode_snapshot();
    let future = codec::FORMAT_VERSION + 1;
    bytes[4..8].copy_from_slice(&future.to_le_bytes());
    assert!(matches!(
        AdmissionState::decode_snapshot(&bytes),
        Err(SnapshotError::UnsupportedVersion(v)) if v == future
    ));
}
