use crate::check::testkit::*;
use crate::check::CheckName;

#[test]
fn sequential_ops_in_log_order_pass() {
    let mut h = Hist::new();
    let ana = h.admit("ana", 1_000, (2, 0));
    h.admit("bob", 1_000, (3, 0));
    // A replay answered later names an earlier position, as it should.
    h.resubmit(&ana);
    assert_valid(&h.input());
}

#[test]
fn b_ordered_before_a_although_a_completed_before_b_was_invoked() {
    let mut h = Hist::new();
    let a = h.admit("ana", 1_000, (3, 0));
    let b = h.admit("bob", 1_000, (2, 0));
    let invalid = assert_caught(
        &h.input(),
        CheckName::RealTimeOrder,
        &[a.op, b.op],
        "was decided before it",
    );
    assert_eq!(invalid, [CheckName::RealTimeOrder]);
}

#[test]
fn concurrent_ops_may_be_ordered_either_way() {
    let mut h = Hist::new();
    let a = h.admit("ana", 1_000, (3, 0));
    let b = h.admit("bob", 1_000, (2, 0));
    let mut input = h.input();
    // B is invoked before A's reply arrives.
    at_times(&mut input, a.op, 1_000, 1_500);
    at_times(&mut input, b.op, 1_400, 1_600);
    assert_valid(&input);
}

#[test]
fn a_fresh_decision_at_the_same_position_as_an_earlier_reply() {
    let mut h = Hist::new();
    let a = h.admit("ana", 1_000, (2, 0));
    let b = h.admit("bob", 1_000, (2, 1));
    let mut input = h.input();
    // B claims A's very position although A had answered before B was sent.
    if let crate::history::OpResult::Ok(crate::history::Reply::Submitted(d)) =
        &mut input.history[b.op as usize].result
    {
        d.offset = 0;
    }
    assert_caught(
        &input,
        CheckName::RealTimeOrder,
        &[a.op, b.op],
        "decided before it",
    );
}
