//! `Status` computes the state digest only when asked.
//!
//! Postmortem: every `Status` hashed the whole state under the replica's read lock, and every
//! client asks every node for `Status` when it rediscovers the leader; during a leader change
//! that stalled applies on every node. Leader discovery now leaves the digest off, and what
//! compares digests (I9) asks for it.

use std::time::Duration;

use ledger_tests::{bounded, pb, ClusterOptions, NodeClients, TestCluster};

async fn status(node: &NodeClients, with_digest: bool) -> pb::StatusResponse {
    node.cluster
        .clone()
        .status(pb::StatusRequest { with_digest })
        .await
        .expect("Status")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_digest_is_computed_only_when_asked() {
    bounded(Duration::from_secs(60), async {
        // One node without an executor: nothing is appended between the calls below.
        let cluster = TestCluster::start(ClusterOptions::new(1)).await;
        let node = cluster.client(1).await;

        // A plain Status, as leader discovery sends it, carries no digest.
        let plain = status(&node, false).await;
        assert_eq!(plain.state_digest, "", "a plain Status hashed the state");
        assert_eq!(plain.leader_id, Some(1));

        // Asked for, the digest is there (32 bytes in lowercase hex), the same at one index.
        let first = status(&node, true).await;
        assert_eq!(first.state_digest.len(), 64, "{first:?}");
        assert!(
            first
                .state_digest
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{first:?}"
        );
        let again = status(&node, true).await;
        assert_eq!(
            (again.applied_index, again.state_digest),
            (first.applied_index, first.state_digest)
        );
    })
    .await;
}
