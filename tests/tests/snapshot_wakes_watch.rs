//! A `WatchInvestment` stream on a follower that catches up by installing a snapshot reports the
//! state the snapshot brought.
//!
//! Postmortem: `install_snapshot` replaced the state without waking any watcher (watchers are
//! woken by saga events, and a snapshot carries none), so a stream opened on a follower that was
//! frozen while its investment changed waited forever for a state it already had.

use std::time::Duration;

use ledger_tests::check::money;
use ledger_tests::load::{self, RetryPolicy};
use ledger_tests::{bounded, pb, wait_until, ClusterOptions, TestCluster};

const DEAL: &str = "watch-deal";
/// Submissions made while the follower is frozen, one at a time, so each is its own entry: far
/// more than the log keeps behind a snapshot.
const ENTRIES_WHILE_FROZEN: usize = 300;
/// How long the stream may take to report the change once the follower runs again.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

fn request(n: usize) -> pb::SubmitRequest {
    load::new_request(DEAL, format!("user-{n}"), money(100))
}

/// A process stopped with SIGSTOP; dropping the guard sends SIGCONT, so a failing test never
/// leaves a stopped process behind. Drop it before the cluster that owns the process.
struct Frozen {
    pid: libc::pid_t,
}

impl Frozen {
    fn freeze(pid: u32) -> Frozen {
        let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on a child the cluster spawned and has not reaped.
        let sent = unsafe { libc::kill(pid, libc::SIGSTOP) };
        assert_eq!(sent, 0, "SIGSTOP to pid {pid} failed");
        Frozen { pid }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as in `freeze`; the guard is dropped before the cluster reaps the process.
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_a_follower_wakes_when_a_snapshot_brings_the_change() {
    bounded(Duration::from_secs(180), async {
        // Snapshots every 50 entries, 10 entries kept behind one: a follower that misses a few
        // hundred entries can only catch up by snapshot. No executors: only the operator's
        // compensation below changes the investment.
        let options = ClusterOptions::new(3)
            .flag("--snapshot-every-entries", 50)
            .flag("--log-keep-entries", 10);
        let cluster = TestCluster::start(options).await;
        let leader = cluster.leader().await;
        let follower = if leader == 3 { 2 } else { 3 };
        let other = 6 - leader - follower;
        let leader_client = cluster.client(leader).await;
        let writers = load::connect_all(&cluster, &[leader, other]).await;

        // Phase 1: one admitted investment, PENDING in PAYMENT, which the follower holds.
        load::create_deal(&leader_client, DEAL, "1000000000.00", 100_000).await;
        let watched = load::submit_retrying(&writers, 0, request(0), RetryPolicy::default())
            .await
            .expect("submit the watched investment");
        assert!(watched.decision().admitted());
        let request_id = watched.request.request_id.clone();
        cluster.wait_converged().await;

        // Phase 2: a watch on the follower streams the investment as the follower holds it.
        let mut stream = cluster
            .client(follower)
            .await
            .admission
            .watch_investment(pb::WatchInvestmentRequest {
                request_id: request_id.clone(),
            })
            .await
            .expect("WatchInvestment on the follower")
            .into_inner();
        let first = tokio::time::timeout(STREAM_TIMEOUT, stream.message())
            .await
            .expect("the watch streams the current state at once")
            .expect("the stream is healthy")
            .expect("the stream is open");
        assert_eq!(first.saga_step(), pb::SagaStep::Payment);
        let at_freeze = cluster.status(follower).await.expect("follower status");
        assert_eq!(at_freeze.snapshot_index, 0, "no snapshot is due yet");

        // Phase 3: the follower is frozen while the leader changes the investment and then
        // appends and snapshots far past it.
        let pid = cluster.pid(follower).expect("the follower runs");
        let frozen = Frozen::freeze(pid);
        let compensated = leader_client
            .cluster
            .clone()
            .compensate_saga(pb::CompensateSagaRequest {
                request_id: request_id.clone(),
                reason: "snapshot watch test".to_owned(),
            })
            .await
            .expect("CompensateSaga on the leader")
            .into_inner();
        assert_eq!(compensated.saga_step(), pb::SagaStep::Void);
        let changed_at = cluster
            .status(leader)
            .await
            .expect("leader status")
            .last_log_index;
        for n in 1..=ENTRIES_WHILE_FROZEN {
            load::submit_retrying(&writers, 0, request(n), RetryPolicy::default())
                .await
                .expect("submit while the follower is frozen");
        }
        // The change is then in no log the follower can be sent, only in snapshots.
        let purged = wait_until(
            Duration::from_secs(30),
            "the leader to purge past the compensation",
            || {
                let cluster = &cluster;
                async move {
                    let status = cluster.status(leader).await?;
                    if status.purged_index >= changed_at {
                        Ok(status.purged_index)
                    } else {
                        Err(format!(
                            "leader snapshot {} purged {}, compensation at {changed_at}",
                            status.snapshot_index, status.purged_index
                        ))
                    }
                }
            },
        )
        .await;

        // Phase 4: the follower runs again, installs a snapshot, and the open watch reports the
        // compensation it brought.
        drop(frozen);
        let next = tokio::time::timeout(STREAM_TIMEOUT, stream.message())
            .await
            .expect("the watch reports the change the snapshot brought")
            .expect("the stream is healthy")
            .expect("the stream is open");
        assert_eq!(next.request_id, request_id);
        assert_eq!(next.saga_step(), pb::SagaStep::Void);
        // The watch wakes when the state machine installs the snapshot; Raft's metrics, which
        // `Status` reports, catch up a moment later (seen in CI: the stream came first).
        wait_until(
            Duration::from_secs(10),
            "the follower's status to show a snapshot covering the purged log",
            || {
                let cluster = &cluster;
                async move {
                    let status = cluster.status(follower).await?;
                    if status.snapshot_index >= purged {
                        Ok(())
                    } else {
                        Err(format!(
                            "node {follower} caught up without a snapshot covering the purged \
                             log ({} < {purged})",
                            status.snapshot_index
                        ))
                    }
                }
            },
        )
        .await;
        assert!(
            cluster.latest_log_contains(follower, "snapshot installed"),
            "node {follower} does not log a snapshot installation"
        );
    })
    .await;
}
