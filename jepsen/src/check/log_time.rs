//! Log time (`DESIGN.md` §4.3): whatever one node's clock does, the replicated log time stays
//! near the real clock. Leases and deadlines are measured in it, so a log time carried ahead
//! compensates sagas that missed no deadline (none of I1–I9 notices: each such compensation is
//! done correctly). The harness samples every node's log time next to its own, never faked,
//! clock.

use super::verdict::{CheckName, CheckResult, Verdict, Violation, Violations};
use crate::history::LogTimeSample;

/// How far ahead of the real clock log time may be: stamps are the leader's view of the time,
/// a few replication round trips old when read.
pub const LOG_TIME_AHEAD_MAX_MS: u64 = 10_000;
/// How far behind it may be: with no leader (an election, a majority down, a frozen leader)
/// log time stands still, for as long as a fault window and its recovery last.
pub const LOG_TIME_BEHIND_MAX_MS: u64 = 60_000;

pub(super) fn check(samples: &[LogTimeSample]) -> CheckResult {
    if samples.is_empty() {
        return CheckResult::new(
            CheckName::LogTime,
            Verdict::unknown("no log time was sampled"),
        );
    }
    let mut out = Violations::new();
    let (mut ahead_max, mut behind_max) = (0u64, 0u64);
    // Log time 0 is a replica that has applied nothing yet (a new learner), not a reading.
    for sample in samples.iter().filter(|s| s.log_time_ms > 0) {
        let ahead = sample.log_time_ms.saturating_sub(sample.wall_ms);
        let behind = sample.wall_ms.saturating_sub(sample.log_time_ms);
        ahead_max = ahead_max.max(ahead);
        behind_max = behind_max.max(behind);
        if ahead > LOG_TIME_AHEAD_MAX_MS || behind > LOG_TIME_BEHIND_MAX_MS {
            out.report(|| {
                Violation::new(format!(
                    "node {}: log time {} ms {} the real clock",
                    sample.node_id,
                    ahead.max(behind),
                    if ahead > 0 { "ahead of" } else { "behind" }
                ))
            });
        }
    }
    CheckResult::new(CheckName::LogTime, out.into_verdict()).with_note(format!(
        "{} samples; at most {:.1} s ahead of the real clock, {:.1} s behind",
        samples.len(),
        ahead_max as f64 / 1e3,
        behind_max as f64 / 1e3
    ))
}
