//! An executor paused past its lease is fenced (`DESIGN.md` §4.4): a follower whose executor owns
//! open sagas, with payments in flight (800 ms each), is frozen (SIGSTOP) for longer than the
//! 10 s executor lease. Its sagas move to live executors under a new epoch and end there. When it
//! runs again it still holds the partners' replies to its old calls and proposes them; the state
//! machine ignores them (stale epoch). Afterwards: every investment is exactly as it was before
//! the thaw, the partners' audit holds one charge, one document and one e-mail per key (I7, no
//! duplicate effect), every saga ended once (I8), and the woken executor is live again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ledger_partners::Latency;
use ledger_tests::check::list_investments;
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::signal::Frozen;
use ledger_tests::{bounded, load, pb, wait_until, Rng};

const INVESTMENTS: usize = 60;
const DEAL: &str = "paused";
/// The executor lease (a state machine parameter, default 10 s of log time).
const LEASE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_executor_loses_its_sagas_and_its_late_results_are_ignored() {
    bounded(Duration::from_secs(150), async {
        let started = Instant::now();
        let mut faults = saga::quiet_faults(0xfe7c);
        // Below the node's 2 s call timeout, long enough to freeze the victim mid-call.
        faults.payment.latency = Latency::new(800, 0);
        let saga = SagaCluster::start(3, faults).await;
        let clients = saga.clients().await;
        saga::create_deal(&clients[0], DEAL, "100000000.00", 300).await;
        let mut rng = Rng::new(0xfe7c_0001);
        let requests = saga::requests(&mut rng, &[DEAL], INVESTMENTS, "paused", (1_000, 500_000));
        let acked = saga::submit_all(&clients, requests).await;
        assert_eq!(saga::admitted(&acked).len(), INVESTMENTS);

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
        let survivors: Vec<u64> = saga
            .cluster
            .running()
            .into_iter()
            .filter(|&id| id != victim)
            .collect();
        let on_survivors = load::connect_all(&saga.cluster, &survivors).await;

        // Frozen with its calls in flight; what it owned then, as the survivors see it.
        let frozen = Frozen::stop(saga.cluster.pid(victim).expect("the victim runs"));
        let frozen_at = Instant::now();
        let at_freeze = list_investments(&on_survivors[0], DEAL, pb::Consistency::Linearizable)
            .await
            .expect("list the investments at the freeze");
        let orphans: BTreeMap<String, u64> = at_freeze
            .iter()
            .filter(|inv| inv.executor == Some(victim) && !saga::saga_over(inv))
            .map(|inv| (inv.request_id.clone(), inv.epoch))
            .collect();
        assert!(
            !orphans.is_empty(),
            "node {victim} owned no open saga when frozen: {:?}",
            saga::progress(&at_freeze)
        );

        // While it sleeps, its lease lapses (log time moves with the others' heartbeats), its
        // sagas move, and every saga ends.
        let investments =
            saga::wait_sagas_done(&on_survivors[1], &[DEAL], Duration::from_secs(60)).await;
        // The lease lapses in log time, up to a heartbeat period (2.5 s) before LEASE of wall
        // time; the scenario is a pause longer than the lease, so it lasts at least that.
        tokio::time::sleep_until((frozen_at + LEASE).into()).await;
        let paused_for = frozen_at.elapsed();
        let executors = saga
            .cluster
            .status(survivors[0])
            .await
            .expect("a survivor's status")
            .executors;
        let asleep = executors
            .iter()
            .find(|e| e.node_id == victim)
            .expect("the victim's executor is listed");
        assert!(!asleep.live && asleep.open_sagas == 0, "{asleep:?}");
        // Taken over: another executor, a newer epoch. (A result already on its way to the
        // leader when the victim froze may have finished a saga under it.)
        let mut taken_over = 0;
        for inv in investments
            .iter()
            .filter(|i| orphans.contains_key(&i.request_id))
        {
            if inv.executor != Some(victim) {
                assert!(
                    inv.epoch > orphans[&inv.request_id],
                    "moved without a new epoch: {inv:?}"
                );
                taken_over += 1;
            }
        }
        assert!(
            taken_over * 2 > orphans.len(),
            "only {taken_over} of the {} sagas node {victim} owned were taken over",
            orphans.len()
        );

        // It wakes up, catches up and proposes the results of its old calls, which the state
        // machine ignores: they carry the old epoch.
        frozen.thaw();
        saga.wait_executors_live(&[victim]).await;
        saga.cluster.wait_converged().await;
        let ignored = wait_until(
            Duration::from_secs(20),
            "the woken executor's late results to be proposed and ignored",
            || async {
                let lines = saga.cluster.latest_log_lines(victim, "step result ignored");
                let stale = lines.iter().filter(|l| l.contains("StaleEpoch")).count();
                if stale > 0 {
                    Ok(stale)
                } else {
                    // The reasons seen so far, e.g. `reason=WrongStep`: ignored, but not fenced.
                    let reasons: BTreeMap<&str, usize> =
                        lines.iter().fold(BTreeMap::new(), |mut m, l| {
                            *m.entry(l.rsplit(' ').next().unwrap_or("")).or_default() += 1;
                            m
                        });
                    Err(format!("no stale-epoch refusal; ignored for {reasons:?}"))
                }
            },
        )
        .await;

        // Nothing changed: the same investments, one effect per key, every saga ended once.
        let after = list_investments(&clients[0], DEAL, pb::Consistency::Linearizable)
            .await
            .expect("list the investments after the thaw");
        assert!(after == investments, "an investment changed after the thaw");
        let report = saga::check_settled(&clients[0], &[DEAL], &after, &saga.audit()).await;
        assert_eq!(report.confirmed, INVESTMENTS, "{report:?}");
        assert_eq!(
            (
                report.charges,
                report.documents,
                report.emails,
                report.refunds
            ),
            (INVESTMENTS, INVESTMENTS, INVESTMENTS, 0),
            "one effect per key: {report:?}"
        );
        let awake = saga
            .executors()
            .await
            .into_iter()
            .find(|e| e.node_id == victim)
            .expect("listed");
        assert!(awake.live && awake.open_sagas == 0, "{awake:?}");
        eprintln!(
            "executor of node {victim} (follower; leader {leader}) frozen for {paused_for:?} \
             owning {} open sagas, {taken_over} taken over; {ignored} late results ignored; \
             total {:?}",
            orphans.len(),
            started.elapsed()
        );
    })
    .await;
}
