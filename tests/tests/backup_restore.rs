//! Backup and restore (issue #14 §3). A 3-node cluster with executors takes admissions while
//! `ledgerctl snapshot save` writes a backup; the cluster is then wiped and three nodes are
//! restored from the file (`ledgerctl snapshot restore`) as a new cluster:
//! - a restored node serves the saved state: its digest at the saved index is the saved one;
//! - every decision acknowledged at or below the saved index is there, unchanged;
//! - sagas PENDING in the backup resume on the new cluster and end;
//! - the restored nodes refuse to start under the old cluster id;
//! - a truncated or corrupted backup file is refused with a message saying so.

use std::collections::BTreeMap;
use std::time::Duration;

use ledger_tests::check::list_investments;
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, ctl, pb, wait_until, ClusterOptions, Rng};

const DEALS: [&str; 3] = ["backup-a", "backup-b", "backup-c"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_saved_under_load_restores_a_new_cluster() {
    ctl::prepare().await;
    bounded(Duration::from_secs(240), async {
        // Slow payments keep sagas PENDING at the moment of the backup.
        let mut faults = saga::quiet_faults(0xb4c);
        faults.payment.latency = ledger_partners::Latency::new(300, 100);
        let mut saga = SagaCluster::start_with(ClusterOptions::new(3), faults).await;
        let ids = saga.cluster.ids();
        let endpoints = saga.cluster.endpoints();
        let clients = saga.clients().await;
        for deal in DEALS {
            saga::create_deal(&clients[0], deal, "100000000.00", 60).await;
        }

        // Load in the background; the backup is taken while it runs.
        let mut rng = Rng::new(0xb4c_0001);
        let requests = saga::requests(&mut rng, &DEALS, 240, "backup", (1_000, 90_000));
        let load = {
            let clients = clients.clone();
            tokio::spawn(async move { saga::submit_all(&clients, requests).await })
        };
        let wanted = 40u64;
        wait_until(
            Duration::from_secs(60),
            "some decisions before the backup",
            || {
                let clients = clients.clone();
                async move {
                    let deal = saga::get_deal(&clients[0], DEALS[0]).await?;
                    (u64::from(deal.investor_count) >= wanted / 3)
                        .then_some(())
                        .ok_or_else(|| format!("{} investors so far", deal.investor_count))
                }
            },
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ledger.backup");
        let file_arg = file.display().to_string();
        let saved = ctl::run_ok(&endpoints, &["--json", "snapshot", "save", &file_arg])
            .await
            .json();
        let acked = load.await.expect("the load ran");
        let saved_index = saved["log_index"].as_u64().expect("a log index");
        let saved_digest = saved["digest"].as_str().expect("a digest").to_owned();
        let old_cluster = saved["cluster_id"]
            .as_str()
            .expect("a cluster id")
            .to_owned();
        assert_eq!(old_cluster, saga.cluster.cluster_id());
        let in_backup: Vec<_> = acked
            .iter()
            .filter(|a| a.response.log_index <= saved_index)
            .collect();
        let after: usize = acked.len() - in_backup.len();
        assert!(
            in_backup.len() >= 10 && after >= 10,
            "the backup at {saved_index} should fall inside the load: {} before, {after} after",
            in_backup.len()
        );

        // A damaged file is refused before anything is written.
        let bytes = std::fs::read(&file).unwrap();
        let truncated = dir.path().join("truncated.backup");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let corrupted = dir.path().join("corrupted.backup");
        let mut flipped = bytes.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x01;
        std::fs::write(&corrupted, &flipped).unwrap();
        let members: Vec<String> = ids
            .iter()
            .map(|&id| format!("{id}={}", saga.cluster.addr(id)))
            .collect();
        let members = members.join(",");
        for (bad, says) in [(&truncated, "truncated"), (&corrupted, "corrupted")] {
            let target = dir.path().join("refused");
            let output = ctl::spawn(
                &endpoints,
                &[
                    "snapshot",
                    "restore",
                    &bad.display().to_string(),
                    "--data-dir",
                    &target.display().to_string(),
                    "--id",
                    "1",
                    "--members",
                    &members,
                ],
            )
            .await
            .finish(Duration::from_secs(30))
            .await;
            assert!(!output.success, "{bad:?} was restored: {}", output.stdout);
            assert!(
                output.stderr.contains(says),
                "{bad:?}: expected \"{says}\" in:\n{}",
                output.stderr
            );
            assert!(!target.exists(), "a refused restore wrote {target:?}");
        }

        // Disaster: every node and its data gone.
        for &id in &ids {
            saga.cluster.kill(id);
            std::fs::remove_dir_all(saga.cluster.data_dir(id)).unwrap();
        }
        let mut new_cluster = None;
        for &id in &ids {
            let data_dir = saga.cluster.data_dir(id).display().to_string();
            let restored = ctl::run_ok(
                &endpoints,
                &[
                    "--json",
                    "snapshot",
                    "restore",
                    &file_arg,
                    "--data-dir",
                    &data_dir,
                    "--id",
                    &id.to_string(),
                    "--members",
                    &members,
                ],
            )
            .await
            .json();
            assert_eq!(restored["log_index"].as_u64(), Some(saved_index));
            assert_eq!(restored["digest"].as_str(), Some(saved_digest.as_str()));
            let id = restored["cluster_id"].as_str().unwrap().to_owned();
            assert_ne!(id, old_cluster);
            assert_eq!(new_cluster.get_or_insert(id.clone()), &id);
        }
        let new_cluster = new_cluster.unwrap();

        // Under the old id a restored node refuses to start.
        let refused = saga.cluster.try_restart(1).await;
        let why = refused.expect_err("a restored node started under the old cluster id");
        assert!(why.contains("belongs to cluster"), "{why}");

        // Node 1 alone (no quorum, so nothing new is applied) serves the saved state.
        saga.cluster.set_cluster_id(&new_cluster);
        saga.cluster.restart(1).await;
        let status = saga.cluster.status(1).await.unwrap();
        assert_eq!(status.applied_index, saved_index);
        assert_eq!(status.state_digest, saved_digest);
        // The sagas running in the backup, read from that node alone.
        let alone = saga.cluster.client(1).await;
        let mut pending_in_backup = Vec::new();
        for deal in DEALS {
            let listed = list_investments(&alone, deal, pb::Consistency::Stale)
                .await
                .unwrap();
            pending_in_backup.extend(
                listed
                    .into_iter()
                    .filter(|inv| inv.status == pb::InvestmentStatus::Pending as i32)
                    .map(|inv| inv.request_id),
            );
        }
        assert!(
            !pending_in_backup.is_empty(),
            "no saga was running in the backup"
        );

        for &id in &ids[1..] {
            saga.cluster.restart(id).await;
        }
        saga.cluster.wait_leader(Duration::from_secs(30)).await;
        let clients = saga.clients().await;

        // Every decision in the backup is there, as it was decided.
        let mut admission = clients[0].admission.clone();
        for acked in &in_backup {
            let request_id = acked.request.request_id.clone();
            let got = admission
                .get_investment(pb::GetInvestmentRequest {
                    request_id: request_id.clone(),
                    consistency: pb::Consistency::Linearizable as i32,
                })
                .await
                .unwrap_or_else(|e| panic!("{request_id} lost by the restore: {e}"))
                .into_inner();
            let decided = acked.response.investment.as_ref().unwrap();
            assert_eq!(
                (got.log_index, got.offset, got.reject_reason),
                (
                    acked.response.log_index,
                    acked.response.offset,
                    decided.reject_reason
                ),
                "{request_id}"
            );
        }
        eprintln!(
            "backup at {saved_index}: {} acknowledged decisions in it ({} sagas running), \
             {after} after it",
            in_backup.len(),
            pending_in_backup.len()
        );

        // Sagas PENDING in the backup resume on the new cluster and end.
        let listed = saga::wait_sagas_done(&clients[0], &DEALS, Duration::from_secs(90)).await;
        let by_id: BTreeMap<&str, &pb::Investment> = listed
            .iter()
            .map(|inv| (inv.request_id.as_str(), inv))
            .collect();
        for request_id in &pending_in_backup {
            let inv = by_id[request_id.as_str()];
            assert_ne!(
                inv.status,
                pb::InvestmentStatus::Pending as i32,
                "{} still PENDING",
                inv.request_id
            );
        }
    })
    .await;
}
