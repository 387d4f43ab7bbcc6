//! `/metrics` under load (issue #14 §1): a 3-node cluster with executors and partners takes
//! admissions and rejections; every family is exported by every node, and the counters and
//! histograms move: calls by method and code, decisions by outcome and reason, partner calls,
//! saga steps, appends and fsyncs, leader changes.

use std::time::Duration;

use std::collections::BTreeSet;

use ledger_tests::binary::workspace_root;
use ledger_tests::metrics::{families, metric_names_in, sample_names, scrape, sum};
use ledger_tests::saga::{self, SagaCluster};
use ledger_tests::{bounded, ClusterOptions, Rng};

/// Every family a node exports (OpenMetrics names: counters without `_total`).
const FAMILIES: &[&str] = &[
    "ledger_rpc_requests",
    "ledger_rpc_duration_seconds",
    "ledger_decisions",
    "ledger_admissions",
    "ledger_deal_waitlist_length",
    "ledger_deal_investors",
    "ledger_sagas_open",
    "ledger_sagas_stuck",
    "ledger_saga_step_duration_seconds",
    "ledger_saga_step_overhead_seconds",
    "ledger_partner_calls",
    "ledger_partner_call_duration_seconds",
    "ledger_partner_retries",
    "ledger_saga_compensations",
    "ledger_raft_term",
    "ledger_raft_leader_changes",
    "ledger_raft_last_log_index",
    "ledger_raft_committed_index",
    "ledger_proposal_queue_delay_seconds",
    "ledger_raft_applied_index",
    "ledger_raft_append_duration_seconds",
    "ledger_raft_fsync_duration_seconds",
    "ledger_raft_snapshot_build_duration_seconds",
    "ledger_raft_snapshot_install_duration_seconds",
    "ledger_raft_snapshot_size_bytes",
    "ledger_raft_log_disk_bytes",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_cpu_seconds",
    "ledger_runtime_stalls",
];

const DEALS: [&str; 2] = ["metrics-a", "metrics-b"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_exported_and_moves_under_load() {
    bounded(Duration::from_secs(120), async {
        let saga = SagaCluster::start_with(
            ClusterOptions::new(3)
                .metrics()
                .flag("--snapshot-every-entries", 20),
            saga::quiet_faults(0x14),
        )
        .await;
        let ids = saga.cluster.running();
        let leader = saga.cluster.leader().await;
        let url = |id| saga.cluster.metrics_url(id).expect("metrics on");
        let before = scrape(&url(leader)).await.unwrap();
        let submits_before = sum(
            &before,
            "ledger_rpc_requests_total",
            &[("method", "admission.v1.Admission/Submit")],
        )
        .unwrap_or(0.0);

        let clients = saga.clients().await;
        for deal in DEALS {
            saga::create_deal(&clients[0], deal, "100000000.00", 20).await;
        }
        // 60 requests for 40 seats: 40 admitted, 20 INVESTOR_LIMIT_REACHED.
        let mut rng = Rng::new(0x14_0001);
        let requests = saga::requests(&mut rng, &DEALS, 60, "metrics", (1_000, 50_000));
        let acked = saga::submit_all(&clients, requests).await;
        assert_eq!(saga::admitted(&acked).len(), 40);
        saga::wait_sagas_done(&clients[0], &DEALS, Duration::from_secs(60)).await;

        for &id in &ids {
            let text = scrape(&url(id)).await.unwrap();
            let exported = families(&text);
            // Only the leader knows how far behind each member is.
            let leader_only = (id == leader).then_some("ledger_raft_replication_lag_entries");
            let missing: Vec<_> = FAMILIES
                .iter()
                .chain(leader_only.as_ref())
                .filter(|family| !exported.iter().any(|e| e == *family))
                .collect();
            assert!(missing.is_empty(), "node {id} lacks {missing:?}:\n{text}");
            assert!(text.ends_with("# EOF\n"), "node {id}: not OpenMetrics");
            let at_least = |name: &str, labels: &[(&str, &str)], floor: f64| {
                let value = sum(&text, name, labels).unwrap_or(0.0);
                assert!(
                    value >= floor,
                    "node {id}: {name}{labels:?} = {value}, expected at least {floor}"
                );
            };
            // Every replica applies every decision.
            at_least("ledger_decisions_total", &[("outcome", "PENDING")], 40.0);
            at_least(
                "ledger_decisions_total",
                &[("reason", "INVESTOR_LIMIT_REACHED")],
                20.0,
            );
            at_least("ledger_admissions_total", &[("via", "submit")], 40.0);
            at_least("ledger_raft_fsync_duration_seconds_count", &[], 1.0);
            at_least("ledger_raft_append_duration_seconds_count", &[], 1.0);
            at_least("ledger_raft_committed_index", &[], 1.0);
            at_least("process_resident_memory_bytes", &[], 1e6);
            at_least("ledger_raft_log_disk_bytes", &[], 1.0);
        }

        let after = scrape(&url(leader)).await.unwrap();
        let submits = sum(
            &after,
            "ledger_rpc_requests_total",
            &[("method", "admission.v1.Admission/Submit"), ("code", "OK")],
        )
        .unwrap_or(0.0);
        // Submits reach any node and are forwarded: the leader answers its share and every
        // forwarded one. At least its own share moved.
        assert!(
            submits > submits_before,
            "Submit calls on the leader: {submits}"
        );
        let mut texts = Vec::new();
        for &id in &ids {
            texts.push(scrape(&url(id)).await.unwrap());
        }
        let total = |name: &str, labels: &[(&str, &str)]| -> f64 {
            texts
                .iter()
                .map(|text| sum(text, name, labels).unwrap_or(0.0))
                .sum()
        };
        // Each admission's saga charges, generates documents and e-mails once, somewhere.
        let charges = total(
            "ledger_partner_calls_total",
            &[("operation", "charge"), ("result", "ok")],
        );
        assert!(charges >= 40.0, "charges: {charges}");
        let steps = total(
            "ledger_saga_step_duration_seconds_count",
            &[("step", "payment")],
        );
        assert!(steps >= 40.0, "payment steps timed: {steps}");
        let overhead = total("ledger_saga_step_overhead_seconds_count", &[]);
        assert!(
            overhead >= 120.0,
            "steps with overhead measured: {overhead}"
        );
        let rpc = total(
            "ledger_rpc_duration_seconds_count",
            &[("method", "admission.v1.Admission/Submit")],
        );
        assert!(rpc >= 60.0, "Submit latencies observed: {rpc}");
        let changes = total("ledger_raft_leader_changes_total", &[]);
        assert!(changes >= 3.0, "every node saw the first leader: {changes}");
        let built = total("ledger_raft_snapshot_build_duration_seconds_count", &[]);
        assert!(built >= 1.0, "a snapshot every 20 entries: {built}");

        // Every metric the dashboard and the alert rules name is exported by a running node.
        let exported: BTreeSet<String> = texts.iter().flat_map(|t| sample_names(t)).collect();
        for file in [
            "ops/grafana/admission-ledger.json",
            "ops/prometheus/alerts.yml",
        ] {
            let text = std::fs::read_to_string(workspace_root().join(file)).unwrap();
            let named = metric_names_in(&text);
            assert!(named.len() >= 5, "{file} names only {named:?}");
            let unknown: Vec<_> = named.difference(&exported).collect();
            assert!(
                unknown.is_empty(),
                "{file} names metrics no node exports: {unknown:?}"
            );
        }
    })
    .await;
}
