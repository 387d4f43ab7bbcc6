//! Identities and roles under mutual TLS (issue #11, DESIGN §9): who may call what.
//!
//! - Calls without credentials get `UNAUTHENTICATED`; a client's certificate calling an
//!   operator's RPC gets `PERMISSION_DENIED`; a certificate for another cluster id counts for
//!   nothing.
//! - `Raft.Propose` carries only a node's own executor's heartbeats and step results: a client,
//!   or a node proposing for another node, a saga not assigned to it, or anything else, is
//!   refused. Postmortem (a review): anyone who could reach the port could forge
//!   `PaymentSucceeded` + `DocumentsGenerated` and confirm an investment nobody paid for.
//! - A node with a certificate from another CA cannot join (the leader cannot replicate to it),
//!   replicate or vote.
//!
//! Every refusal leaves the state digest as it was.

use std::time::Duration;

use ledger_client::{certs, connect_with, pb, Client, ClientConfig, Credentials, Submission};
use ledger_node::raft::TypeConfig;
use ledger_proto::identity::Role;
use ledger_state_machine::{codec, Command, RecordStep, RequestId, StepResult};
use ledger_tests::raft::{assert_refused, raft_client_tls, raft_request};
use ledger_tests::{bounded, ClusterOptions, TestCluster};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::Vote;
use tonic::Code;

fn credentials(cluster: &TestCluster, role: Option<Role>) -> Credentials {
    let dir = cluster.certs_dir().expect("a TLS cluster");
    let pair = role.map(|role| {
        let issued = certs::paths(&dir, &role);
        if !issued.cert.exists() {
            certs::issue(&dir, role, &certs::local_hosts()).expect("issue");
        }
        issued
    });
    Credentials::tls(
        &certs::ca_path(&dir),
        pair.as_ref().map(|p| (p.cert.as_path(), p.key.as_path())),
    )
    .expect("credentials")
}

/// The client library at `addr`, as the harness's operator.
async fn as_operator(cluster: &TestCluster, addr: &str) -> Client {
    let mut config = ClientConfig::new([addr.to_owned()]);
    config.credentials = cluster.credentials().clone();
    Client::connect(config)
        .await
        .expect("connect as the operator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_get_what_their_role_allows() {
    bounded(Duration::from_secs(120), async {
        let cluster = TestCluster::start(ClusterOptions::new(3).tls()).await;
        let leader = cluster.leader().await;
        let addr = cluster.addr(leader);
        let (_, digest) = cluster.wait_converged().await;

        // No credentials at all (TLS trusting the CA, no certificate, no token).
        let mut anonymous = connect_with(&addr, &credentials(&cluster, None))
            .await
            .expect("a TLS connection without a certificate");
        let remove = pb::ChangeMembershipRequest {
            voters: vec![1, 2],
            retain: false,
        };
        assert_refused(
            "ChangeMembership without credentials",
            anonymous.cluster.change_membership(remove.clone()).await,
            Code::Unauthenticated,
            &["credentials"],
        );
        assert_refused(
            "Status without credentials",
            anonymous.cluster.status(pb::StatusRequest::default()).await,
            Code::Unauthenticated,
            &["credentials"],
        );

        // A client's certificate: submits and reads, not operators' RPCs.
        let client_role = Role::Client("web".into());
        let mut client = connect_with(&addr, &credentials(&cluster, Some(client_role)))
            .await
            .expect("connect as a client");
        assert_refused(
            "ChangeMembership with a client certificate",
            client.cluster.change_membership(remove.clone()).await,
            Code::PermissionDenied,
            &["Operator"],
        );
        for (what, result) in [
            (
                "AddLearner",
                client
                    .cluster
                    .add_learner(pb::AddLearnerRequest {
                        node_id: 9,
                        addr: "127.0.0.1:1".into(),
                        catch_up_wait_ms: 0,
                    })
                    .await
                    .map(drop),
            ),
            (
                "TransferLeader",
                client
                    .cluster
                    .transfer_leader(pb::TransferLeaderRequest { to: 2 })
                    .await
                    .map(drop),
            ),
            (
                "CreateDeal",
                client
                    .admission
                    .create_deal(pb::CreateDealRequest {
                        deal_id: "by-a-client".into(),
                        amount: "1000.00".into(),
                        max_investors: 10,
                        ..Default::default()
                    })
                    .await
                    .map(drop),
            ),
        ] {
            assert_refused(what, result, Code::PermissionDenied, &["Operator"]);
        }
        assert_eq!(
            cluster.wait_converged().await.1,
            digest,
            "a refusal changed state"
        );

        // The operator (the harness's certificate) creates a deal; the client submits to it.
        let operator = as_operator(&cluster, &addr).await;
        operator
            .create_deal(pb::CreateDealRequest {
                deal_id: "tls-deal".into(),
                amount: "10000.00".into(),
                max_investors: 10,
                ..Default::default()
            })
            .await
            .expect("the operator creates a deal");
        let as_client = Client::connect({
            let mut config = ClientConfig::new([addr.clone()]);
            config.credentials = credentials(&cluster, Some(Role::Client("web".into())));
            config
        })
        .await
        .expect("connect as a client");
        let decision = as_client
            .submit(&Submission::new("tls-deal", "alice", "100.00"))
            .await
            .expect("a client submits");
        assert!(decision.is_admitted(), "{decision:?}");

        // A certificate from the same CA for another cluster id speaks for no one here.
        let other = credentials_for_cluster(&cluster, "another-cluster");
        let mut stranger = connect_with(&addr, &other).await.expect("connect");
        assert_refused(
            "Status with another cluster's operator certificate",
            stranger.cluster.status(pb::StatusRequest::default()).await,
            Code::PermissionDenied,
            &["another-cluster"],
        );
    })
    .await;
}

/// An operator certificate naming `cluster_id`, signed by the test cluster's own CA.
fn credentials_for_cluster(cluster: &TestCluster, cluster_id: &str) -> Credentials {
    let dir = cluster.certs_dir().expect("a TLS cluster");
    let other = cluster.dir().join("other-cluster-certs");
    std::fs::create_dir_all(&other).expect("mkdir");
    for file in ["ca.pem", "ca-key.pem"] {
        std::fs::copy(dir.join(file), other.join(file)).expect("copy the CA");
    }
    std::fs::write(other.join("cluster-id"), cluster_id).expect("write the cluster id");
    let issued = certs::issue(&other, Role::Operator("mallory".into()), &[]).expect("issue");
    Credentials::tls(&certs::ca_path(&dir), Some((&issued.cert, &issued.key))).expect("creds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_proposals_are_refused() {
    bounded(Duration::from_secs(120), async {
        let cluster = TestCluster::start(ClusterOptions::new(3).tls()).await;
        let leader = cluster.leader().await;
        let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
        let other = [1, 2, 3]
            .into_iter()
            .find(|&id| id != leader && id != follower)
            .unwrap();
        let dir = cluster.certs_dir().expect("a TLS cluster");
        let ca = certs::ca_path(&dir);
        let addr = cluster.addr(leader);

        // An admitted investment whose saga waits for an executor (executors are off).
        let operator = as_operator(&cluster, &addr).await;
        operator
            .create_deal(pb::CreateDealRequest {
                deal_id: "forged".into(),
                amount: "10000.00".into(),
                max_investors: 10,
                ..Default::default()
            })
            .await
            .expect("deal");
        let decision = operator
            .submit(&Submission::new("forged", "victim", "5000.00"))
            .await
            .expect("submit");
        assert!(decision.is_admitted(), "{decision:?}");
        let request_id = RequestId::parse(&decision.investment.request_id).expect("id");
        let (_, digest) = cluster.wait_converged().await;
        let forged_step = |executor: u64| {
            Command::RecordStep(RecordStep {
                request_id,
                executor,
                epoch: decision.investment.epoch,
                result: StepResult::PaymentSucceeded {
                    payment_id: "pay_nobody_made".into(),
                },
            })
        };
        let propose = |command: &Command, sender: u64| {
            raft_request(cluster.cluster_id(), codec::encode(command), leader, sender)
        };

        // A client's certificate: not a node at all.
        let client = certs::issue(&dir, Role::Client("mallory".into()), &[]).expect("issue");
        let mut as_client = raft_client_tls(&addr, &ca, &client.cert, &client.key)
            .await
            .expect("connect");
        assert_refused(
            "Propose with a client certificate",
            as_client
                .propose(propose(&forged_step(follower), follower))
                .await,
            Code::PermissionDenied,
            &["Node"],
        );

        // A real node's certificate, proposing what a node may not.
        let node = certs::paths(&dir, &Role::Node(follower));
        let mut as_node = raft_client_tls(&addr, &ca, &node.cert, &node.key)
            .await
            .expect("connect");
        let refusals: Vec<(&str, Command, u64, &[&str])> = vec![
            (
                "a step result for a saga assigned to no one",
                forged_step(follower),
                follower,
                &["not assigned"],
            ),
            (
                "another node's heartbeat",
                Command::ExecutorHeartbeat {
                    node_id: other,
                    applied_index: 0,
                },
                follower,
                &["proposed for executor"],
            ),
            (
                "a message naming another sender",
                Command::ExecutorHeartbeat {
                    node_id: other,
                    applied_index: 0,
                },
                other,
                &["certificate"],
            ),
            (
                "SetParams",
                Command::SetParams(Default::default()),
                follower,
                &["SetParams"],
            ),
            (
                "an operator's saga abort",
                Command::AbortSaga {
                    request_id,
                    reason: "forged".into(),
                },
                follower,
                &["AbortSaga"],
            ),
        ];
        for (what, command, sender, words) in refusals {
            assert_refused(
                what,
                as_node.propose(propose(&command, sender)).await,
                Code::PermissionDenied,
                words,
            );
        }
        // Its own heartbeat is what it may propose.
        let own = Command::ExecutorHeartbeat {
            node_id: follower,
            applied_index: 0,
        };
        as_node
            .propose(propose(&own, follower))
            .await
            .expect("a node proposes its own heartbeat");

        // Nothing forged took effect: the investment still waits for its payment.
        let now = operator
            .investment(&decision.investment.request_id)
            .await
            .expect("read back");
        assert_eq!(now.status(), pb::InvestmentStatus::Pending, "{now:?}");
        assert_eq!(now.saga_step(), pb::SagaStep::Payment, "{now:?}");
        // The accepted heartbeat is the only change.
        let (_, now) = cluster.wait_converged().await;
        assert_ne!(now, digest);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certified_by_another_ca_cannot_join_replicate_or_vote() {
    bounded(Duration::from_secs(150), async {
        let mut cluster = TestCluster::start(ClusterOptions::new(3).tls()).await;
        let leader = cluster.leader().await;
        let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
        let dir = cluster.certs_dir().expect("a TLS cluster");
        let before = cluster.status(follower).await.expect("status");
        let (_, digest) = cluster.wait_converged().await;

        // Another CA, same cluster id, certificates for an impostor of the leader and for a
        // would-be node 4.
        let rogue = cluster.dir().join("rogue-ca");
        certs::init(&rogue, cluster.cluster_id()).expect("a rogue CA");
        let impostor =
            certs::issue(&rogue, Role::Node(leader), &certs::local_hosts()).expect("issue");

        // Replicate and vote as the leader, with the rogue certificate (trusting the real CA to
        // reach the node): the node refuses the handshake, so nothing reaches Raft.
        let send = |payload: Vec<u8>| raft_request(cluster.cluster_id(), payload, follower, leader);
        let vote = VoteRequest::<u64>::new(Vote::new(before.term + 100, leader), None);
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(before.term + 100, leader),
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        };
        let follower_addr = cluster.addr(follower);
        match raft_client_tls(
            &follower_addr,
            &certs::ca_path(&dir),
            &impostor.cert,
            &impostor.key,
        )
        .await
        {
            Err(error) => eprintln!("handshake refused at connect: {error}"),
            Ok(mut rogue_client) => {
                let voted = rogue_client.vote(send(codec::encode(&vote))).await;
                assert!(voted.is_err(), "a rogue vote was answered: {voted:?}");
                let appended = rogue_client
                    .append_entries(send(codec::encode(&append)))
                    .await;
                assert!(
                    appended.is_err(),
                    "a rogue append was answered: {appended:?}"
                );
            }
        }
        let after = cluster.status(follower).await.expect("status");
        assert_eq!(after.term, before.term, "the rogue vote moved the term");
        assert_eq!(cluster.leader().await, leader);

        // Join: node 4 runs with the rogue CA's certificate and trusts only that CA. An
        // operator adds it: the leader cannot complete a handshake with it, so it never
        // receives an entry.
        let rogue_node = certs::issue(&rogue, Role::Node(4), &certs::local_hosts()).expect("issue");
        let planted = certs::paths(&dir, &Role::Node(4));
        std::fs::copy(&rogue_node.cert, &planted.cert).expect("plant the certificate");
        std::fs::copy(&rogue_node.key, &planted.key).expect("plant the key");
        cluster.start_extra_unreachable(4).await;
        let operator = as_operator(&cluster, &cluster.addr(leader)).await;
        let added = operator
            .add_learner_waiting(4, &cluster.addr(4), Duration::from_secs(3))
            .await
            .expect("the learner is added to the membership");
        assert!(!added.caught_up, "{added:?}");
        assert_eq!(added.matched_index, 0, "{added:?}");
        // A learner with a trusted certificate catches up within milliseconds here (the
        // membership test gives it 10 s); this one waited 3 s with nothing.
        let status = cluster.status(leader).await.expect("status");
        let learner = status
            .members
            .iter()
            .find(|m| m.node_id == 4)
            .expect("node 4 listed");
        assert_eq!(learner.matched_index, 0, "{learner:?}");
        let (_, now) = cluster.wait_converged_on(&[1, 2, 3]).await;
        // Membership is Raft's, not the ledger's: nothing the rogue did changed the ledger.
        assert_eq!(now, digest);
    })
    .await;
}
