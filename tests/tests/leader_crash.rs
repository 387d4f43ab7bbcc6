//! Killing the leader (SIGKILL) in the middle of a load loses no acknowledged decision (I6): a
//! new leader takes over, clients retry with the same request ids, and once the killed node is
//! back every replica holds every acknowledged decision and the same state (I9). The crash must
//! really have cost retries, and the real-time order check (I5) must have compared nearly every
//! request, or the run proves little.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_tests::check::{self, money};
use ledger_tests::load::{self, Acked, Decision, RetryPolicy};
use ledger_tests::{bounded, pb, wait_until, ClusterOptions, Rng, TestCluster};

const REQUESTS: usize = 1_500;
const TASKS: usize = 8;
const DEALS: [(&str, &str, u32); 2] = [
    ("crash-open", "1000000000.00", 100_000),
    ("crash-seats", "1000000.00", 50),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_load() {
    bounded(Duration::from_secs(150), async {
        // Three voters, clients on all of them.
        let mut cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let ids = cluster.running();
        let nodes = Arc::new(load::connect_all(&cluster, &ids).await);
        for (deal_id, amount, max_investors) in DEALS {
            load::create_deal(&nodes[0], deal_id, amount, max_investors).await;
        }
        let old_leader = cluster.leader().await;

        // The load: bounded in count (REQUESTS) and, per request, in attempts and time; every
        // failed attempt is retried with the same request id on the next node.
        let policy = RetryPolicy {
            attempts: 200,
            budget: Duration::from_secs(40),
        };
        let done = Arc::new(AtomicUsize::new(0));
        let mut rng = Rng::new(0xc7a5);
        let requests: Vec<pb::SubmitRequest> = (0..REQUESTS)
            .map(|_| pb::SubmitRequest {
                request_id: rng.uuid(),
                deal_id: DEALS[rng.range(0, DEALS.len() as u64) as usize]
                    .0
                    .to_owned(),
                user_id: format!("user-{}", rng.range(0, 600)),
                amount: money(rng.range(100, 100_000)), waitlist: false, waitlist_ttl_ms: None,
            })
            .collect();
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let nodes = nodes.clone();
            let done = done.clone();
            let mine: Vec<pb::SubmitRequest> =
                requests.iter().skip(task).step_by(TASKS).cloned().collect();
            tasks.push(tokio::spawn(async move {
                let mut acks = Vec::new();
                for (n, request) in mine.into_iter().enumerate() {
                    let id = request.request_id.clone();
                    let ack = load::submit_retrying(&nodes, task + n, request, policy)
                        .await
                        .unwrap_or_else(|e| panic!("request {id} never got an answer: {e}"));
                    acks.push(ack);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                acks
            }));
        }

        // About a third in, crash the leader.
        let progress = done.clone();
        wait_until(Duration::from_secs(60), "a third of the load", || {
            let progress = progress.clone();
            async move {
                let n = progress.load(Ordering::Relaxed);
                if n >= REQUESTS / 3 {
                    Ok(n)
                } else {
                    Err(format!("{n} done"))
                }
            }
        })
        .await;
        cluster.kill(old_leader);
        let killed_at = Instant::now();
        let done_at_kill = done.load(Ordering::Relaxed);
        assert!(done_at_kill < REQUESTS, "the load finished before the crash");

        // The two survivors elect a new leader.
        let new_leader = cluster
            .wait_new_leader(old_leader, Duration::from_secs(20))
            .await;
        assert_ne!(new_leader, old_leader);
        let election = killed_at.elapsed();

        // The load finishes against the survivors.
        let mut acked: Vec<Acked> = Vec::with_capacity(REQUESTS);
        for task in tasks {
            acked.extend(task.await.expect("a load task panicked"));
        }
        assert_eq!(acked.len(), REQUESTS);
        let retried: Vec<&Acked> = acked.iter().filter(|a| a.attempts > 1).collect();
        // Requests were in flight when the leader died: some must have failed and been retried,
        // or the crash did not land in the load.
        assert!(
            !retried.is_empty(),
            "no request needed a retry: the kill did not hit the load"
        );
        eprintln!(
            "leader {old_leader} killed after {done_at_kill} answers, {new_leader} elected after {election:?}; {} requests \
             retried, codes: {:?}",
            retried.len(),
            retried
                .iter()
                .flat_map(|a| a.retried_on.iter())
                .fold(BTreeMap::new(), |mut m, c| {
                    *m.entry(format!("{c:?}")).or_insert(0) += 1;
                    m
                })
        );

        // The killed node restarts on its data folder and rejoins; every replica converges.
        cluster.restart(old_leader).await;
        cluster.wait_converged().await;

        // I6: every acknowledged decision is on every replica, read locally (STALE), the same.
        let mut reference: Option<BTreeMap<String, pb::Investment>> = None;
        for id in cluster.running() {
            let client = cluster.client(id).await;
            let mut listed = BTreeMap::new();
            for (deal_id, _, _) in DEALS {
                let list = check::list_investments(&client, deal_id, pb::Consistency::Stale)
                    .await
                    .expect("stale list");
                let deal = client
                    .admission
                    .clone()
                    .get_deal(pb::GetDealRequest {
                        deal_id: deal_id.to_owned(),
                        consistency: pb::Consistency::Stale as i32,
                    })
                    .await
                    .expect("get deal")
                    .into_inner();
                // I1–I3 and the sequential rules hold on every replica too.
                check::check_deal(&deal, &list);
                for inv in list {
                    listed.insert(inv.request_id.clone(), inv);
                }
            }
            for ack in &acked {
                let inv = listed.get(&ack.request.request_id).unwrap_or_else(|| {
                    panic!(
                        "I6: node {id} lost acknowledged request {}",
                        ack.request.request_id
                    )
                });
                assert_eq!(
                    Decision::of(inv),
                    ack.decision(),
                    "I6: node {id} holds another decision for {}",
                    ack.request.request_id
                );
            }
            assert_eq!(
                listed.len(),
                REQUESTS,
                "node {id} lists requests nobody sent"
            );
            match &reference {
                None => reference = Some(listed),
                Some(first) => assert!(first == &listed, "node {id} lists other decisions"),
            }
        }

        // I5, real time, across the crash. Each task sends its next request after the previous
        // reply, so every request but each task's first has a reply before it to be ordered
        // after: the check must have compared them all.
        let covered = check::check_real_time_order(&acked);
        assert!(
            covered >= REQUESTS - TASKS,
            "the real-time order check compared only {covered} of {REQUESTS} requests"
        );
        eprintln!(
            "real-time order checked for {covered} of {REQUESTS} requests; {} retried",
            retried.len()
        );
    })
    .await;
}
