//! The client library against real clusters: routing and waiting for a saga, batches with a
//! bad request among good ones, and an outage reported as "outcome unknown" with the request id,
//! after which the same request resolves to exactly one decision.

use std::time::Duration;

use ledger_client::{pb, status_of, Client, ClientConfig, ClientError, Submission};
use ledger_tests::saga::{quiet_faults, SagaCluster};
use ledger_tests::{bounded, wait_until, ClusterOptions, TestCluster};

fn seeds(cluster: &TestCluster) -> Vec<String> {
    cluster.endpoints()
}

fn deal(deal_id: &str, seats: u32) -> pb::CreateDealRequest {
    pb::CreateDealRequest {
        deal_id: deal_id.into(),
        amount: "1000000.00".into(),
        max_investors: seats,
        min_ticket: None,
        max_ticket: None,
        opens_at_ms: None,
        closes_at_ms: None,
        max_waitlist: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invest_and_wait_follows_the_saga_and_batches_decide_each_request() {
    bounded(Duration::from_secs(120), async {
        let saga = SagaCluster::start(3, quiet_faults(7)).await;
        // Seeded with one follower only: the client finds the leader from there.
        let leader = saga.cluster.leader().await;
        let follower = saga
            .cluster
            .ids()
            .into_iter()
            .find(|&id| id != leader)
            .unwrap();
        let client = Client::connect(ClientConfig::new([saga.cluster.addr(follower)]))
            .await
            .expect("connect");
        assert_eq!(client.leader_addr(), Some(saga.cluster.addr(leader)));

        client
            .create_deal(deal("lib-deal", 2))
            .await
            .expect("create deal");
        let first = Submission::new("lib-deal", "alice", "1500.00");
        let done = client
            .invest_and_wait(&first, Duration::from_secs(30))
            .await
            .expect("invest and wait");
        assert_eq!(
            status_of(&done),
            pb::InvestmentStatus::Confirmed,
            "{done:?}"
        );
        // The same request again: the first decision, replayed, not a second admission.
        let again = client.submit(&first).await.expect("resubmit");
        assert!(
            again.replayed && again.log_index == done.log_index,
            "{again:?}"
        );

        let batch = vec![
            Submission::new("lib-deal", "bob", "100.00"),
            Submission::new("lib-deal", "carol", "not money"),
            Submission::new("lib-deal", "dave", "100.00"),
        ];
        let results = client.submit_batch(&batch).await.expect("batch");
        assert_eq!(results.len(), 3);
        assert!(
            results[0].as_ref().is_ok_and(|d| d.is_admitted()),
            "{:?}",
            results[0]
        );
        assert!(
            matches!(results[1], Err(ClientError::InvalidArgument(_))),
            "{:?}",
            results[1]
        );
        // Two seats: alice and bob hold them, so dave is refused, as a decision.
        let dave = results[2].as_ref().expect("dave decided");
        assert_eq!(
            dave.reject_reason(),
            Some(pb::RejectReason::InvestorLimitReached)
        );

        // A typed error for a bad request, and for an unknown one.
        let bad = client
            .submit(&Submission::new("lib-deal", "erin", "-5"))
            .await;
        assert!(
            matches!(bad, Err(ClientError::InvalidArgument(_))),
            "{bad:?}"
        );
        let unknown = client.investment(&uuid::Uuid::new_v4().to_string()).await;
        assert!(
            matches!(unknown, Err(ClientError::NotFound(_))),
            "{unknown:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_an_unknown_outcome_with_the_request_id_and_resolves_once() {
    bounded(Duration::from_secs(150), async {
        let mut cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let mut config = ClientConfig::new(seeds(&cluster));
        config.deadline = Duration::from_secs(3);
        config.attempt_timeout = Duration::from_secs(1);
        let client = Client::connect(config).await.expect("connect");
        client
            .create_deal(deal("outage-deal", 10))
            .await
            .expect("create deal");

        // No quorum: two of three nodes down.
        let leader = cluster.leader().await;
        let others: Vec<u64> = cluster
            .ids()
            .into_iter()
            .filter(|&id| id != leader)
            .collect();
        for &id in &others {
            cluster.stop(id).await;
        }
        let request = Submission::new("outage-deal", "frank", "100.00");
        let started = std::time::Instant::now();
        let result = client.submit(&request).await;
        let waited = started.elapsed();
        match &result {
            Err(ClientError::OutcomeUnknown { request_id, .. }) => {
                assert_eq!(request_id, &request.request_id)
            }
            other => panic!("expected an unknown outcome, got {other:?}"),
        }
        assert!(
            waited < Duration::from_secs(6),
            "the client kept trying for {waited:?} past its 3 s deadline"
        );

        // Back to a quorum: the same request resolves to one decision, whatever the first
        // attempt did.
        for &id in &others {
            cluster.restart(id).await;
        }
        let decided = wait_until(Duration::from_secs(30), "the request to be decided", || {
            let (client, request) = (client.clone(), request.clone());
            async move { client.submit(&request).await.map_err(|e| e.to_string()) }
        })
        .await;
        assert!(decided.is_admitted(), "{decided:?}");
        let list = client.deal_investments("outage-deal").await.expect("list");
        let records = list
            .iter()
            .filter(|i| i.request_id == request.request_id)
            .count();
        assert_eq!(records, 1, "the request is recorded {records} times");
        assert_eq!(
            client
                .deal("outage-deal")
                .await
                .expect("deal")
                .investor_count,
            1
        );
    })
    .await;
}
