//! The checker: verdicts on the invariants of `DESIGN.md` §4.5 from a recorded run.
//!
//! [`check`] is pure: it reads a [`CheckInput`] (the client history, every node's final state,
//! digest samples, the partners' audit, liveness observations) and returns [`Verdicts`], one
//! [`CheckResult`] per [`CheckName`] plus a [`Summary`]. [`render_text`] turns them into a report.
//!
//! The final state of the node with the highest applied index is the *reference*: the replay,
//! capacity, money, idempotence and indefinite checks compare against it; the no-loss and
//! determinism checks look at every node. Nothing here panics on odd input: a check that cannot
//! decide says `Unknown` with a reason. Every check is O(n log n) in the size of the input.

mod capacity;
mod context;
mod idempotence;
mod liveness;
mod log_time;
mod loss;
mod money;
mod order;
mod reads;
mod render;
mod replay;
mod summary;
mod timeline;
mod verdict;

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

pub use idempotence::IndefiniteCounts;
pub use liveness::LIVENESS_WINDOW_US;
pub use log_time::{LOG_TIME_AHEAD_MAX_MS, LOG_TIME_BEHIND_MAX_MS};
pub use money::MoneyCounts;
pub use render::render_text;
pub use summary::{OpCounts, Summary};
pub use verdict::{
    CheckName, CheckResult, Overall, Verdict, Verdicts, Violation, VIOLATIONS_KEPT_MAX,
};

pub(crate) use replay::{replay_header, setup_entry};

use crate::history::CheckInput;
use context::Context;
use timeline::Timelines;

/// Runs every check on a recorded run.
pub fn check(input: &CheckInput) -> Verdicts {
    let ctx = Context::new(input);
    let timelines = match &ctx.reference {
        None => Err("no node's final state was read".to_owned()),
        Some(reference) => Timelines::build(reference).map_err(|e| e.to_string()),
    };
    let books = input.audit.as_ref().map(money::Books::new);
    let indefinite = idempotence::count_indefinite(&ctx);
    let money_counts = books.as_ref().map(|b| b.counts(ctx.reference.as_ref()));
    let summary = summary::summarize(&ctx, money_counts, indefinite);
    let checks = vec![
        replay::check(&ctx),
        order::check(&ctx),
        reads::check(&ctx, timelines.as_ref().map_err(Clone::clone)),
        capacity::check(&ctx, timelines.as_ref().map_err(Clone::clone)),
        loss::check_no_loss(&ctx),
        loss::check_digests(input),
        money::check(&ctx, books.as_ref()),
        liveness::check(
            &input.liveness,
            ctx.reference.is_some().then_some(summary.pending),
        ),
        idempotence::check(&ctx),
        idempotence::check_indefinite(summary.indefinite.as_ref()),
        log_time::check(&input.log_times),
    ];
    Verdicts::new(checks, summary)
}
