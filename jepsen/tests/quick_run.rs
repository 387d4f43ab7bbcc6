//! CI's short real-process run (issue #10): three `ledger-node` processes in network
//! namespaces, 90 s of load (with waitlisted requests, withdrawals and deal closings) while
//! partitions, SIGKILLs and SIGSTOPs rotate every ~10 s, then healing, liveness, final reads
//! and the checker. The run must be valid on every invariant.
//!
//! Needs root and the harness's tools: skipped outside CI when missing, a failure with
//! `CI=true` (`.ci/run` installs them). The seed is fixed, so a failure replays with
//! `scripts/jepsen.sh --nemesis quick --time 90 --seed 10`.

mod common;

use ledger_jepsen::check::Overall;
use ledger_jepsen::nemesis::Family;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_with_partitions_kills_and_pauses_is_valid() {
    if !common::can_run() {
        return;
    }
    let node = common::build("ledger-node", "ledger-node", &[]);
    let config = common::config(Family::Quick, 90, 10, node);
    let outcome = ledger_jepsen::run::run(config)
        .await
        .expect("the run completes");
    let text = ledger_jepsen::check::render_text(&outcome.verdicts);
    eprintln!("{text}\nreport: {}", outcome.dir.display());
    assert_eq!(outcome.verdicts.overall, Overall::Valid, "{text}");
    assert!(
        outcome.stats.faults_failed == 0,
        "every fault of the schedule was applied: {:?}",
        outcome.stats
    );
    assert!(
        outcome.stats.leader_changes >= 2,
        "kills and isolations of the leader changed it: {:?}",
        outcome.stats
    );
    let summary = &outcome.verdicts.summary;
    assert!(
        summary.admitted_from_waitlist > 0 && summary.withdraws.ok > 0,
        "compensations admitted from waitlists, and investors withdrew: {summary:?}"
    );
    assert!(
        outcome.stats.submits.ok > 1_000 && outcome.stats.submits.info > 0,
        "enough load to mean something, with outcomes left unknown by the faults: {:?}",
        outcome.stats
    );
}
