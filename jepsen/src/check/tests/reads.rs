use crate::check::testkit::*;
use crate::check::CheckName;

#[test]
fn reads_that_see_the_deal_as_it_stood_pass() {
    let mut h = Hist::new();
    h.read(0, 0);
    let ana = h.admit("ana", 3_000, (2, 0));
    h.read(1, 3_000);
    h.admit("bob", 2_000, (3, 0));
    h.read(2, 5_000);
    h.cancel(&ana, (4, 0));
    // The cancellation is not acknowledged to anyone: a later read may or may not see it.
    h.read(1, 2_000);
    assert_valid(&h.input());
}

#[test]
fn a_read_that_misses_an_acknowledged_admission() {
    let mut h = Hist::new();
    h.admit("ana", 3_000, (2, 0));
    let stale = h.read(0, 0);
    let invalid = assert_caught(
        &h.input(),
        CheckName::LinearizableReads,
        &[stale],
        "never held between (2, 0)",
    );
    assert_eq!(invalid, [CheckName::LinearizableReads]);
}

#[test]
fn a_read_that_sees_an_admission_not_yet_sent() {
    let mut h = Hist::new();
    let early = h.read(1, 3_000);
    h.admit("ana", 3_000, (2, 0));
    assert_caught(
        &h.input(),
        CheckName::LinearizableReads,
        &[early],
        "just before (2, 0)",
    );
}

#[test]
fn a_read_concurrent_with_an_admission_may_see_either_side() {
    let mut h = Hist::new();
    let ana = h.admit("ana", 3_000, (2, 0));
    let before = h.read(0, 0);
    let after = h.read(1, 3_000);
    let mut input = h.input();
    at_times(&mut input, ana.op, 1_000, 5_000);
    at_times(&mut input, before, 1_100, 1_200);
    at_times(&mut input, after, 1_300, 1_400);
    assert_valid(&input);
}

#[test]
fn a_read_of_counters_the_deal_never_had() {
    let mut h = Hist::new();
    h.admit("ana", 3_000, (2, 0));
    let odd = h.read(1, 2_999);
    assert_caught(
        &h.input(),
        CheckName::LinearizableReads,
        &[odd],
        "saw 1 investors",
    );
}
