//! The operations files in `ops/` (issue #14 §2) pass Prometheus's own checks: the alert rules
//! (`promtool check rules`, and their unit tests `alerts_test.yml`), the scrape configuration,
//! and every query of the Grafana dashboard (checked as recording rules). That the metrics they
//! name exist is checked against running nodes in `tests/metrics.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ledger_tests::binary::workspace_root;

/// `promtool`, from Debian's `prometheus` package. When it is missing: panics with `CI=true`
/// (`.ci/run` installs it), else says why and returns `None` so the test can skip.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|path| path.is_file())
    });
    ledger_tests::required_tool(found, "promtool", "apt-get install prometheus")
}

fn run(promtool: &Path, args: &[&str], dir: &Path) {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn alert_rules_and_their_tests_pass_promtool() {
    let Some(promtool) = promtool() else { return };
    let dir = workspace_root().join("ops/prometheus");
    run(&promtool, &["check", "rules", "alerts.yml"], &dir);
    run(&promtool, &["test", "rules", "alerts_test.yml"], &dir);
    run(&promtool, &["check", "config", "prometheus.yml"], &dir);
}

#[test]
fn every_dashboard_query_parses() {
    let Some(promtool) = promtool() else { return };
    let path = workspace_root().join("ops/grafana/admission-ledger.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().expect("an expr").to_owned());
        }
    }
    assert!(queries.len() >= 20, "only {} queries", queries.len());
    // Each query as a recording rule, which promtool parses.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, query) in queries.iter().enumerate() {
        let quoted = serde_json::to_string(query).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard_query_{n}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard.yml"), rules).unwrap();
    run(&promtool, &["check", "rules", "dashboard.yml"], dir.path());
}
