//! Liveness (I8): within [`LIVENESS_WINDOW_US`] after the last fault healed there is one
//! leader, every saga is terminal and a fresh submit succeeds. Something that did not happen
//! is a violation only if the harness waited the whole window for it; otherwise the verdict is
//! unknown. PENDING investments left in the final state are noted, not judged: whether the
//! final state was read before or after the sagas ended is the harness's to say (`stuck`).

use super::verdict::{CheckName, CheckResult, Verdict, Violation, Violations};
use crate::history::Liveness;

/// How long after healing the cluster has to recover (120 s).
pub const LIVENESS_WINDOW_US: u64 = 120_000_000;

pub(super) fn check(liveness: &Liveness, pending_in_final: Option<u64>) -> CheckResult {
    let note = pending_in_final
        .filter(|&n| n > 0)
        .map(|n| format!("the reference final state still holds {n} PENDING investments"));
    let result = |verdict| {
        let result = CheckResult::new(CheckName::Liveness, verdict);
        match &note {
            Some(note) => result.with_note(note.clone()),
            None => result,
        }
    };
    if liveness.waited_us == 0 && liveness.leader_us.is_none() {
        return result(Verdict::unknown("the harness did not observe liveness"));
    }
    let mut out = Violations::new();
    let mut missing = Vec::new();
    let milestones = [
        ("one leader", liveness.leader_us),
        ("every saga terminal", liveness.sagas_terminal_us),
        ("a successful probe submit", liveness.probe_ok_us),
    ];
    for (what, at_us) in milestones {
        match at_us {
            Some(at_us) => {
                let after_us = at_us.saturating_sub(liveness.healed_us);
                if after_us > LIVENESS_WINDOW_US {
                    out.report(|| {
                        Violation::new(format!(
                            "{what} only {:.1} s after healing, beyond the {} s window",
                            seconds(after_us),
                            seconds(LIVENESS_WINDOW_US)
                        ))
                    });
                }
            }
            None if liveness.waited_us >= LIVENESS_WINDOW_US => out.report(|| {
                Violation::new(format!(
                    "no {what} within {:.1} s after healing",
                    seconds(liveness.waited_us)
                ))
            }),
            None => missing.push(what),
        }
    }
    if !liveness.stuck.is_empty() {
        out.report(|| {
            Violation::new(format!(
                "{} sagas still PENDING when the harness stopped waiting",
                liveness.stuck.len()
            ))
            .requests(liveness.stuck.iter().cloned())
        });
    }
    if missing.is_empty() || !out.is_empty() {
        return result(out.into_verdict());
    }
    result(Verdict::unknown(format!(
        "no {} yet, but the harness waited only {:.1} s of the {} s window",
        missing.join(", no "),
        seconds(liveness.waited_us),
        seconds(LIVENESS_WINDOW_US)
    )))
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}
