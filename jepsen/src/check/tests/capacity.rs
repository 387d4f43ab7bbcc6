use crate::check::testkit::*;
use crate::check::CheckName;

#[test]
fn a_full_deal_within_its_limits_passes() {
    let mut h = Hist::with_deal(3, 9_000);
    h.admit("ana", 3_000, (2, 0));
    h.admit("bob", 3_000, (2, 1));
    h.admit("cy", 3_000, (2, 2));
    h.reject("dan", 100, (3, 0), "INVESTOR_LIMIT_REACHED");
    h.read(3, 9_000);
    assert_valid(&h.input());
}

#[test]
fn reserved_beyond_the_deal_amount() {
    let mut h = Hist::new();
    h.admit("ana", 6_000, (2, 0));
    let bob = h.admit("bob", 6_000, (3, 0));
    assert_caught(
        &h.input(),
        CheckName::Capacity,
        &[bob.op],
        "reserves 12000 cents of deal d, above its 10000 (I2)",
    );
}

#[test]
fn two_active_investments_of_one_user() {
    let mut h = Hist::with_deal(5, 10_000);
    let first = h.admit("ana", 1_000, (2, 0));
    let second = h.admit("ana", 1_000, (3, 0));
    let words = format!("already holds {} in deal d (I3)", first.rid);
    assert_caught(&h.input(), CheckName::Capacity, &[second.op], &words);
}

#[test]
fn a_user_may_invest_again_after_a_cancellation() {
    let mut h = Hist::new();
    let first = h.admit("ana", 1_000, (2, 0));
    h.cancel(&first, (3, 0));
    h.admit("ana", 1_000, (4, 0));
    assert_valid(&h.input());
}

#[test]
fn final_counters_that_do_not_match_the_investments() {
    let mut h = Hist::new();
    h.admit("ana", 1_000, (2, 0));
    let mut input = h.input();
    input.finals[1].deals[0].counters.investor_count = 2;
    assert_caught(&input, CheckName::Capacity, &[], "node 2 shows deal d");
}

#[test]
fn a_read_beyond_the_limits() {
    let mut h = Hist::new();
    let read = h.read(3, 0);
    assert_caught(
        &h.input(),
        CheckName::Capacity,
        &[read],
        "more investors than seats",
    );
}
