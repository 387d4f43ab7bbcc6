//! Defect h, inside `SubmitBatch`: a leader appends a batch's entry, then is deposed before it
//! commits, and a new leader cuts the entry from its log. The batch's items must come back as
//! unknown outcomes, not as errors promising that nothing was proposed: the entry had left the
//! leader's hands, and the leader cannot tell it will never commit elsewhere.
//!
//! How: the followers crash, so the leader appends the entry but cannot commit it; the leader
//! is frozen (SIGSTOP); the followers come back and elect one of themselves, whose log lacks the
//! entry; the old leader resumes, steps down, and has the entry cut by the new leader.

use std::time::Duration;

use ledger_client::{Client, ClientConfig, ClientError, Submission};
use ledger_tests::{bounded, load, wait_until, ClusterOptions, TestCluster};

const DEAL: &str = "deposed-deal";

/// The leader both `ids` name, if they agree and it is one of them.
async fn leader_among(cluster: &TestCluster, ids: &[u64]) -> Result<u64, String> {
    let mut named = Vec::new();
    for &id in ids {
        let status = cluster.status(id).await?;
        named.push((id, status.leader_id, status.role));
    }
    match named[0].1 {
        Some(leader)
            if ids.contains(&leader)
                && named.iter().all(|(_, l, _)| *l == Some(leader))
                && named
                    .iter()
                    .any(|(id, _, role)| *id == leader && role == "leader") =>
        {
            Ok(leader)
        }
        _ => Err(format!("(node, leader, role): {named:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_items_cut_from_a_deposed_leaders_log_are_unknown_outcomes() {
    bounded(Duration::from_secs(180), async {
        let mut cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let old = cluster.leader().await;
        let followers: Vec<u64> = cluster.ids().into_iter().filter(|&id| id != old).collect();
        load::create_deal(&cluster.client(old).await, DEAL, "100000.00", 100).await;
        // Patient: the batch's answer comes only once the old leader has been deposed.
        let mut config = ClientConfig::new([cluster.addr(old)]);
        config.deadline = Duration::from_secs(90);
        config.attempt_timeout = Duration::from_secs(90);
        let client = Client::connect(config).await.expect("connect");
        assert_eq!(client.leader_addr(), Some(cluster.addr(old)));

        // The followers crash; the leader appends the batch's entry but cannot commit it.
        for &id in &followers {
            cluster.kill(id);
        }
        let appended_before = cluster.status(old).await.expect("status").last_log_index;
        let batch = vec![
            Submission::new(DEAL, "ana", "100.00"),
            Submission::new(DEAL, "bo", "200.00"),
        ];
        let submitting = tokio::spawn({
            let (client, batch) = (client.clone(), batch.clone());
            async move { client.submit_batch(&batch).await }
        });
        wait_until(
            Duration::from_secs(10),
            "the old leader to append the batch",
            || async {
                let status = cluster.status(old).await?;
                if status.last_log_index > appended_before {
                    Ok(())
                } else {
                    Err(format!("last log index {}", status.last_log_index))
                }
            },
        )
        .await;

        // The old leader freezes; the followers return and elect one of themselves.
        cluster.pause(old);
        for &id in &followers {
            cluster.restart(id).await;
        }
        wait_until(
            Duration::from_secs(30),
            "a leader among the followers",
            || leader_among(&cluster, &followers),
        )
        .await;

        // The old leader resumes, is deposed, and its entry is cut: every item is unknown.
        cluster.resume(old);
        let results = tokio::time::timeout(Duration::from_secs(60), submitting)
            .await
            .expect("the batch is answered once the old leader is deposed")
            .expect("the batch task")
            .expect("the batch call gets a reply");
        assert_eq!(results.len(), batch.len());
        for (result, submission) in results.iter().zip(&batch) {
            match result {
                Err(ClientError::OutcomeUnknown { request_id, .. }) => {
                    assert_eq!(request_id, &submission.request_id)
                }
                other => panic!(
                    "{}: expected an unknown outcome, got {other:?}",
                    submission.user_id
                ),
            }
        }

        // Unknown, not lost: resubmitting decides each request exactly once.
        for submission in &batch {
            let decided = client.submit(submission).await.expect("resubmit");
            assert!(decided.is_admitted(), "{decided:?}");
        }
        let deal = client.deal(DEAL).await.expect("deal");
        assert_eq!(deal.investor_count, 2, "{deal:?}");
        cluster.wait_converged().await;
    })
    .await;
}
