//! The HTTP client of the payment, documents and e-mail partners (API: `partners/README.md`).
//!
//! Every call carries its idempotency key, so a retry after a timeout, a reset connection or a
//! garbled reply returns the partner's first result. Replies are classified into a definite
//! answer, a refusal that will not change (`Permanent`), or `Unknown`: anything that might have
//! taken effect without us learning how (timeouts, 5xx, unexpected status codes, bodies that do
//! not parse). An unknown outcome is never treated as a failure of the step.

use std::time::Duration;

use ledger_state_machine::Money;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

/// How a partner call went, when it did not give its answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The charge's key was voided first (compensation ran): no charge can happen with it.
    #[error("payment key voided")]
    Voided,
    /// The partner refused the request for good (e.g. the key was used with another payload).
    #[error("refused: {0}")]
    Permanent(String),
    /// The effect may or may not have happened; retry with the same key.
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

/// A charge's result.
#[derive(Debug, Deserialize)]
pub struct Charge {
    /// The partner's payment id.
    pub payment_id: String,
    /// `succeeded` or `declined`.
    pub status: String,
}

#[derive(Deserialize)]
struct VoidReply {
    status: String,
}

#[derive(Deserialize)]
struct DocumentReply {
    document_id: String,
}

#[derive(Deserialize)]
struct EmailReply {
    message_id: String,
}

/// Largest reply body read from a partner; a longer one is an unknown outcome (the partner, or
/// whoever answers in its place, cannot make a node buffer without bound).
pub const REPLY_BYTES_MAX: usize = 64 * 1024;

/// The partners, at one base URL.
#[derive(Clone)]
pub struct Partners {
    http: reqwest::Client,
    base: String,
}

impl Partners {
    /// A client for the partners at `base_url`, with `timeout` per call. For `https://`, the
    /// partners' certificate must chain to `ca_pem` when given (a private CA, trusted alone),
    /// else to the public web roots.
    pub fn new(
        base_url: &str,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<Partners, reqwest::Error> {
        let mut http = reqwest::Client::builder();
        if let Some(ca_pem) = ca_pem {
            http = http
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(ca_pem)?);
        }
        let http = http
            .https_only(base_url.starts_with("https://"))
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect from a payment API is an unexpected reply, not something to follow.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        Ok(Partners {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Charges `amount` to `user_id` under `key`.
    pub async fn charge(
        &self,
        key: &str,
        user_id: &str,
        amount: Money,
    ) -> Result<Charge, CallError> {
        let body = json!({"idempotency_key": key, "user_id": user_id, "amount": amount.to_string(), "currency": "EUR"});
        let charge: Charge = self.post("/v1/payments", Some(body), true).await?;
        match charge.status.as_str() {
            "succeeded" | "declined" => Ok(charge),
            other => Err(CallError::Unknown(format!("charge status {other:?}"))),
        }
    }

    /// Voids the payment `key`: refunds it if it was charged, else refuses any later charge with
    /// it. Returns whether a charge was refunded.
    pub async fn void(&self, key: &str) -> Result<bool, CallError> {
        let void: VoidReply = self
            .post(&format!("/v1/payments/{key}/void"), None, false)
            .await?;
        match void.status.as_str() {
            "refunded" => Ok(true),
            "voided" | "declined" => Ok(false),
            other => Err(CallError::Unknown(format!("void status {other:?}"))),
        }
    }

    /// Generates the legal documents of an investment.
    pub async fn documents(
        &self,
        key: &str,
        request_id: &str,
        deal_id: &str,
        user_id: &str,
        amount: Money,
    ) -> Result<String, CallError> {
        let body = json!({"idempotency_key": key, "request_id": request_id, "deal_id": deal_id, "user_id": user_id, "amount": amount.to_string()});
        let document: DocumentReply = self.post("/v1/documents", Some(body), false).await?;
        Ok(document.document_id)
    }

    /// Sends an e-mail.
    pub async fn email(
        &self,
        key: &str,
        to: &str,
        subject: &str,
        body: &str,
    ) -> Result<String, CallError> {
        let body = json!({"idempotency_key": key, "to": to, "subject": subject, "body": body});
        let email: EmailReply = self.post("/v1/emails", Some(body), false).await?;
        Ok(email.message_id)
    }
}

impl Partners {
    /// POSTs `body` (if any) to `path` and decodes the reply.
    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
        is_charge: bool,
    ) -> Result<T, CallError> {
        let mut request = self.http.post(format!("{}{path}", self.base));
        if let Some(body) = &body {
            request = request.json(body);
        }
        decode(request.send().await, is_charge).await
    }
}

/// An error with its chain of causes: reqwest's own text leaves out why a connection failed
/// (e.g. "invalid peer certificate: UnknownIssuer"), which is what an operator needs to see in a
/// saga's last error.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn decode<T: DeserializeOwned>(
    reply: Result<reqwest::Response, reqwest::Error>,
    is_charge: bool,
) -> Result<T, CallError> {
    let mut response = reply.map_err(|e| CallError::Unknown(with_causes(&e)))?;
    let status = response.status();
    let too_long = || {
        CallError::Unknown(format!(
            "{status}: reply longer than {REPLY_BYTES_MAX} bytes"
        ))
    };
    if response
        .content_length()
        .is_some_and(|length| length > REPLY_BYTES_MAX as u64)
    {
        return Err(too_long());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CallError::Unknown(format!("{status}: body cut short: {e}")))?
    {
        if body.len() + chunk.len() > REPLY_BYTES_MAX {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    match status {
        StatusCode::OK => serde_json::from_slice(&body)
            .map_err(|e| CallError::Unknown(format!("malformed reply: {e}"))),
        StatusCode::CONFLICT if is_charge && body.as_slice() == br#"{"error":"voided"}"# => {
            Err(CallError::Voided)
        }
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            Err(CallError::Permanent(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )))
        }
        other => Err(CallError::Unknown(format!("unexpected status {other}"))),
    }
}
