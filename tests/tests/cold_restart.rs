//! A whole cluster cold-restarted (every node stopped, then all started again on their data
//! folders) comes back with the same decisions and the same state digest, whether a node
//! rebuilds its state from the whole log or from its snapshot plus the log after it; then new
//! writes are decided after the old ones, by the same rules (I1–I6, I9).

use std::collections::BTreeMap;
use std::time::Duration;

use ledger_tests::check::{self, money};
use ledger_tests::load::{self, RetryPolicy};
use ledger_tests::{bounded, pb, ClusterOptions, NodeClients, TestCluster};

const DEAL: &str = "cold-deal";
/// The node that takes a snapshot half-way; the others replay their whole log.
const SNAPSHOTTED: u64 = 2;

async fn submit_some(nodes: &[NodeClients], from: usize, count: usize) {
    for n in from..from + count {
        let request = pb::SubmitRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            deal_id: DEAL.into(),
            // Users repeat, so some requests are refused as duplicates.
            user_id: format!("user-{}", n % 50),
            amount: money(1_000 + 37 * n as u64),
            waitlist: false,
            waitlist_ttl_ms: None,
        };
        load::submit_retrying(nodes, n, request, RetryPolicy::default())
            .await
            .expect("submit");
    }
}

async fn listing(node: &NodeClients) -> Vec<pb::Investment> {
    check::list_investments(node, DEAL, pb::Consistency::Linearizable)
        .await
        .expect("list investments")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_restarted_cluster_keeps_its_decisions_and_digest() {
    bounded(Duration::from_secs(120), async {
        // Three voters, no executors (nothing writes but the test); 30 seats, so the deal
        // fills up and later requests are refused.
        let options = ClusterOptions::new(3).flag("--log-keep-entries", 5);
        let mut cluster = TestCluster::start(options).await;
        let ids = cluster.ids();
        let nodes = load::connect_all(&cluster, &ids).await;
        load::create_deal(&nodes[0], DEAL, "1000000.00", 30).await;
        submit_some(&nodes, 0, 40).await;
        let snapshot_index = cluster
            .client(SNAPSHOTTED)
            .await
            .cluster
            .trigger_snapshot(pb::TriggerSnapshotRequest {})
            .await
            .expect("TriggerSnapshot")
            .into_inner()
            .snapshot_index;
        submit_some(&nodes, 40, 40).await;
        let (applied, digest) = cluster.wait_converged().await;
        let before = listing(&nodes[1]).await;
        assert_eq!(before.len(), 80);

        // Every node stopped, then every node started again.
        for &id in &ids {
            cluster.stop(id).await;
        }
        assert!(cluster.running().is_empty());
        for &id in &ids {
            cluster.restart(id).await;
        }
        let leader = cluster.leader().await;

        // Node 2 rebuilt from its snapshot (plus the log after it), the others from the log.
        for &id in &ids {
            let lines = cluster.latest_log_lines(id, "storage checked");
            let line = lines.first().expect("a start-up line");
            let loaded = if id == SNAPSHOTTED { snapshot_index } else { 0 };
            assert!(
                line.contains(&format!(" applied_index={loaded}")),
                "node {id} did not start from {}: {line}",
                if id == SNAPSHOTTED {
                    "its snapshot"
                } else {
                    "an empty state"
                }
            );
        }

        // The same state everywhere: the digest of before (a new leader's blank entry changes
        // no state), and the same decisions, read through the new leader and every replica.
        let (applied_after, digest_after) = cluster.wait_converged().await;
        assert!(applied_after >= applied);
        assert_eq!(
            digest_after, digest,
            "the state changed across the cold restart"
        );
        let nodes = load::connect_all(&cluster, &ids).await;
        let after = listing(&cluster.client(leader).await).await;
        assert!(after == before, "other decisions after the cold restart");
        for node in &nodes {
            let stale = check::list_investments(node, DEAL, pb::Consistency::Stale)
                .await
                .expect("stale list");
            assert!(stale == before, "a replica lists other decisions");
        }

        // New writes work, are decided after the old ones, and the whole history still
        // replays by the rules with the deal's counters.
        submit_some(&nodes, 80, 20).await;
        let list = listing(&nodes[2]).await;
        assert_eq!(list.len(), 100);
        assert_eq!(&list[..80], &before[..], "an old decision moved");
        assert!(list[80..].iter().all(|inv| inv.log_index > applied));
        let deal = ledger_tests::saga::get_deal(&nodes[0], DEAL)
            .await
            .expect("GetDeal");
        let admitted = check::check_deal(&deal, &list);
        let reasons = list.iter().fold(BTreeMap::new(), |mut m, inv| {
            *m.entry(inv.reject_reason().as_str_name()).or_insert(0) += 1;
            m
        });
        assert_eq!(admitted, 30, "{reasons:?}");
        cluster.wait_converged().await;
    })
    .await;
}
