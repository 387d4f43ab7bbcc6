//! The partners' HTTP API: [`HttpPartners`], the production [`PartnerApi`], and the wire
//! knowledge it shares with the in-process partners of a simulation (request bodies,
//! `classify` of replies), so that both see the same outcomes (API: `partners/README.md`).
//!
//! Every call carries its idempotency key, so a retry after a timeout, a reset connection or a
//! garbled reply returns the partner's first result. Replies are classified into a definite
//! answer, a refusal that will not change (`Permanent`), or `Unknown`: anything that might have
//! taken effect without us learning how (timeouts, 5xx, unexpected status codes, bodies that do
//! not parse). An unknown outcome is never treated as a failure of the step.

use std::time::Duration;

use futures_util::future::BoxFuture;
use ledger_state_machine::Money;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{CallError, Charge, PartnerApi};

#[derive(Deserialize)]
pub(crate) struct VoidReply {
    status: String,
}

#[derive(Deserialize)]
pub(crate) struct DocumentReply {
    pub(crate) document_id: String,
}

#[derive(Deserialize)]
pub(crate) struct EmailReply {
    pub(crate) message_id: String,
}

/// One request at the partners' API: the route and its JSON body. The in-process partners
/// take the same bytes, so a payload means the same to both.
pub(crate) enum Request {
    /// `POST /v1/payments`.
    Charge(Value),
    /// `POST /v1/payments/{key}/void`.
    Void(String),
    /// `POST /v1/documents`.
    Documents(Value),
    /// `POST /v1/emails`.
    Email(Value),
}

impl Request {
    pub(crate) fn charge(key: &str, user_id: &str, amount: Money) -> Request {
        Request::Charge(
            json!({"idempotency_key": key, "user_id": user_id, "amount": amount.to_string(), "currency": "EUR"}),
        )
    }

    pub(crate) fn documents(
        key: &str,
        request_id: &str,
        deal_id: &str,
        user_id: &str,
        amount: Money,
    ) -> Request {
        Request::Documents(
            json!({"idempotency_key": key, "request_id": request_id, "deal_id": deal_id, "user_id": user_id, "amount": amount.to_string()}),
        )
    }

    pub(crate) fn email(key: &str, to: &str, subject: &str, body: &str) -> Request {
        Request::Email(json!({"idempotency_key": key, "to": to, "subject": subject, "body": body}))
    }

    fn path(&self) -> String {
        match self {
            Request::Charge(_) => "/v1/payments".into(),
            Request::Void(key) => format!("/v1/payments/{key}/void"),
            Request::Documents(_) => "/v1/documents".into(),
            Request::Email(_) => "/v1/emails".into(),
        }
    }

    pub(crate) fn body(&self) -> Option<&Value> {
        match self {
            Request::Charge(body) | Request::Documents(body) | Request::Email(body) => Some(body),
            Request::Void(_) => None,
        }
    }

    /// Only a charge can be refused because its key was voided.
    pub(crate) fn is_charge(&self) -> bool {
        matches!(self, Request::Charge(_))
    }
}

/// A charge reply's status checked: anything but a definite answer is an unknown outcome.
pub(crate) fn charge_answer(charge: Charge) -> Result<Charge, CallError> {
    match charge.status.as_str() {
        "succeeded" | "declined" => Ok(charge),
        other => Err(CallError::Unknown(format!("charge status {other:?}"))),
    }
}

/// A void reply's status: whether a charge was refunded.
pub(crate) fn void_answer(void: VoidReply) -> Result<bool, CallError> {
    match void.status.as_str() {
        "refunded" => Ok(true),
        "voided" | "declined" => Ok(false),
        other => Err(CallError::Unknown(format!("void status {other:?}"))),
    }
}

/// Largest reply body read from a partner; a longer one is an unknown outcome (the partner, or
/// whoever answers in its place, cannot make a node buffer without bound).
pub const REPLY_BYTES_MAX: usize = 64 * 1024;

/// How often an HTTP/2 connection to the partners is pinged; one that does not answer within
/// the call timeout is closed.
const H2_PING_EVERY: Duration = Duration::from_secs(1);

/// Which HTTP the executor speaks to the partners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartnerHttp {
    /// HTTP/1.1 with keep-alive: one request at a time on each pooled connection.
    Http1,
    /// HTTP/2: every call multiplexed on one connection. Over `http://` with prior knowledge
    /// (the partners must accept cleartext HTTP/2, as the simulated ones do); over `https://`
    /// offered by ALPN, falling back to HTTP/1.1 where the partners do not take it.
    Http2,
}

impl std::fmt::Display for PartnerHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PartnerHttp::Http1 => "HTTP/1.1",
            PartnerHttp::Http2 => "HTTP/2",
        })
    }
}

/// The partners over HTTP(S), at one base URL.
#[derive(Clone)]
pub struct HttpPartners {
    http: reqwest::Client,
    base: String,
}

impl HttpPartners {
    /// A client for the partners at `base_url`, with `timeout` per call. For `https://`, the
    /// partners' certificate must chain to `ca_pem` when given (a private CA, trusted alone),
    /// else to the public web roots.
    pub fn new(
        base_url: &str,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
        version: PartnerHttp,
    ) -> Result<HttpPartners, reqwest::Error> {
        let mut http = reqwest::Client::builder();
        http = match version {
            PartnerHttp::Http1 => http.http1_only(),
            // One write carries many calls: 7,250 to 8,560 admissions/s with their sagas
            // (docs/performance.md, "Partner calls over HTTP/2"). Every call shares the one
            // connection, and a call that times out leaves it in the pool: pings find a
            // connection that stopped answering, which is then closed and replaced.
            PartnerHttp::Http2 => {
                let http = http
                    .http2_keep_alive_interval(H2_PING_EVERY)
                    .http2_keep_alive_timeout(timeout)
                    .http2_keep_alive_while_idle(true);
                if base_url.starts_with("http://") {
                    http.http2_prior_knowledge()
                } else {
                    http
                }
            }
        };
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
        Ok(HttpPartners {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// POSTs `request` and decodes the reply.
    async fn post<T: DeserializeOwned>(&self, request: Request) -> Result<T, CallError> {
        let mut post = self.http.post(format!("{}{}", self.base, request.path()));
        if let Some(traceparent) = super::api::call_traceparent() {
            post = post.header("traceparent", traceparent);
        }
        if let Some(body) = request.body() {
            post = post.json(body);
        }
        decode(post.send().await, request.is_charge()).await
    }
}

impl Carrier for HttpPartners {
    fn send<T: DeserializeOwned>(
        &self,
        request: Request,
    ) -> impl std::future::Future<Output = Result<T, CallError>> + Send {
        self.post(request)
    }
}

/// How a partner request travels and its reply comes back: HTTP ([`HttpPartners`]), or the
/// simulation's books in-process (`saga::sim::SimPartners`). Both speak the same requests and
/// classify the same replies, so the four calls are written once, here.
pub(crate) trait Carrier: Send + Sync {
    /// Sends `request` and reads its reply as a `T`, or says why not.
    fn send<T: DeserializeOwned>(
        &self,
        request: Request,
    ) -> impl std::future::Future<Output = Result<T, CallError>> + Send;
}

impl<C: Carrier> PartnerApi for C {
    fn charge<'a>(
        &'a self,
        key: &'a str,
        user_id: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<Charge, CallError>> {
        Box::pin(async move {
            let request = Request::charge(key, user_id, amount);
            self.send(request).await.and_then(charge_answer)
        })
    }

    fn void<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, CallError>> {
        Box::pin(async move {
            let request = Request::Void(key.to_owned());
            self.send(request).await.and_then(void_answer)
        })
    }

    fn documents<'a>(
        &'a self,
        key: &'a str,
        request_id: &'a str,
        deal_id: &'a str,
        user_id: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<String, CallError>> {
        Box::pin(async move {
            let request = Request::documents(key, request_id, deal_id, user_id, amount);
            let document: DocumentReply = self.send(request).await?;
            Ok(document.document_id)
        })
    }

    fn email<'a>(
        &'a self,
        key: &'a str,
        to: &'a str,
        subject: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<String, CallError>> {
        Box::pin(async move {
            let email: EmailReply = self.send(Request::email(key, to, subject, body)).await?;
            Ok(email.message_id)
        })
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
    classify(status, &body, is_charge)
}

/// What a whole reply means: the decoded answer, a voided key, a permanent refusal, or an
/// unknown outcome. The one classification of replies, for HTTP and in-process partners alike.
pub(crate) fn classify<T: DeserializeOwned>(
    status: StatusCode,
    body: &[u8],
    is_charge: bool,
) -> Result<T, CallError> {
    if body.len() > REPLY_BYTES_MAX {
        return Err(CallError::Unknown(format!(
            "{status}: reply longer than {REPLY_BYTES_MAX} bytes"
        )));
    }
    match status {
        StatusCode::OK => serde_json::from_slice(body)
            .map_err(|e| CallError::Unknown(format!("malformed reply: {e}"))),
        StatusCode::CONFLICT if is_charge && body == br#"{"error":"voided"}"# => {
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

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// A listener that answers nothing, and a client of it speaking `version`.
    async fn bare_partners(
        version: PartnerHttp,
        timeout: Duration,
    ) -> (tokio::net::TcpListener, HttpPartners) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let partners = HttpPartners::new(&base, timeout, None, version).unwrap();
        (listener, partners)
    }

    async fn charge(partners: HttpPartners) -> Result<Charge, CallError> {
        let amount: Money = "10.00".parse().unwrap();
        partners.charge("k", "u", amount).await
    }

    async fn accept(listener: &tokio::net::TcpListener) -> tokio::net::TcpStream {
        let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept());
        accepted.await.expect("a connection").unwrap().0
    }

    /// The first 24 bytes the executor's client sends for one charge, as a bare listener
    /// reads them (24 bytes: the length of HTTP/2's connection preface).
    async fn first_bytes(version: PartnerHttp) -> Vec<u8> {
        let (listener, partners) = bare_partners(version, Duration::from_secs(5)).await;
        let call = tokio::spawn(charge(partners));
        let mut socket = accept(&listener).await;
        let mut bytes = vec![0; 24];
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read_exact(&mut bytes));
        read.await.unwrap().unwrap();
        drop(socket);
        // Nobody answered: whatever the call says, it cannot be an answer.
        assert!(call.await.unwrap().is_err());
        bytes
    }

    #[tokio::test]
    async fn an_http2_connection_that_stops_answering_is_closed_and_replaced() {
        let timeout = Duration::from_millis(500);
        let (listener, partners) = bare_partners(PartnerHttp::Http2, timeout).await;
        let first = tokio::spawn(charge(partners.clone()));
        // Accepted, then never answered: not even HTTP/2's SETTINGS, nor a ping.
        let mut silent = accept(&listener).await;
        assert!(first.await.unwrap().is_err(), "an answer from nobody");
        // The unanswered ping closes it (the call that timed out did not).
        let mut sent = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut sent));
        closed
            .await
            .expect("the silent connection is closed")
            .unwrap();
        // The next call opens a new connection instead of waiting on the dead one.
        let second = tokio::spawn(charge(partners));
        let _fresh = accept(&listener).await;
        second.abort();
    }

    #[tokio::test]
    async fn the_partners_are_spoken_to_in_the_http_version_asked_for() {
        assert_eq!(
            first_bytes(PartnerHttp::Http1).await,
            b"POST /v1/payments HTTP/1"
        );
        // Over http://, HTTP/2 starts with its preface: no upgrade round trip, no HTTP/1.1.
        assert_eq!(
            first_bytes(PartnerHttp::Http2).await,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        );
    }

    /// The request line of each call, for partners under a path prefix: the prefix is kept.
    #[tokio::test]
    async fn every_call_goes_to_its_path_under_the_base_url() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/partners/", listener.local_addr().unwrap());
        let timeout = Duration::from_secs(5);
        let partners = HttpPartners::new(&base, timeout, None, PartnerHttp::Http1).unwrap();
        let lines = [
            "POST /partners/v1/payments HTTP/1.1",
            "POST /partners/v1/payments/k-1/void HTTP/1.1",
            "POST /partners/v1/documents HTTP/1.1",
            "POST /partners/v1/emails HTTP/1.1",
        ];
        for (n, line) in lines.into_iter().enumerate() {
            let partners = partners.clone();
            let call = tokio::spawn(async move {
                let amount: Money = "10.00".parse().unwrap();
                match n {
                    0 => partners.charge("k", "u", amount).await.is_ok(),
                    1 => partners.void("k-1").await.is_ok(),
                    2 => partners.documents("k", "r", "d", "u", amount).await.is_ok(),
                    _ => partners.email("k", "a@b.example", "s", "b").await.is_ok(),
                }
            });
            let mut socket = accept(&listener).await;
            let mut bytes = vec![0; line.len()];
            let read = tokio::time::timeout(timeout, socket.read_exact(&mut bytes));
            read.await.unwrap().unwrap();
            assert_eq!(String::from_utf8_lossy(&bytes), line);
            drop(socket);
            assert!(!call.await.unwrap(), "an answer from nobody");
        }
    }
}
