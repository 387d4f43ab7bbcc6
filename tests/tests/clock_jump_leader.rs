//! The leader's own clock jumps two hours ahead while it leads and writes (issue #10, found by
//! the Jepsen clock nemesis): log time must stay with the real time.
//!
//! The first leader-side fix measured the peers' clocks against the leader's wall clock and
//! never let a stamp go below the previous one. When the leader's clock jumped, the readings
//! taken before the jump (fresh for seconds) still described the old clock, so the next stamps
//! carried the jump; one of them was enough, since stamps never went back, for every later
//! stamp to stay two hours ahead. The state machine's bound (5 s per entry) only slowed log
//! time down on its way there: in the 10-minute clock run, log time ended 7,199 s ahead and 457
//! sagas were compensated for a deadline nobody missed. Readings are now taken against the
//! leader's monotonic clock, which does not jump, so its own jump is one vote against two.
//!
//! Needs libfaketime: skipped with a message when it is missing, a failure when `CI=true`.

use std::time::Duration;

use ledger_tests::{bounded, faketime, pb, wait_until, ClusterOptions, Rng, TestCluster};

/// Entries written after the jump: 300 × 5 s would carry log time 25 minutes ahead.
const ENTRIES: usize = 300;
const TOLERANCE_MS: u64 = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_clock_jumps_two_hours_keeps_log_time_real() {
    let Some(library) = faketime::library() else {
        return;
    };
    bounded(Duration::from_secs(180), async {
        let mut cluster = TestCluster::start(ClusterOptions::new(3)).await;
        // Every node under libfaketime, at the real time for now.
        for id in cluster.ids() {
            let file = cluster.dir().join(format!("clock-{id}"));
            faketime::preload(&mut cluster, id, &library, &file, "+0");
            cluster.stop(id).await;
            cluster.restart(id).await;
        }
        let leader = cluster.leader().await;
        let client = cluster.client(leader).await;
        let mut rng = Rng::new(0xc10c2);
        // Some entries first, so that the leader has read its followers' clocks.
        for n in 0..20 {
            write(&client, &mut rng, n)
                .await
                .expect("a rejection is a decision");
        }
        let before = faketime::log_time(&cluster, leader)
            .await
            .expect("log time");
        assert!(before.abs_diff(faketime::real_now_ms()) < TOLERANCE_MS);

        // The leader's clock jumps two hours while it keeps writing (libfaketime reads the
        // file at most a second later; the writes go on well past that).
        std::fs::write(cluster.dir().join(format!("clock-{leader}")), "+7200")
            .expect("write the clock file");
        for n in 20..20 + ENTRIES {
            write(&client, &mut rng, n)
                .await
                .expect("a rejection is a decision");
        }
        assert_eq!(cluster.leader().await, leader, "the leader kept leading");
        let after = faketime::log_time(&cluster, leader)
            .await
            .expect("log time");
        let drift = after.abs_diff(faketime::real_now_ms());
        assert!(
            drift < TOLERANCE_MS,
            "log time is {drift} ms from the real clock after the leader's clock jumped 2 h"
        );

        // And it keeps moving with the real clock (a new entry now and then carries it).
        wait_until(Duration::from_secs(20), "log time moving on", || {
            let client = client.clone();
            let cluster = &cluster;
            async move {
                let mut rng = Rng::new(faketime::real_now_ms());
                write(&client, &mut rng, 0)
                    .await
                    .map_err(|e| e.to_string())?;
                let now = faketime::log_time(cluster, leader).await?;
                if now >= after + 2_000 {
                    Ok(())
                } else {
                    Err(format!("log time {now}, was {after}"))
                }
            }
        })
        .await;
    })
    .await;
}

/// One entry: a request to a deal that does not exist (a rejection is a decision too).
async fn write(
    client: &ledger_tests::NodeClients,
    rng: &mut Rng,
    n: usize,
) -> Result<tonic::Response<pb::SubmitResponse>, tonic::Status> {
    let mut admission = client.admission.clone();
    admission
        .submit(pb::SubmitRequest {
            request_id: rng.uuid(),
            deal_id: "no-such-deal".into(),
            user_id: format!("jump-{n}"),
            amount: "1.00".into(),
            waitlist: false,
            waitlist_ttl_ms: None,
        })
        .await
}
