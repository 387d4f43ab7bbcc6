//! Membership changes under service: a new node joins as a learner, is promoted to voter, and
//! a voter is removed; after every step writes succeed and the new node holds the decisions.

use std::collections::BTreeMap;
use std::time::Duration;

use ledger_tests::load::{self, Decision, RetryPolicy};
use ledger_tests::{bounded, pb, wait_until, ClusterOptions, NodeClients, TestCluster};
use tonic::Code;

const DEAL: &str = "membership-deal";

/// `node_id → role` of a membership.
fn roles(members: &[pb::Member]) -> BTreeMap<u64, pb::MemberRole> {
    members.iter().map(|m| (m.node_id, m.role())).collect()
}

fn expect_roles(voters: &[u64], learners: &[u64]) -> BTreeMap<u64, pb::MemberRole> {
    let mut roles: BTreeMap<u64, pb::MemberRole> = voters
        .iter()
        .map(|&id| (id, pb::MemberRole::Voter))
        .collect();
    roles.extend(learners.iter().map(|&id| (id, pb::MemberRole::Learner)));
    roles
}

/// Submits a fresh request through every given node in turn (retrying with the same id), then
/// waits until node `reader`'s own replica (STALE) holds the same decision.
async fn submit_and_read_back(
    cluster: &TestCluster,
    writers: &[NodeClients],
    reader: u64,
    user: &str,
) {
    let request = pb::SubmitRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        deal_id: DEAL.to_owned(),
        user_id: user.to_owned(),
        amount: "100.00".to_owned(),
        waitlist: false,
        waitlist_ttl_ms: None,
    };
    let ack = load::submit_retrying(writers, 0, request, RetryPolicy::default())
        .await
        .unwrap_or_else(|e| panic!("submit for {user}: {e}"));
    assert!(
        ack.decision().admitted(),
        "{user} was not admitted: {ack:?}"
    );
    let reader_client = cluster.client(reader).await;
    let request_id = ack.request.request_id.clone();
    let on_reader = wait_until(
        Duration::from_secs(20),
        &format!("node {reader} to hold {user}'s decision"),
        || {
            let mut admission = reader_client.admission.clone();
            let request_id = request_id.clone();
            async move {
                admission
                    .get_investment(pb::GetInvestmentRequest {
                        request_id,
                        consistency: pb::Consistency::Stale as i32,
                    })
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await;
    assert_eq!(Decision::of(&on_reader), ack.decision());
}

/// `ChangeMembership` through `client`, retried while there is no leader.
async fn change_membership(client: &NodeClients, voters: &[u64]) -> pb::MembershipResponse {
    wait_until(
        Duration::from_secs(30),
        &format!("ChangeMembership to {voters:?}"),
        || {
            let mut cluster = client.cluster.clone();
            let voters = voters.to_vec();
            async move {
                match cluster
                    .change_membership(pb::ChangeMembershipRequest {
                        voters,
                        retain: false,
                    })
                    .await
                {
                    Ok(response) => Ok(response.into_inner()),
                    Err(e) if e.code() == Code::Unavailable => Err(e.to_string()),
                    Err(e) => panic!("ChangeMembership failed: {e}"),
                }
            }
        },
    )
    .await
}

/// Waits until every running node reports exactly `expected` as the membership.
async fn wait_membership(cluster: &TestCluster, expected: &BTreeMap<u64, pb::MemberRole>) {
    for id in cluster.running() {
        wait_until(
            Duration::from_secs(20),
            &format!("node {id} to see membership {expected:?}"),
            || async move {
                let status = cluster.status(id).await?;
                let seen = roles(&status.members);
                if &seen == expected {
                    Ok(())
                } else {
                    Err(format!("{seen:?}"))
                }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_promotion_and_voter_removal() {
    bounded(Duration::from_secs(150), async {
        // Three voters, and a fourth node that runs but belongs to no cluster yet.
        let mut cluster = TestCluster::start(ClusterOptions::new(3)).await;
        cluster.start_extra(4).await;
        let fresh = cluster.status(4).await.expect("status of node 4");
        assert!(
            fresh.members.is_empty(),
            "node 4 has a membership before joining"
        );
        assert_eq!(fresh.leader_id, None);
        let leader = cluster.leader().await;
        let follower = if leader == 1 { 2 } else { 1 };
        let via = cluster.client(follower).await;
        load::create_deal(&via, DEAL, "1000000.00", 1_000).await;

        // Step 1: node 4 joins as a learner (through a follower, which forwards to the leader);
        // it receives the log without voting.
        let added = via
            .cluster
            .clone()
            .add_learner(pb::AddLearnerRequest {
                node_id: 4,
                addr: cluster.addr(4),
                catch_up_wait_ms: 10_000,
            })
            .await
            .expect("AddLearner(4)")
            .into_inner();
        assert_eq!(roles(&added.members), expect_roles(&[1, 2, 3], &[4]));
        wait_membership(&cluster, &expect_roles(&[1, 2, 3], &[4])).await;
        assert_eq!(cluster.status(4).await.expect("status").role, "learner");
        let writers = load::connect_all(&cluster, &[1, 2, 3, 4]).await;
        submit_and_read_back(&cluster, &writers, 4, "after-learner").await;

        // Step 2: node 4 becomes a voter.
        let promoted = change_membership(&via, &[1, 2, 3, 4]).await;
        assert_eq!(roles(&promoted.members), expect_roles(&[1, 2, 3, 4], &[]));
        wait_membership(&cluster, &expect_roles(&[1, 2, 3, 4], &[])).await;
        let role = cluster.status(4).await.expect("status").role;
        assert!(role == "follower" || role == "leader", "node 4 is a {role}");
        submit_and_read_back(&cluster, &writers, 4, "after-promotion").await;

        // Step 3: node 3 is removed (then stopped, as an operator would); the three remaining
        // voters carry on, whoever led before.
        let reduced = change_membership(&via, &[1, 2, 4]).await;
        assert_eq!(roles(&reduced.members), expect_roles(&[1, 2, 4], &[]));
        cluster.stop(3).await;
        let remaining = cluster.leader().await;
        assert_ne!(remaining, 3);
        wait_membership(&cluster, &expect_roles(&[1, 2, 4], &[])).await;
        let writers = load::connect_all(&cluster, &[1, 2, 4]).await;
        submit_and_read_back(&cluster, &writers, 4, "after-removal").await;

        // The final membership, as the leader reports it, and one state on the remaining nodes.
        let status = cluster.status(remaining).await.expect("status");
        assert_eq!(roles(&status.members), expect_roles(&[1, 2, 4], &[]));
        let (applied, _) = cluster.wait_converged().await;
        assert!(applied > 0);
        let deal = writers[2]
            .admission
            .clone()
            .get_deal(pb::GetDealRequest {
                deal_id: DEAL.to_owned(),
                consistency: pb::Consistency::Stale as i32,
            })
            .await
            .expect("get deal on node 4")
            .into_inner();
        assert_eq!(deal.investor_count, 3, "node 4 holds the three admissions");
    })
    .await;
}
