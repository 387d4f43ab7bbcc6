//! Archives (issue #12 §3): a CLOSED deal whose sagas all ended leaves the live state and the
//! snapshots, once the caller names its receipt head; its id keeps answering "archived".

mod common;

use common::*;
use ledger_state_machine::*;

fn archive(deal_id: &str, head: Receipt) -> Command {
    Command::ArchiveDeal(ArchiveDeal {
        deal_id: deal_id.into(),
        receipt_seq: head.deal_seq,
        receipt_hash: head.hash,
    })
}

fn head(h: &Harness, deal_id: &str) -> Receipt {
    h.state.deal(deal_id).expect("a live deal").receipt_head
}

/// Runs request `n`'s saga to its end: confirmed, notified.
fn confirm(h: &mut Harness, n: u128) {
    h.record(n, paid(&format!("pay-{n}")));
    h.record(n, documented(&format!("doc-{n}")));
    h.record(n, notified(&format!("msg-{n}")));
    assert_eq!(h.saga(n).step, SagaStep::Done);
}

fn close(h: &mut Harness, deal_id: &str) {
    assert_eq!(
        h.apply_one(Command::CloseDeal {
            deal_id: deal_id.into()
        }),
        Ok(Outcome::DealClosed)
    );
}

#[test]
fn only_a_closed_deal_with_every_saga_ended_and_its_own_head_is_archived() {
    let mut h = Harness::new();
    h.heartbeat(1);
    h.create_deal("d", "1000", 2);
    h.submit(1, "d", "ana", "100");
    h.submit(2, "d", "bob", "100");
    h.submit(3, "d", "cyd", "100"); // rejected: two seats

    let open = h.apply_one(archive("d", head(&h, "d")));
    assert!(
        matches!(open, Err(CommandError::DealOpen { .. })),
        "{open:?}"
    );
    close(&mut h, "d");
    confirm(&mut h, 1);
    let running = h.apply_one(archive("d", head(&h, "d")));
    assert!(
        matches!(running, Err(CommandError::SagasOpen { open: 1, .. })),
        "{running:?}"
    );
    confirm(&mut h, 2);

    // A head the caller made up, or an older one, is refused: the export would not be whole.
    let mut stale = head(&h, "d");
    stale.deal_seq -= 1;
    let refused = h.apply_one(archive("d", stale));
    assert!(
        matches!(
            refused,
            Err(CommandError::ReceiptHeadMismatch { deal_seq: 3, .. })
        ),
        "{refused:?}"
    );
    let mut forged = head(&h, "d");
    forged.hash[0] ^= 1;
    assert!(h.apply_one(archive("d", forged)).is_err());
    assert!(h.state.deal("d").is_some(), "a refusal changes nothing");

    let unknown = h.apply_one(archive("nope", Receipt::GENESIS));
    assert!(
        matches!(unknown, Err(CommandError::DealNotFound { .. })),
        "{unknown:?}"
    );

    let final_head = head(&h, "d");
    assert_eq!(
        h.apply_one(archive("d", final_head)),
        Ok(Outcome::DealArchived { archived: true })
    );
    let kept = h
        .state
        .archived_deal("d")
        .expect("the record of an archived deal");
    assert_eq!(kept.receipt_head(), final_head);
    assert_eq!(
        (kept.confirmed_count, kept.confirmed_amount),
        (2, money("200"))
    );
    // A retry with the same head succeeds again; another head does not.
    assert_eq!(
        h.apply_one(archive("d", final_head)),
        Ok(Outcome::DealArchived { archived: false })
    );
    assert!(matches!(
        h.apply_one(archive("d", Receipt::GENESIS)),
        Err(CommandError::DealArchived { .. })
    ));
}

#[test]
fn an_archived_deal_is_gone_from_queries_and_refuses_every_command() {
    let mut h = Harness::new();
    h.heartbeat(1);
    h.create_deal("d", "1000", 1);
    h.create_deal("e", "1000", 5);
    h.submit(1, "d", "ana", "100");
    h.submit(2, "e", "ana", "100"); // ana stays: she holds a seat in e
    h.submit(3, "d", "bob", "100"); // rejected; bob is named by nothing else
    close(&mut h, "d");
    confirm(&mut h, 1);
    h.apply_one(archive("d", head(&h, "d"))).unwrap();

    assert!(h.state.deal("d").is_none());
    assert!(h.state.investment(rid(1)).is_none());
    assert!(h.state.investment(rid(3)).is_none());
    assert!(matches!(
        h.state.deal_investments("d", 0, 10),
        Err(QueryError::DealArchived(_))
    ));
    assert!(
        h.state.user("bob").is_none(),
        "a user named only by it goes too"
    );
    let ana = h.state.user("ana").expect("ana holds a seat in e");
    assert_eq!((ana.pending.len(), ana.confirmed.len()), (1, 0));
    assert_eq!(ana.pending[0].deal_id, "e");

    let before = (h.state.investment_count(), h.state.deals(0, 10).items.len());
    // A resubmission, a new request, a re-creation and a close are all refused, unchanged.
    for command in [
        submit(1, "d", "ana", "100"),
        submit(9, "d", "dee", "100"),
        create_deal("d", "1000", 1, None, None),
        Command::CloseDeal {
            deal_id: "d".into(),
        },
    ] {
        let refused = h.apply_one(command);
        assert!(
            matches!(refused, Err(CommandError::DealArchived { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(
        (h.state.investment_count(), h.state.deals(0, 10).items.len()),
        before
    );
    assert!(h.state.deal("d").is_none());
    assert_eq!(
        h.state.unknown_deal_rejections().0,
        0,
        "no rejection was kept"
    );

    // The other deal goes on as before, its positions compacted.
    assert_eq!(h.submit(4, "e", "bob", "100"), Verdict::Pending);
    confirm(&mut h, 2);
    assert_eq!(h.state.deal("e").unwrap().receipt_head.deal_seq, 2);

    // A snapshot keeps the record and nothing of the deal.
    let restored = AdmissionState::decode_snapshot(&h.state.encode_snapshot()).unwrap();
    assert_eq!(restored.digest(), h.state.digest());
    assert_eq!(
        restored.archived_deal("d").map(|a| a.receipt_head()),
        h.state.archived_deal("d").map(|a| a.receipt_head())
    );
    assert!(restored.investment(rid(1)).is_none());
}

#[test]
fn archiving_every_deal_brings_the_snapshot_back_to_an_empty_ledger_s_size() {
    let mut h = Harness::new();
    h.heartbeat(1);
    let empty = h.state.encode_snapshot().len();
    let mut n = 0u128;
    for d in 0..5 {
        let deal_id = format!("deal-{d}");
        h.create_deal(&deal_id, "1000000", 3);
        let mut commands = Vec::new();
        for u in 0..300 {
            n += 1;
            commands.push(submit(n, &deal_id, &format!("user-{d}-{u}"), "10"));
        }
        h.apply(commands);
        close(&mut h, &deal_id);
        for admitted in n - 299..=n - 297 {
            confirm(&mut h, admitted);
        }
    }
    let full = h.state.encode_snapshot().len();
    for d in 0..5 {
        let deal_id = format!("deal-{d}");
        h.apply_one(archive(&deal_id, head(&h, &deal_id))).unwrap();
    }
    let archived = h.state.encode_snapshot().len();
    assert!(
        full > empty + 1_500 * 20,
        "{full} bytes with 1,500 decisions"
    );
    // What stays: one small record per deal.
    assert!(
        archived < empty + 5 * 200,
        "{archived} bytes after archiving, {empty} empty"
    );
    assert_eq!(h.state.investment_count(), 0);
}
