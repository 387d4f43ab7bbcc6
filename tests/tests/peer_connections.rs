//! A node keeps one connection to each peer, whatever it sends over it.
//!
//! Postmortem (issue #15): openraft 0.9 asks the node's network for a new client for every
//! linearizable read it confirms, and sends that read's heartbeat to each follower on it. Every
//! new client opened its own channel, so each read on the leader cost a TCP connection and a
//! TLS handshake to each follower, closed again after one call: ~125 a second to each follower
//! at 500 saga investments/s, 13% of the leader's CPU, and about half of the admission p99. Channels
//! are now shared per peer address (`transport::SharedChannels`).

use std::time::Duration;

use ledger_tests::metrics::{scrape, sum};
use ledger_tests::{bounded, pb, ClusterOptions, TestCluster};

/// Linearizable reads sent to the leader.
const READS: u64 = 100;

async fn accepted(cluster: &TestCluster, id: u64) -> f64 {
    let url = cluster.metrics_url(id).expect("metrics on");
    let text = scrape(&url).await.expect("scrape");
    sum(&text, "ledger_connections_accepted_total", &[]).expect("the counter is exported")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_reuse_the_leaders_connections_to_its_followers() {
    bounded(Duration::from_secs(90), async {
        let cluster = TestCluster::start(ClusterOptions::new(3).metrics().executor(false)).await;
        let leader = cluster.wait_leader(Duration::from_secs(30)).await;
        let followers: Vec<u64> = cluster
            .ids()
            .into_iter()
            .filter(|&id| id != leader)
            .collect();
        let mut client = cluster.client(leader).await;

        // The first read lets every connection the cluster makes anyway be made.
        let read = |deal: &str| pb::GetDealRequest {
            deal_id: deal.to_owned(),
            consistency: pb::Consistency::Linearizable as i32,
        };
        let first = client.admission.get_deal(read("no-such-deal")).await;
        assert_eq!(first.unwrap_err().code(), tonic::Code::NotFound);
        let mut before = Vec::new();
        for &id in &followers {
            before.push(accepted(&cluster, id).await);
        }

        // Each read is confirmed by a heartbeat round to the followers before it is answered.
        for n in 0..READS {
            let answer = client.admission.get_deal(read(&format!("none-{n}"))).await;
            assert_eq!(
                answer.unwrap_err().code(),
                tonic::Code::NotFound,
                "read {n}"
            );
        }

        for (&id, before) in followers.iter().zip(before) {
            let opened = accepted(&cluster, id).await - before;
            // The scrape itself is served on another port; a reconnection or two may happen.
            assert!(
                opened <= 2.0,
                "follower {id} accepted {opened} connections during {READS} reads on the leader"
            );
        }
    })
    .await;
}
