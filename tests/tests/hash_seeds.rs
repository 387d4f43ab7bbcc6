//! Replicas whose lookup tables hash client-chosen ids with different seeds decide the same and
//! reach the same state digest (issue #11: the tables are seeded per process against hash
//! flooding; they are looked up, never iterated, so the seed cannot leak into a decision).

use std::time::Duration;

use ledger_tests::{bounded, pb, ClusterOptions, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_different_hash_seeds_reach_the_same_digest() {
    bounded(Duration::from_secs(120), async {
        let mut cluster = TestCluster::start(ClusterOptions::new(3)).await;
        // One distinct, known seed per node (they are random by default), applied one node at a
        // time so that a majority always runs.
        for id in 1..=3u64 {
            cluster.set_env(id, "LEDGER_HASH_SEED", (id * 0x9E37_79B9).to_string());
            cluster.stop(id).await;
            cluster.restart(id).await;
            cluster.wait_leader(Duration::from_secs(20)).await;
            assert!(
                cluster.latest_log_contains(id, "hash seed fixed by --hash-seed"),
                "node {id} did not take its seed"
            );
        }
        let leader = cluster.leader().await;
        let node = cluster.client(leader).await;
        for (deal, seats) in [("seeded-a", 40), ("seeded-b", 7)] {
            node.admission
                .clone()
                .create_deal(pb::CreateDealRequest {
                    deal_id: deal.into(),
                    amount: "100000.00".into(),
                    max_investors: seats,
                    ..Default::default()
                })
                .await
                .expect("CreateDeal");
        }
        // Many ids, repeated users, two deals, an unknown deal: every table is exercised, and
        // both admissions and each kind of rejection happen.
        let mut admitted = 0;
        for i in 0..300u32 {
            let deal = match i % 10 {
                0 => "no-such-deal",
                1..=3 => "seeded-b",
                _ => "seeded-a",
            };
            let reply = node
                .admission
                .clone()
                .submit(pb::SubmitRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    deal_id: deal.into(),
                    user_id: format!("user-{}", i % 120),
                    amount: format!("{}.00", 100 + i),
                    waitlist: false,
                    waitlist_ttl_ms: None,
                })
                .await
                .expect("Submit")
                .into_inner();
            let status = reply.investment.as_ref().map(|inv| inv.status);
            if status == Some(pb::InvestmentStatus::Pending as i32) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 47, "40 + 7 seats, every one taken");
        // The harness fails on two digests at one applied index; here they must also converge.
        let (index, digest) = cluster.wait_converged().await;
        assert!(index > 0 && digest.len() == 64, "{index} {digest}");
    })
    .await;
}
