//! The checker: verdicts on the invariants of `DESIGN.md` §4.5 from a recorded run.
//! (Placeholder until the checker lands: every run is "unknown".)

use serde::{Deserialize, Serialize};

use crate::history::CheckInput;

/// The verdicts of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Verdicts {
    /// Why nothing was checked.
    pub reason: String,
}

/// Checks a run.
pub fn check(_input: &CheckInput) -> Verdicts {
    Verdicts {
        reason: "no checker yet".into(),
    }
}

/// The verdicts as text.
pub fn render_text(verdicts: &Verdicts) -> String {
    format!("unknown: {}\n", verdicts.reason)
}

/// The process exit code for these verdicts: 0 valid, 1 invalid, 2 unknown.
pub fn exit_code(_verdicts: &Verdicts) -> u8 {
    2
}
