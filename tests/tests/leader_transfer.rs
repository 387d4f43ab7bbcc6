//! `TransferLeader`: openraft 0.9 has no transfer call, so the target campaigns; the test checks
//! that leadership moves to the node asked for, whichever node receives the call, and that the
//! cluster keeps deciding and agrees afterwards.

use std::time::Duration;

use ledger_tests::{bounded, load, pb, wait_until, ClusterOptions, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_node_asked_for() {
    bounded(Duration::from_secs(120), async {
        // Three voters and a deal to write to.
        let cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let first_leader = cluster.leader().await;
        let client = cluster.client(first_leader).await;
        load::create_deal(&client, "transfer", "100000.00", 10).await;

        // Ask the old leader to hand over to a follower, then a follower to take it back: both
        // routes (the target itself, and a node forwarding to the target) are exercised.
        let follower = cluster
            .running()
            .into_iter()
            .find(|&id| id != first_leader)
            .expect("a follower");
        for (via, to) in [(first_leader, follower), (follower, first_leader)] {
            let reply = cluster
                .client(via)
                .await
                .cluster
                .clone()
                .transfer_leader(pb::TransferLeaderRequest { to })
                .await
                .unwrap_or_else(|e| panic!("transfer to {to} via {via}: {e}"))
                .into_inner();
            assert_eq!(reply.leader_id, to, "the reply names the new leader");
            // Every node agrees on the new leader.
            for id in cluster.running() {
                let observer = cluster.client(id).await;
                wait_until(
                    Duration::from_secs(10),
                    &format!("node {id} to see leader {to}"),
                    || {
                        let mut admin = observer.cluster.clone();
                        async move {
                            let status = admin
                                .status(pb::StatusRequest { with_digest: false })
                                .await
                                .map_err(|e| e.to_string())?
                                .into_inner();
                            match status.leader_id {
                                Some(leader) if leader == to => Ok(()),
                                other => Err(format!("leader {other:?}")),
                            }
                        }
                    },
                )
                .await;
            }
            // The cluster keeps deciding under the new leader, through any node.
            let response = cluster
                .client(via)
                .await
                .admission
                .clone()
                .submit(pb::SubmitRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    deal_id: "transfer".into(),
                    user_id: format!("user-after-{to}"),
                    amount: "10.00".into(),
                    waitlist: false,
                    waitlist_ttl_ms: None,
                })
                .await
                .expect("submit after the transfer")
                .into_inner();
            let investment = response.investment.expect("an investment");
            assert_eq!(investment.status(), pb::InvestmentStatus::Pending);
        }
        cluster.wait_converged().await;
    })
    .await;
}
