//! `ledgerctl invest trace` and `Cluster.TraceInvestment` (issue #14 §4): a request's story from
//! the ledger's own record. Against three nodes with executors and partners that decline some
//! charges:
//!
//! - a confirmed investment shows where, when and by which leader it was decided, its
//!   assignment, and the PAYMENT, DOCUMENTS and NOTIFY results in log order, with the partners'
//!   ids;
//! - a declined one shows the decline, the e-mail, and where its seat was released;
//! - a rejected request shows its decision and no saga;
//! - every node holds the same history (it is replicated state, read STALE on each node);
//! - an unknown or malformed id is NOT_FOUND or INVALID_ARGUMENT.

use std::time::Duration;

use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, ctl, pb, Rng};
use serde_json::Value;
use tonic::Code;

const DEAL: &str = "traced";
const REQUESTS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_s_story_is_told_from_the_ledger_s_record() {
    ctl::prepare().await;
    bounded(Duration::from_secs(120), async {
        let mut faults = saga::quiet_faults(0x7ace);
        faults.decline_rate = 0.4;
        let saga = SagaCluster::start(3, faults).await;
        let clients = saga.clients().await;
        let endpoints: Vec<String> = saga.cluster.endpoints();
        saga::create_deal(&clients[0], DEAL, "100000000.00", 200).await;
        let mut rng = Rng::new(0x7ace_0001);
        let mut requests = saga::requests(&mut rng, &[DEAL], REQUESTS, "tr", (1_000, 500_000));
        // One more, for a ticket over the deal's amount: rejected.
        let mut too_big = requests[0].clone();
        too_big.request_id = rng.uuid();
        too_big.user_id = "tr-big".into();
        too_big.amount = "200000000.00".into();
        requests.push(too_big);
        let acked = saga::submit_all(&clients, requests).await;
        let investments =
            saga::wait_sagas_done(&clients[1], &[DEAL], Duration::from_secs(60)).await;
        let leader_ids: Vec<u64> = saga.cluster.running();

        let confirmed = investments
            .iter()
            .find(|inv| inv.status == pb::InvestmentStatus::Confirmed as i32)
            .expect("some investments confirmed");
        let declined = investments
            .iter()
            .find(|inv| inv.cancel_cause == pb::CancelCause::PaymentDeclined as i32)
            .expect("some payments declined (40%)");

        // Confirmed: assigned at its decision, then three steps in log order.
        let trace = trace_json(&endpoints, &confirmed.request_id).await;
        let inv = &trace["investment"];
        assert_eq!(inv["status"], "CONFIRMED", "{trace}");
        let decided_by = inv["decided_by"].as_u64().expect("a known leader");
        assert!(leader_ids.contains(&decided_by), "{trace}");
        let history = trace["history"].as_array().expect("a history");
        let steps: Vec<(&str, &str)> = history
            .iter()
            .map(|m| {
                (
                    m["change"].as_str().unwrap(),
                    m["result"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("ASSIGNED", ""),
                ("STEP_ENDED", "STEP_END_PAYMENT_SUCCEEDED"),
                ("STEP_ENDED", "STEP_END_DOCUMENTS_GENERATED"),
                ("STEP_ENDED", "STEP_END_NOTIFY_SENT"),
            ],
            "{trace}"
        );
        assert_eq!(history[0]["log_index"], inv["log_index"], "{trace}");
        assert_eq!(history[0]["executor"], inv["executor"], "{trace}");
        assert_in_log_order(history);
        assert!(
            history.iter().all(|m| m["epoch"] == inv["epoch"]),
            "{trace}"
        );
        assert_eq!(trace["history_dropped"], 0);

        let text = trace_text(&endpoints, &confirmed.request_id).await;
        for expected in [
            format!(
                "decided  at {}:{} by leader {decided_by}",
                confirmed.log_index, confirmed.offset
            ),
            format!("PAYMENT_SUCCEEDED id={}", confirmed.payment_id),
            format!("DOCUMENTS_GENERATED id={}", confirmed.document_id),
            format!("NOTIFY_SENT id={}", confirmed.message_id),
            "outcome  CONFIRMED, saga DONE".to_owned(),
        ] {
            assert!(text.contains(&expected), "{expected:?} not in:\n{text}");
        }

        // Declined: the decline, the e-mail, the seat released where the decline was applied.
        let trace = trace_json(&endpoints, &declined.request_id).await;
        let history = trace["history"].as_array().expect("a history");
        let results: Vec<&str> = history
            .iter()
            .filter_map(|m| m["result"].as_str())
            .collect();
        assert_eq!(
            results,
            ["STEP_END_PAYMENT_DECLINED", "STEP_END_NOTIFY_SENT"],
            "{trace}"
        );
        let decline = &history[history.len() - 2];
        assert_eq!(decline["step"], "PAYMENT");
        assert_eq!(
            decline["log_index"].as_u64(),
            Some(declined.cancelled_log_index)
        );
        let text = trace_text(&endpoints, &declined.request_id).await;
        assert!(
            text.contains("outcome  CANCELLED (PAYMENT_DECLINED), saga DONE with executor")
                && text.contains(&format!(
                    "seat released at {}:{}",
                    declined.cancelled_log_index, declined.cancelled_offset
                )),
            "{text}"
        );

        // Rejected: decided, no saga.
        let rejected = acked.last().expect("the oversized request");
        let trace = trace_json(&endpoints, &rejected.request.request_id).await;
        assert_eq!(trace["investment"]["status"], "REJECTED", "{trace}");
        assert!(trace["investment"]["decided_by"].as_u64().is_some());
        assert_eq!(trace["history"], Value::Array(Vec::new()));
        let text = trace_text(&endpoints, &rejected.request.request_id).await;
        assert!(
            text.contains("REJECTED AMOUNT_EXCEEDS_REMAINING")
                || text.contains("REJECTED TICKET_OUT_OF_RANGE"),
            "{text}"
        );

        // The same history on every node: it is part of the replicated state.
        let wanted = pb::TraceInvestmentRequest {
            request_id: confirmed.request_id.clone(),
            consistency: pb::Consistency::Stale as i32,
        };
        let mut seen = Vec::new();
        for node in clients.iter() {
            let trace = node
                .cluster
                .clone()
                .trace_investment(wanted.clone())
                .await
                .expect("TraceInvestment on each node")
                .into_inner();
            seen.push(trace.history);
        }
        assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "{seen:?}");

        // Unknown and malformed ids.
        let mut cluster = clients[0].cluster.clone();
        let missing = cluster
            .trace_investment(pb::TraceInvestmentRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                consistency: 0,
            })
            .await
            .expect_err("never decided");
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
        let malformed = cluster
            .trace_investment(pb::TraceInvestmentRequest {
                request_id: "not-a-uuid".into(),
                consistency: 0,
            })
            .await
            .expect_err("malformed");
        assert_eq!(malformed.code(), Code::InvalidArgument, "{malformed:?}");
        let out = ctl::spawn(
            &endpoints,
            &["invest", "trace", &uuid::Uuid::new_v4().to_string()],
        )
        .await
        .finish(Duration::from_secs(60))
        .await;
        assert!(!out.success && out.stderr.contains("not found"), "{out:?}");
    })
    .await;
}

async fn trace_json(endpoints: &[String], request_id: &str) -> Value {
    ctl::run_ok(endpoints, &["--json", "invest", "trace", request_id])
        .await
        .json()
}

async fn trace_text(endpoints: &[String], request_id: &str) -> String {
    ctl::run_ok(endpoints, &["invest", "trace", request_id])
        .await
        .stdout
}

/// Marks come in log order, and log time never goes back.
fn assert_in_log_order(history: &[Value]) {
    for pair in history.windows(2) {
        let at = |m: &Value, key: &str| m[key].as_u64().expect("a number");
        assert!(
            at(&pair[0], "log_index") < at(&pair[1], "log_index")
                && at(&pair[0], "at_ms") <= at(&pair[1], "at_ms"),
            "{pair:?}"
        );
    }
}
