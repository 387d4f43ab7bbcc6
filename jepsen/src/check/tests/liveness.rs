use crate::check::testkit::*;
use crate::check::{check, CheckName, Verdict};
use crate::history::{CheckInput, Liveness};

fn with_liveness(liveness: Liveness) -> CheckInput {
    let mut input = Hist::new().input();
    input.liveness = liveness;
    input
}

fn liveness_verdict(liveness: Liveness) -> Verdict {
    verdict_of(&check(&with_liveness(liveness)), CheckName::Liveness).clone()
}

#[test]
fn a_quick_recovery_passes() {
    assert_eq!(liveness_verdict(healthy_liveness()), Verdict::Valid);
}

#[test]
fn stuck_sagas() {
    let input = with_liveness(Liveness {
        stuck: vec![rid(7)],
        ..healthy_liveness()
    });
    let verdicts = check(&input);
    let Verdict::Invalid { violations, .. } = verdict_of(&verdicts, CheckName::Liveness) else {
        panic!("expected invalid");
    };
    assert_eq!(violations[0].request_ids, [rid(7)]);
}

#[test]
fn no_leader_within_the_window() {
    let verdict = liveness_verdict(Liveness {
        leader_us: None,
        waited_us: 130_000_000,
        ..healthy_liveness()
    });
    assert!(matches!(verdict, Verdict::Invalid { violations, .. }
        if violations[0].message.contains("no one leader")));
}

#[test]
fn a_leader_only_after_the_window() {
    let healed = healthy_liveness().healed_us;
    let verdict = liveness_verdict(Liveness {
        leader_us: Some(healed + 150_000_000),
        waited_us: 160_000_000,
        ..healthy_liveness()
    });
    assert!(matches!(verdict, Verdict::Invalid { violations, .. }
        if violations[0].message.contains("150.0 s after healing")));
}

#[test]
fn no_leader_yet_but_a_short_wait_is_unknown() {
    let verdict = liveness_verdict(Liveness {
        leader_us: None,
        waited_us: 30_000_000,
        ..healthy_liveness()
    });
    assert!(matches!(verdict, Verdict::Unknown { .. }));
}

#[test]
fn pending_investments_in_the_final_state_are_noted() {
    let mut h = Hist::new();
    h.admit("ana", 1_000, (2, 0));
    let verdicts = check(&h.input());
    let liveness = verdicts.get(CheckName::Liveness).expect("runs");
    assert_eq!(liveness.verdict, Verdict::Valid);
    assert_eq!(
        liveness.note.as_deref(),
        Some("the reference final state still holds 1 PENDING investments")
    );
}

#[test]
fn nothing_observed_is_unknown() {
    assert!(matches!(
        liveness_verdict(Liveness::default()),
        Verdict::Unknown { .. }
    ));
}
