//! A leader whose clock is ten minutes ahead (issue #10, defect c), as a new user saw it: a
//! follower restarted under libfaketime, 10 minutes ahead, then leadership moved to it. Before
//! the fix, every in-flight saga passed its deadline within seconds and was compensated, and
//! once leadership went back to a node with the right clock, log time stood still at +10
//! minutes.
//!
//! Now the leader stamps entries with the members' median time (its followers report their
//! clocks in every Raft reply), and the state machine bounds each entry's step anyway. This test
//! checks the behaviour: log time stays within seconds of the real time and keeps moving, and
//! no saga is compensated; then the slow payments finish and every investment is CONFIRMED.
//!
//! Needs libfaketime (Debian: `faketime`): skipped with a message when it is missing, a failure
//! when `CI=true`.

use std::time::Duration;

use ledger_partners::Latency;
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, faketime, pb, wait_until, Rng};

const COUNT: usize = 10;
/// Entries written under the skewed leader: 150 × 5 s would be 12.5 minutes of log time.
const NOISE: usize = 150;
const AHEAD_S: u64 = 600;
/// How far log time may sit from the real clock (replication, batching and a loaded machine).
const TOLERANCE_MS: u64 = 30_000;

async fn transfer(saga: &SagaCluster, to: u64) {
    let mut client = saga.cluster.client(to).await;
    client
        .cluster
        .transfer_leader(pb::TransferLeaderRequest { to })
        .await
        .unwrap_or_else(|e| panic!("transfer leadership to {to}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_ten_minutes_ahead_neither_expires_sagas_nor_stalls_log_time() {
    let Some(library) = faketime::library() else {
        return;
    };
    bounded(Duration::from_secs(240), async {
        // Payments slower than the node's 2 s call timeout: every saga stays in PAYMENT
        // (retried as an unknown outcome) until the latency is lowered.
        let mut faults = saga::quiet_faults(0xc10c);
        faults.payment.latency = Latency::new(4_000, 0);
        let mut saga = SagaCluster::start(3, faults.clone()).await;

        // Node 3 comes back ten minutes ahead (the monotonic clock stays real, as when NTP
        // steps a machine's clock).
        let clock_file = saga.cluster.dir().join("clock-3");
        faketime::preload(
            &mut saga.cluster,
            3,
            &library,
            &clock_file,
            &format!("+{AHEAD_S}"),
        );
        saga.cluster.stop(3).await;
        saga.cluster.restart(3).await;
        saga.wait_executors_live(&[1, 2, 3]).await;

        let clients = saga.clients().await;
        saga::create_deal(&clients[0], "skew", "100000000.00", 300).await;
        let mut rng = Rng::new(0xc10c);
        let requests = saga::requests(&mut rng, &["skew"], COUNT, "skew", (1_000, 90_000));
        let acked = saga::submit_all(&clients, requests).await;
        assert_eq!(saga::admitted(&acked).len(), COUNT);

        // Leadership moves to the node whose clock is ahead, and the log grows under it: one
        // entry per request sent one after the other (a deal that does not exist: rejections
        // are entries too). One entry may move log time by at most 5 s, so without the
        // members' median clock these entries alone would carry log time ten minutes ahead.
        transfer(&saga, 3).await;
        let mut leader = saga.cluster.client(3).await;
        for n in 0..NOISE {
            leader
                .admission
                .submit(pb::SubmitRequest {
                    request_id: rng.uuid(),
                    deal_id: "no-such-deal".into(),
                    user_id: format!("noise-{n}"),
                    amount: "1.00".into(),
                    waitlist: false,
                    waitlist_ttl_ms: None,
                })
                .await
                .expect("a rejection is a decision");
        }
        let under_skew = faketime::log_time(&saga.cluster, 3)
            .await
            .expect("log time");
        let drift = under_skew.abs_diff(faketime::real_now_ms());
        assert!(
            drift < TOLERANCE_MS,
            "log time is {drift} ms away from the real clock under a leader {AHEAD_S} s ahead"
        );
        let list = ledger_tests::check::list_investments(
            &clients[0],
            "skew",
            pb::Consistency::Linearizable,
        )
        .await
        .expect("list the investments");
        let compensated: Vec<_> = list
            .iter()
            .filter(|inv| inv.cancel_cause != pb::CancelCause::Unspecified as i32)
            .collect();
        assert!(
            compensated.is_empty(),
            "sagas compensated under the skewed leader: {compensated:?}"
        );

        // Back to a node with the right clock: log time keeps moving.
        transfer(&saga, 1).await;
        let back = faketime::log_time(&saga.cluster, 1)
            .await
            .expect("log time");
        wait_until(
            Duration::from_secs(30),
            "log time moving on under a leader with the right clock",
            || async {
                let now = faketime::log_time(&saga.cluster, 1).await?;
                if now >= back + 3_000 {
                    Ok(())
                } else {
                    Err(format!("log time {now}, was {back}"))
                }
            },
        )
        .await;

        // Payments speed up: every saga ends CONFIRMED, none compensated.
        faults.payment.latency = Latency::new(2, 2);
        saga.set_faults(faults);
        let investments =
            saga::wait_sagas_done(&clients[0], &["skew"], Duration::from_secs(90)).await;
        let report = saga::check_sagas(&investments, &saga.audit());
        assert_eq!(report.confirmed, COUNT, "{report:?}");
    })
    .await;
}
