//! The partners over real HTTP on 127.0.0.1:0, driven with reqwest.

use std::time::{Duration, Instant};

use ledger_partners::{AuditEntry, AuditLog, FaultConfig, Latency, SpawnedPartners, UnknownMode};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// Upper bound for any wait on a condition in these tests.
const WAIT: Duration = Duration::from_secs(5);

struct Harness {
    server: SpawnedPartners,
    client: Client,
}

impl Harness {
    async fn start(config: FaultConfig) -> Self {
        let server = SpawnedPartners::start(config)
            .await
            .expect("start partners");
        let client = Client::builder()
            .no_proxy()
            .timeout(WAIT)
            .build()
            .expect("client");
        Self { server, client }
    }

    async fn quiet() -> Self {
        Self::start(FaultConfig::quiet()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("send");
        let status = resp.status();
        (status, resp.json().await.expect("json body"))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self.client.get(self.url(path)).send().await.expect("send");
        let status = resp.status();
        (status, resp.json().await.expect("json body"))
    }

    async fn audit(&self) -> AuditLog {
        let resp = self.client.get(self.url("/v1/audit")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.expect("audit json")
    }

    async fn patch_faults(&self, patch: Value) -> (StatusCode, Value) {
        self.post("/v1/faults", patch).await
    }
}

fn charge(key: &str, amount: &str) -> Value {
    json!({"idempotency_key": key, "user_id": "u1", "amount": amount, "currency": "EUR"})
}

fn document(key: &str) -> Value {
    json!({"idempotency_key": key, "request_id": "r1", "deal_id": "d1", "user_id": "u1", "amount": "100.00"})
}

fn email(key: &str) -> Value {
    json!({"idempotency_key": key, "to": "inv@example.invalid", "subject": "Admitted", "body": "Welcome"})
}

#[tokio::test]
async fn healthz_and_unknown_routes() {
    let h = Harness::quiet().await;
    let resp = h.client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, body) = h.get("/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());
    let (status, body) = h.get("/v1/payments/never-seen").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "unknown idempotency key");
    let resp = h.client.delete(h.url("/v1/audit")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn payment_charge_replay_status_and_void() {
    let h = Harness::quiet().await;
    let (status, first) = h.post("/v1/payments", charge("k1", "1000.00")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["status"], "succeeded");
    let payment_id = first["payment_id"].as_str().unwrap().to_owned();

    let (status, replay) = h.post("/v1/payments", charge("k1", "1000.00")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replay, first);

    let (status, view) = h.get("/v1/payments/k1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        view,
        json!({"payment_id": payment_id, "status": "succeeded", "amount": "1000.00", "currency": "EUR", "user_id": "u1"})
    );

    for _ in 0..2 {
        let (status, body) = h.post("/v1/payments/k1/void", json!({})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"status": "refunded"}));
    }
    let (_, view) = h.get("/v1/payments/k1").await;
    assert_eq!(view["status"], "refunded");

    let audit = h.audit().await;
    assert_eq!(audit.events.len(), 2, "{audit:?}");
    assert!(matches!(audit.events[0].entry, AuditEntry::Charge { .. }));
    assert!(matches!(audit.events[1].entry, AuditEntry::Refund { .. }));
    assert_eq!(audit.net_charged()["k1"], "0".parse().unwrap());
}

#[tokio::test]
async fn void_before_charge_refuses_the_charge_with_409() {
    let h = Harness::quiet().await;
    // A void needs no body at all.
    let resp = h
        .client
        .post(h.url("/v1/payments/late/void"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"status": "voided"})
    );

    let (status, body) = h.post("/v1/payments", charge("late", "5.00")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, json!({"error": "voided"}));
    let (_, view) = h.get("/v1/payments/late").await;
    assert_eq!(view, json!({"status": "voided"}));
    let audit = h.audit().await;
    assert_eq!(audit.events.len(), 1);
    assert!(matches!(audit.events[0].entry, AuditEntry::Void { .. }));
}

#[tokio::test]
async fn key_reuse_with_another_payload_is_422_and_not_recorded() {
    let h = Harness::quiet().await;
    h.post("/v1/payments", charge("k", "10.00")).await;
    let (status, body) = h.post("/v1/payments", charge("k", "11.00")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("different payload"));
    h.post("/v1/documents", document("d")).await;
    let mut other = document("d");
    other["deal_id"] = json!("d2");
    let (status, _) = h.post("/v1/documents", other).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(h.audit().await.events.len(), 2);
}

#[tokio::test]
async fn the_audit_carries_the_latency_each_effect_was_served_with() {
    let mut config = FaultConfig::quiet();
    config.payment.latency = Latency::new(30, 0);
    config.documents.latency = Latency::new(12, 0);
    let h = Harness::start(config).await;
    assert_eq!(
        h.post("/v1/payments", charge("k", "5.00")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        h.post("/v1/documents", document("k-doc")).await.0,
        StatusCode::OK
    );
    // A replay records nothing, so it stamps nothing either.
    assert_eq!(
        h.post("/v1/payments", charge("k", "5.00")).await.0,
        StatusCode::OK
    );
    let latencies: Vec<u64> = h
        .audit()
        .await
        .events
        .iter()
        .map(|e| e.latency_ms)
        .collect();
    assert_eq!(latencies, [30, 12]);
}

#[tokio::test]
async fn documents_and_emails_are_idempotent() {
    let h = Harness::quiet().await;
    let (status, d1) = h.post("/v1/documents", document("doc-1")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, d2) = h.post("/v1/documents", document("doc-1")).await;
    assert_eq!(d1, d2);
    assert!(d1["document_id"].as_str().unwrap().starts_with("doc_"));

    let (status, e1) = h.post("/v1/emails", email("mail-1")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, e2) = h.post("/v1/emails", email("mail-1")).await;
    assert_eq!(e1, e2);
    assert!(e1["message_id"].as_str().unwrap().starts_with("msg_"));

    let audit = h.audit().await;
    assert_eq!(audit.documents_per_key()["doc-1"], 1);
    assert_eq!(audit.emails_per_key()["mail-1"], 1);
    assert_eq!(audit.events.len(), 2);
    let raw: Value = h.get("/v1/audit").await.1;
    assert_eq!(raw["events"][0]["kind"], "document");
    assert_eq!(raw["events"][0]["seq"], 1);
    assert_eq!(raw["events"][1]["kind"], "email");
    assert_eq!(raw["events"][1]["message_id"], e1["message_id"]);
}

#[tokio::test]
async fn decline_rate_one_declines_and_replays_keep_the_first_result() {
    let mut config = FaultConfig::quiet();
    config.decline_rate = 1.0;
    let h = Harness::start(config).await;
    let (status, first) = h.post("/v1/payments", charge("d", "20.00")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["status"], "declined");

    let (status, _) = h.patch_faults(json!({"decline_rate": 0.0})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, replay) = h.post("/v1/payments", charge("d", "20.00")).await;
    assert_eq!(replay, first, "the first result wins");
    let (_, fresh) = h.post("/v1/payments", charge("d2", "20.00")).await;
    assert_eq!(fresh["status"], "succeeded");

    let (_, void) = h.post("/v1/payments/d/void", json!({})).await;
    assert_eq!(void, json!({"status": "declined"}));
    let audit = h.audit().await;
    assert_eq!(audit.events.len(), 2, "no refund for a declined charge");
    assert_eq!(audit.net_charged()["d"], "0".parse().unwrap());
    assert_eq!(audit.net_charged()["d2"], "20.00".parse().unwrap());
}

#[tokio::test]
async fn outage_answers_503_and_records_nothing() {
    let mut config = FaultConfig::quiet();
    config.payment.outage = true;
    let h = Harness::start(config).await;
    let (status, body) = h.post("/v1/payments", charge("o", "1.00")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().unwrap().contains("outage"));
    let (status, _) = h.post("/v1/payments/o/void", json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = h.get("/v1/payments/o").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(h.audit().await.events.is_empty());
    // Other services are unaffected.
    let (status, _) = h.post("/v1/emails", email("e")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.audit().await.events.len(), 1);
}

#[tokio::test]
async fn error_rate_one_answers_503_and_records_nothing() {
    let mut config = FaultConfig::quiet();
    config.payment.error_rate = 1.0;
    config.documents.error_rate = 1.0;
    config.email.error_rate = 1.0;
    let h = Harness::start(config).await;
    for (path, body) in [
        ("/v1/payments", charge("x", "1.00")),
        ("/v1/payments/x/void", json!({})),
        ("/v1/documents", document("x")),
        ("/v1/emails", email("x")),
    ] {
        let (status, reply) = h.post(path, body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(reply["error"].as_str().unwrap().contains("unavailable"));
    }
    assert!(h.audit().await.events.is_empty());
    assert!(h.server.partners().payment("x").is_none());
}

#[tokio::test]
async fn unknown_outcome_delay_times_out_but_the_charge_is_applied() {
    let mut config = FaultConfig::quiet();
    config.payment.unknown_rate = 1.0;
    config.unknown_mode = UnknownMode::Delay;
    config.unknown_delay_ms = 10_000;
    let h = Harness::start(config).await;

    let started = Instant::now();
    let err = h
        .client
        .post(h.url("/v1/payments"))
        .json(&charge("u", "42.00"))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("the reply is held past the client timeout");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    assert!(h.server.partners().wait_for_audit_len(1, WAIT).await);
    let audit = h.audit().await;
    let AuditEntry::Charge { payment_id, .. } = &audit.events[0].entry else {
        panic!("expected a charge: {audit:?}");
    };

    h.patch_faults(json!({"payment": {"unknown_rate": 0.0}}))
        .await;
    let (status, retry) = h.post("/v1/payments", charge("u", "42.00")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(retry["payment_id"], json!(payment_id));
    assert_eq!(retry["status"], "succeeded");
    assert_eq!(h.audit().await.events.len(), 1);
}

/// Sends a request whose reply is expected to break somewhere between the
/// head and the decoded body; returns the error text.
async fn expect_broken_reply(h: &Harness, path: &str, body: Value) -> String {
    let outcome = async {
        let resp = h.client.post(h.url(path)).json(&body).send().await?;
        resp.json::<Value>().await
    }
    .await;
    match outcome {
        Ok(value) => panic!("expected a broken reply, got {value}"),
        Err(err) => {
            assert!(!err.is_timeout(), "{err:?}");
            format!("{err:?}")
        }
    }
}

#[tokio::test]
async fn unknown_outcome_drop_breaks_the_connection_but_applies() {
    let mut config = FaultConfig::quiet();
    config.documents.unknown_rate = 1.0;
    config.unknown_mode = UnknownMode::Drop;
    let h = Harness::start(config).await;
    expect_broken_reply(&h, "/v1/documents", document("dd")).await;
    assert!(h.server.partners().wait_for_audit_len(1, WAIT).await);
    assert_eq!(h.audit().await.documents_per_key()["dd"], 1);
}

#[tokio::test]
async fn truncated_body_breaks_the_body_but_applies() {
    let mut config = FaultConfig::quiet();
    config.payment.truncated_body_rate = 1.0;
    let h = Harness::start(config).await;
    // The head arrives; reading the body fails.
    let resp = h
        .client
        .post(h.url("/v1/payments"))
        .json(&charge("t", "3.00"))
        .send()
        .await
        .expect("head is sent before the abort");
    assert_eq!(resp.status(), StatusCode::OK);
    let err = resp.bytes().await.expect_err("body is cut");
    assert!(err.is_body() || err.is_decode(), "{err:?}");
    assert!(h.server.partners().wait_for_audit_len(1, WAIT).await);
    assert_eq!(h.audit().await.net_charged()["t"], "3.00".parse().unwrap());
}

#[tokio::test]
async fn malformed_json_reply_fails_to_decode_but_applies() {
    let mut config = FaultConfig::quiet();
    config.email.malformed_json_rate = 1.0;
    let h = Harness::start(config).await;
    let resp = h
        .client
        .post(h.url("/v1/emails"))
        .json(&email("m"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("the body itself is complete");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    let err = expect_broken_reply(&h, "/v1/emails", email("m")).await;
    assert!(err.contains("Decode"), "{err}");
    // Both requests used one key: one email.
    assert_eq!(h.audit().await.emails_per_key()["m"], 1);
}

#[tokio::test]
async fn unexpected_status_is_sent_but_applies() {
    let mut config = FaultConfig::quiet();
    config.payment.unexpected_status_rate = 1.0;
    config.unexpected_status = 302;
    let h = Harness::start(config).await;
    let resp = h
        .client
        .post(h.url("/v1/payments"))
        .json(&charge("s", "9.99"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    h.patch_faults(json!({"unexpected_status": 418})).await;
    let (status, _) = h.post("/v1/payments", charge("s", "9.99")).await;
    assert_eq!(status, StatusCode::IM_A_TEAPOT);
    assert_eq!(h.audit().await.events.len(), 1);
    assert_eq!(h.audit().await.net_charged()["s"], "9.99".parse().unwrap());
}

#[tokio::test]
async fn runtime_fault_changes_take_effect() {
    let h = Harness::quiet().await;
    let (status, faults) = h.get("/v1/faults").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(faults["payment"]["outage"], false);

    let (status, patched) = h.patch_faults(json!({"payment": {"outage": true}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["payment"]["outage"], true);
    assert_eq!(
        patched["documents"]["latency"]["mean_ms"], 0,
        "patch keeps the rest"
    );
    let (status, _) = h.post("/v1/payments", charge("r", "1.00")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    h.patch_faults(json!({"payment": {"outage": false}})).await;
    let (status, _) = h.post("/v1/payments", charge("r", "1.00")).await;
    assert_eq!(status, StatusCode::OK);

    // Latency is honoured.
    h.patch_faults(json!({"email": {"latency": {"mean_ms": 60, "jitter_ms": 0}}}))
        .await;
    let started = Instant::now();
    let (status, _) = h.post("/v1/emails", email("slow")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(60));

    // PUT replaces: absent fields go back to the defaults.
    let resp = h
        .client
        .put(h.url("/v1/faults"))
        .json(&json!({"decline_rate": 1.0, "payment": {"latency": {"mean_ms": 0, "jitter_ms": 0}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let faults = h.server.partners().faults();
    assert_eq!(faults.decline_rate, 1.0);
    assert_eq!(faults.payment.latency, Latency::ZERO);
    assert_eq!(faults.email.latency, FaultConfig::default().email.latency);
    assert_eq!(
        faults.unknown_delay_ms,
        FaultConfig::default().unknown_delay_ms
    );
    let (_, declined) = h.post("/v1/payments", charge("r2", "1.00")).await;
    assert_eq!(declined["status"], "declined");
}

#[tokio::test]
async fn invalid_fault_configs_are_rejected_with_400() {
    let h = Harness::quiet().await;
    let before = h.get("/v1/faults").await.1;
    for (patch, needle) in [
        (
            json!({"payment": {"error_rate": 1.5}}),
            "payment.error_rate",
        ),
        (json!({"decline_rate": -1}), "decline_rate"),
        (
            json!({"email": {"latency": {"mean_ms": 60001}}}),
            "email.latency.mean_ms",
        ),
        (json!({"unknown_delay_ms": 120001}), "unknown_delay_ms"),
        (json!({"payment": {"eror_rate": 0.1}}), "unknown field"),
        (json!({"decline_rate": "often"}), "invalid type"),
        (json!([]), "object"),
    ] {
        let (status, body) = h.patch_faults(patch.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{patch}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(needle), "{patch}: {message}");
    }
    let resp = h
        .client
        .post(h.url("/v1/faults"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = h
        .client
        .put(h.url("/v1/faults"))
        .json(&json!({"seed": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.get("/v1/faults").await.1, before, "config unchanged");
}

#[tokio::test]
async fn malformed_requests_are_rejected_and_record_nothing() {
    let h = Harness::quiet().await;
    let resp = h
        .client
        .post(h.url("/v1/payments"))
        .header("content-type", "application/json")
        .body("{\"idempotency_key\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("malformed JSON"));

    for bad in [
        json!({"idempotency_key": "k", "user_id": "u", "currency": "EUR"}),
        json!({"idempotency_key": "k", "user_id": "u", "amount": 10, "currency": "EUR"}),
        json!({"idempotency_key": "k", "user_id": "u", "amount": "ten", "currency": "EUR"}),
        charge("k", "1.005"),
        charge("k", "0.00"),
        charge("k", "-3.00"),
        charge("", "3.00"),
    ] {
        let (status, body) = h.post("/v1/payments", bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(body["error"].is_string());
    }
    let (status, _) = h
        .post("/v1/documents", json!({"idempotency_key": "d"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = h.post("/v1/emails", json!("just a string")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(h.audit().await.events.is_empty());
}

#[tokio::test]
async fn shutdown_cuts_held_replies_short() {
    let mut config = FaultConfig::quiet();
    config.payment.unknown_rate = 1.0;
    config.unknown_mode = UnknownMode::Delay;
    config.unknown_delay_ms = 60_000;
    let h = Harness::start(config).await;
    let client = h.client.clone();
    let url = h.url("/v1/payments");
    let pending =
        tokio::spawn(async move { client.post(url).json(&charge("h", "1.00")).send().await });
    let partners = h.server.partners().clone();
    assert!(partners.wait_for_audit_len(1, WAIT).await);

    let started = Instant::now();
    tokio::time::timeout(WAIT, h.server.shutdown())
        .await
        .expect("shutdown does not wait for the 60 s delay")
        .expect("clean shutdown");
    assert!(started.elapsed() < WAIT);
    let reply = tokio::time::timeout(WAIT, pending).await.unwrap().unwrap();
    // The held reply was aborted, never delivered whole.
    if let Ok(resp) = reply {
        assert!(resp.bytes().await.is_err());
    }
}

#[tokio::test]
async fn a_seed_makes_outcomes_and_ids_reproducible() {
    let run = || async {
        let mut config = FaultConfig::quiet();
        config.decline_rate = 0.5;
        config.seed = Some(1234);
        let h = Harness::start(config).await;
        let mut replies = Vec::new();
        for i in 0..16 {
            replies.push(
                h.post("/v1/payments", charge(&format!("s{i}"), "1.00"))
                    .await
                    .1,
            );
        }
        replies
    };
    let a = run().await;
    assert_eq!(a, run().await);
    let declined = a.iter().filter(|r| r["status"] == "declined").count();
    assert!(declined > 0 && declined < a.len(), "{a:?}");
}
