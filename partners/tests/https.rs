//! The partners over HTTPS: a client trusting the generated CA alone is
//! served; clients that do not trust it fail at the handshake, which the
//! server counts and survives; the binary's `--tls-generate`.

use std::error::Error as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ledger_partners::{AuditEntry, FaultConfig, SpawnedPartners};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Upper bound for any wait on a condition in these tests.
mod common;

const WAIT: Duration = Duration::from_secs(10);

/// A client that trusts the CA in `ca` and nothing else.
fn client_trusting(ca: &Path) -> Client {
    let pem = std::fs::read(ca).expect("read the CA");
    Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
        .build()
        .expect("client")
}

/// The error and all its sources, one line.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn charge(key: &str) -> Value {
    json!({"idempotency_key": key, "user_id": "u1", "amount": "10.00", "currency": "EUR"})
}

#[tokio::test]
async fn a_client_trusting_the_generated_ca_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = SpawnedPartners::start_tls(FaultConfig::quiet(), dir.path())
        .await
        .expect("start partners over https");
    let base = server.base_url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let ca = server.ca_path().expect("a CA when serving https");
    assert_eq!(ca, dir.path().join("partners-ca.pem"));
    for file in ["partners.pem", "partners-key.pem"] {
        assert!(dir.path().join(file).is_file(), "{file} written");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = std::fs::metadata(dir.path().join("partners-key.pem")).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
    }

    let client = client_trusting(ca);
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let reply: Value = client
        .post(format!("{base}/v1/payments"))
        .json(&charge("tls-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["status"], "succeeded", "{reply}");
    let audit = server.partners().audit();
    assert!(
        matches!(audit.events.as_slice(), [e] if matches!(&e.entry, AuditEntry::Charge { key, .. } if key == "tls-1")),
        "{audit:?}"
    );
    assert_eq!(server.partners().tls_failures().count, 0);
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("graceful shutdown in time")
        .unwrap();
}

#[tokio::test]
async fn clients_that_do_not_trust_the_ca_fail_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = SpawnedPartners::start_tls(FaultConfig::quiet(), &dir.path().join("served"))
        .await
        .expect("start partners over https");
    let base = server.base_url();
    let partners = server.partners();

    // A connection that never starts its handshake must not hold up the others.
    let stalled = tokio::net::TcpStream::connect(server.addr()).await.unwrap();

    // The public web roots only (reqwest's default).
    let public = Client::builder().no_proxy().timeout(WAIT).build().unwrap();
    let err = public
        .post(format!("{base}/v1/payments"))
        .json(&charge("untrusted-1"))
        .send()
        .await
        .expect_err("the generated CA is not a public root");
    assert!(chain(&err).contains("certificate"), "{}", chain(&err));

    // Another CA, trusted alone.
    let other = ledger_partners::tls::generate(&dir.path().join("other")).unwrap();
    let err = client_trusting(&other.ca)
        .post(format!("{base}/v1/payments"))
        .json(&charge("untrusted-2"))
        .send()
        .await
        .expect_err("signed by another CA");
    assert!(chain(&err).contains("certificate"), "{}", chain(&err));

    // Both handshakes failed on the server's side too (the clients refused the certificate),
    // and nothing was charged.
    let failures = partners
        .wait_for_tls_failures(2, WAIT)
        .await
        .unwrap_or_else(|| panic!("two failed handshakes: {:?}", partners.tls_failures()));
    let last = failures.last.clone().unwrap_or_default();
    assert!(
        last.contains("received fatal alert: UnknownCA"),
        "{failures:?}"
    );
    assert!(partners.audit().events.is_empty(), "{:?}", partners.audit());

    // Plaintext to the HTTPS port fails too.
    let plain = format!("http://{}/healthz", server.addr());
    assert!(public.get(plain).send().await.is_err());

    // The server still serves a client that trusts its CA, stalled connection and all.
    let trusted = client_trusting(server.ca_path().unwrap());
    let reply: Value = trusted
        .post(format!("{base}/v1/payments"))
        .json(&charge("trusted"))
        .send()
        .await
        .expect("served after the failed handshakes")
        .json()
        .await
        .unwrap();
    assert_eq!(reply["status"], "succeeded", "{reply}");
    assert_eq!(partners.audit().events.len(), 1);
    drop(stalled);
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("graceful shutdown in time")
        .unwrap();
}

#[tokio::test]
async fn binary_generates_its_certificates_and_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger-partners"))
        .args(["--listen", "127.0.0.1:0"])
        .env("LEDGER_PARTNERS_TLS_GENERATE", &certs)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ledger-partners");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("a line in time")
            .expect("read stdout")
            .expect("a line before EOF")
    };
    let first = next_line().await;
    let addr = first
        .strip_prefix("ledger-partners listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    let ca = certs.join("partners-ca.pem");
    assert_eq!(
        next_line().await,
        format!("ledger-partners serving https; CA {}", ca.display())
    );

    let client = client_trusting(&ca);
    let resp = client
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    common::stop_with_sigterm(child, WAIT).await;
}

#[tokio::test]
async fn binary_refuses_a_missing_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger-partners"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&missing)
        .arg("--tls-key")
        .arg(&missing)
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(WAIT, output)
        .await
        .expect("exits promptly")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nope.pem"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing listened");
}
