//! W3C trace context (issue #14 §4): a `traceparent` sent with a `Submit` to a follower is
//! carried through forwarding to the leader, into the log entry that decides the request, to
//! the executor that runs its saga (on another node), and on to every partner call: the
//! partners see the client's trace id on the charge, the documents and the e-mail, each call a
//! span of its own. An invalid `traceparent` is ignored, never an error.

use std::collections::BTreeMap;
use std::time::Duration;

use ledger_tests::metrics::scrape;
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, pb, Rng};

const DEAL: &str = "traced";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_trace_reaches_every_partner_call_of_its_saga() {
    bounded(Duration::from_secs(120), async {
        let saga = SagaCluster::start(3, saga::quiet_faults(0x7ace)).await;
        let clients = saga.clients().await;
        saga::create_deal(&clients[0], DEAL, "100000000.00", 100).await;
        let follower = saga.cluster.follower().await;
        let mut admission = saga.cluster.client(follower).await.admission;

        let mut rng = Rng::new(0x7ace_0001);
        let mut traces = BTreeMap::new();
        let requests = saga::requests(&mut rng, &[DEAL], 4, "traced", (1_000, 50_000));
        for (n, submit) in requests.into_iter().enumerate() {
            let trace_id = format!(
                "{:032x}",
                0x4bf9_2f35_77b3_4da6_u128 << 64 | (n as u128 + 1)
            );
            let traceparent = match n {
                // Not a valid traceparent: ignored, the request decided all the same.
                3 => "00-not-a-trace-01".to_owned(),
                _ => format!("00-{trace_id}-00f067aa0ba902b7-01"),
            };
            let mut request = tonic::Request::new(submit.clone());
            request
                .metadata_mut()
                .insert("traceparent", traceparent.parse().unwrap());
            let reply = admission
                .submit(request)
                .await
                .expect("decided")
                .into_inner();
            assert_eq!(
                reply.investment.unwrap().status,
                pb::InvestmentStatus::Pending as i32
            );
            if n < 3 {
                traces.insert(trace_id, submit.request_id);
            }
        }
        saga::wait_sagas_done(&clients[0], &[DEAL], Duration::from_secs(60)).await;

        let text = scrape(&format!("{}/v1/traces", saga.partners.base_url()))
            .await
            .unwrap();
        let seen: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        for (trace_id, request_id) in &traces {
            let mut paths = Vec::new();
            let mut parents = Vec::new();
            for traced in &seen {
                let value = traced["traceparent"].as_str().unwrap();
                let parts: Vec<&str> = value.split('-').collect();
                if parts.get(1) == Some(&trace_id.as_str()) {
                    assert_eq!((parts[0], parts[3]), ("00", "01"), "{value}");
                    assert_ne!(parts[2], "00f067aa0ba902b7", "a call is a span of its own");
                    paths.push(traced["path"].as_str().unwrap().to_owned());
                    parents.push(parts[2].to_owned());
                }
            }
            for path in ["/v1/payments", "/v1/documents", "/v1/emails"] {
                assert!(
                    paths.iter().any(|p| p == path),
                    "request {request_id} (trace {trace_id}): no {path} call carried the trace; \
                     seen: {paths:?}"
                );
            }
            parents.sort();
            parents.dedup();
            assert_eq!(
                parents.len(),
                paths.len(),
                "each call its own span: {parents:?}"
            );
        }
        assert!(
            seen.iter()
                .all(|t| !t["traceparent"].as_str().unwrap().contains("not-a-trace")),
            "an invalid traceparent went on"
        );
    })
    .await;
}
