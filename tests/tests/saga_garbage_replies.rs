//! Garbage replies (issue #4, scenario 6): 200 investments while every partner service mangles
//! about 27% of its replies after applying the effect (10% each: malformed JSON, an unexpected
//! status code, a body cut short with the connection aborted), and 10% of new charges are
//! declined. The executor treats each as an unknown outcome and retries with the same key:
//! nothing is lost (every saga ends, I8), nothing is duplicated (one effect per key), money is
//! right (I7), and every node process is still alive at the end.
//!
//! The same runs with the nodes calling the partners over HTTP/1.1 (a cut body aborts the
//! connection) and over cleartext HTTP/2 (`--partners-http2 true`: it resets one stream of the
//! shared connection).
//!
//! Cancellations may only be declines, or (rarely: 5 garbled documents replies in a row,
//! ~0.15% per saga) DOCUMENTS_FAILED with the charge refunded; an e-mail may, more rarely still,
//! exhaust its 6 attempts (`notify_failed`).

use std::time::{Duration, Instant};

use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, pb, ClusterOptions, Rng};

const INVESTMENTS: usize = 200;
const DEAL: &str = "garbage";
/// Rate of each kind of garbage, per service.
const EACH: f64 = 0.1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_replies_are_unknown_outcomes_retried_with_the_same_key() {
    garbage_replies_over("HTTP/1.1", ClusterOptions::new(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_replies_over_http2_are_unknown_outcomes_retried_with_the_same_key() {
    let options = ClusterOptions::new(3).flag("--partners-http2", "true");
    garbage_replies_over("HTTP/2", options).await;
}

async fn garbage_replies_over(http: &str, options: ClusterOptions) {
    bounded(Duration::from_secs(150), async {
        let started = Instant::now();
        let mut faults = saga::quiet_faults(0x6a7b);
        for service in [
            &mut faults.payment,
            &mut faults.documents,
            &mut faults.email,
        ] {
            service.malformed_json_rate = EACH;
            service.unexpected_status_rate = EACH;
            service.truncated_body_rate = EACH;
        }
        faults.decline_rate = 0.1;
        let mut saga = SagaCluster::start_with(options, faults).await;
        let clients = saga.clients().await;
        saga::create_deal(&clients[0], DEAL, "100000000.00", 300).await;
        let mut rng = Rng::new(0x6a7b_0001);
        let requests = saga::requests(&mut rng, &[DEAL], INVESTMENTS, "garbage", (1_000, 500_000));
        let acked = saga::submit_all(&clients, requests).await;
        assert_eq!(saga::admitted(&acked).len(), INVESTMENTS);

        let investments =
            saga::wait_sagas_done(&clients[1], &[DEAL], Duration::from_secs(90)).await;
        let report = saga::check_settled(&clients[2], &[DEAL], &investments, &saga.audit()).await;
        let declined = report.cancelled_with(pb::CancelCause::PaymentDeclined);
        let documents_failed = report.cancelled_with(pb::CancelCause::DocumentsFailed);
        assert_eq!(
            report.cancelled_total(),
            declined + documents_failed,
            "{report:?}"
        );
        assert_eq!(report.confirmed + report.cancelled_total(), INVESTMENTS);
        assert_eq!(
            report.charges, INVESTMENTS,
            "one charge per key: {report:?}"
        );
        assert_eq!(declined, report.declined_charges, "{report:?}");
        assert_eq!(report.refunded, documents_failed, "{report:?}");
        assert!(
            report.confirmed >= INVESTMENTS * 3 / 4,
            "garbage is retried, not failed: {report:?}"
        );

        // Every kind of garbage was met (and retried, since all sagas ended).
        for needle in ["malformed reply", "unexpected status", "outcome unknown"] {
            assert!(
                saga.cluster
                    .running()
                    .into_iter()
                    .any(|id| saga.cluster.latest_log_contains(id, needle)),
                "no node logged {needle:?}"
            );
        }
        // ... over the HTTP version asked for.
        let spoken = format!("http={http}");
        for id in saga.cluster.running() {
            assert!(
                saga.cluster.latest_log_contains(id, &spoken),
                "node {id} did not log {spoken}"
            );
        }
        saga.assert_nodes_alive();
        eprintln!(
            "garbage replies over {http}: {INVESTMENTS} investments; {report:?}; {:?}",
            started.elapsed()
        );
    })
    .await;
}
