//! SIGKILL of an executor mid-way (issue #4, scenario 5): payments take 800 ms, so sagas are in
//! flight; once a follower's executor owns open sagas, that node is killed (SIGKILL). After its
//! lease lapses in log time (10 s by default), its sagas move to a live executor with a new epoch
//! and are finished there; sagas admitted after the kill (100 more, through the survivors) end
//! too. The idempotency keys make the retried calls harmless: one charge, one document and one
//! e-mail per key, every investment CONFIRMED with its saga DONE (I7, I8).
//!
//! Sizes: 100 investments before the kill, 100 after. Takes ≥ 10 s (the lease).

use std::time::{Duration, Instant};

use ledger_partners::Latency;
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, load, pb, wait_until, Rng};

const BEFORE: usize = 100;
const AFTER: usize = 100;
const DEAL: &str = "crash";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executors_sagas_are_finished_elsewhere_without_duplicates() {
    bounded(Duration::from_secs(150), async {
        let started = Instant::now();
        let mut faults = saga::quiet_faults(0xdead);
        // Below the node's 2 s call timeout, long enough to find sagas in flight.
        faults.payment.latency = Latency::new(800, 0);
        let mut saga = SagaCluster::start(3, faults).await;
        let clients = saga.clients().await;
        saga::create_deal(&clients[0], DEAL, "100000000.00", 300).await;
        let mut rng = Rng::new(0xdead_0001);
        let mut requests =
            saga::requests(&mut rng, &[DEAL], BEFORE + AFTER, "crash", (1_000, 500_000));
        let later = requests.split_off(BEFORE);
        let acked = saga::submit_all(&clients, requests).await;
        assert_eq!(saga::admitted(&acked).len(), BEFORE);

        // The victim: the follower whose executor owns the most open sagas.
        let leader = saga.cluster.leader().await;
        let victim = wait_until(
            Duration::from_secs(10),
            "a follower's executor owning open sagas",
            || async {
                let executors = saga.executors().await;
                executors
                    .iter()
                    .filter(|e| e.node_id != leader && e.live && e.open_sagas > 0)
                    .max_by_key(|e| (e.open_sagas, e.node_id))
                    .map(|e| e.node_id)
                    .ok_or_else(|| format!("executors: {executors:?}"))
            },
        )
        .await;
        saga.cluster.kill(victim);
        let killed_at = started.elapsed();

        // What the victim owned when it died, as the survivors see it.
        let survivors = saga.cluster.running();
        let clients = std::sync::Arc::new(load::connect_all(&saga.cluster, &survivors).await);
        let at_kill =
            ledger_tests::check::list_investments(&clients[0], DEAL, pb::Consistency::Linearizable)
                .await
                .expect("list the investments after the kill");
        let orphans: Vec<(String, u64)> = at_kill
            .iter()
            .filter(|inv| inv.executor == Some(victim) && !saga::saga_over(inv))
            .map(|inv| (inv.request_id.clone(), inv.epoch))
            .collect();
        assert!(
            !orphans.is_empty(),
            "node {victim} owned no open saga when killed: {:?}",
            saga::progress(&at_kill)
        );

        // More investments, through the survivors, while the victim's lease still runs.
        let acked = saga::submit_all(&clients, later).await;
        assert_eq!(saga::admitted(&acked).len(), AFTER);

        let investments =
            saga::wait_sagas_done(&clients[1], &[DEAL], Duration::from_secs(90)).await;
        let done_at = started.elapsed();
        let report = saga::check_settled(&clients[0], &[DEAL], &investments, &saga.audit()).await;
        assert_eq!(report.confirmed, BEFORE + AFTER, "{report:?}");
        assert_eq!(
            (
                report.charges,
                report.documents,
                report.emails,
                report.refunds
            ),
            (BEFORE + AFTER, BEFORE + AFTER, BEFORE + AFTER, 0),
            "one effect per key: {report:?}"
        );

        // The victim's open sagas were taken over: another executor, a newer epoch. (One whose
        // last result was already on its way to the leader may have finished under the victim.)
        let mut taken_over = 0;
        for (id, epoch) in &orphans {
            let inv = investments
                .iter()
                .find(|inv| &inv.request_id == id)
                .expect("listed");
            if inv.executor != Some(victim) {
                assert!(inv.epoch > *epoch, "moved without a new epoch: {inv:?}");
                taken_over += 1;
            }
        }
        assert!(
            taken_over * 2 > orphans.len(),
            "only {taken_over} of the {} sagas node {victim} owned were taken over",
            orphans.len()
        );
        let executors = saga.executors().await;
        let dead = executors
            .iter()
            .find(|e| e.node_id == victim)
            .expect("the victim's executor is listed");
        assert!(!dead.live && dead.open_sagas == 0, "{dead:?}");
        saga.assert_nodes_alive();
        eprintln!(
            "executor crash: killed node {victim} (follower; leader {leader}) at {killed_at:?} \
             owning {} open sagas, {taken_over} taken over; all {} done at {done_at:?}; \
             {report:?}",
            orphans.len(),
            BEFORE + AFTER
        );
    })
    .await;
}
