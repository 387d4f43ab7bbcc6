//! Raft requests name the node they are for, and a node refuses a request for another node
//! before its Raft sees it.
//!
//! Postmortem: requests named only the cluster. A node reachable at another member's address (a
//! reused address, a wrong `--advertise`) voted and appended as that member, so one disk could
//! count twice toward a quorum.

use std::time::Duration;

use ledger_node::raft::TypeConfig;
use ledger_state_machine::codec;
use ledger_tests::raft::{assert_refused, raft_client, raft_request};
use ledger_tests::{bounded, pb, wait_until, ClusterOptions, TestCluster};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{CommittedLeaderId, LogId, Vote};
use tonic::Code;

/// How long a node answering for two members is watched campaigning.
const ELECTIONS_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_request_for_another_node_is_refused() {
    bounded(Duration::from_secs(120), async {
        let cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let leader = cluster.leader().await;
        // Sent to one follower's address, addressed to the other follower: were it accepted,
        // the receiver would follow that node as leader in a newer term.
        let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
        let (receiver, target) = (followers[0], followers[1]);
        let before = cluster.status(receiver).await.expect("status");
        let cluster_id = cluster.cluster_id().to_owned();
        let mut client = raft_client(&cluster.addr(receiver)).await;
        let newer = before.term + 1;
        let last_log_id = Some(LogId::new(
            CommittedLeaderId::new(before.term, leader),
            before.last_log_index + 1_000,
        ));

        // Phase 1: a Vote for `target`'s term, sent to `receiver`, is refused, naming both.
        let vote = codec::encode(&VoteRequest::new(Vote::new(newer, target), last_log_id));
        let (t, r) = (target.to_string(), receiver.to_string());
        assert_refused(
            "a Vote for another node",
            client
                .vote(raft_request(&cluster_id, vote.clone(), target, target))
                .await,
            Code::FailedPrecondition,
            &[&t, &r],
        );

        // Phase 2: so is an AppendEntries from a newer leader `target`, which the receiver's
        // Raft would accept (and adopt the newer term).
        let append = codec::encode(&AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(newer, target),
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        });
        assert_refused(
            "an AppendEntries for another node",
            client
                .append_entries(raft_request(&cluster_id, append.clone(), target, target))
                .await,
            Code::FailedPrecondition,
            &[&t, &r],
        );

        // Phase 3: a request naming no node is malformed.
        assert_refused(
            "a Vote naming no node",
            client
                .vote(raft_request(&cluster_id, vote, 0, target))
                .await,
            Code::InvalidArgument,
            &["target_node_id"],
        );

        // Phase 4: the receiver's Raft never saw them: same term, same leader.
        let after = cluster.status(receiver).await.expect("status");
        assert_eq!(
            (after.term, after.leader_id),
            (before.term, Some(leader)),
            "node {receiver}'s term or leader changed"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_at_two_members_addresses_cannot_make_a_quorum() {
    bounded(Duration::from_secs(120), async {
        // A lone node 2, outside any cluster yet (node 1 is only the harness's bootstrap).
        let mut cluster = TestCluster::start(ClusterOptions::new(1)).await;
        cluster.start_extra(2).await;
        let lone = cluster.addr(2);

        // Phase 1: node 2 is initialized as a member of {2, 3, 4} where member 3's address is
        // node 2's own (a wrong address), and nothing listens at member 4's.
        let nowhere = "127.0.0.1:1".to_owned();
        let members = vec![
            pb::MemberAddr {
                node_id: 2,
                addr: lone.clone(),
            },
            pb::MemberAddr {
                node_id: 3,
                addr: lone.clone(),
            },
            pb::MemberAddr {
                node_id: 4,
                addr: nowhere,
            },
        ];
        cluster
            .client(2)
            .await
            .cluster
            .init(pb::InitRequest { members })
            .await
            .expect("Init on node 2");

        // Phase 2: its own disk would be two votes of three; it campaigns term after term and
        // never leads.
        let term = wait_until(
            ELECTIONS_TIMEOUT,
            "node 2 to campaign in three terms without leading",
            || {
                let cluster = &cluster;
                async move {
                    let status = cluster.status(2).await?;
                    assert_ne!(
                        status.role, "leader",
                        "node 2 leads with its one disk counted twice: {status:?}"
                    );
                    if status.term >= 3 {
                        Ok(status.term)
                    } else {
                        Err(format!("role {} in term {}", status.role, status.term))
                    }
                }
            },
        )
        .await;
        let status = cluster.status(2).await.expect("status");
        assert_ne!(status.role, "leader", "node 2 leads in term {term}");
        assert_eq!(status.leader_id, None);
    })
    .await;
}
