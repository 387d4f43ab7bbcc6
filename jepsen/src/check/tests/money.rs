use ledger_partners::{AuditEntry, ChargeStatus};

use crate::check::testkit::*;
use crate::check::{check, CheckName, Verdict};
use crate::history::CheckInput;

/// Three seats: Ana confirmed, Bob cancelled (payment declined), Cy pending, Dan rejected.
fn sagas() -> (Hist, [Sub; 4]) {
    let mut h = Hist::with_deal(3, 10_000);
    let ana = h.admit("ana", 4_000, (2, 0));
    let bob = h.admit("bob", 3_000, (2, 1));
    let cy = h.admit("cy", 2_000, (3, 0));
    let dan = h.reject("dan", 1_000, (3, 1), "INVESTOR_LIMIT_REACHED");
    h.confirm(&ana);
    h.cancel(&bob, (4, 0));
    (h, [ana, bob, cy, dan])
}

fn audit_of(input: &mut CheckInput) -> &mut ledger_partners::AuditLog {
    input.audit.as_mut().expect("the kit writes an audit")
}

fn charge_event(h: &Hist, sub: &Sub, status: ChargeStatus) -> AuditEntry {
    let inv = h.inv(&sub.rid);
    AuditEntry::Charge {
        key: format!("{}:payment", sub.rid),
        payment_id: "p".into(),
        user_id: inv.user_id.clone(),
        amount: ledger_state_machine::Money::from_cents(inv.amount_cents).to_decimal(),
        currency: "EUR".into(),
        status,
    }
}

fn refund_event(h: &Hist, sub: &Sub) -> AuditEntry {
    let inv = h.inv(&sub.rid);
    AuditEntry::Refund {
        key: format!("{}:payment", sub.rid),
        payment_id: "p".into(),
        user_id: inv.user_id.clone(),
        amount: ledger_state_machine::Money::from_cents(inv.amount_cents).to_decimal(),
        currency: "EUR".into(),
    }
}

#[test]
fn charges_and_documents_that_match_the_sagas_pass() {
    let (h, [_, _, cy, _]) = sagas();
    let mut input = h.input();
    // A pending saga may have been charged already.
    push_event(
        audit_of(&mut input),
        charge_event(&h, &cy, ChargeStatus::Succeeded),
    );
    let verdicts = assert_valid(&input);
    let money = verdicts.summary.money.expect("audit present");
    assert_eq!(
        (money.charges, money.declined_charges, money.documents),
        (3, 1, 1)
    );
}

#[test]
fn a_charge_for_an_unknown_request() {
    let (h, [ana, ..]) = sagas();
    let mut input = h.input();
    let mut stray = charge_event(&h, &ana, ChargeStatus::Succeeded);
    if let AuditEntry::Charge { key, .. } = &mut stray {
        *key = format!("{}:payment", rid(99));
    }
    push_event(audit_of(&mut input), stray);
    assert_caught(&input, CheckName::Money, &[], "charged unknown request");
}

#[test]
fn a_charge_for_a_rejected_request() {
    let (h, [.., dan]) = sagas();
    let mut input = h.input();
    push_event(
        audit_of(&mut input),
        charge_event(&h, &dan, ChargeStatus::Declined),
    );
    assert_caught(
        &input,
        CheckName::Money,
        &[dan.op],
        "charged REJECTED request",
    );
}

#[test]
fn a_refund_without_a_charge() {
    let (h, [_, _, cy, _]) = sagas();
    let mut input = h.input();
    push_event(audit_of(&mut input), refund_event(&h, &cy));
    assert_caught(
        &input,
        CheckName::Money,
        &[cy.op],
        "without a charge before it",
    );
}

#[test]
fn a_confirmed_investment_with_nothing_net_charged() {
    let (h, [ana, ..]) = sagas();
    let mut input = h.input();
    push_event(audit_of(&mut input), refund_event(&h, &ana));
    assert_caught(
        &input,
        CheckName::Money,
        &[ana.op],
        "Confirmed with 0 cents net charged, expected 4000",
    );
}

#[test]
fn a_net_charge_on_a_cancelled_investment() {
    let (h, [_, bob, ..]) = sagas();
    let mut input = h.input();
    for event in &mut audit_of(&mut input).events {
        if let AuditEntry::Charge { status, .. } = &mut event.entry {
            *status = ChargeStatus::Succeeded;
        }
    }
    assert_caught(
        &input,
        CheckName::Money,
        &[bob.op],
        "Cancelled with 3000 cents net charged, expected 0",
    );
}

#[test]
fn more_charged_in_a_deal_than_its_amount() {
    let mut h = Hist::new();
    let ana = h.admit("ana", 6_000, (2, 0));
    let bob = h.admit("bob", 6_000, (3, 0));
    h.confirm(&ana);
    h.confirm(&bob);
    assert_caught(
        &h.input(),
        CheckName::Money,
        &[],
        "deal d has 12000 cents net charged, above its amount of 10000 cents",
    );
}

#[test]
fn a_confirmed_investment_without_a_document() {
    let (h, [ana, ..]) = sagas();
    let mut input = h.input();
    audit_of(&mut input)
        .events
        .retain(|e| !matches!(e.entry, AuditEntry::Document { .. }));
    assert_caught(
        &input,
        CheckName::Money,
        &[ana.op],
        "CONFIRMED with 0 documents",
    );
}

#[test]
fn a_document_for_a_cancelled_investment_is_an_orphan_not_a_violation() {
    let (h, [_, bob, ..]) = sagas();
    let mut input = h.input();
    let books_document = document(h.inv(&bob.rid));
    push_event(
        audit_of(&mut input),
        AuditEntry::Document {
            key: books_document.idempotency_key,
            document_id: "doc".into(),
            request_id: books_document.request_id,
            deal_id: books_document.deal_id,
            user_id: books_document.user_id,
            amount: books_document.amount,
        },
    );
    let verdicts = assert_valid(&input);
    assert_eq!(verdicts.summary.money.expect("audit").orphan_documents, 1);
}

#[test]
fn a_run_without_an_audit_is_unknown() {
    let (h, _) = sagas();
    let mut input = h.input();
    input.audit = None;
    let verdicts = check(&input);
    assert!(matches!(
        verdict_of(&verdicts, CheckName::Money),
        Verdict::Unknown { reason } if reason.contains("no sagas")
    ));
}
