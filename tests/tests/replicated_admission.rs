//! Concurrent submissions through every node of a 3-node cluster are decided once, first come
//! first served, within each deal's limits (I1–I5), and every replica ends with the same state
//! (I9). Retries must not hide failures: a submission sent to a follower is forwarded and
//! answered with the leader's decision on its first attempt, and in this fault-free run no
//! request needs a second attempt.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ledger_tests::check::{self, money};
use ledger_tests::load::{self, Acked, RetryPolicy};
use ledger_tests::{bounded, pb, ClusterOptions, Rng, TestCluster};

const REQUESTS: usize = 3_000;
const TASKS: usize = 16;
const USERS: u64 = 1_200;
/// Share (percent) of requests resubmitted at once, through another node, by the same task.
const RESUBMIT_AT_ONCE_PERCENT: u64 = 10;
/// Requests resubmitted again after the load, concurrently.
const RESUBMIT_AFTERWARDS: usize = 300;
/// A deal for the submissions sent to followers with a single attempt.
const FORWARD_DEAL: &str = "forwarded";
/// Single-attempt submissions per follower.
const FORWARDED_PER_FOLLOWER: usize = 10;

/// The deals, with the ticket sizes (cents) their requests use.
struct DealPlan {
    create: pb::CreateDealRequest,
    tickets: (u64, u64),
}

fn deals() -> Vec<DealPlan> {
    let deal = |id: &str, amount: &str, max_investors, min: Option<&str>, max: Option<&str>| {
        pb::CreateDealRequest {
            deal_id: id.to_owned(),
            amount: amount.to_owned(),
            max_investors,
            min_ticket: min.map(str::to_owned),
            max_ticket: max.map(str::to_owned),
            opens_at_ms: None,
            closes_at_ms: None,
            max_waitlist: 0,
        }
    };
    vec![
        // Runs out of seats: INVESTOR_LIMIT_REACHED, and DUPLICATE_INVESTOR for repeat users.
        DealPlan {
            create: deal("seats", "10000000.00", 40, None, None),
            tickets: (1_000, 500_000),
        },
        // A ticket range some requests miss: TICKET_OUT_OF_RANGE too.
        DealPlan {
            create: deal(
                "tickets",
                "10000000.00",
                40,
                Some("100.00"),
                Some("5000.00"),
            ),
            tickets: (5_000, 600_000),
        },
        // Runs out of money long before seats: AMOUNT_EXCEEDS_REMAINING.
        DealPlan {
            create: deal("tight", "5000.00", 200, None, None),
            tickets: (1_000, 60_000),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_through_all_nodes() {
    bounded(Duration::from_secs(150), async {
        // Three voters; every node takes client traffic, followers forward to the leader.
        let cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let ids = cluster.running();
        let nodes = Arc::new(load::connect_all(&cluster, &ids).await);
        let plans = deals();
        for (i, plan) in plans.iter().enumerate() {
            let mut admission = nodes[i % nodes.len()].admission.clone();
            admission
                .create_deal(plan.create.clone())
                .await
                .unwrap_or_else(|e| panic!("create {}: {e}", plan.create.deal_id));
        }

        // A submission sent to a follower, with no retry, is forwarded and answered with the
        // decision the leader recorded.
        let leader = cluster.leader().await;
        load::create_deal(&nodes[0], FORWARD_DEAL, "1000000.00", 1_000).await;
        let leader_node = &nodes[ids.iter().position(|&id| id == leader).expect("a member")];
        let once = RetryPolicy {
            attempts: 1,
            budget: load::ATTEMPT_TIMEOUT,
        };
        for (n, _) in ids.iter().enumerate().filter(|(_, &id)| id != leader) {
            for k in 0..FORWARDED_PER_FOLLOWER {
                let request = pb::SubmitRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    deal_id: FORWARD_DEAL.into(),
                    user_id: format!("forwarded-{n}-{k}"),
                    amount: money(10_000),
                    waitlist: false,
                    waitlist_ttl_ms: None,
                };
                let ack = load::submit_retrying(&nodes, n, request, once)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("a submission to follower {} failed at once: {e}", ids[n])
                    });
                assert!(
                    ack.decision().admitted() && !ack.response.replayed,
                    "{ack:?}"
                );
                let recorded = leader_node
                    .admission
                    .clone()
                    .get_investment(pb::GetInvestmentRequest {
                        request_id: ack.request.request_id.clone(),
                        consistency: pb::Consistency::Linearizable as i32,
                    })
                    .await
                    .expect("the leader knows the forwarded request")
                    .into_inner();
                assert_eq!(ack.decision(), load::Decision::of(&recorded));
            }
        }

        // The plan: random deals, repeat users (so DUPLICATE_INVESTOR happens), random tickets.
        let mut rng = Rng::new(0x05ee_da11);
        let requests: Vec<pb::SubmitRequest> = (0..REQUESTS)
            .map(|_| {
                let plan = &plans[rng.range(0, plans.len() as u64) as usize];
                pb::SubmitRequest {
                    request_id: rng.uuid(),
                    deal_id: plan.create.deal_id.clone(),
                    user_id: format!("user-{}", rng.range(0, USERS)),
                    amount: money(rng.range(plan.tickets.0, plan.tickets.1)),
                    waitlist: false,
                    waitlist_ttl_ms: None,
                }
            })
            .collect();

        // The load: TASKS concurrent clients, each spreading its requests over all nodes round
        // robin and resubmitting some at once through another node (I4: same decision,
        // replayed). Every failure is retried with the same request id.
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let nodes = nodes.clone();
            let mine: Vec<pb::SubmitRequest> =
                requests.iter().skip(task).step_by(TASKS).cloned().collect();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng::new(task as u64);
                let mut originals = Vec::new();
                let mut resubmits = Vec::new();
                for (n, request) in mine.into_iter().enumerate() {
                    let node = task + n;
                    let ack = load::submit_retrying(
                        &nodes,
                        node,
                        request.clone(),
                        RetryPolicy::default(),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("submit {}: {e}", request.request_id));
                    if ack.attempts == 1 {
                        assert!(!ack.response.replayed, "a first-time request was replayed");
                    }
                    if rng.percent(RESUBMIT_AT_ONCE_PERCENT) {
                        let again = load::submit_retrying(
                            &nodes,
                            node + 1,
                            request.clone(),
                            RetryPolicy::default(),
                        )
                        .await
                        .unwrap_or_else(|e| panic!("resubmit {}: {e}", request.request_id));
                        assert!(again.response.replayed, "a resubmission was not replayed");
                        assert_eq!(again.decision(), ack.decision(), "I4: resubmission differs");
                        resubmits.push(again);
                    }
                    originals.push(ack);
                }
                (originals, resubmits)
            }));
        }
        let mut originals: Vec<Acked> = Vec::with_capacity(REQUESTS);
        let mut resubmits: Vec<Acked> = Vec::new();
        for task in tasks {
            let (o, r) = task.await.expect("a load task panicked");
            originals.extend(o);
            resubmits.extend(r);
        }
        assert_eq!(originals.len(), REQUESTS);
        assert!(!resubmits.is_empty());

        // Later resubmissions, concurrent and through every node, still get the same decisions.
        let mut later = Vec::new();
        for (k, chunk) in originals
            .iter()
            .step_by(REQUESTS / RESUBMIT_AFTERWARDS)
            .cloned()
            .collect::<Vec<_>>()
            .chunks(RESUBMIT_AFTERWARDS.div_ceil(8))
            .enumerate()
        {
            let nodes = nodes.clone();
            let chunk = chunk.to_vec();
            later.push(tokio::spawn(async move {
                let mut acks = Vec::new();
                for (n, original) in chunk.into_iter().enumerate() {
                    let again = load::submit_retrying(
                        &nodes,
                        k + n,
                        original.request.clone(),
                        RetryPolicy::default(),
                    )
                    .await
                    .expect("late resubmission");
                    assert!(again.response.replayed);
                    assert_eq!(
                        again.decision(),
                        original.decision(),
                        "I4: late resubmission"
                    );
                    acks.push(again);
                }
                acks
            }));
        }
        for task in later {
            resubmits.extend(task.await.expect("a resubmission task panicked"));
        }
        // No fault was injected, so no attempt may have failed: a retry here would hide one.
        let retried: Vec<(&str, &[tonic::Code])> = originals
            .iter()
            .chain(&resubmits)
            .filter(|ack| ack.attempts > 1)
            .map(|ack| (ack.request.request_id.as_str(), ack.retried_on.as_slice()))
            .collect();
        assert!(
            retried.is_empty(),
            "{} requests needed retries in a fault-free run: {retried:?}",
            retried.len()
        );

        // The final state, read linearizably (through a different node for each deal): I1–I3,
        // the sequential replay of the rules (I5), and every reply's decision listed (I4).
        let mut listed: BTreeMap<String, pb::Investment> = BTreeMap::new();
        let mut reasons = BTreeMap::<i32, usize>::new();
        for (i, plan) in plans.iter().enumerate() {
            let deal_id = &plan.create.deal_id;
            let client = &nodes[(i + 1) % nodes.len()];
            let list = check::list_investments(client, deal_id, pb::Consistency::Linearizable)
                .await
                .expect("list investments");
            let deal = client
                .admission
                .clone()
                .get_deal(pb::GetDealRequest {
                    deal_id: deal_id.clone(),
                    consistency: pb::Consistency::Linearizable as i32,
                })
                .await
                .expect("get deal")
                .into_inner();
            let admitted = check::check_deal(&deal, &list);
            assert!(admitted > 0, "deal {deal_id} admitted nobody");
            let planned: BTreeSet<&str> = requests
                .iter()
                .filter(|r| &r.deal_id == deal_id)
                .map(|r| r.request_id.as_str())
                .collect();
            let got: BTreeSet<&str> = list.iter().map(|inv| inv.request_id.as_str()).collect();
            assert_eq!(
                planned, got,
                "deal {deal_id} lists other requests than were sent"
            );
            for inv in list {
                *reasons.entry(inv.reject_reason).or_default() += 1;
                listed.insert(inv.request_id.clone(), inv);
            }
        }
        check::check_replies_listed(&originals, &listed);
        check::check_replies_listed(&resubmits, &listed);
        // Every rule was exercised.
        for reason in [
            pb::RejectReason::Unspecified,
            pb::RejectReason::DuplicateInvestor,
            pb::RejectReason::InvestorLimitReached,
            pb::RejectReason::AmountExceedsRemaining,
            pb::RejectReason::TicketOutOfRange,
        ] {
            assert!(
                reasons.get(&(reason as i32)).copied().unwrap_or(0) > 0,
                "no decision with reason {reason:?}: {reasons:?}"
            );
        }

        // I5, real time: a request answered before another was sent is ordered before it.
        let mut all = originals.clone();
        all.extend(resubmits.iter().cloned());
        let covered = check::check_real_time_order(&all);
        assert!(
            covered > REQUESTS / 2,
            "too few ordered pairs to check ({covered})"
        );

        // I9: every replica converges to the same state, and lists the same decisions.
        cluster.wait_converged().await;
        for client in nodes.iter() {
            for plan in &plans {
                let stale =
                    check::list_investments(client, &plan.create.deal_id, pb::Consistency::Stale)
                        .await
                        .expect("stale list");
                let expected = listed
                    .values()
                    .filter(|inv| inv.deal_id == plan.create.deal_id)
                    .count();
                assert_eq!(stale.len(), expected, "replicas list different numbers");
                for inv in &stale {
                    assert_eq!(Some(inv), listed.get(&inv.request_id), "replicas disagree");
                }
            }
        }
    })
    .await;
}
