//! A test-only sabotage makes the checker report invalid (issue #10). `ledger-node-sabotaged`
//! is ledger-node built with the feature `sabotage-skip-seat-check`: the state machine skips the
//! seat limit (rule 5), so a full deal keeps admitting. A short run with no faults at all must
//! be judged invalid: the capacity walk finds more active investments than seats, and the
//! replay through the real rules disagrees with what the clients were told.
//!
//! Needs root and the harness's tools, like `quick_run.rs`.

mod common;

use ledger_jepsen::check::{CheckName, Overall, Verdict};
use ledger_jepsen::nemesis::Family;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_skips_the_seat_check_is_reported_invalid() {
    if !common::can_run() {
        return;
    }
    let node = common::build(
        "ledger-node",
        "ledger-node-sabotaged",
        &["sabotage-skip-seat-check"],
    );
    let config = common::config(Family::None, 25, 11, node);
    let outcome = ledger_jepsen::run::run(config)
        .await
        .expect("the run completes");
    let text = ledger_jepsen::check::render_text(&outcome.verdicts);
    eprintln!("{text}\nreport: {}", outcome.dir.display());
    assert_eq!(outcome.verdicts.overall, Overall::Invalid, "{text}");
    for check in [CheckName::Capacity, CheckName::Replay] {
        let result = outcome.verdicts.get(check).expect("every check reports");
        assert!(
            matches!(result.verdict, Verdict::Invalid { .. }),
            "{check:?} should catch the sabotage: {text}"
        );
    }
}
