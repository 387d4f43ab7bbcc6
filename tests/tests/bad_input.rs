//! Malformed input is refused with `INVALID_ARGUMENT`, naming the field, before anything is
//! proposed (state and applied index unchanged); business refusals and conflicting reuse of a
//! request id are answered as the contract says.

use std::time::Duration;

use ledger_tests::{bounded, pb, ClusterOptions, NodeClients, TestCluster};
use tonic::Code;

const DEAL: &str = "bad-input-deal";

fn submit(request_id: &str, deal_id: &str, user_id: &str, amount: &str) -> pb::SubmitRequest {
    pb::SubmitRequest {
        request_id: request_id.to_owned(),
        deal_id: deal_id.to_owned(),
        user_id: user_id.to_owned(),
        amount: amount.to_owned(),
        waitlist: false,
        waitlist_ttl_ms: None,
    }
}

fn create(deal_id: &str, amount: &str, max_investors: u32) -> pb::CreateDealRequest {
    ledger_client::open_deal(deal_id, amount, max_investors)
}

/// Asserts `result` failed with `code` and a message naming `field`.
fn assert_refused<T: std::fmt::Debug>(
    case: &str,
    result: Result<T, tonic::Status>,
    code: Code,
    field: &str,
) {
    let status = match result {
        Ok(reply) => panic!("{case}: accepted, expected {code:?}: {reply:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{case}: wrong code ({status:?})");
    assert!(
        status.message().contains(field),
        "{case}: the message {:?} does not name the field {field:?}",
        status.message()
    );
}

/// `(applied_index, state_digest)` of every node.
async fn fingerprints(cluster: &TestCluster) -> Vec<(u64, u64, String)> {
    let mut all = Vec::new();
    for id in cluster.running() {
        let status = cluster.status(id).await.expect("status");
        all.push((id, status.applied_index, status.state_digest));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_changes_nothing() {
    bounded(Duration::from_secs(120), async {
        // Three nodes, so that followers (which validate before forwarding) are covered too.
        let cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let leader = cluster.leader().await;
        let follower = cluster
            .running()
            .into_iter()
            .find(|&id| id != leader)
            .unwrap();
        let mut nodes: Vec<NodeClients> = Vec::new();
        for id in [leader, follower] {
            nodes.push(cluster.client(id).await);
        }

        // A valid deal, so that only the malformed field is wrong in each case below.
        let mut admission = nodes[0].admission.clone();
        admission
            .create_deal(create(DEAL, "100000.00", 10))
            .await
            .expect("create the deal");
        let before = cluster.wait_converged().await;
        let fingerprints_before = fingerprints(&cluster).await;

        // Every malformed Submit, on the leader and on a follower.
        let ok_id = uuid::Uuid::new_v4().to_string();
        let long_deal = "d".repeat(65);
        let cases: Vec<(&str, pb::SubmitRequest, &str)> = vec![
            (
                "malformed UUID",
                submit("not-a-uuid", DEAL, "u1", "10"),
                "request_id",
            ),
            (
                "empty request id",
                submit("", DEAL, "u1", "10"),
                "request_id",
            ),
            (
                "nil UUID",
                submit("00000000-0000-0000-0000-000000000000", DEAL, "u1", "10"),
                "request_id",
            ),
            (
                "negative amount",
                submit(&ok_id, DEAL, "u1", "-5"),
                "amount",
            ),
            ("zero amount", submit(&ok_id, DEAL, "u1", "0"), "amount"),
            (
                "three decimals",
                submit(&ok_id, DEAL, "u1", "0.001"),
                "amount",
            ),
            ("exponent", submit(&ok_id, DEAL, "u1", "1e3"), "amount"),
            (
                "too large",
                submit(&ok_id, DEAL, "u1", "10000000000000"),
                "amount",
            ),
            ("empty amount", submit(&ok_id, DEAL, "u1", ""), "amount"),
            ("empty deal id", submit(&ok_id, "", "u1", "10"), "deal_id"),
            (
                "deal id with a space",
                submit(&ok_id, "a deal", "u1", "10"),
                "deal_id",
            ),
            (
                "65-char deal id",
                submit(&ok_id, &long_deal, "u1", "10"),
                "deal_id",
            ),
            ("empty user id", submit(&ok_id, DEAL, "", "10"), "user_id"),
        ];
        for client in &nodes {
            let mut admission = client.admission.clone();
            for (case, request, field) in &cases {
                let result = admission.submit(request.clone()).await;
                assert_refused(case, result, Code::InvalidArgument, field);
            }
            // Malformed deals.
            for (case, request, field) in [
                ("deal amount 0", create("other-deal", "0", 10), "amount"),
                ("deal amount 1e3", create("other-deal", "1e3", 10), "amount"),
                ("deal amount -1", create("other-deal", "-1", 10), "amount"),
                (
                    "max_investors 100001",
                    create("other-deal", "1000", 100_001),
                    "max_investors",
                ),
                (
                    "deal id with a space",
                    create("other deal", "1000", 10),
                    "deal_id",
                ),
            ] {
                let result = admission.create_deal(request).await;
                assert_refused(case, result, Code::InvalidArgument, field);
            }
        }

        // Nothing was proposed: every node is still at the same index with the same digest.
        let after = cluster.wait_converged().await;
        assert_eq!(
            before, after,
            "malformed input changed the replicated state"
        );
        assert_eq!(fingerprints_before, fingerprints(&cluster).await);

        // An unknown deal is a business refusal: a normal reply, decided and recorded, though
        // it creates no deal and no user (issue #11).
        let unknown_id = uuid::Uuid::new_v4().to_string();
        for (attempt, client) in nodes.iter().enumerate() {
            let reply = client
                .admission
                .clone()
                .submit(submit(&unknown_id, "no-such-deal", "u1", "10"))
                .await
                .expect("a submission to an unknown deal is answered")
                .into_inner();
            let investment = reply.investment.expect("the reply carries the investment");
            assert_eq!(investment.status, pb::InvestmentStatus::Rejected as i32);
            assert_eq!(
                investment.reject_reason,
                pb::RejectReason::DealNotFound as i32
            );
            assert_eq!(
                reply.replayed,
                attempt > 0,
                "only the resubmission is a replay"
            );
        }

        for client in &nodes {
            let mut admission = client.admission.clone();
            let deal = admission
                .get_deal(pb::GetDealRequest {
                    deal_id: "no-such-deal".into(),
                    consistency: 0,
                })
                .await;
            assert_refused("the unknown deal", deal, Code::NotFound, "no-such-deal");
            let user = admission
                .get_user(pb::GetUserRequest {
                    user_id: "u1".into(),
                    consistency: 0,
                })
                .await;
            assert_refused("its user", user, Code::NotFound, "u1");
            let recorded = admission
                .get_investment(pb::GetInvestmentRequest {
                    request_id: unknown_id.clone(),
                    consistency: 0,
                })
                .await
                .expect("the rejection is kept")
                .into_inner();
            assert_eq!(
                recorded.reject_reason,
                pb::RejectReason::DealNotFound as i32
            );
        }

        // Reusing a request id with another payload is a conflict, wherever it arrives.
        let reused = uuid::Uuid::new_v4().to_string();
        let first = nodes[1]
            .admission
            .clone()
            .submit(submit(&reused, DEAL, "u2", "100.00"))
            .await
            .expect("a valid submission")
            .into_inner();
        assert_eq!(
            first.investment.expect("investment").status,
            pb::InvestmentStatus::Pending as i32
        );
        for client in &nodes {
            let mut admission = client.admission.clone();
            for (case, other) in [
                ("another amount", submit(&reused, DEAL, "u2", "200.00")),
                ("another user", submit(&reused, DEAL, "u3", "100.00")),
                (
                    "another deal",
                    submit(&reused, "no-such-deal", "u2", "100.00"),
                ),
                (
                    "unknown-deal id reused",
                    submit(&unknown_id, DEAL, "u1", "10"),
                ),
            ] {
                let result = admission.submit(other).await;
                assert_refused(case, result, Code::AlreadyExists, "already exists");
            }
            // The same payload is not a conflict: the original decision, replayed.
            let again = admission
                .submit(submit(&reused, DEAL, "u2", "100"))
                .await
                .expect("resubmitting the same payload")
                .into_inner();
            assert!(again.replayed);
            assert_eq!(
                (again.log_index, again.offset),
                (first.log_index, first.offset)
            );
        }
        cluster.wait_converged().await;
    })
    .await;
}
