//! What the checks conclude: one [`CheckResult`] per check, and the run's [`Overall`] verdict.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::summary::Summary;

/// Most violations a check keeps; the rest are only counted, so a badly broken run still yields
/// a readable report.
pub const VIOLATIONS_KEPT_MAX: usize = 50;

/// The checks, in the order the report lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    /// The final log order, replayed through the state machine, reproduces every decision.
    Replay,
    /// A reply that arrived before another request was sent is ordered before it.
    RealTimeOrder,
    /// Every read saw the deal as it stood at some point inside the read's own time window.
    LinearizableReads,
    /// Seats, amounts and one active investment per user, at every point of the log.
    Capacity,
    /// Every acknowledged decision is in every node's final state, unchanged.
    NoLoss,
    /// Equal state digests at equal applied index.
    Determinism,
    /// Charges, refunds and documents at the partners agree with the final state.
    Money,
    /// After healing: a leader, terminal sagas, successful submits.
    Liveness,
    /// Resubmitting a request id returns its decision; another payload is refused.
    Idempotence,
    /// Operations with an unknown outcome, resolved against the final state (a count).
    Indefinite,
    /// Log time stayed with the real clock (`DESIGN.md` §4.3), whatever the nodes' clocks did.
    LogTime,
}

impl CheckName {
    /// The check's name in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckName::Replay => "replay",
            CheckName::RealTimeOrder => "real-time order",
            CheckName::LinearizableReads => "linearizable reads",
            CheckName::Capacity => "capacity",
            CheckName::NoLoss => "no loss",
            CheckName::Determinism => "determinism",
            CheckName::Money => "money",
            CheckName::Liveness => "liveness",
            CheckName::Idempotence => "idempotence",
            CheckName::Indefinite => "indefinite",
            CheckName::LogTime => "log time",
        }
    }

    /// The invariants of `DESIGN.md` §4.5 (and workload properties W4, W5) the check verifies.
    pub const fn invariants(self) -> &'static str {
        match self {
            CheckName::Replay => "I4, I5, I10",
            CheckName::RealTimeOrder | CheckName::LinearizableReads => "I5",
            CheckName::Capacity => "I1, I2, I3",
            CheckName::NoLoss => "I6",
            CheckName::Determinism => "I9",
            CheckName::Money => "I7",
            CheckName::Liveness => "I8",
            CheckName::Idempotence => "I4, W4",
            CheckName::Indefinite => "W5",
            CheckName::LogTime => "§4.3",
        }
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing found wrong, with the evidence to look it up in the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// What is wrong, in a sentence.
    pub message: String,
    /// The offending operations ([`crate::history::Op::index`]).
    pub ops: Vec<u64>,
    /// The request ids involved.
    pub request_ids: Vec<String>,
}

impl Violation {
    /// A violation with no operations or request ids yet.
    pub fn new(message: impl Into<String>) -> Violation {
        Violation {
            message: message.into(),
            ops: Vec::new(),
            request_ids: Vec::new(),
        }
    }

    /// Adds offending operations.
    pub fn ops(mut self, ops: impl IntoIterator<Item = u64>) -> Violation {
        self.ops.extend(ops);
        self
    }

    /// Adds request ids.
    pub fn requests<S: Into<String>>(mut self, ids: impl IntoIterator<Item = S>) -> Violation {
        self.request_ids.extend(ids.into_iter().map(Into::into));
        self
    }
}

/// What one check concluded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Nothing wrong found.
    Valid,
    /// Something is wrong.
    Invalid {
        /// The first [`VIOLATIONS_KEPT_MAX`] violations found.
        violations: Vec<Violation>,
        /// How many were found in all.
        total: u64,
    },
    /// The check could not decide (odd input, or nothing to check).
    Unknown {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// An unknown verdict.
    pub fn unknown(reason: impl Into<String>) -> Verdict {
        Verdict::Unknown {
            reason: reason.into(),
        }
    }

    /// The verdict's class, without its details.
    pub fn overall(&self) -> Overall {
        match self {
            Verdict::Valid => Overall::Valid,
            Verdict::Invalid { .. } => Overall::Invalid,
            Verdict::Unknown { .. } => Overall::Unknown,
        }
    }
}

/// The run's verdict: invalid if any check is, else unknown if any is, else valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overall {
    /// Every check passed.
    Valid,
    /// At least one check found a violation.
    Invalid,
    /// No violation, but at least one check could not decide.
    Unknown,
}

impl fmt::Display for Overall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overall::Valid => "valid",
            Overall::Invalid => "INVALID",
            Overall::Unknown => "unknown",
        })
    }
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Which check.
    pub name: CheckName,
    /// The invariants it verifies, e.g. `"I4, I5"`.
    pub invariants: String,
    /// What it concluded.
    pub verdict: Verdict,
    /// What else the reader should know (counts, why a part was skipped).
    pub note: Option<String>,
}

impl CheckResult {
    /// A result without a note.
    pub fn new(name: CheckName, verdict: Verdict) -> CheckResult {
        CheckResult {
            name,
            invariants: name.invariants().to_owned(),
            verdict,
            note: None,
        }
    }

    /// The same result with a note.
    pub fn with_note(mut self, note: impl Into<String>) -> CheckResult {
        self.note = Some(note.into());
        self
    }
}

/// Everything the checker concluded about a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdicts {
    /// The run's verdict.
    pub overall: Overall,
    /// One result per check, in [`CheckName`] order.
    pub checks: Vec<CheckResult>,
    /// What happened in the run, in numbers.
    pub summary: Summary,
}

impl Verdicts {
    /// Combines the checks' results into the run's verdict.
    pub fn new(checks: Vec<CheckResult>, summary: Summary) -> Verdicts {
        let classes = || checks.iter().map(|c| c.verdict.overall());
        let overall = if classes().any(|c| c == Overall::Invalid) {
            Overall::Invalid
        } else if classes().any(|c| c == Overall::Unknown) {
            Overall::Unknown
        } else {
            Overall::Valid
        };
        Verdicts {
            overall,
            checks,
            summary,
        }
    }

    /// The result of one check, if it ran.
    pub fn get(&self, name: CheckName) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Collects a check's violations, keeping the first [`VIOLATIONS_KEPT_MAX`] and counting all.
#[derive(Debug, Default)]
pub(crate) struct Violations {
    kept: Vec<Violation>,
    total: u64,
}

impl Violations {
    pub(crate) fn new() -> Violations {
        Violations::default()
    }

    /// Records a violation; `make` runs only for those kept, so a run with a million of them
    /// does not format a million messages.
    pub(crate) fn report(&mut self, make: impl FnOnce() -> Violation) {
        self.total += 1;
        if self.kept.len() < VIOLATIONS_KEPT_MAX {
            self.kept.push(make());
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Valid when nothing was reported.
    pub(crate) fn into_verdict(self) -> Verdict {
        if self.total == 0 {
            Verdict::Valid
        } else {
            Verdict::Invalid {
                violations: self.kept,
                total: self.total,
            }
        }
    }

    /// Invalid when something was reported, else unknown for `reason`: a check that stopped
    /// early still reports what it found before stopping.
    pub(crate) fn or_unknown(self, reason: impl Into<String>) -> Verdict {
        if self.total == 0 {
            Verdict::unknown(reason)
        } else {
            self.into_verdict()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: CheckName, verdict: Verdict) -> CheckResult {
        CheckResult::new(name, verdict)
    }

    #[test]
    fn overall_is_invalid_over_unknown_over_valid() {
        let valid = || result(CheckName::Replay, Verdict::Valid);
        let unknown = || result(CheckName::Money, Verdict::unknown("no sagas"));
        let invalid = || {
            let mut out = Violations::new();
            out.report(|| Violation::new("x"));
            result(CheckName::Capacity, out.into_verdict())
        };
        let overall = |checks| Verdicts::new(checks, Summary::default()).overall;
        assert_eq!(overall(vec![valid(), valid()]), Overall::Valid);
        assert_eq!(overall(vec![valid(), unknown()]), Overall::Unknown);
        assert_eq!(
            overall(vec![unknown(), invalid(), valid()]),
            Overall::Invalid
        );
    }

    #[test]
    fn violations_are_capped_but_counted() {
        let mut out = Violations::new();
        let mut made = 0;
        for i in 0..(VIOLATIONS_KEPT_MAX + 10) {
            out.report(|| {
                made += 1;
                Violation::new(format!("v{i}")).ops([i as u64])
            });
        }
        assert_eq!(made, VIOLATIONS_KEPT_MAX);
        let Verdict::Invalid { violations, total } = out.into_verdict() else {
            panic!("expected invalid");
        };
        assert_eq!(violations.len(), VIOLATIONS_KEPT_MAX);
        assert_eq!(total, VIOLATIONS_KEPT_MAX as u64 + 10);
    }
}
