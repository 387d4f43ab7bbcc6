use crate::check::testkit::*;
use crate::check::CheckName;
use crate::history::{OpResult, Reply};

/// Admissions, every kind of rejection the rules make here, a cancellation that frees a seat
/// taken again later, a confirmation, replays and fillers in the gaps.
fn busy_deal() -> Hist {
    let mut h = Hist::new();
    let ana = h.admit("ana", 4_000, (2, 0));
    h.reject("ana", 1_000, (2, 1), "DUPLICATE_INVESTOR");
    let bob = h.admit("bob", 5_000, (3, 0));
    h.reject("cy", 500, (3, 1), "INVESTOR_LIMIT_REACHED");
    h.cancel(&bob, (4, 0));
    h.resubmit(&ana);
    let cy = h.admit("cy", 6_000, (5, 0));
    h.reject("dan", 100, (5, 2), "INVESTOR_LIMIT_REACHED");
    h.confirm(&ana);
    h.confirm(&cy);
    h
}

#[test]
fn a_busy_deal_replays_exactly() {
    assert_valid(&busy_deal().input());
}

#[test]
fn a_reply_whose_position_holds_another_decision() {
    let mut h = Hist::new();
    let ana = h.admit("ana", 1_000, (2, 0));
    let bob = h.admit("bob", 1_000, (2, 1));
    let mut input = h.input();
    let OpResult::Ok(Reply::Submitted(reply)) = &mut input.history[ana.op as usize].result else {
        unreachable!()
    };
    reply.offset = 1;
    let words = format!("holds request {}", bob.rid);
    assert_caught(&input, CheckName::Replay, &[ana.op], &words);
}

#[test]
fn an_admission_beyond_max_investors() {
    let mut h = Hist::new();
    h.admit("ana", 1_000, (2, 0));
    h.admit("bob", 1_000, (2, 1));
    let cy = h.admit("cy", 1_000, (2, 2));
    let input = h.input();
    let invalid = assert_caught(
        &input,
        CheckName::Replay,
        &[cy.op],
        "as rejected (INVESTOR_LIMIT_REACHED)",
    );
    assert!(invalid.contains(&CheckName::Capacity));
    assert_caught(
        &input,
        CheckName::Capacity,
        &[cy.op],
        "3 investors, above its 2",
    );
}

#[test]
fn a_rejection_for_the_wrong_reason() {
    let mut h = Hist::new();
    h.admit("ana", 1_000, (2, 0));
    let again = h.reject("ana", 1_000, (3, 0), "INVESTOR_LIMIT_REACHED");
    let invalid = assert_caught(
        &h.input(),
        CheckName::Replay,
        &[again.op],
        "as rejected (DUPLICATE_INVESTOR)",
    );
    assert_eq!(invalid, [CheckName::Replay]);
}

#[test]
fn a_rejection_the_rules_would_admit() {
    let mut h = Hist::new();
    let ana = h.reject("ana", 1_000, (2, 0), "AMOUNT_EXCEEDS_REMAINING");
    assert_caught(&h.input(), CheckName::Replay, &[ana.op], "as admitted");
}

#[test]
fn a_cancellation_placed_before_its_decision() {
    let mut h = Hist::new();
    let ana = h.admit("ana", 1_000, (3, 0));
    h.cancel(&ana, (2, 0));
    assert_caught(
        &h.input(),
        CheckName::Replay,
        &[ana.op],
        "not after its decision",
    );
}

#[test]
fn a_request_decided_twice_in_a_final_state() {
    let mut h = Hist::new();
    let ana = h.admit("ana", 1_000, (2, 0));
    let mut input = h.input();
    let mut twin = h.inv(&ana.rid).clone();
    twin.log_index = 4;
    for node in &mut input.finals {
        node.investments.push(twin.clone());
    }
    assert_caught(&input, CheckName::Replay, &[ana.op], "twice");
}

#[test]
fn two_decisions_claiming_one_position() {
    let mut h = Hist::new();
    h.admit("ana", 1_000, (2, 0));
    let bob = h.admit("bob", 1_000, (2, 0));
    assert_caught(
        &h.input(),
        CheckName::Replay,
        &[bob.op],
        "both claim position (2, 0)",
    );
}

/// Two seats: ana and bob take them; cy, dan and eve wait. ana's payment is declined at
/// (5, 0) and cy takes her seat there; dan withdraws at (6, 0); the deal closes at (7, 0) and
/// eve's wait ends.
fn waitlisted_deal() -> (Hist, [Sub; 5]) {
    let mut h = Hist::new();
    let ana = h.admit("ana", 4_000, (2, 0));
    let bob = h.admit("bob", 4_000, (2, 1));
    let cy = h.waitlist("cy", 2_000, (3, 0));
    let dan = h.waitlist("dan", 2_000, (3, 1));
    let eve = h.waitlist("eve", 2_000, (4, 0));
    h.cancel(&ana, (5, 0));
    h.admit_from_waitlist(&cy, (5, 0));
    h.confirm(&cy);
    h.confirm(&bob);
    h.withdraw(&dan, (6, 0));
    h.close((7, 0));
    (h, [ana, bob, cy, dan, eve])
}

#[test]
fn a_deal_with_a_waitlist_replays_exactly() {
    let (h, _) = waitlisted_deal();
    let verdicts = assert_valid(&h.input());
    assert_eq!(verdicts.summary.admitted_from_waitlist, 1);
    assert_eq!(verdicts.summary.withdraws.ok, 1);
}

#[test]
fn a_waitlisted_request_passed_over() {
    let (mut h, [_, _, cy, dan, _]) = waitlisted_deal();
    // dan, behind cy and needing as much, gets the freed seat; cy is left waiting until the
    // closing.
    h.inv_mut(&dan.rid).waitlist_ended_at = None;
    h.admit_from_waitlist(&dan, (5, 0));
    h.inv_mut(&dan.rid).reject_reason = None;
    h.inv_mut(&cy.rid).admitted_at = None;
    h.end_waitlisted(&cy, (7, 0));
    h.ops
        .retain(|op| !matches!(op.call, crate::history::Call::Withdraw { .. }));
    assert_caught(
        &h.input(),
        CheckName::Replay,
        &[cy.op],
        "was admitted from the waitlist at nowhere, but the rules admit it at (5, 0)",
    );
}

#[test]
fn an_admission_from_the_waitlist_without_a_free_seat() {
    let (mut h, [_, _, _, _, eve]) = waitlisted_deal();
    h.admit_from_waitlist(&eve, (4, 1));
    h.inv_mut(&eve.rid).reject_reason = None;
    h.inv_mut(&eve.rid).waitlist_ended_at = None;
    let input = h.input();
    assert_caught(
        &input,
        CheckName::Replay,
        &[eve.op],
        "was admitted from the waitlist at (4, 1), but the rules admit it at nowhere",
    );
    assert_caught(
        &input,
        CheckName::Capacity,
        &[eve.op],
        "3 investors, above its 2",
    );
}

#[test]
fn a_request_that_leaves_the_waitlist_twice() {
    let (mut h, [_, _, cy, _, _]) = waitlisted_deal();
    // cy, admitted at (5, 0), is also said to have left the waitlist at (6, 1).
    h.inv_mut(&cy.rid).waitlist_ended_at = Some((6, 1));
    h.inv_mut(&cy.rid).status = crate::history::InvStatus::Rejected;
    h.inv_mut(&cy.rid).reject_reason = Some("WAITLIST_CLOSED".into());
    h.inv_mut(&cy.rid).admitted_at = None;
    assert_caught(
        &h.input(),
        CheckName::Replay,
        &[cy.op],
        "left the waitlist at (6, 1), but the replay has it no longer waiting there",
    );
}

#[test]
fn a_waitlisted_reply_the_final_state_calls_rejected() {
    let (mut h, [_, _, _, _, eve]) = waitlisted_deal();
    let inv = h.inv_mut(&eve.rid);
    inv.waitlisted = false;
    inv.waitlist_ended_at = None;
    inv.reject_reason = Some("INVESTOR_LIMIT_REACHED".into());
    let input = h.input();
    assert_caught(
        &input,
        CheckName::NoLoss,
        &[eve.op],
        "but its reply said waitlisted at (4, 0)",
    );
    assert_caught(&input, CheckName::Replay, &[eve.op], "as waitlisted");
}

#[test]
fn an_acknowledged_withdrawal_missing_from_the_final_state() {
    let (mut h, [_, _, _, dan, _]) = waitlisted_deal();
    // The final state has dan waiting until the closing, not withdrawn at (6, 0).
    h.inv_mut(&dan.rid).waitlist_ended_at = Some((7, 0));
    let withdraw = h
        .ops
        .iter()
        .find(|op| matches!(op.call, crate::history::Call::Withdraw { .. }))
        .map(|op| op.index)
        .unwrap();
    assert_caught(
        &h.input(),
        CheckName::NoLoss,
        &[withdraw],
        "but its withdrawal was acknowledged at (6, 0)",
    );
}
