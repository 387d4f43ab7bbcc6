//! Odd input yields `Unknown` with a reason, never a panic.

use crate::check::testkit::*;
use crate::check::{check, CheckName, Overall, Verdict};
use crate::history::CheckInput;

fn unknown_reason(input: &CheckInput, name: CheckName) -> String {
    match verdict_of(&check(input), name) {
        Verdict::Unknown { reason } => reason.clone(),
        other => panic!("{name}: expected unknown, got {other:?}"),
    }
}

#[test]
fn an_empty_input_is_unknown() {
    let verdicts = check(&CheckInput::default());
    assert_eq!(verdicts.overall, Overall::Unknown);
}

#[test]
fn a_cancellation_without_its_position() {
    let mut h = Hist::new();
    let ana = h.admit("ana", 1_000, (2, 0));
    h.cancel(&ana, (3, 0));
    let mut input = h.input();
    for node in &mut input.finals {
        node.investments[0].cancelled_at = None;
    }
    for name in [
        CheckName::Replay,
        CheckName::Capacity,
        CheckName::LinearizableReads,
    ] {
        assert!(unknown_reason(&input, name).contains("cancellation position is missing"));
    }
}

#[test]
fn a_request_id_that_is_not_a_uuid() {
    let mut h = Hist::new();
    h.admit("ana", 1_000, (2, 0));
    let mut input = h.input();
    for node in &mut input.finals {
        node.investments[0].request_id = "not-a-uuid".into();
    }
    assert!(unknown_reason(&input, CheckName::Replay).contains("not a UUID"));
}

#[test]
fn an_offset_no_entry_can_hold() {
    let mut h = Hist::new();
    h.admit("ana", 1_000, (2, u32::MAX));
    assert!(unknown_reason(&h.input(), CheckName::Replay).contains("beyond what an entry"));
}

#[test]
fn an_op_completing_before_its_invocation() {
    let mut h = Hist::new();
    let ana = h.admit("ana", 1_000, (2, 0));
    let mut input = h.input();
    at_times(&mut input, ana.op, 500, 400);
    assert!(unknown_reason(&input, CheckName::RealTimeOrder).contains("before its invocation"));
}

#[test]
fn deals_the_state_machine_refuses() {
    let mut h = Hist::new();
    h.admit("ana", 1_000, (2, 0));
    let mut input = h.input();
    input.deals[0].max_investors = 0;
    assert!(unknown_reason(&input, CheckName::Replay).contains("cannot be created"));
}
