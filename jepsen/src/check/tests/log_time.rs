use crate::check::testkit::*;
use crate::check::{check, CheckName, Verdict, LOG_TIME_AHEAD_MAX_MS, LOG_TIME_BEHIND_MAX_MS};
use crate::history::LogTimeSample;

const REAL: u64 = 1_800_000_000_000;

fn verdict_with(samples: Vec<LogTimeSample>) -> Verdict {
    let mut input = Hist::new().input();
    input.log_times = samples;
    verdict_of(&check(&input), CheckName::LogTime).clone()
}

fn sample(node_id: u64, wall_ms: u64, log_time_ms: u64) -> LogTimeSample {
    LogTimeSample {
        node_id,
        wall_ms,
        log_time_ms,
    }
}

#[test]
fn log_time_near_the_real_clock_passes() {
    let samples = vec![
        sample(1, REAL, REAL - 200),
        sample(2, REAL + 1_000, REAL + 900),
        // A node cut off for a fault window lags behind, within bounds.
        sample(3, REAL + 20_000, REAL + 1_000),
    ];
    assert_eq!(verdict_with(samples), Verdict::Valid);
}

#[test]
fn log_time_carried_ahead_by_a_skewed_leader_is_caught() {
    // What the first clock run showed: two hours ahead.
    let verdict = verdict_with(vec![
        sample(1, REAL, REAL),
        sample(2, REAL + 500, REAL + 500 + 7_199_400),
    ]);
    let Verdict::Invalid { violations, total } = verdict else {
        panic!("expected invalid, got {verdict:?}");
    };
    assert_eq!(total, 1);
    assert!(violations[0].message.contains("node 2"), "{violations:?}");
    assert!(violations[0].message.contains("ahead"), "{violations:?}");
}

#[test]
fn the_bounds_are_the_documented_ones() {
    let just_ahead = sample(1, REAL, REAL + LOG_TIME_AHEAD_MAX_MS);
    let too_far_ahead = sample(1, REAL, REAL + LOG_TIME_AHEAD_MAX_MS + 1);
    let just_behind = sample(1, REAL, REAL - LOG_TIME_BEHIND_MAX_MS);
    let too_far_behind = sample(1, REAL, REAL - LOG_TIME_BEHIND_MAX_MS - 1);
    assert_eq!(verdict_with(vec![just_ahead, just_behind]), Verdict::Valid);
    assert!(matches!(
        verdict_with(vec![too_far_ahead]),
        Verdict::Invalid { .. }
    ));
    assert!(matches!(
        verdict_with(vec![too_far_behind]),
        Verdict::Invalid { .. }
    ));
}

#[test]
fn a_replica_that_applied_nothing_yet_is_not_a_reading() {
    // A learner just added: log time 0 until its first entry or snapshot.
    let samples = vec![sample(1, REAL, REAL), sample(6, REAL, 0)];
    assert_eq!(verdict_with(samples), Verdict::Valid);
}

#[test]
fn no_samples_is_unknown() {
    assert!(matches!(verdict_with(Vec::new()), Verdict::Unknown { .. }));
}
