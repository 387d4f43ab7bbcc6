//! `WatchInvestment` streams every state of an investment in order, not only the last one, and
//! a stream survives a leader change.
//!
//! Payments are held back (a payment outage) while streams open on every node for every
//! investment, so each stream starts at PENDING/PAYMENT. The leader is then frozen (SIGSTOP)
//! until the others elect a new one, and thawed. Then the outage ends and the sagas run to
//! CONFIRMED with fast partners, so the DOCUMENTS and CONFIRMED/NOTIFY states last only a log
//! round trip or two. Every stream, on the old leader, the new one or the third node, must go on
//! after the change: no state twice, none out of order (log time, saga steps), and end after
//! CONFIRMED with the ids the saga recorded. And every stream must show every state: PAYMENT,
//! then DOCUMENTS, then CONFIRMED at NOTIFY.

use std::time::Duration;

use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::signal::Frozen;
use ledger_tests::{bounded, pb, NodeClients, Rng};
use tokio::sync::oneshot;

const DEAL: &str = "watched";
/// Investments, each watched on every node.
const INVESTMENTS: usize = 20;
/// Longest silence on a stream while its saga runs.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Follows one investment on one node: sends the first message on `opened`, then returns every
/// message (the first included) once the server ends the stream.
async fn follow(
    node: NodeClients,
    request_id: String,
    opened: oneshot::Sender<pb::Investment>,
) -> Vec<pb::Investment> {
    let mut stream = node
        .admission
        .clone()
        .watch_investment(pb::WatchInvestmentRequest {
            request_id: request_id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("WatchInvestment {request_id}: {e}"))
        .into_inner();
    let mut seen = Vec::new();
    let mut opened = Some(opened);
    // Bounded: a stream ends at a terminal status, and a saga has few states.
    for _ in 0..1_000 {
        let next = tokio::time::timeout(MESSAGE_TIMEOUT, stream.message())
            .await
            .unwrap_or_else(|_| panic!("the watch of {request_id} went silent after {seen:?}"))
            .unwrap_or_else(|e| panic!("the watch of {request_id} failed after {seen:?}: {e}"));
        let Some(investment) = next else {
            return seen;
        };
        if let Some(opened) = opened.take() {
            let _ = opened.send(investment.clone());
        }
        seen.push(investment);
    }
    panic!("the watch of {request_id} did not end after 1,000 messages");
}

/// Where a saga step comes in a saga's life (VOID does not occur here).
fn step_rank(step: pb::SagaStep) -> u8 {
    match step {
        pb::SagaStep::Unspecified => 0,
        pb::SagaStep::Payment => 1,
        pb::SagaStep::Documents => 2,
        pb::SagaStep::Void => 3,
        pb::SagaStep::Notify => 4,
        pb::SagaStep::Done => 5,
    }
}

/// `(status, step)` of each message, with repeats of the same pair folded (retries at one step
/// change `attempts` and `last_error`, which are states too, but not milestones).
fn milestones(seen: &[pb::Investment]) -> Vec<(pb::InvestmentStatus, pb::SagaStep)> {
    let mut out: Vec<(pb::InvestmentStatus, pb::SagaStep)> = Vec::new();
    for inv in seen {
        let pair = (inv.status(), inv.saga_step());
        if out.last() != Some(&pair) {
            out.push(pair);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_is_streamed_in_order_across_a_leader_change() {
    bounded(Duration::from_secs(120), async {
        // Payments fail (503) until the outage ends, so every saga waits at PAYMENT.
        let mut faults = saga::quiet_faults(0x3a7c);
        faults.payment.outage = true;
        let saga = SagaCluster::start(3, faults).await;
        let clients = saga.clients().await;
        saga::create_deal(&clients[0], DEAL, "100000000.00", 100).await;
        let mut rng = Rng::new(0x3a7c_0001);
        let requests = saga::requests(&mut rng, &[DEAL], INVESTMENTS, "watcher", (1_000, 50_000));
        let acked = saga::submit_all(&clients, requests).await;
        let admitted = saga::admitted(&acked);
        assert_eq!(admitted.len(), INVESTMENTS);

        // A stream per investment on every node; each opens at PENDING/PAYMENT.
        let mut streams = Vec::new();
        let mut openings = Vec::new();
        for id in &admitted {
            for (n, node) in clients.iter().enumerate() {
                let (opened, first) = oneshot::channel();
                let task = tokio::spawn(follow(node.clone(), id.clone(), opened));
                streams.push((id.clone(), n, task));
                openings.push(first);
            }
        }
        for first in openings {
            let first = tokio::time::timeout(MESSAGE_TIMEOUT, first)
                .await
                .expect("a watch sends the current state at once")
                .expect("the watch task runs");
            assert_eq!(
                (first.status(), first.saga_step()),
                (pb::InvestmentStatus::Pending, pb::SagaStep::Payment),
                "{first:?}"
            );
        }

        // Leadership moves while every stream is open: the leader is frozen (SIGSTOP) until the
        // two others elect one of themselves, then thawed, deposed. Its own streams must carry
        // on as a follower's.
        let old_leader = saga.cluster.leader().await;
        let others: Vec<u64> = saga
            .cluster
            .running()
            .into_iter()
            .filter(|&id| id != old_leader)
            .collect();
        let frozen = Frozen::stop(saga.cluster.pid(old_leader).expect("the leader runs"));
        let new_leader = saga
            .cluster
            .wait_leader_among(&others, old_leader, Duration::from_secs(20))
            .await;
        frozen.thaw();
        assert_eq!(
            saga.cluster
                .wait_new_leader(old_leader, Duration::from_secs(20))
                .await,
            new_leader,
            "the thawed node follows the new leader"
        );

        // Payments go through now; the sagas run to CONFIRMED under the new leader.
        saga.set_faults(saga::quiet_faults(0x3a7c));
        let investments =
            saga::wait_sagas_done(&clients[0], &[DEAL], Duration::from_secs(60)).await;
        let report = saga::check_settled(&clients[1], &[DEAL], &investments, &saga.audit()).await;
        assert_eq!(report.confirmed, INVESTMENTS, "{report:?}");

        // Every stream survived the leader change: it went on from PAYMENT, never sent a state
        // twice, never went back (in log time or in saga steps), ended after CONFIRMED with the
        // ids the saga recorded.
        let mut messages = 0;
        let mut all_seen = Vec::new();
        for (id, n, task) in streams {
            let node = n as u64 + 1;
            // The task bounds every message; this bounds the whole stream.
            let seen = tokio::time::timeout(MESSAGE_TIMEOUT, task)
                .await
                .unwrap_or_else(|_| panic!("the watch of {id} on node {node} did not end"))
                .expect("a watch task panicked");
            let final_state = investments
                .iter()
                .find(|inv| inv.request_id == id)
                .expect("listed");
            let (last, before) = seen.split_last().expect("a first message");
            assert_eq!(last.status(), pb::InvestmentStatus::Confirmed, "{seen:#?}");
            assert!(
                before
                    .iter()
                    .all(|inv| inv.status() == pb::InvestmentStatus::Pending),
                "node {node}: {seen:#?}"
            );
            assert_eq!(
                (&last.payment_id, &last.document_id),
                (&final_state.payment_id, &final_state.document_id),
                "node {node}: {last:?}"
            );
            for pair in seen.windows(2) {
                assert_ne!(
                    pair[0], pair[1],
                    "node {node} sent a state twice: {seen:#?}"
                );
                assert!(
                    pair[0].updated_at_ms <= pair[1].updated_at_ms
                        && step_rank(pair[0].saga_step()) <= step_rank(pair[1].saga_step()),
                    "node {node} streamed states out of order: {seen:#?}"
                );
            }
            messages += seen.len();
            all_seen.push((id, node, seen));
        }
        eprintln!(
            "{} streams, {messages} messages; leadership moved from {old_leader} to \
             {new_leader} with every stream open",
            all_seen.len()
        );

        // And every state: each saga went PAYMENT → DOCUMENTS → CONFIRMED (at NOTIFY), each in
        // its own log entry, so each stream must show all three, not just the latest state at
        // the moment it looked. (The NOTIFY → DONE change after CONFIRMED is past the end of the
        // stream.)
        use pb::{InvestmentStatus as S, SagaStep as Step};
        let expected = vec![
            (S::Pending, Step::Payment),
            (S::Pending, Step::Documents),
            (S::Confirmed, Step::Notify),
        ];
        type Streamed<'a> = (u64, &'a str, Vec<(S, Step)>);
        let skipped: Vec<Streamed> = all_seen
            .iter()
            .map(|(id, node, seen)| (*node, id.as_str(), milestones(seen)))
            .filter(|(_, _, got)| *got != expected)
            .collect();
        assert!(
            skipped.is_empty(),
            "{} of {} streams skipped states (expected {expected:?}); (node, request, streamed): \
             {skipped:#?}",
            skipped.len(),
            all_seen.len()
        );
    })
    .await;
}
