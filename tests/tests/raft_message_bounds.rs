//! A peer's Raft message with a term or index that would overflow, or a snapshot chunk reaching
//! past the size a node accepts, is refused before openraft sees it (issue #11, DESIGN §9).
//!
//! Postmortem (a review, not an incident): a vote for term `u64::MAX` was persisted and then
//! wrapped or panicked at the next election, an outage surviving restarts; an `InstallSnapshot`
//! chunk at a huge offset made the receiver zero-fill memory up to it.

use std::time::Duration;

use ledger_node::raft::TypeConfig;
use ledger_state_machine::codec;
use ledger_tests::raft::{assert_refused, raft_client, raft_request};
use ledger_tests::{bounded, ClusterOptions, TestCluster};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, LogId, SnapshotMeta, StoredMembership, Vote};
use tonic::Code;

/// Each node here accepts snapshots of at most 1 MiB.
const SNAPSHOT_MAX_MIB: u64 = 1;

fn assert_invalid<T: std::fmt::Debug>(what: &str, result: Result<T, tonic::Status>, field: &str) {
    assert_refused(what, result, Code::InvalidArgument, &[field]);
}

fn snapshot_chunk(
    term: u64,
    leader: u64,
    last_index: u64,
    offset: u64,
) -> InstallSnapshotRequest<TypeConfig> {
    InstallSnapshotRequest {
        vote: Vote::new_committed(term, leader),
        meta: SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(term, leader), last_index)),
            last_membership: StoredMembership::default(),
            snapshot_id: "forged".into(),
        },
        offset,
        data: vec![7; 16],
        done: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_terms_and_oversized_snapshot_chunks_are_refused() {
    bounded(Duration::from_secs(120), async {
        let mut cluster =
            TestCluster::start(ClusterOptions::new(3).flag("--snapshot-max-mib", SNAPSHOT_MAX_MIB))
                .await;
        let leader = cluster.leader().await;
        let receiver = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
        let before = cluster.status(receiver).await.expect("status");
        let cluster_id = cluster.cluster_id().to_owned();
        let addr = cluster.addr(receiver);
        let mut client = raft_client(&addr).await;
        let send = |payload: Vec<u8>| raft_request(&cluster_id, payload, receiver, leader);

        // Phase 1: a vote in term u64::MAX.
        let vote = VoteRequest::new(Vote::new(u64::MAX, leader), None);
        assert_invalid(
            "a Vote in term u64::MAX",
            client.vote(send(codec::encode(&vote))).await,
            "vote.term",
        );

        // Phase 2: an AppendEntries from the real leader in its real term, whose previous entry
        // sits at index u64::MAX.
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(before.term, leader),
            prev_log_id: Some(LogId::new(
                CommittedLeaderId::new(before.term, leader),
                u64::MAX,
            )),
            entries: Vec::new(),
            leader_commit: None,
        };
        assert_invalid(
            "an AppendEntries after index u64::MAX",
            client.append_entries(send(codec::encode(&append))).await,
            "prev_log_id",
        );

        // Phase 3: snapshot chunks in the leader's name that end past 1 MiB, and one whose end
        // overflows u64. Without the limit the first is accepted and buffered at its offset.
        let past_limit = SNAPSHOT_MAX_MIB << 20;
        for offset in [past_limit, u64::MAX - 4] {
            let chunk = snapshot_chunk(before.term, leader, before.last_log_index + 10, offset);
            assert_invalid(
                &format!("a snapshot chunk at offset {offset}"),
                client.install_snapshot(send(codec::encode(&chunk))).await,
                "offset",
            );
        }

        // Phase 4: a chunk inside the limit still reaches Raft (the check is not a blanket
        // refusal); Raft takes it as the start of a snapshot it will never finish.
        let inside = snapshot_chunk(before.term, leader, before.last_log_index + 10, 0);
        client
            .install_snapshot(send(codec::encode(&inside)))
            .await
            .expect("a snapshot chunk inside the limit reaches Raft");

        // Phase 5: nothing changed: same term and leader, every node running, logged refusals,
        // and the cluster still agrees on one state.
        let after = cluster.status(receiver).await.expect("status");
        assert_eq!(
            (after.term, after.leader_id),
            (before.term, Some(leader)),
            "node {receiver}'s term or leader changed"
        );
        assert_eq!(cluster.exited(), Vec::new(), "a node exited");
        assert!(
            cluster.latest_log_contains(receiver, "refused a Raft message"),
            "node {receiver} did not log its refusals"
        );
        cluster.wait_converged().await;
    })
    .await;
}
