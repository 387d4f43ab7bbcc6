//! Sagas in flight while the leader is partitioned away (issue #10, defect d), on a real network:
//! three nodes in namespaces, payments that take 600 ms, and the leader cut off from its two
//! peers by nftables (packets silently dropped) while every saga is at the payment partner. The
//! clients still reach every node, as in the reported case.
//!
//! Before the fix, executors of the majority proposed their results to the old leader over a
//! connection that never answered, without a timeout: the sagas stayed PENDING at PAYMENT with
//! the partner's charges already made, until the partition healed. Now every saga must end
//! CONFIRMED while the old leader is still cut off.
//!
//! Needs root and the harness's tools: skipped outside CI when missing, a failure with
//! `CI=true`.

mod common;

use std::time::{Duration, Instant};

use ledger_client::{pb, Client, ClientConfig, Submission};
use ledger_jepsen::nemesis;
use ledger_jepsen::world::{self, Settings, World};

const COUNT: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_end_while_the_leader_is_partitioned_away() {
    if !common::can_run() {
        return;
    }
    let node_bin = common::build("ledger-node", "ledger-node", &[]);
    let partners_bin = common::build("ledger-partners", "ledger-partners", &[]);
    let dir = RunDir::new();
    let settings = Settings {
        node_bin,
        partners_bin,
        dir: dir.0.clone(),
        voters: 3,
        spares: 0,
        executors: true,
        snapshot_every: 5_000,
        log_keep: 1_000,
        fake_clocks: false,
        slow_disks: false,
    };
    let tag = format!("{:04x}", std::process::id() & 0xffff);
    let mut world = World::start(settings, &tag, 250)
        .await
        .expect("start the cluster");
    // Dropped in reverse order, also while a failed assertion unwinds: the world (processes,
    // network) first, then its folder.
    tokio::time::timeout(Duration::from_secs(150), scenario(&mut world))
        .await
        .expect("the scenario finished in time");
}

/// The run's folder, removed when dropped.
struct RunDir(std::path::PathBuf);

impl RunDir {
    fn new() -> RunDir {
        let dir = std::env::temp_dir().join(format!("ljp-partitioned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a folder for the run");
        RunDir(dir)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn scenario(world: &mut World) {
    let mut base = nemesis::partners_base();
    base["decline_rate"] = serde_json::json!(0.0);
    base["payment"] = serde_json::json!({"latency": {"mean_ms": 600, "jitter_ms": 0}});
    nemesis::partners_faults(world.partners_url(), &base, true)
        .await
        .expect("partner faults");
    let seeds: Vec<String> = world.slots.iter().map(|s| s.addr()).collect();
    let client = Client::connect(ClientConfig::new(seeds))
        .await
        .expect("connect");
    client
        .create_deal(ledger_client::open_deal("cut", "100000000.00", 300))
        .await
        .expect("create the deal");
    wait_for(Duration::from_secs(30), "three live executors", || async {
        let status = client.status().await.ok()?;
        (status.executors.iter().filter(|e| e.live).count() == 3).then_some(())
    })
    .await;
    let mut requests = Vec::new();
    for n in 0..COUNT {
        let submission = Submission::new("cut", format!("cut-{n}"), "100.00");
        let decision = client.submit(&submission).await.expect("submit");
        assert!(decision.is_admitted(), "{decision:?}");
        requests.push(submission.request_id);
    }

    // Cut the leader off from its peers while the payments are in flight.
    let leader_id = client
        .status()
        .await
        .expect("status")
        .leader_id
        .expect("a leader");
    let leader = world.slot_of(leader_id).expect("the leader's slot");
    let peers: Vec<_> = (0..world.slots.len()).filter(|&i| i != leader).collect();
    let peer_ips: Vec<_> = peers.iter().map(|&i| world.slots[i].ip).collect();
    world
        .net()
        .set_rules(&world.slots[leader].host, &peer_ips, &peer_ips)
        .expect("partition");
    let cut_at = Instant::now();

    // The majority elects a leader and every saga ends there, the old leader still cut off.
    let majority: Vec<String> = peers.iter().map(|&i| world.slots[i].addr()).collect();
    let survivors = Client::unconnected(ClientConfig::new(majority)).expect("client");
    wait_for(Duration::from_secs(90), "every saga CONFIRMED", || async {
        for id in &requests {
            let inv = survivors.investment(id).await.ok()?;
            if inv.status != pb::InvestmentStatus::Confirmed as i32 {
                return None;
            }
        }
        Some(())
    })
    .await;
    eprintln!(
        "leader {leader_id} cut off; all {COUNT} sagas confirmed {:?} later",
        cut_at.elapsed()
    );
    let status = world::status(&world.slots[peers[0]].addr(), false)
        .await
        .expect("status of a survivor");
    assert_ne!(
        status.leader_id,
        Some(leader_id),
        "a new leader was elected"
    );
    world.net().heal().expect("heal");
}

/// Polls `probe` every 200 ms until it answers, or panics after `timeout`.
async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if probe().await.is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
