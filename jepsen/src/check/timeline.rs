//! Each deal's history of seats and amounts, rebuilt from a final state: admissions at their
//! decision positions (or, from the waitlist, at the cancellation that freed the seat),
//! releases at their cancellation positions, in log order, with the counters after each.
//! Confirmations change neither seats nor amounts, so these two kinds of step are all that
//! capacity depends on.

use std::collections::HashMap;

use super::context::{is_admitted, FinalIndex, Pos};
use crate::history::InvStatus;

/// Why a final state cannot be turned into timelines.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimelineError {
    /// Without the release position, the seat's history after it is unknown.
    #[error("request {0} is CANCELLED but its cancellation position is missing")]
    NoCancelPosition(String),
}

/// One change of a deal's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) pos: Pos,
    /// The investment's position in the node's list.
    pub(crate) inv: usize,
    /// An admission (true) or a release (false).
    pub(crate) admit: bool,
    /// Active investments after the step (signed: a broken state may release more than it
    /// admitted, and that must be reported, not wrapped).
    pub(crate) count: i64,
    /// Reserved cents after the step.
    pub(crate) reserved: i128,
}

/// A deal's steps in log order.
#[derive(Clone, Debug, Default)]
pub(crate) struct DealLine {
    pub(crate) steps: Vec<Step>,
}

impl DealLine {
    /// The counters after the last step at or before `pos`, `(0, 0)` before the first one.
    pub(crate) fn state_at(&self, pos: Option<Pos>) -> (usize, (i64, i128)) {
        let n = match pos {
            None => 0,
            Some(pos) => self.steps.partition_point(|s| s.pos <= pos),
        };
        let counters = n
            .checked_sub(1)
            .and_then(|i| self.steps.get(i))
            .map_or((0, 0), |s| (s.count, s.reserved));
        (n, counters)
    }
}

/// Every deal's line, by deal id.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timelines<'a> {
    pub(crate) deals: HashMap<&'a str, DealLine>,
}

impl<'a> Timelines<'a> {
    pub(crate) fn build(index: &FinalIndex<'a>) -> Result<Timelines<'a>, TimelineError> {
        let mut deals: HashMap<&'a str, DealLine> = HashMap::new();
        for (at, _, inv) in index.primaries() {
            if !is_admitted(inv) {
                continue;
            }
            let line = deals.entry(inv.deal_id.as_str()).or_default();
            line.steps.push(step(Pos::of_admission(inv), at, true));
            if inv.status == InvStatus::Cancelled {
                let released = Pos::of_cancel(inv)
                    .ok_or_else(|| TimelineError::NoCancelPosition(inv.request_id.clone()))?;
                line.steps.push(step(released, at, false));
            }
        }
        for line in deals.values_mut() {
            line.steps
                .sort_unstable_by_key(|s| (s.pos, rank(s, index), s.inv));
            accumulate(&mut line.steps, index);
        }
        Ok(Timelines { deals })
    }
}

/// The order of steps at one position: a cancellation releases its seat before the waitlist
/// takes it there; a release at its own admission's position (only a broken state has one)
/// comes after the admission, so it cannot precede the seat it gives back.
fn rank(step: &Step, index: &FinalIndex<'_>) -> u8 {
    if step.admit {
        return 1;
    }
    let admitted = index.node.investments.get(step.inv).map(Pos::of_admission);
    if admitted.is_some_and(|at| at < step.pos) {
        0
    } else {
        2
    }
}

fn step(pos: Pos, inv: usize, admit: bool) -> Step {
    Step {
        pos,
        inv,
        admit,
        count: 0,
        reserved: 0,
    }
}

fn accumulate(steps: &mut [Step], index: &FinalIndex<'_>) {
    let (mut count, mut reserved) = (0i64, 0i128);
    for step in steps {
        let amount = index
            .node
            .investments
            .get(step.inv)
            .map_or(0, |inv| i128::from(inv.amount_cents));
        if step.admit {
            count += 1;
            reserved += amount;
        } else {
            count -= 1;
            reserved -= amount;
        }
        step.count = count;
        step.reserved = reserved;
    }
}
