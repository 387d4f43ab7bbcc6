//! Defect h, the operators' side: writes a client may retry after an unknown outcome must not
//! do their work twice. `AddLearner` for a learner already there proposes no second membership
//! entry, and a learner that cannot catch up is reported as added and catching up, never as a
//! failure (also by `ledgerctl`, exit code 4); `ChangeMembership` to the voters in force
//! proposes nothing; `CompensateSaga` asked twice succeeds twice and compensates once.

use std::time::{Duration, Instant};

use ledger_client::{pb, Client, ClientConfig, ClientError, Submission};
use ledger_tests::{bounded, ctl, load, ClusterOptions, TestCluster};

fn client_config(cluster: &TestCluster) -> ClientConfig {
    let mut config = ClientConfig::new(cluster.running().iter().map(|&id| cluster.addr(id)));
    config.deadline = Duration::from_secs(3);
    config.attempt_timeout = Duration::from_secs(1);
    config
}

/// The leader's last log index: it grows with every entry proposed, membership or not (no
/// executor runs, so nothing else writes).
async fn last_log_index(cluster: &TestCluster) -> u64 {
    let leader = cluster.leader().await;
    cluster
        .status(leader)
        .await
        .expect("leader status")
        .last_log_index
}

fn role_of(members: &[pb::Member], node_id: u64) -> Option<pb::MemberRole> {
    members
        .iter()
        .find(|m| m.node_id == node_id)
        .map(pb::Member::role)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_writes_repeated_change_nothing_and_a_slow_learner_is_added_not_failed() {
    ctl::prepare().await;
    bounded(Duration::from_secs(240), async {
        let mut cluster = TestCluster::start(ClusterOptions::new(3)).await;
        cluster.start_extra(4).await;
        // Node 5 is down: as a learner it cannot catch up until it comes back.
        cluster.start_extra(5).await;
        cluster.kill(5);
        let client = Client::connect(client_config(&cluster))
            .await
            .expect("connect");

        // Node 4 joins; asking again (as a retry would) proposes no second membership entry,
        // whether on the leader or forwarded by a follower.
        let first = client
            .add_learner(4, &cluster.addr(4))
            .await
            .expect("add 4");
        assert!(first.caught_up, "{first:?}");
        assert_eq!(role_of(&first.members, 4), Some(pb::MemberRole::Learner));
        let before = last_log_index(&cluster).await;
        let again = client
            .add_learner(4, &cluster.addr(4))
            .await
            .expect("add 4 again");
        assert_eq!(again.log_index, first.log_index, "one membership entry");
        let leader = cluster.leader().await;
        let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
        let forwarded = cluster
            .client(follower)
            .await
            .cluster
            .add_learner(pb::AddLearnerRequest {
                node_id: 4,
                addr: cluster.addr(4),
                catch_up_wait_ms: 0,
            })
            .await
            .expect("add 4 through a follower")
            .into_inner();
        assert!(!forwarded.changed, "{forwarded:?}");
        assert_eq!(forwarded.log_index, first.log_index);
        assert_eq!(
            last_log_index(&cluster).await,
            before,
            "nothing was proposed"
        );
        // The same id at another address is a conflict, not a silent no-op.
        let moved = client.add_learner(4, "127.0.0.1:1").await;
        assert!(matches!(moved, Err(ClientError::Conflict(_))), "{moved:?}");

        // Node 5 cannot catch up within the client's deadline: added, still catching up.
        let started = Instant::now();
        let slow = client
            .add_learner(5, &cluster.addr(5))
            .await
            .expect("a slow catch-up is not a failure");
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "bounded by the deadline: {:?}",
            started.elapsed()
        );
        assert!(!slow.caught_up, "{slow:?}");
        assert!(slow.matched_index < slow.catch_up_index, "{slow:?}");
        assert_eq!(role_of(&slow.members, 5), Some(pb::MemberRole::Learner));

        // ledgerctl says which of the two happened: still catching up (exit code 4), and
        // proposes nothing again; then, with node 5 back, caught up (exit code 0).
        let endpoints: Vec<String> = [1, 2, 3].iter().map(|&id| cluster.addr(id)).collect();
        let before = last_log_index(&cluster).await;
        let addr5 = cluster.addr(5);
        let add_5 = |catch_up_timeout_s: &'static str| {
            let args = [
                "--json",
                "member",
                "add-learner",
                "5",
                &addr5,
                "--catch-up-timeout-s",
            ];
            let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            args.push(catch_up_timeout_s.to_owned());
            args
        };
        let behind_args = add_5("1");
        let behind_args: Vec<&str> = behind_args.iter().map(String::as_str).collect();
        let behind = ctl::spawn(&endpoints, &behind_args)
            .await
            .finish(Duration::from_secs(60))
            .await;
        assert_eq!(behind.code, Some(4), "{behind:?}");
        let shown = behind.json();
        assert_eq!(
            (&shown["added"], &shown["caught_up"]),
            (&true.into(), &false.into()),
            "{shown}"
        );
        assert_eq!(shown["log_index"].as_u64(), Some(slow.log_index), "{shown}");
        assert!(
            !behind.stderr.contains("ledgerctl:"),
            "not an error: {behind:?}"
        );
        assert_eq!(
            last_log_index(&cluster).await,
            before,
            "nothing was proposed"
        );

        cluster.restart(5).await;
        let caught_up_args = add_5("60");
        let caught_up_args: Vec<&str> = caught_up_args.iter().map(String::as_str).collect();
        let caught_up = ctl::run_ok(&endpoints, &caught_up_args).await.json();
        assert_eq!(caught_up["caught_up"], true, "{caught_up}");
        assert_eq!(
            caught_up["log_index"].as_u64(),
            Some(slow.log_index),
            "{caught_up}"
        );

        // Promoting node 4 twice: the second time, nothing is proposed.
        let promoted = client
            .change_membership(&[1, 2, 3, 4], true)
            .await
            .expect("promote 4");
        assert!(promoted.changed);
        assert_eq!(role_of(&promoted.members, 4), Some(pb::MemberRole::Voter));
        let before = last_log_index(&cluster).await;
        let repeated = client
            .change_membership(&[1, 2, 3, 4], true)
            .await
            .expect("promote 4 again");
        assert!(!repeated.changed, "{repeated:?}");
        assert_eq!(repeated.log_index, promoted.log_index);
        assert_eq!(
            last_log_index(&cluster).await,
            before,
            "nothing was proposed"
        );
        cluster.wait_converged().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensate_saga_twice_succeeds_twice_and_compensates_once() {
    bounded(Duration::from_secs(120), async {
        // No executor: the saga waits in PAYMENT, then in VOID once compensation starts.
        let cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let leader = cluster.leader().await;
        load::create_deal(&cluster.client(leader).await, "comp-deal", "10000.00", 10).await;
        let client = Client::connect(client_config(&cluster))
            .await
            .expect("connect");
        let request = Submission::new("comp-deal", "ana", "100.00");
        let decided = client.submit(&request).await.expect("submit");
        assert_eq!(decided.investment.saga_step(), pb::SagaStep::Payment);

        let first = client
            .compensate_saga(&request.request_id, "first ask")
            .await
            .expect("compensate");
        assert_eq!(first.saga_step(), pb::SagaStep::Void);
        assert_eq!(first.cancel_cause(), pb::CancelCause::Aborted);

        // Asked again (a retry after a lost reply looks the same): success, the same
        // investment, and nothing proposed.
        let before = last_log_index(&cluster).await;
        let second = client
            .compensate_saga(&request.request_id, "second ask")
            .await
            .expect("compensate again");
        assert_eq!(second, first, "one compensation");
        assert_eq!(second.last_error, "first ask");
        let follower = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
        let through_follower = cluster
            .client(follower)
            .await
            .cluster
            .compensate_saga(pb::CompensateSagaRequest {
                request_id: request.request_id.clone(),
                reason: "third ask".into(),
            })
            .await
            .expect("compensate through a follower")
            .into_inner();
        assert_eq!(through_follower.updated_at_ms, first.updated_at_ms);
        assert_eq!(
            last_log_index(&cluster).await,
            before,
            "nothing was proposed"
        );

        // Another saga that was never compensated by an operator is still refused once it
        // is over; here: a rejected request has no saga.
        let rejected = client
            .submit(&Submission::new("comp-deal", "bo", "20000.00"))
            .await
            .expect("submit");
        assert_eq!(
            rejected.reject_reason(),
            Some(pb::RejectReason::AmountExceedsRemaining)
        );
        let refused = client
            .compensate_saga(&rejected.investment.request_id, "no saga")
            .await;
        assert!(
            matches!(refused, Err(ClientError::Conflict(_))),
            "{refused:?}"
        );
    })
    .await;
}
