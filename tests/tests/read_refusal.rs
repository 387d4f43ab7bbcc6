//! A leader that lost its quorum refuses linearizable reads (`UNAVAILABLE`, promptly), while
//! `STALE` reads of its replica still answer; once the quorum is back, linearizable reads answer
//! again.
//!
//! Why it matters: a leader cut off from the majority may already have been replaced; serving a
//! "linearizable" read from its replica would return state that a newer leader has moved past.
//! The followers are frozen (SIGSTOP), so the old leader is not told it was deposed: only the
//! read barrier's round trip to a quorum can catch it.

use std::time::{Duration, Instant};

use ledger_tests::check::{self, money};
use ledger_tests::signal::Frozen;
use ledger_tests::{bounded, load, pb, wait_until, ClusterOptions, NodeClients, TestCluster};
use tonic::Code;

const DEAL: &str = "quorum-deal";
/// How long a refused read may take: the barrier's heartbeats time out after one heartbeat
/// period (100 ms); this bound only tells a prompt refusal from a hang.
const REFUSAL_WITHIN: Duration = Duration::from_secs(5);

/// The reads of the API that take a `consistency`.
const READS: [&str; 6] = [
    "GetDeal",
    "ListDeals",
    "GetInvestment",
    "ListInvestments",
    "GetUser",
    "ListSagas",
];

/// One read of `READS` on `node`: `Ok` with a short description of what it returned, or the
/// status it failed with. Panics if it neither answers nor fails within [`REFUSAL_WITHIN`].
async fn read(
    node: &NodeClients,
    what: &str,
    request_id: &str,
    consistency: pb::Consistency,
) -> Result<String, tonic::Status> {
    let c = consistency as i32;
    let mut admission = node.admission.clone();
    let mut cluster = node.cluster.clone();
    let call = async {
        match what {
            "GetDeal" => admission
                .get_deal(pb::GetDealRequest {
                    deal_id: DEAL.into(),
                    consistency: c,
                })
                .await
                .map(|r| format!("{} seats taken", r.into_inner().investor_count)),
            "ListDeals" => admission
                .list_deals(pb::ListDealsRequest {
                    page_size: 10,
                    page_token: String::new(),
                    consistency: c,
                })
                .await
                .map(|r| format!("{} deals", r.into_inner().deals.len())),
            "GetInvestment" => admission
                .get_investment(pb::GetInvestmentRequest {
                    request_id: request_id.into(),
                    consistency: c,
                })
                .await
                .map(|r| format!("status {}", r.into_inner().status().as_str_name())),
            "ListInvestments" => check::list_investments(node, DEAL, consistency)
                .await
                .map(|list| format!("{} investments", list.len())),
            "GetUser" => admission
                .get_user(pb::GetUserRequest {
                    user_id: "ana".into(),
                    consistency: c,
                })
                .await
                .map(|r| format!("{} pending", r.into_inner().pending.len())),
            "ListSagas" => cluster
                .list_sagas(pb::ListSagasRequest {
                    older_than_ms: 0,
                    failing_only: false,
                    limit: 10,
                    consistency: c,
                })
                .await
                .map(|r| format!("{} open sagas", r.into_inner().open_total)),
            other => unreachable!("no read {other}"),
        }
    };
    tokio::time::timeout(REFUSAL_WITHIN, call)
        .await
        .unwrap_or_else(|_| panic!("{what} ({consistency:?}) neither answered nor failed in time"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_quorum_refuses_linearizable_reads_and_serves_stale_ones() {
    bounded(Duration::from_secs(90), async {
        // Three voters, no executors (nothing writes by itself); one deal, one investment.
        let cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let leader = cluster.leader().await;
        let node = cluster.client(leader).await;
        load::create_deal(&node, DEAL, "10000.00", 10).await;
        let ack = load::submit_to(
            &node,
            pb::SubmitRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                deal_id: DEAL.into(),
                user_id: "ana".into(),
                amount: money(25_000),
                waitlist: false,
                waitlist_ttl_ms: None,
            },
        )
        .await;
        let request_id = ack.request.request_id.clone();

        // With the quorum, every read answers either way.
        for consistency in [pb::Consistency::Linearizable, pb::Consistency::Stale] {
            for what in READS {
                if let Err(status) = read(&node, what, &request_id, consistency).await {
                    panic!("{what} ({consistency:?}) failed with the quorum up: {status}");
                }
            }
        }

        // Both followers frozen: the leader is alone and, never told otherwise, still says it
        // leads.
        let followers: Vec<u64> = cluster
            .running()
            .into_iter()
            .filter(|&id| id != leader)
            .collect();
        let frozen: Vec<Frozen> = followers
            .iter()
            .map(|&id| Frozen::stop(cluster.pid(id).expect("the follower runs")))
            .collect();
        let status = cluster.status(leader).await.expect("leader status");
        assert_eq!(status.role, "leader", "{status:?}");

        // Every linearizable read is refused as UNAVAILABLE (retryable, no stale answer), and
        // promptly.
        let started = Instant::now();
        for what in READS {
            match read(&node, what, &request_id, pb::Consistency::Linearizable).await {
                Err(status) if status.code() == Code::Unavailable => {
                    eprintln!("{what} refused: {}", status.message())
                }
                other => panic!(
                    "{what}: a linearizable read on a leader without quorum must be refused \
                     with UNAVAILABLE, got {other:?}"
                ),
            }
        }
        let refusals = started.elapsed();

        // STALE reads of the same replica still answer, with what it holds.
        let mut answers = Vec::new();
        for what in READS {
            let answer = read(&node, what, &request_id, pb::Consistency::Stale)
                .await
                .unwrap_or_else(|e| panic!("{what} (STALE) without quorum: {e}"));
            answers.push((what, answer));
        }
        assert_eq!(
            answers,
            vec![
                ("GetDeal", "1 seats taken".to_owned()),
                ("ListDeals", "1 deals".to_owned()),
                ("GetInvestment", "status PENDING".to_owned()),
                ("ListInvestments", "1 investments".to_owned()),
                ("GetUser", "1 pending".to_owned()),
                ("ListSagas", "1 open sagas".to_owned()),
            ]
        );

        // With the followers back, linearizable reads answer again (perhaps from a new leader).
        drop(frozen);
        wait_until(
            Duration::from_secs(20),
            "linearizable reads to answer again",
            || {
                let node = &node;
                let request_id = &request_id;
                async move {
                    for what in READS {
                        read(node, what, request_id, pb::Consistency::Linearizable)
                            .await
                            .map_err(|e| format!("{what}: {e}"))?;
                    }
                    Ok(())
                }
            },
        )
        .await;
        eprintln!("six linearizable reads refused in {refusals:?}");
    })
    .await;
}
