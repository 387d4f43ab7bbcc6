//! The operator's saga calls end to end, against nodes with executors and the partners:
//!
//! - `CompensateSaga` (gRPC, and `ledgerctl saga compensate`) does the documented compensation:
//!   after a charge it is refunded; before any charge the payment key is voided; either way the
//!   investment ends CANCELLED with cause ABORTED and the operator's reason, its seat and amount
//!   go back to the deal (another investor gets the seat), and the partners' audit holds exactly
//!   that (I7);
//! - `ListSagas` (gRPC, and `ledgerctl saga list --stuck`) shows the stuck sagas with their
//!   attempts and errors, honours its filters and limit, counts every open saga, and reports log
//!   time;
//! - `CloseDeal` (`ledgerctl deal close`) refuses new requests while a saga opened before it
//!   still runs to CONFIRMED;
//! - `GetUser` (gRPC, and `ledgerctl user show`) lists a user's pending and confirmed
//!   investments as they change, never the rejected or cancelled ones.

use std::sync::Arc;
use std::time::Duration;

use ledger_partners::Latency;
use ledger_tests::check::money;
use ledger_tests::load::{self, Acked, RetryPolicy};
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, ctl, pb, wait_until, NodeClients};
use serde_json::Value;
use tonic::Code;

const DOCS_DEAL: &str = "ops-docs";
const PAY_DEAL: &str = "ops-pay";

async fn submit(clients: &Arc<Vec<NodeClients>>, deal: &str, user: &str, cents: u64) -> Acked {
    let request = pb::SubmitRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        deal_id: deal.into(),
        user_id: user.into(),
        amount: money(cents),
        waitlist: false,
        waitlist_ttl_ms: None,
    };
    load::submit_retrying(clients, 0, request, RetryPolicy::default())
        .await
        .unwrap_or_else(|e| panic!("submit for {user} in {deal}: {e}"))
}

/// Waits until investment `request_id` satisfies `done`; returns it.
async fn wait_investment(
    node: &NodeClients,
    request_id: &str,
    what: &str,
    done: impl Fn(&pb::Investment) -> bool,
) -> pb::Investment {
    wait_until(Duration::from_secs(30), what, || async {
        let inv = saga::investment(node, request_id).await?;
        if done(&inv) {
            Ok(inv)
        } else {
            Err(format!("{inv:?}"))
        }
    })
    .await
}

async fn user(node: &NodeClients, user_id: &str) -> Result<pb::User, tonic::Status> {
    node.admission
        .clone()
        .get_user(pb::GetUserRequest {
            user_id: user_id.into(),
            consistency: pb::Consistency::Linearizable as i32,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// `(pending, confirmed)` request ids of `user_id`.
async fn holdings(node: &NodeClients, user_id: &str) -> (Vec<String>, Vec<String>) {
    let user = user(node, user_id)
        .await
        .unwrap_or_else(|e| panic!("GetUser {user_id}: {e}"));
    let ids = |list: &[pb::Investment]| list.iter().map(|i| i.request_id.clone()).collect();
    (ids(&user.pending), ids(&user.confirmed))
}

async fn list_sagas(
    node: &NodeClients,
    older_than_ms: u64,
    failing_only: bool,
    limit: u32,
) -> pb::ListSagasResponse {
    node.cluster
        .clone()
        .list_sagas(pb::ListSagasRequest {
            older_than_ms,
            failing_only,
            limit,
            consistency: pb::Consistency::Linearizable as i32,
        })
        .await
        .expect("ListSagas")
        .into_inner()
}

async fn deal(node: &NodeClients, deal_id: &str) -> pb::Deal {
    saga::get_deal(node, deal_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ids_of(value: &Value) -> Vec<&str> {
    value["sagas"]
        .as_array()
        .expect("a list of sagas")
        .iter()
        .map(|s| s["request_id"].as_str().expect("a request id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_compensate_list_close_and_read_users() {
    ctl::prepare().await;
    bounded(Duration::from_secs(150), async {
        // Documents fail slowly (1.5 s, then 503): about 9 s of retries before the executor
        // would give up on its own, time for an operator to step in after the charge.
        let mut faults = saga::quiet_faults(0x0b5);
        faults.documents.latency = Latency::new(1_500, 0);
        faults.documents.outage = true;
        let saga = SagaCluster::start(3, faults).await;
        let clients = saga.clients().await;
        let endpoints: Vec<String> = saga.cluster.endpoints();
        let leader = saga.cluster.leader().await;
        let follower = &clients[usize::try_from(leader % 3).expect("small")];

        // Phase 1: a one-seat deal, taken by cy; xe finds it full.
        saga::create_deal(&clients[0], DOCS_DEAL, "10000.00", 1).await;
        let cy = submit(&clients, DOCS_DEAL, "cy", 80_000).await;
        assert!(cy.decision().admitted());
        let cy_id = cy.request.request_id.clone();
        let full = submit(&clients, DOCS_DEAL, "xe", 10_000).await;
        assert_eq!(
            full.decision().reason,
            pb::RejectReason::InvestorLimitReached as i32
        );
        assert_eq!(
            holdings(follower, "cy").await,
            (vec![cy_id.clone()], vec![])
        );
        assert_eq!(
            holdings(follower, "xe").await,
            (vec![], vec![]),
            "a rejected request is no holding"
        );

        // cy is charged; the documents keep failing. The operator compensates (through a
        // follower): the saga turns to VOID with cause ABORTED and the reason, still PENDING.
        let charged = wait_investment(&clients[0], &cy_id, "cy charged, at DOCUMENTS", |inv| {
            inv.saga_step() == pb::SagaStep::Documents && !inv.payment_id.is_empty()
        })
        .await;
        let reason = "documents partner incident 4711";
        let started = follower
            .cluster
            .clone()
            .compensate_saga(pb::CompensateSagaRequest {
                request_id: cy_id.clone(),
                reason: reason.into(),
            })
            .await
            .expect("CompensateSaga")
            .into_inner();
        assert_eq!(
            (
                started.status(),
                started.saga_step(),
                started.cancel_cause(),
                started.last_error.as_str()
            ),
            (
                pb::InvestmentStatus::Pending,
                pb::SagaStep::Void,
                pb::CancelCause::Aborted,
                reason
            ),
            "{started:?}"
        );
        // The executor refunds the charge; the investment ends CANCELLED, its seat released.
        let cancelled = wait_investment(&clients[0], &cy_id, "cy cancelled", saga::saga_over).await;
        assert_eq!(
            (
                cancelled.status(),
                cancelled.cancel_cause(),
                cancelled.refunded
            ),
            (
                pb::InvestmentStatus::Cancelled,
                pb::CancelCause::Aborted,
                true
            ),
            "{cancelled:?}"
        );
        assert_eq!(cancelled.payment_id, charged.payment_id);
        assert!(cancelled.document_id.is_empty(), "{cancelled:?}");
        let docs_deal = deal(&clients[0], DOCS_DEAL).await;
        assert_eq!(
            (docs_deal.investor_count, docs_deal.reserved_amount.as_str()),
            (0, "0.00"),
            "{docs_deal:?}"
        );
        assert_eq!(holdings(&clients[0], "cy").await, (vec![], vec![]));
        // The seat is free again: xe gets it, and (documents healthy now) is confirmed.
        saga.set_faults(saga::quiet_faults(0x0b5));
        let xe = submit(&clients, DOCS_DEAL, "xe", 10_000).await;
        assert!(xe.decision().admitted(), "{:?}", xe.response);
        let xe_id = xe.request.request_id.clone();
        saga::wait_sagas_done(&clients[0], &[DOCS_DEAL], Duration::from_secs(30)).await;
        assert_eq!(holdings(&clients[1], "xe").await, (vec![], vec![xe_id]));

        // Phase 2: the payment partner is down; bo and di wait at PAYMENT, retrying.
        let mut down = saga::quiet_faults(0x0b5);
        down.payment.outage = true;
        saga.set_faults(down);
        saga::create_deal(&clients[0], PAY_DEAL, "10000.00", 5).await;
        let bo_id = submit(&clients, PAY_DEAL, "bo", 70_000)
            .await
            .request
            .request_id;
        let di_id = submit(&clients, PAY_DEAL, "di", 90_000)
            .await
            .request
            .request_id;
        assert_eq!(
            holdings(follower, "bo").await,
            (vec![bo_id.clone()], vec![])
        );

        // ListSagas shows exactly these two as failing, oldest decision first, with their
        // attempts and errors; the limit cuts, the total does not; nothing is an hour old.
        let failing = wait_until(
            Duration::from_secs(30),
            "both sagas listed as failing",
            || async {
                let reply = list_sagas(follower, 0, true, 100).await;
                let ids: Vec<&str> = reply.sagas.iter().map(|s| s.request_id.as_str()).collect();
                if ids == [bo_id.as_str(), di_id.as_str()] {
                    Ok(reply)
                } else {
                    Err(format!("{reply:?}"))
                }
            },
        )
        .await;
        assert_eq!(failing.open_total, 2, "{failing:?}");
        for s in &failing.sagas {
            assert_eq!(s.saga_step(), pb::SagaStep::Payment, "{s:?}");
            assert!(s.attempts >= 1 && !s.last_error.is_empty(), "{s:?}");
            assert!(failing.now_ms >= s.decided_at_ms, "{failing:?}");
        }
        let limited = list_sagas(follower, 0, true, 1).await;
        assert_eq!(
            (limited.sagas.len(), limited.open_total),
            (1, 2),
            "{limited:?}"
        );
        assert_eq!(limited.sagas[0].request_id, bo_id);
        let old = list_sagas(follower, 3_600_000, false, 100).await;
        assert!(old.sagas.is_empty() && old.open_total == 2, "{old:?}");
        let all = list_sagas(follower, 0, false, 100).await;
        assert_eq!(all.sagas.len(), 2, "{all:?}");
        // The operator's view: `saga list --stuck` (old or failing).
        let stuck = ctl::run_ok(&endpoints, &["--json", "saga", "list", "--stuck"])
            .await
            .json();
        assert_eq!(ids_of(&stuck), [bo_id.as_str(), di_id.as_str()], "{stuck}");
        assert_eq!(stuck["open_total"], 2, "{stuck}");

        // bo is compensated by ledgerctl before any charge: VOID, ABORTED, the reason.
        let reason = "payment partner down, investor asked to cancel";
        let compensated = ctl::run_ok(
            &endpoints,
            &["--json", "saga", "compensate", &bo_id, "--reason", reason],
        )
        .await
        .json();
        assert_eq!(
            (
                &compensated["status"],
                &compensated["saga_step"],
                &compensated["cancel_cause"],
                &compensated["last_error"]
            ),
            (
                &Value::from("PENDING"),
                &Value::from("VOID"),
                &Value::from("ABORTED"),
                &Value::from(reason)
            ),
            "{compensated}"
        );

        // The deal is closed (ledgerctl) with di's saga still open: new requests are refused.
        let closed = ctl::run_ok(&endpoints, &["--json", "deal", "close", PAY_DEAL])
            .await
            .json();
        assert_eq!(closed["status"], "CLOSED", "{closed}");
        assert_eq!(closed["investor_count"], 2, "{closed}");
        let late = submit(&clients, PAY_DEAL, "fi", 1_000).await;
        assert_eq!(
            late.decision().reason,
            pb::RejectReason::DealClosed as i32,
            "{:?}",
            late.response
        );

        // The partner is back: bo's key is voided (never charged) and bo is CANCELLED; di's
        // saga, opened before the close, runs to CONFIRMED.
        saga.set_faults(saga::quiet_faults(0x0b5));
        let deals = [DOCS_DEAL, PAY_DEAL];
        let investments = saga::wait_sagas_done(&clients[0], &deals, Duration::from_secs(60)).await;
        let bo = investments
            .iter()
            .find(|i| i.request_id == bo_id)
            .expect("listed");
        assert_eq!(
            (
                bo.status(),
                bo.cancel_cause(),
                bo.refunded,
                bo.payment_id.as_str()
            ),
            (
                pb::InvestmentStatus::Cancelled,
                pb::CancelCause::Aborted,
                false,
                ""
            ),
            "{bo:?}"
        );
        let di = investments
            .iter()
            .find(|i| i.request_id == di_id)
            .expect("listed");
        assert_eq!(di.status(), pb::InvestmentStatus::Confirmed, "{di:?}");
        let pay_deal = deal(&clients[0], PAY_DEAL).await;
        assert_eq!(
            (
                pay_deal.status(),
                pay_deal.investor_count,
                pay_deal.confirmed_count
            ),
            (pb::DealStatus::Closed, 1, 1),
            "{pay_deal:?}"
        );
        assert_eq!(list_sagas(follower, 0, false, 100).await.open_total, 0);

        // The users as they now stand, through a follower and through ledgerctl; an unknown
        // user is NOT_FOUND.
        assert_eq!(holdings(follower, "bo").await, (vec![], vec![]));
        assert_eq!(
            holdings(follower, "di").await,
            (vec![], vec![di_id.clone()])
        );
        let di_shown = ctl::run_ok(&endpoints, &["--json", "user", "show", "di"])
            .await
            .json();
        assert_eq!(di_shown["confirmed"][0]["request_id"], di_id, "{di_shown}");
        assert_eq!(di_shown["pending"], serde_json::json!([]), "{di_shown}");
        let unknown = user(follower, "nobody").await;
        assert_eq!(
            unknown.map(|_| ()).map_err(|e| e.code()),
            Err(Code::NotFound)
        );

        // The partners' audit: cy charged and refunded, bo's key voided, xe and di charged and
        // documented, one e-mail each; nothing else (I7, I8).
        let report = saga::check_settled(&clients[0], &deals, &investments, &saga.audit()).await;
        assert_eq!(report.confirmed, 2, "{report:?}");
        assert_eq!(
            report.cancelled_with(pb::CancelCause::Aborted),
            2,
            "{report:?}"
        );
        assert_eq!(
            (
                report.charges,
                report.refunds,
                report.voids,
                report.documents,
                report.emails
            ),
            (3, 1, 1, 2, 4),
            "{report:?}"
        );
    })
    .await;
}
