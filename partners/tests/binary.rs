//! The `ledger-partners` binary: address line on stdout, env fallbacks,
//! graceful stop on SIGTERM, bad flags refused.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod common;

const WAIT: Duration = Duration::from_secs(10);

fn partners() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledger-partners"));
    command
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Reads the `ledger-partners listening on ADDR` line.
async fn read_addr(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("address line in time")
        .expect("read stdout")
        .expect("a line before EOF");
    line.strip_prefix("ledger-partners listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned()
}

#[tokio::test]
async fn binary_serves_with_env_fallbacks_and_stops_on_sigterm() {
    let mut child = partners()
        .args(["--listen", "127.0.0.1:0"])
        .args(["--payment-latency-ms", "0", "--payment-jitter-ms", "0"])
        .env("LEDGER_PARTNERS_DECLINE_RATE", "1")
        .env("LEDGER_PARTNERS_EMAIL_OUTAGE", "1")
        .env("LEDGER_PARTNERS_DOCUMENTS_OUTAGE", "off")
        .spawn()
        .expect("spawn ledger-partners");
    let addr = read_addr(&mut child).await;
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap();
    let resp = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let faults: Value = client
        .get(format!("http://{addr}/v1/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["decline_rate"], 1.0);
    assert_eq!(faults["email"]["outage"], true);
    assert_eq!(faults["documents"]["outage"], false);
    assert_eq!(faults["documents"]["latency"]["mean_ms"], 100);
    let reply: Value = client
        .post(format!("http://{addr}/v1/payments"))
        .json(&json!({"idempotency_key": "b", "user_id": "u", "amount": "1.00", "currency": "EUR"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["status"], "declined");

    common::stop_with_sigterm(child, WAIT).await;
}

#[tokio::test]
async fn binary_refuses_an_invalid_fault_config() {
    let child = partners()
        .args(["--listen", "127.0.0.1:0", "--payment-error-rate", "2"])
        .spawn()
        .expect("spawn ledger-partners");
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("exits promptly")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("payment.error_rate"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing listened");
}
