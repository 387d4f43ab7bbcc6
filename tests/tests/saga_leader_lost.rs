//! Sagas in flight while the leader is lost (issue #10, defect d): payments take 600 ms, so every
//! saga is at the payment partner when the leader stops. Followers' executors then propose their
//! results (and their heartbeats) to a leader that no longer answers.
//!
//! - **Frozen** (SIGSTOP): the silent case, like a partition that drops packets. The kernel of
//!   the frozen node still acknowledges TCP, so only the executor's own timeouts and HTTP/2
//!   keepalive can tell; without them, workers and heartbeats hung until TCP gave up (about
//!   15 minutes), every executor's lease lapsed, and every saga stayed PENDING.
//! - **Killed** (SIGKILL): connections are refused at once.
//!
//! Either way, with the two other nodes healthy and the partners quiet, every saga must end
//! CONFIRMED while the old leader stays down.

use std::time::{Duration, Instant};

use ledger_partners::Latency;
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::signal::Frozen;
use ledger_tests::{bounded, load, wait_until, Rng};

const COUNT: usize = 40;

enum Loss {
    Freeze,
    Kill,
}

async fn sagas_end_while_the_leader_is_lost(loss: Loss, seed: u64) {
    let started = Instant::now();
    let mut faults = saga::quiet_faults(seed);
    faults.payment.latency = Latency::new(600, 0);
    let mut saga = SagaCluster::start(3, faults).await;
    let clients = saga.clients().await;
    let deal = "lost-leader";
    saga::create_deal(&clients[0], deal, "100000000.00", 300).await;
    let mut rng = Rng::new(seed);
    let requests = saga::requests(&mut rng, &[deal], COUNT, "lost", (1_000, 500_000));
    let acked = saga::submit_all(&clients, requests).await;
    assert_eq!(saga::admitted(&acked).len(), COUNT);

    let leader = saga.cluster.leader().await;
    let pid = saga.cluster.pid(leader).expect("the leader runs");
    let _frozen = match loss {
        Loss::Freeze => Some(Frozen::stop(pid)),
        Loss::Kill => {
            saga.cluster.kill(leader);
            None
        }
    };
    let lost_at = started.elapsed();
    let survivors: Vec<u64> = saga
        .cluster
        .ids()
        .into_iter()
        .filter(|&id| id != leader)
        .collect();
    let new_leader = wait_until(
        Duration::from_secs(20),
        "a new leader among the survivors",
        || async {
            for &id in &survivors {
                if let Ok(status) = saga.cluster.status(id).await {
                    if status.role == "leader" {
                        return Ok(id);
                    }
                }
            }
            Err("no survivor leads yet".to_owned())
        },
    )
    .await;
    let survivor_clients = load::connect_all(&saga.cluster, &survivors).await;

    // The old leader stays down until every saga has ended.
    let investments =
        saga::wait_sagas_done(&survivor_clients[0], &[deal], Duration::from_secs(60)).await;
    let done_at = started.elapsed();
    let report = saga::check_sagas(&investments, &saga.audit());
    assert_eq!(report.confirmed, COUNT, "{report:?}");
    assert_eq!(
        (report.charges, report.documents, report.refunds),
        (COUNT, COUNT, 0),
        "one effect per key: {report:?}"
    );
    let deal_now = saga::get_deal(&survivor_clients[1], deal)
        .await
        .expect("read the deal");
    assert_eq!(deal_now.confirmed_count as usize, COUNT);
    eprintln!(
        "leader {leader} lost at {lost_at:?}, node {new_leader} leads; all {COUNT} sagas done at \
         {done_at:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_end_while_the_leader_is_frozen() {
    bounded(
        Duration::from_secs(150),
        sagas_end_while_the_leader_is_lost(Loss::Freeze, 0xf0_2e17),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_end_while_the_leader_is_killed() {
    bounded(
        Duration::from_secs(150),
        sagas_end_while_the_leader_is_lost(Loss::Kill, 0x0c1a_55e5),
    )
    .await;
}
