//! An executor paused past its lease is fenced (`DESIGN.md` §4.4). The payment partner is down,
//! so every saga waits at PAYMENT, its executor retrying. A follower whose executor owns open
//! sagas is frozen (SIGSTOP) for longer than the 10 s executor lease: its lease lapses and its
//! sagas move to live executors under a new epoch. A late result as it would send one (its id,
//! its old epoch, a succeeded charge) reaches the leader while its former saga waits at that
//! very step: it is ignored for its stale epoch and changes nothing. The partner comes back and
//! every saga ends under its new owner. When the frozen node runs again, whatever late results
//! its workers propose are ignored for their stale epoch too. Afterwards every investment is
//! exactly as before the thaw, the partners' audit holds one charge, one document and one e-mail
//! per key (I7, no duplicate effect), every saga ended once (I8), and the woken executor is live
//! again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ledger_state_machine::{
    codec, Applied, Command, IgnoreReason, Outcome, RecordStep, RequestId, StepResult,
};
use ledger_tests::check::list_investments;
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::signal::Frozen;
use ledger_tests::{bounded, load, pb, wait_until, Rng};
use pb::raft_client::RaftClient;

const INVESTMENTS: usize = 60;
const DEAL: &str = "paused";
/// The executor lease (a state machine parameter, default 10 s of log time).
const LEASE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_executor_loses_its_sagas_and_its_late_results_are_ignored() {
    bounded(Duration::from_secs(150), async {
        let started = Instant::now();
        let mut faults = saga::quiet_faults(0xfe7c);
        faults.payment.outage = true;
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

        // Frozen between retries; what it owned then, as the survivors see it.
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

        // While it sleeps, its lease lapses (log time moves with the others' heartbeats) and
        // its sagas move to the live executors.
        wait_until(
            Duration::from_secs(40),
            "the frozen executor's lease to lapse and its sagas to move",
            || async {
                let executors = saga.cluster.status(survivors[0]).await?.executors;
                match executors.iter().find(|e| e.node_id == victim) {
                    Some(e) if !e.live && e.open_sagas == 0 => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        // A late result exactly as the paused executor would send it (its id, its old epoch, a
        // charge that succeeded), while its former saga waits at that very step under the new
        // owner: without fencing it would be taken, with a payment id nobody charged.
        let leader = saga
            .cluster
            .wait_leader_among(&survivors, victim, Duration::from_secs(10))
            .await;
        let (late_id, old_epoch) = orphans.iter().next().expect("an orphan");
        let moved = load::connect_all(&saga.cluster, &[leader]).await;
        let before = saga::investment(&moved[0], late_id)
            .await
            .expect("GetInvestment");
        assert_eq!(before.saga_step(), pb::SagaStep::Payment, "{before:?}");
        assert!(before.epoch > *old_epoch, "{before:?}");
        let late = Command::RecordStep(RecordStep {
            request_id: RequestId::parse(late_id).expect("a request id"),
            executor: victim,
            epoch: *old_epoch,
            result: StepResult::PaymentSucceeded {
                payment_id: "pay_from_the_paused_executor".into(),
            },
        });
        let reply = RaftClient::connect(format!("http://{}", saga.cluster.addr(leader)))
            .await
            .expect("connect to the leader's Raft service")
            .propose(pb::RaftRequest {
                payload: codec::encode(&late),
                cluster_id: saga.cluster.cluster_id().to_owned(),
                target_node_id: leader,
                sender_node_id: victim,
            })
            .await
            .expect("Raft.Propose")
            .into_inner();
        assert!(reply.error.is_empty(), "{reply:?}");
        let (_, applied): (u64, Applied) = codec::decode(&reply.payload).expect("a proposal reply");
        assert_eq!(applied, Ok(Outcome::StepIgnored(IgnoreReason::StaleEpoch)));
        // (Its new owner's retries may bump `attempts` meanwhile; what a taken charge would
        // change may not move.)
        let owned = |inv: &pb::Investment| {
            (
                inv.status(),
                inv.saga_step(),
                inv.payment_id.clone(),
                inv.executor,
                inv.epoch,
            )
        };
        let after_late = saga::investment(&moved[0], late_id)
            .await
            .expect("GetInvestment");
        assert_eq!(
            owned(&after_late),
            owned(&before),
            "the late result moved the saga"
        );

        // The partner is back: every saga ends, under its new owner.
        saga.set_faults(saga::quiet_faults(0xfe7c));
        let investments =
            saga::wait_sagas_done(&on_survivors[1], &[DEAL], Duration::from_secs(60)).await;
        // The lease lapses in log time, up to a heartbeat period (2.5 s) before LEASE of wall
        // time; the scenario is a pause longer than the lease, so it lasts at least that.
        tokio::time::sleep_until((frozen_at + LEASE).into()).await;
        let paused_for = frozen_at.elapsed();
        // Every saga it owned was taken over (nothing could finish under it: the partner was
        // down until after the move): another executor, a newer epoch.
        for inv in investments
            .iter()
            .filter(|i| orphans.contains_key(&i.request_id))
        {
            assert!(
                inv.executor != Some(victim) && inv.epoch > orphans[&inv.request_id],
                "not taken over with a new epoch: {inv:?}"
            );
        }

        // It wakes up, its stale replica still showing its sagas: workers whose retry timers
        // expired during the pause charge again (same keys) and propose the results before the
        // replica catches up, unless it catches up first (timing decides how many, maybe none;
        // the late result above does not depend on it). Each one proposed is ignored for its
        // stale epoch, the first check the state machine makes: ignored for any other reason
        // means the epoch was not checked.
        frozen.thaw();
        saga.wait_executors_live(&[victim]).await;
        saga.cluster.wait_converged().await;

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
        let lines = saga.cluster.latest_log_lines(victim, "step result ignored");
        let (fenced, unfenced): (Vec<&String>, Vec<&String>) =
            lines.iter().partition(|l| l.ends_with("reason=StaleEpoch"));
        assert!(
            unfenced.is_empty(),
            "late results ignored for another reason than their epoch: {unfenced:#?}"
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
             owning {} open sagas, all taken over; {} of its own late results ignored; \
             total {:?}",
            orphans.len(),
            fenced.len(),
            started.elapsed()
        );
    })
    .await;
}
