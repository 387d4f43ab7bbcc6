//! A node's own snapshot file across restarts (`DESIGN.md` §6):
//!
//! - a node that took a snapshot (`TriggerSnapshot`, through gRPC and `ledgerctl snapshot`) and
//!   purged its log behind it restarts from that file, not by replaying the whole log (its
//!   start-up line reports the snapshot's index as applied and a purged log; its `Status` keeps
//!   the snapshot and purge indexes), and serves the same decisions and the same state digest;
//! - a snapshot file with flipped bytes (or cut short) is refused at start, with a message
//!   naming the file, and the node serves nothing; the rest of the cluster carries on, and the
//!   same node starts again once the file is whole.

use std::path::PathBuf;
use std::time::Duration;

use ledger_tests::check::{self, money};
use ledger_tests::load;
use ledger_tests::{bounded, ctl, pb, wait_until, ClusterOptions, NodeClients, TestCluster};

const DEAL: &str = "restart-deal";

/// Three voters keeping only 5 entries behind a snapshot, so a snapshot purges the log; no
/// executors, so nothing writes but the test.
fn options() -> ClusterOptions {
    ClusterOptions::new(3).flag("--log-keep-entries", 5)
}

/// `count` submissions, one at a time (each its own entry), through `node`; 40 seats, so the
/// later ones are refused.
async fn submit_some(node: &NodeClients, from: usize, count: usize) {
    for n in from..from + count {
        let request = pb::SubmitRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            deal_id: DEAL.into(),
            user_id: format!("user-{n}"),
            amount: money(100 + n as u64),
            waitlist: false,
            waitlist_ttl_ms: None,
        };
        load::submit_to(node, request).await;
    }
}

/// The value of `field=` in a log line, e.g. `applied_index=57` or `purged_index=Some(52)`.
fn field<'a>(line: &'a str, field: &str) -> &'a str {
    let start = line
        .find(&format!(" {field}="))
        .unwrap_or_else(|| panic!("no {field} in {line:?}"))
        + field.len()
        + 2;
    line[start..].split(' ').next().unwrap_or_default()
}

async fn trigger_snapshot(cluster: &TestCluster, id: u64) -> u64 {
    let applied = cluster.status(id).await.expect("status").applied_index;
    let built = cluster
        .client(id)
        .await
        .cluster
        .trigger_snapshot(pb::TriggerSnapshotRequest {})
        .await
        .expect("TriggerSnapshot")
        .into_inner()
        .snapshot_index;
    assert!(
        built >= applied && built > 0,
        "node {id} built a snapshot at {built}, before its applied index {applied}"
    );
    built
}

/// Waits until node `id` has a snapshot at `index` and has purged its log behind it.
async fn wait_purged(cluster: &TestCluster, id: u64, index: u64) -> pb::StatusResponse {
    wait_until(
        Duration::from_secs(20),
        &format!("node {id} to purge its log behind its snapshot"),
        || async {
            let status = cluster.status(id).await?;
            if status.snapshot_index == index && status.purged_index > 0 {
                Ok(status)
            } else {
                Err(format!(
                    "snapshot {} purged {}",
                    status.snapshot_index, status.purged_index
                ))
            }
        },
    )
    .await
}

fn snapshot_file(cluster: &TestCluster, id: u64) -> PathBuf {
    let path = cluster.data_dir(id).join("snapshot.bin");
    assert!(path.is_file(), "no snapshot file at {}", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarts_from_its_own_snapshot() {
    ctl::prepare().await;
    bounded(Duration::from_secs(120), async {
        let mut cluster = TestCluster::start(options()).await;
        let leader = cluster.leader().await;
        let victim = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
        let leader_client = cluster.client(leader).await;
        load::create_deal(&leader_client, DEAL, "1000000.00", 40).await;
        submit_some(&leader_client, 0, 60).await;
        cluster.wait_converged().await;

        // Snapshots on demand: the victim through gRPC, the leader through ledgerctl.
        let snapshot_index = trigger_snapshot(&cluster, victim).await;
        let endpoints: Vec<String> = cluster.endpoints();
        let shown = ctl::run_ok(&endpoints, &["--json", "snapshot", &leader.to_string()])
            .await
            .json();
        let leader_snapshot = shown["snapshot_index"].as_u64().expect("an index");
        assert_eq!(shown["node_id"], leader, "{shown}");
        assert_eq!(
            cluster.status(leader).await.expect("status").snapshot_index,
            leader_snapshot
        );
        let before = wait_purged(&cluster, victim, snapshot_index).await;
        snapshot_file(&cluster, victim);
        let victim_client = cluster.client(victim).await;
        let listed = check::list_investments(&victim_client, DEAL, pb::Consistency::Stale)
            .await
            .expect("list before the restart");
        assert_eq!(listed.len(), 60);

        // Stopped and started again on the same folder.
        cluster.stop(victim).await;
        cluster.restart(victim).await;

        // It started from the snapshot file: the state it loaded was at the snapshot's index,
        // and the log it found was purged behind it, so replaying it could not rebuild the state.
        let started = cluster.latest_log_lines(victim, "storage checked");
        let line = started.first().expect("a start-up line");
        eprintln!("restarted: {line}");
        assert_eq!(
            field(line, "applied_index"),
            snapshot_index.to_string(),
            "{line}"
        );
        assert_eq!(
            field(line, "purged_index"),
            format!("Some({})", before.purged_index),
            "{line}"
        );
        let status = cluster.status(victim).await.expect("status");
        assert_eq!(
            (status.snapshot_index, status.purged_index),
            (before.snapshot_index, before.purged_index),
            "{status:?}"
        );

        // The same state: digest at the same applied index (nothing was written meanwhile),
        // and the same decisions, read from its own replica.
        let (applied, digest) = cluster.wait_converged().await;
        assert_eq!(
            (applied, &digest),
            (before.applied_index, &before.state_digest),
            "the restarted node's state differs"
        );
        let victim_client = cluster.client(victim).await;
        let relisted = check::list_investments(&victim_client, DEAL, pb::Consistency::Stale)
            .await
            .expect("list after the restart");
        assert!(relisted == listed, "other decisions after the restart");

        // And it takes part: a write through it (forwarded) is decided and replicated.
        submit_some(&victim_client, 60, 1).await;
        let (after, _) = cluster.wait_converged().await;
        assert!(after > applied);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_snapshot_file_is_refused_at_start() {
    bounded(Duration::from_secs(120), async {
        let mut cluster = TestCluster::start(options()).await;
        let leader = cluster.leader().await;
        let victim = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
        let leader_client = cluster.client(leader).await;
        load::create_deal(&leader_client, DEAL, "1000000.00", 40).await;
        submit_some(&leader_client, 0, 30).await;
        cluster.wait_converged().await;
        let snapshot_index = trigger_snapshot(&cluster, victim).await;
        wait_purged(&cluster, victim, snapshot_index).await;
        cluster.stop(victim).await;
        let path = snapshot_file(&cluster, victim);
        let whole = std::fs::read(&path).expect("read the snapshot file");

        // Damaged two ways: bytes flipped in the middle, and the file cut short.
        let mut flipped = whole.clone();
        let middle = flipped.len() / 2;
        for byte in &mut flipped[middle..middle + 4] {
            *byte ^= 0xff;
        }
        let cut = whole[..whole.len() / 2].to_vec();
        for (damage, bytes) in [("flipped bytes", flipped), ("cut short", cut)] {
            std::fs::write(&path, &bytes).expect("write the damaged file");
            let refused = cluster
                .try_restart(victim)
                .await
                .expect_err("a node must not start on a damaged snapshot");
            assert!(
                refused.contains("refusing to start")
                    && refused.contains(&path.display().to_string())
                    && refused.contains("corrupt"),
                "{damage}: the refusal must say the snapshot file is corrupt and name it: \
                 {refused}"
            );
            assert!(!cluster.running().contains(&victim), "{damage}: it runs");
            let said = refused.lines().find(|l| l.contains("refusing to start"));
            eprintln!("{damage}: {}", said.unwrap_or_default());
        }

        // The two others still decide.
        submit_some(&leader_client, 30, 1).await;

        // The same node starts on the whole file and converges with the others.
        std::fs::write(&path, &whole).expect("restore the snapshot file");
        cluster.restart(victim).await;
        let line = cluster.latest_log_lines(victim, "storage checked");
        assert_eq!(
            field(line.first().expect("a start-up line"), "applied_index"),
            snapshot_index.to_string()
        );
        cluster.wait_converged().await;
    })
    .await;
}
