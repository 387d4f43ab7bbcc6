//! Defect h: a write whose outcome is not known must say so. A leader that lost its followers
//! appends a `CreateDeal` it cannot commit; the client, out of time, must report an unknown
//! outcome (not `Unavailable`, which promises nothing was written), and so must `ledgerctl`
//! (exit code 3). Once a follower is back the deal exists, so "unknown" was the truth; creating
//! and closing it again are answered, not refused.

use std::time::Duration;

use ledger_client::{pb, Client, ClientConfig, ClientError};
use ledger_tests::ctl;
use ledger_tests::{bounded, wait_until, ClusterOptions, TestCluster};

fn deal(deal_id: &str) -> pb::CreateDealRequest {
    pb::CreateDealRequest {
        deal_id: deal_id.into(),
        amount: "5000.00".into(),
        max_investors: 10,
        min_ticket: None,
        max_ticket: None,
        opens_at_ms: None,
        closes_at_ms: None,
        max_waitlist: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_deal_the_leader_could_not_commit_is_unknown_and_did_happen() {
    ctl::prepare().await;
    bounded(Duration::from_secs(180), async {
        let mut cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let leader = cluster.leader().await;
        let followers: Vec<u64> = cluster
            .ids()
            .into_iter()
            .filter(|&id| id != leader)
            .collect();
        let mut config = ClientConfig::new([cluster.addr(leader)]);
        config.deadline = Duration::from_secs(3);
        config.attempt_timeout = Duration::from_secs(1);
        let client = Client::connect(config).await.expect("connect");

        // The followers crash: the leader still leads and appends, but cannot commit.
        for &id in &followers {
            cluster.kill(id);
        }
        let before = cluster.status(leader).await.expect("leader status");
        let result = client.create_deal(deal("unknown-deal")).await;
        match &result {
            Err(ClientError::OperationOutcomeUnknown { operation, .. }) => {
                assert_eq!(operation, "CreateDeal unknown-deal")
            }
            other => panic!("expected an unknown outcome, got {other:?}"),
        }
        let after = cluster.status(leader).await.expect("leader status");
        assert!(
            after.last_log_index > before.last_log_index,
            "the leader appended the deal ({} → {}), so it may commit",
            before.last_log_index,
            after.last_log_index
        );

        // ledgerctl says the same, with its own exit code and a JSON error.
        let endpoints = [cluster.addr(leader)];
        let run = ctl::spawn(
            &endpoints,
            &[
                "--json",
                "--deadline-s",
                "2",
                "deal",
                "create",
                "ctl-deal",
                "--amount",
                "100.00",
            ],
        )
        .await
        .finish(Duration::from_secs(60))
        .await;
        assert_eq!(
            run.code,
            Some(3),
            "exit code of an unknown outcome: {run:?}"
        );
        let error = &run.json()["error"];
        assert_eq!(error["outcome"], "unknown", "{run:?}");
        assert_eq!(error["code"], "OUTCOME_UNKNOWN", "{run:?}");
        assert_eq!(error["operation"], "CreateDeal ctl-deal", "{run:?}");
        assert!(run.stderr.contains("OUTCOME UNKNOWN"), "{run:?}");

        // One follower comes back. It lacks the appended entries, so it cannot win an election
        // without the leader's vote, and the leader (or whoever it votes for) holds them: they
        // commit. The deal exists: the outcome was unknown, not "nothing written".
        cluster.restart(followers[0]).await;
        let created = wait_until(Duration::from_secs(30), "the deal to be readable", || {
            let client = client.clone();
            async move { client.deal("unknown-deal").await.map_err(|e| e.to_string()) }
        })
        .await;
        assert_eq!(created.amount, "5000.00");
        assert_eq!(created.status(), pb::DealStatus::Open);

        // Retrying the writes is safe: the same deal again, and closing twice.
        let again = client
            .create_deal(deal("unknown-deal"))
            .await
            .expect("create the same deal again");
        assert_eq!(
            again.created_at_ms, created.created_at_ms,
            "not created twice"
        );
        let other_terms = client
            .create_deal(pb::CreateDealRequest {
                amount: "6000.00".into(),
                ..deal("unknown-deal")
            })
            .await;
        assert!(
            matches!(other_terms, Err(ClientError::Conflict(_))),
            "{other_terms:?}"
        );
        for attempt in 1..=2 {
            let closed = client
                .close_deal("unknown-deal")
                .await
                .unwrap_or_else(|e| panic!("close #{attempt}: {e}"));
            assert_eq!(closed.status(), pb::DealStatus::Closed, "close #{attempt}");
        }
        cluster.restart(followers[1]).await;
        cluster.wait_converged().await;
    })
    .await;
}
