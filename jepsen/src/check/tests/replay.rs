use crate::check::testkit::*;
use crate::check::{CheckName, Verdict};
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

#[test]
fn a_decision_in_the_setup_entry_makes_the_replay_unknown() {
    let mut h = Hist::new();
    h.admit("ana", 1_000, (1, 0));
    let verdicts = crate::check::check(&h.input());
    let Verdict::Unknown { reason } = verdict_of(&verdicts, CheckName::Replay) else {
        panic!("expected unknown");
    };
    assert!(reason.contains("index 2 or later"), "{reason}");
}
