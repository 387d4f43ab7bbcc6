//! A watch opened on a follower for an investment just decided waits for the follower's own
//! replica to apply it, instead of asking the leader whether it exists.
//!
//! Postmortem (issue #15): a follower that did not yet show the investment a watch named asked
//! the leader (a forwarded linearizable `GetInvestment`, which costs the leader a read barrier:
//! a heartbeat to every follower). A client that submits and then watches almost always beats
//! the follower's apply, so at 500 sagas/s the leader served ~150 of these a second. The
//! follower now waits up to 25 ms for its replica first.

use std::time::Duration;

use ledger_tests::check::money;
use ledger_tests::load::{self, RetryPolicy};
use ledger_tests::metrics::{scrape, sum};
use ledger_tests::{bounded, pb, ClusterOptions, TestCluster};

const DEAL: &str = "follower-watch";
/// Investments submitted, each watched on a follower as soon as it is decided.
const WATCHED: usize = 60;

async fn forwarded_lookups(cluster: &TestCluster, leader: u64) -> f64 {
    let url = cluster.metrics_url(leader).expect("metrics on");
    let text = scrape(&url).await.expect("scrape");
    let method = ("method", "admission.v1.Admission/GetInvestment");
    sum(&text, "ledger_rpc_requests_total", &[method]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_a_follower_waits_for_its_replica_instead_of_asking_the_leader() {
    bounded(Duration::from_secs(120), async {
        let cluster = TestCluster::start(ClusterOptions::new(3).metrics().executor(false)).await;
        let leader = cluster.wait_leader(Duration::from_secs(30)).await;
        let follower = if leader == 1 { 2 } else { 1 };
        let writers = load::connect_all(&cluster, &[leader]).await;
        let mut watcher = cluster.client(follower).await.admission;
        load::create_deal(&writers[0], DEAL, "1000000000.00", 100_000).await;

        for n in 0..WATCHED {
            let request = load::new_request(DEAL, format!("user-{n}"), money(100));
            let acked = load::submit_retrying(&writers, 0, request, RetryPolicy::default())
                .await
                .expect("submit on the leader");
            assert!(acked.decision().admitted(), "{n}: {acked:?}");
            let watch = pb::WatchInvestmentRequest {
                request_id: acked.request.request_id.clone(),
            };
            let mut stream = watcher
                .watch_investment(watch)
                .await
                .expect("WatchInvestment on the follower")
                .into_inner();
            let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("the first state within 10 s")
                .expect("a healthy stream")
                .expect("an open stream");
            assert_eq!(first.request_id, acked.request.request_id);
        }

        // The follower asked the leader about none of them (at most a handful, on a machine so
        // busy that the follower's apply took longer than the wait).
        let asked = forwarded_lookups(&cluster, leader).await;
        assert!(
            asked <= 3.0,
            "the follower asked the leader about {asked} of {WATCHED} investments"
        );

        // One that does not exist is still checked at the leader, and reported missing.
        let missing = pb::WatchInvestmentRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        let refused = watcher.watch_investment(missing).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
        assert_eq!(forwarded_lookups(&cluster, leader).await, asked + 1.0);
    })
    .await;
}
