//! A node that was down while the leader snapshotted and purged its log catches up by installing
//! the leader's snapshot, and ends with the same state as the others (I9).

use std::time::Duration;

use ledger_tests::check::money;
use ledger_tests::load::{self, RetryPolicy};
use ledger_tests::{bounded, pb, wait_until, ClusterOptions, TestCluster};

const DEAL: &str = "snapshot-deal";
/// Submissions made while the node is down, one at a time, so each is its own log entry.
const ENTRIES_WHILE_DOWN: usize = 300;

fn request(n: usize) -> pb::SubmitRequest {
    pb::SubmitRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        deal_id: DEAL.to_owned(),
        user_id: format!("user-{n}"),
        amount: money(100 + n as u64),
        waitlist: false,
        waitlist_ttl_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_installs_a_snapshot() {
    bounded(Duration::from_secs(150), async {
        // Snapshots every 50 entries, and only 10 entries kept behind one: a node that misses
        // a few hundred entries cannot be served from the log.
        let options = ClusterOptions::new(3)
            .flag("--snapshot-every-entries", 50)
            .flag("--log-keep-entries", 10);
        let mut cluster = TestCluster::start(options).await;
        let leader = cluster.leader().await;
        let leader_client = cluster.client(leader).await;
        let nodes = vec![leader_client.clone()];
        load::create_deal(&leader_client, DEAL, "1000000000.00", 100_000).await;
        for n in 0..5 {
            load::submit_retrying(&nodes, 0, request(n), RetryPolicy::default())
                .await
                .expect("submit");
        }

        // Stop a follower (node 3 unless it leads) once it has everything so far.
        let victim = if leader == 3 { 2 } else { 3 };
        cluster.wait_converged().await;
        let at_stop = cluster.status(victim).await.expect("status");
        assert_eq!(at_stop.snapshot_index, 0, "no snapshot is due yet");
        cluster.stop(victim).await;

        // Hundreds of entries while it is down, so that the leader snapshots and purges past
        // everything the stopped node has.
        let mut last = None;
        for n in 0..ENTRIES_WHILE_DOWN {
            let ack = load::submit_retrying(&nodes, 0, request(100 + n), RetryPolicy::default())
                .await
                .expect("submit while a node is down");
            last = Some(ack);
        }
        let last = last.expect("at least one submission");
        let purged = wait_until(
            Duration::from_secs(30),
            "the leader to purge past the stopped node's log",
            || {
                let cluster = &cluster;
                async move {
                    let status = cluster.status(leader).await?;
                    if status.purged_index > at_stop.last_log_index {
                        Ok(status.purged_index)
                    } else {
                        Err(format!(
                            "leader snapshot {} purged {}, stopped node's last log index {}",
                            status.snapshot_index, status.purged_index, at_stop.last_log_index
                        ))
                    }
                }
            },
        )
        .await;

        // The node restarts; the entries it lacks are gone from every log, so it can only
        // catch up through a snapshot.
        cluster.restart(victim).await;
        let (applied, _) = cluster.wait_converged().await;
        let status = cluster.status(victim).await.expect("status");
        assert!(status.applied_index >= applied);
        assert!(
            status.snapshot_index >= purged,
            "node {victim} caught up without a snapshot covering the purged log ({} < {purged})",
            status.snapshot_index
        );
        assert!(
            cluster.latest_log_contains(victim, "snapshot installed"),
            "node {victim} does not log a snapshot installation"
        );

        // Its replica answers for the newest decision, read locally.
        let on_victim = cluster
            .client(victim)
            .await
            .admission
            .get_investment(pb::GetInvestmentRequest {
                request_id: last.request.request_id.clone(),
                consistency: pb::Consistency::Stale as i32,
            })
            .await
            .expect("the caught-up node knows the newest decision")
            .into_inner();
        assert_eq!(load::Decision::of(&on_victim), last.decision());
    })
    .await;
}
