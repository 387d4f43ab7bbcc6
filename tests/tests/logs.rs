//! Log output (issue #14 §4): with `--log-format json` (here `LEDGER_LOG_FORMAT=json`) every
//! line a node prints is one JSON object carrying its `node_id`, and the lines of a saga step
//! carry the `request_id`, `saga_step`, `epoch` and `log_index` they are about; text logs
//! written to a file carry no ANSI colour codes, even with `NO_COLOR` unset.

use std::time::Duration;

use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, ClusterOptions, Rng};

const DEAL: &str = "logs-a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_the_node_and_the_request_and_text_has_no_colours() {
    bounded(Duration::from_secs(120), async {
        let mut saga =
            SagaCluster::start_with(ClusterOptions::new(3), saga::quiet_faults(0x10)).await;
        let ids = saga.cluster.ids();
        // Nodes 1 and 2 in JSON with the executor's debug lines; node 3 in text, colours allowed.
        for &id in &ids {
            match id {
                3 => {
                    saga.cluster.set_env(id, "LEDGER_LOG_FORMAT", "text");
                    saga.cluster.set_env(id, "NO_COLOR", "");
                }
                _ => {
                    saga.cluster.set_env(id, "LEDGER_LOG_FORMAT", "json");
                    saga.cluster.set_env(
                        id,
                        "RUST_LOG",
                        "info,ledger_node::saga=debug,openraft=warn,sled=warn,h2=warn",
                    );
                }
            }
            saga.cluster.stop(id).await;
            saga.cluster.restart(id).await;
        }
        saga.wait_executors_live(&ids).await;
        let clients = saga.clients().await;
        saga::create_deal(&clients[0], DEAL, "100000000.00", 100).await;
        let mut rng = Rng::new(0x10_0001);
        let requests = saga::requests(&mut rng, &[DEAL], 30, "logs", (1_000, 50_000));
        saga::submit_all(&clients, requests).await;
        saga::wait_sagas_done(&clients[0], &[DEAL], Duration::from_secs(60)).await;

        let mut step_lines = 0;
        for id in [1, 2] {
            let (stdout, _) = saga.cluster.latest_output(id);
            let mut lines = 0;
            for line in stdout.lines().filter(|l| !l.starts_with("ledger-node ")) {
                let value: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("node {id}: not JSON ({e}): {line}"));
                assert_eq!(value["node_id"], id, "node {id}: {line}");
                assert!(value["timestamp"].is_string() && value["level"].is_string());
                if value.get("saga_step").is_some() {
                    for field in ["request_id", "epoch"] {
                        assert!(value.get(field).is_some(), "node {id}: no {field}: {line}");
                    }
                    if value.get("log_index").is_some() {
                        step_lines += 1;
                    }
                }
                lines += 1;
            }
            assert!(lines >= 3, "node {id} printed {lines} lines");
        }
        assert!(step_lines > 0, "no line of a recorded saga step");

        let (stdout, stderr) = saga.cluster.latest_output(3);
        assert!(
            stdout.lines().count() >= 3,
            "node 3 printed little:\n{stdout}"
        );
        assert!(
            !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
            "colour codes in a log file:\n{stdout}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(stdout.lines().last().unwrap()).is_err());
    })
    .await;
}
