//! `ledgerctl bench` against a real cluster: its report matches the ledger's own count of
//! decisions, and a leader killed mid-run costs retries (same request ids), not errors.
//!
//! Both runs are bounded by their count: `--duration-s` (the bench's other bound) is set far
//! beyond the test's own time bound, so that no assertion depends on how many requests fit in
//! a time window on two loaded cores; a run that is too slow fails the test's bound instead,
//! saying so.

use std::time::Duration;

use ledger_client::{Client, ClientConfig};
use ledger_tests::{bounded, ctl, wait_until, ClusterOptions, TestCluster};
use serde_json::Value;

/// `--duration-s` for every run: never what ends it (see the module documentation).
const NEVER_S: &str = "3600";

/// Decisions the ledger holds for the bench's deals, and how many of them are admitted.
async fn ledger_counts(client: &Client, report: &Value) -> (u64, u64) {
    let (mut decided, mut admitted) = (0, 0);
    for (_, list, investors) in ledger_deals(client, report).await {
        decided += list;
        admitted += investors;
    }
    (decided, admitted)
}

/// For each of the bench's deals, in order: its id, decisions and active investors.
async fn ledger_deals(client: &Client, report: &Value) -> Vec<(String, u64, u64)> {
    let mut deals = Vec::new();
    for deal in report["deals"].as_array().expect("deals in the report") {
        let deal = deal.as_str().expect("deal id");
        let list = client
            .deal_investments(deal)
            .await
            .unwrap_or_else(|e| panic!("listing {deal}: {e}"));
        let investors = client.deal(deal).await.expect("deal").investor_count as u64;
        deals.push((deal.to_owned(), list.len() as u64, investors));
    }
    deals
}

async fn connect(cluster: &TestCluster) -> Client {
    let seeds: Vec<String> = cluster
        .running()
        .iter()
        .map(|&id| cluster.addr(id))
        .collect();
    Client::connect(ClientConfig::new(seeds))
        .await
        .expect("connect a client")
}

fn report_of(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("the --out file")).expect("JSON report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_report_matches_the_ledgers_count() {
    ctl::prepare().await;
    bounded(Duration::from_secs(180), async {
        let cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let endpoints: Vec<String> = [1, 2, 3].iter().map(|&id| cluster.addr(id)).collect();
        let out = tempfile::NamedTempFile::new().expect("report file");
        let out_path = out.path().to_str().expect("utf-8 path").to_owned();
        let bench = ctl::spawn(
            &endpoints,
            &[
                "bench",
                "--quiet",
                "--clients",
                "16",
                "--count",
                "3000",
                "--duration-s",
                NEVER_S,
                "--deals",
                "5",
                "--max-investors",
                "200",
                "--out",
                &out_path,
            ],
        )
        .await;
        // Bounded by the test's own bound, not by a guess at the machine's speed.
        let output = bench.finish(Duration::from_secs(170)).await;
        assert!(output.success, "bench failed: {output:?}");
        let report = report_of(out.path());
        assert_eq!(report["requests"], 3000, "{report}");
        assert_eq!(report["decisions"], 3000, "{report}");
        assert_eq!(report["errors"], serde_json::json!({}), "{report}");
        // 5 deals of 200 seats: 1,000 admitted, the rest refused for want of seats.
        assert_eq!(report["outcomes"]["ADMITTED"], 1000, "{report}");
        assert_eq!(
            report["outcomes"]["REJECTED INVESTOR_LIMIT_REACHED"], 2000,
            "{report}"
        );
        let client = connect(&cluster).await;
        let (decided, admitted) = ledger_counts(&client, &report).await;
        assert_eq!(
            decided, 3000,
            "the ledger holds another count than the report"
        );
        assert_eq!(admitted, 1000);
    })
    .await;
}

/// `--shape hot --batch N`: batches of `SubmitBatch`, every client on the current deal until
/// it is full, then on the next: deals fill one after another, most requests are admitted, and
/// the report (and its `--table` row) matches the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_batched_bench_fills_deals_one_after_another() {
    ctl::prepare().await;
    bounded(Duration::from_secs(180), async {
        let cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let endpoints = cluster.endpoints();
        let dir = tempfile::tempdir().expect("a folder for the reports");
        let (out, table) = (dir.path().join("hot.json"), dir.path().join("table.md"));
        let bench = ctl::spawn(
            &endpoints,
            &[
                "bench",
                "--quiet",
                "--shape",
                "hot",
                "--batch",
                "10",
                "--clients",
                "4",
                "--count",
                "2000",
                "--duration-s",
                NEVER_S,
                "--max-investors",
                "100",
                "--out",
                out.to_str().expect("utf-8 path"),
                "--table",
                table.to_str().expect("utf-8 path"),
            ],
        )
        .await;
        let output = bench.finish(Duration::from_secs(170)).await;
        assert!(output.success, "bench failed: {output:?}");
        let report = report_of(&out);
        assert_eq!(
            (&report["shape"], &report["batch"]),
            (&Value::from("hot"), &Value::from(10)),
            "{report}"
        );
        assert_eq!(report["decisions"], 2000, "{report}");
        assert_eq!(report["errors"], serde_json::json!({}), "{report}");
        let admitted = report["outcomes"]["ADMITTED"].as_u64().unwrap_or(0);
        // Most requests get a seat. A client moves on from a deal at its first rejection
        // there, so each deal of 100 turns away at most one batch per client (40 requests),
        // whatever the timing: the bound is 100 admitted per 140 (seen: 520 rejected over 20
        // deals, ~26 each, on a loaded machine; an earlier bound of 1,500 was not safe).
        assert!(admitted >= 2000 * 100 / 140, "{report}");

        let client = connect(&cluster).await;
        let deals = ledger_deals(&client, &report).await;
        assert_eq!(deals.iter().map(|d| d.1).sum::<u64>(), 2000);
        assert_eq!(deals.iter().map(|d| d.2).sum::<u64>(), admitted);
        // Filled in order: every deal before the last one used is full, none after it is used.
        let used = deals.iter().rposition(|d| d.1 > 0).expect("some deal used");
        for (deal, decided, investors) in &deals[..used] {
            assert_eq!(*investors, 100, "{deal} left seats ({decided} decisions)");
        }
        assert!(deals[used + 1..].iter().all(|d| d.1 == 0), "{deals:?}");

        let table = std::fs::read_to_string(&table).expect("the --table file");
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 3, "a header, its rule and one row:\n{table}");
        assert!(
            rows[2].starts_with("| hot | SubmitBatch × 10 | flat out | 4 | 2000 |"),
            "{table}"
        );
    })
    .await;
}

/// Back-pressure (issue #15 §3): an open-loop bench over a leader whose writes may wait only
/// 1 ms (`--proposal-delay-max-ms 1`; the batcher's linger alone is 3 ms, so a burst is
/// refused), one attempt per call: the refusals are `RESOURCE_EXHAUSTED`, and none of them
/// wrote anything: the ledger holds exactly the decisions the report counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_overload_is_refused_and_nothing_refused_is_written() {
    ctl::prepare().await;
    bounded(Duration::from_secs(180), async {
        let options = ClusterOptions::new(3).flag("--proposal-delay-max-ms", 1);
        let cluster = TestCluster::start(options).await;
        let endpoints = cluster.endpoints();
        let out = tempfile::NamedTempFile::new().expect("report file");
        let bench = ctl::spawn(
            &endpoints,
            &[
                "bench",
                "--quiet",
                "--open-loop",
                "--rate",
                "5000",
                "--attempts",
                "1",
                "--clients",
                "16",
                "--count",
                "5000",
                "--duration-s",
                NEVER_S,
                "--deals",
                "5",
                "--max-investors",
                "200",
                "--out",
                out.path().to_str().expect("utf-8 path"),
            ],
        )
        .await;
        let output = bench.finish(Duration::from_secs(170)).await;
        assert!(output.success, "bench failed: {output:?}");
        let report = report_of(out.path());
        assert_eq!(report["open_loop"], true, "{report}");
        let decisions = report["decisions"].as_u64().expect("decisions");
        let refused = report["errors"]["RESOURCE_EXHAUSTED"].as_u64().unwrap_or(0);
        // CI, 2026-12-07: 8 of 5,000 ended unknown with one attempt each, cause unknown (the
        // report kept no message then; `error_samples` now keeps some). A one-attempt
        // submission is unknown after any failure other than a refusal for lack of room,
        // e.g. a leader change on a loaded CI machine. They are accounted for, not
        // forbidden: what this test pins is that a refusal writes nothing.
        let unknown = report["errors"]["OUTCOME_UNKNOWN"].as_u64().unwrap_or(0);
        if unknown > 0 {
            eprintln!("unknown outcomes: {}", report["error_samples"]);
        }
        assert!(
            refused > 0,
            "a 1 ms bound refuses part of a burst: {report}"
        );
        assert!(decisions > 0, "and decides the rest: {report}");
        assert_eq!(
            decisions + refused + unknown,
            5000,
            "decided, refused or unknown, nothing else: {report}"
        );

        let client = connect(&cluster).await;
        let (decided, _) = ledger_counts(&client, &report).await;
        assert!(
            (decisions..=decisions + unknown).contains(&decided),
            "the ledger holds {decided} decisions: a refused request was written: {report}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_during_bench_costs_retries_not_errors() {
    ctl::prepare().await;
    bounded(Duration::from_secs(240), async {
        let mut cluster = TestCluster::start(ClusterOptions::new(3)).await;
        let endpoints: Vec<String> = [1, 2, 3].iter().map(|&id| cluster.addr(id)).collect();
        let out = tempfile::NamedTempFile::new().expect("report file");
        let out_path = out.path().to_str().expect("utf-8 path").to_owned();
        const COUNT: u64 = 8000;
        let count = COUNT.to_string();
        // Seats for everyone, so that the ledger's counters show the progress of the run.
        let bench = ctl::spawn(
            &endpoints,
            &[
                "bench",
                "--quiet",
                "--clients",
                "16",
                "--count",
                &count,
                "--duration-s",
                NEVER_S,
                "--deals",
                "4",
                "--max-investors",
                "100000",
                "--deal-prefix",
                "killbench",
                "--out",
                &out_path,
            ],
        )
        .await;
        let client = connect(&cluster).await;
        // Kill the leader once a quarter of the run is decided, well before its end.
        wait_until(
            Duration::from_secs(120),
            "a quarter of the bench decided",
            || async {
                let mut admitted = 0u64;
                for d in 0..4 {
                    if let Ok(deal) = client.deal(&format!("killbench-{d}")).await {
                        admitted += deal.investor_count as u64;
                    }
                }
                if admitted >= COUNT / 4 {
                    Ok(admitted)
                } else {
                    Err(format!("{admitted} decided"))
                }
            },
        )
        .await;
        let leader = cluster.leader().await;
        cluster.kill(leader);
        let new_leader = cluster
            .wait_new_leader(leader, Duration::from_secs(20))
            .await;
        assert_ne!(new_leader, leader);

        let output = bench.finish(Duration::from_secs(200)).await;
        assert!(output.success, "bench failed: {output:?}");
        let report = report_of(out.path());
        // Every request decided, none reported as an error: the kill cost retries only.
        assert_eq!(report["requests"], COUNT, "{report}");
        assert_eq!(report["decisions"], COUNT, "{report}");
        assert_eq!(report["errors"], serde_json::json!({}), "{report}");
        assert!(
            report["retried_requests"].as_u64().unwrap_or(0) > 0,
            "no request needed a retry, so the kill did not land during the run: {report}"
        );
        assert!(
            report["latency_ms"]["max"].as_f64().unwrap_or(f64::MAX) < 15_000.0,
            "a request took longer than the client deadline: {report}"
        );
        // And the ledger decided each request once: its count is the report's.
        let client = connect(&cluster).await;
        let (decided, admitted) = ledger_counts(&client, &report).await;
        assert_eq!(decided, COUNT);
        assert_eq!(admitted, COUNT);
        println!(
            "leader {leader} killed mid-run; {} requests retried, at most {} attempts; latency {}",
            report["retried_requests"], report["max_attempts"], report["latency_ms"]
        );
    })
    .await;
}
