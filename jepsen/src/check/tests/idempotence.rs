use crate::check::testkit::*;
use crate::check::CheckName;
use crate::history::{OpResult, Reply};

#[test]
fn resubmits_get_the_same_decision_or_already_exists() {
    let mut h = Hist::new();
    let ana = h.admit("ana", 1_000, (2, 0));
    let bob = h.reject("bob", 20_000, (3, 0), "AMOUNT_EXCEEDS_REMAINING");
    h.resubmit(&ana);
    h.resubmit(&bob);
    h.resubmit_other(&ana);
    assert_valid(&h.input());
}

#[test]
fn a_resubmit_with_another_payload_that_came_back_ok() {
    let mut h = Hist::new();
    let ana = h.admit("ana", 1_000, (2, 0));
    let replay = h.resubmit(&ana);
    let other = h.resubmit_other(&ana);
    let mut input = h.input();
    input.history[other as usize].result = input.history[replay as usize].result.clone();
    let invalid = assert_caught(
        &input,
        CheckName::Idempotence,
        &[other],
        "other than the recorded one",
    );
    assert_eq!(invalid, [CheckName::Idempotence]);
}

#[test]
fn already_exists_for_the_recorded_payload() {
    let mut h = Hist::new();
    let ana = h.admit("ana", 1_000, (2, 0));
    let same = h.resubmit(&ana);
    let other = h.resubmit_other(&ana);
    let mut input = h.input();
    input.history[same as usize].result = input.history[other as usize].result.clone();
    assert_caught(
        &input,
        CheckName::Idempotence,
        &[same],
        "for the very payload",
    );
}

#[test]
fn a_request_decided_afresh_twice() {
    let mut h = Hist::new();
    let ana = h.admit("ana", 1_000, (2, 0));
    let again = h.resubmit(&ana);
    let mut input = h.input();
    if let OpResult::Ok(Reply::Submitted(d)) = &mut input.history[again as usize].result {
        d.replayed = false;
    }
    assert_caught(
        &input,
        CheckName::Idempotence,
        &[ana.op, again],
        "decided afresh 2 times",
    );
}

#[test]
fn indefinite_submits_are_counted_against_the_final_state() {
    let mut h = Hist::new();
    h.info("ana", 1_000, Some((2, 0)));
    h.info("bob", 1_000, None);
    h.info("cy", 1_000, None);
    let verdicts = assert_valid(&h.input());
    let counts = verdicts
        .summary
        .indefinite
        .clone()
        .expect("final state present");
    assert_eq!((counts.took_effect, counts.no_effect), (1, 2));
    let note = verdicts
        .get(CheckName::Indefinite)
        .and_then(|c| c.note.clone());
    assert_eq!(
        note.as_deref(),
        Some("3 indefinite submits: 1 took effect, 2 did not")
    );
}

#[test]
fn an_indefinite_submit_that_took_effect_is_checked_like_the_others() {
    let mut h = Hist::with_deal(1, 10_000);
    h.admit("ana", 1_000, (2, 0));
    // Bob's submit timed out, yet took the seat there was not.
    h.info("bob", 1_000, Some((3, 0)));
    let invalid = assert_caught(
        &h.input(),
        CheckName::Capacity,
        &[],
        "2 investors, above its 1",
    );
    assert!(invalid.contains(&CheckName::Replay));
}
