//! Real-time order (I5): if request A's reply arrived before request B was sent, A is ordered
//! before B in the log.
//!
//! A is any acknowledged decision (a replayed one was made before its reply); B is a fresh
//! (non-replayed) one. For each B, the acknowledged decision latest in the log among those
//! completed before B's invocation is found by binary search over a running maximum, so the
//! check is O(n log n).

use super::context::{Context, SubmitCall};
use super::verdict::{CheckName, CheckResult, Verdict, Violation, Violations};

pub(super) fn check(ctx: &Context<'_>) -> CheckResult {
    if let Some(reason) = &ctx.clock_error {
        return CheckResult::new(CheckName::RealTimeOrder, Verdict::unknown(reason.clone()));
    }
    let mut out = Violations::new();
    for b in ctx.real_time.fresh() {
        let Some(a) = ctx.real_time.latest_acked_before(b.invoke_us) else {
            continue;
        };
        if a.pos < b.pos {
            continue;
        }
        let (Some(op_a), Some(op_b)) = (ctx.op(a.op), ctx.op(b.op)) else {
            continue;
        };
        out.report(|| {
            let request = |op| SubmitCall::of(op).map_or("", |c| c.request_id);
            Violation::new(format!(
                "op {} (request {}) completed at {} us and is at {}, but op {} (request {}), \
                 invoked later at {} us, was decided before it, at {}",
                op_a.index,
                request(op_a),
                a.complete_us,
                a.pos,
                op_b.index,
                request(op_b),
                b.invoke_us,
                b.pos
            ))
            .ops([op_a.index, op_b.index])
            .requests([request(op_a), request(op_b)])
        });
    }
    CheckResult::new(CheckName::RealTimeOrder, out.into_verdict())
}
