//! `ledgerctl saga-bench --partners`, the measurement behind issue #4's target, against real
//! nodes and partners with jittered latencies: every investment is counted CONFIRMED, and the
//! saga overhead it reports is each investment's time to CONFIRMED minus its own payment and
//! documents latency from the partners' audit, not a fixed guess.

use std::time::Duration;

use ledger_partners::Latency;
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, ctl};

const RATE: u64 = 50;
const SECONDS: u64 = 3;
/// Payment 40 ± 20 ms and documents 30 ± 10 ms: each investment's partner time is 40–100 ms.
const PARTNER_MS_MIN: f64 = 40.0;
const PARTNER_MS_MAX: f64 = 100.0;
/// HDR histograms keep three significant digits.
const ROUNDING_MS: f64 = 1.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_bench_subtracts_each_investments_own_partner_latency() {
    ctl::prepare().await;
    bounded(Duration::from_secs(120), async {
        let mut faults = saga::quiet_faults(0x5a6a);
        faults.payment.latency = Latency::new(40, 20);
        faults.documents.latency = Latency::new(30, 10);
        let saga = SagaCluster::start(3, faults).await;
        let endpoints: Vec<String> = [1, 2, 3].iter().map(|&id| saga.cluster.addr(id)).collect();
        let (rate, seconds) = (RATE.to_string(), SECONDS.to_string());
        let output = ctl::run_ok(
            &endpoints,
            &[
                "--json",
                "saga-bench",
                "--rate",
                &rate,
                "--duration-s",
                &seconds,
                "--deals",
                "2",
                "--partners",
                saga.partners.base_url().as_str(),
            ],
        )
        .await;
        let report = output.json();
        let total = RATE * SECONDS;
        assert_eq!(
            report["statuses"],
            serde_json::json!({"CONFIRMED": total}),
            "{report}"
        );
        assert_eq!(report["saga_overhead_ms"]["count"], total, "{report}");
        assert_eq!(report["confirmed_without_partner_latency"], 0, "{report}");
        // overhead_i = to_final_i − partner_i with partner_i in [40, 100] ms for every i, so each
        // quantile of the overhead lies that far below the same quantile of the time to final.
        for q in ["p50", "p90", "p99", "max"] {
            let to_final = report["reply_to_final_ms"][q].as_f64().expect("a number");
            let overhead = report["saga_overhead_ms"][q].as_f64().expect("a number");
            let subtracted = to_final - overhead;
            assert!(
                (PARTNER_MS_MIN - ROUNDING_MS..=PARTNER_MS_MAX + ROUNDING_MS).contains(&subtracted),
                "{q}: {to_final} ms to final, {overhead} ms overhead: {report}"
            );
        }
    })
    .await;
}
