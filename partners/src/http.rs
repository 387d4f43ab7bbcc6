//! The axum routes, the single error → response conversion ([`ApiError`]),
//! and the delivery of a [`Wire`] (the reply [`Partners::answer`] decided)
//! on the socket: held, or cut with the connection aborted.

use std::io;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::books::BooksError;
use crate::exchange::{Delivery, Request, Wire};
use crate::faults::{FaultConfig, FaultConfigError, Service};
use crate::server::Partners;

/// Every error reply. Converted to `{"error": "..."}` with its status code in
/// one place, the [`IntoResponse`] impl below.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The books refused the request (409 voided, 422 otherwise).
    #[error(transparent)]
    Books(#[from] BooksError),
    /// The request body is not valid JSON (400).
    #[error("malformed JSON body: {0}")]
    MalformedBody(String),
    /// The request body is JSON of the wrong shape (422).
    #[error("invalid JSON body: {0}")]
    InvalidBody(String),
    /// The path could not be decoded (400).
    #[error("invalid path: {0}")]
    BadPath(String),
    /// A fault config was refused (400).
    #[error(transparent)]
    Faults(#[from] FaultConfigError),
    /// `GET /v1/payments/{key}` for a key never seen (404).
    #[error("unknown idempotency key")]
    UnknownKey,
    /// Full outage of a service (503, nothing applied).
    #[error("{0} service outage (simulated)")]
    Outage(Service),
    /// Injected transient error (503, nothing applied).
    #[error("{0} service unavailable (simulated transient error)")]
    Transient(Service),
    /// The server is stopping (503, nothing applied).
    #[error("shutting down")]
    ShuttingDown,
    /// No such route (404).
    #[error("no such route")]
    NoRoute,
    /// Route exists, method does not (405).
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Books(BooksError::Voided) => StatusCode::CONFLICT,
            ApiError::Books(BooksError::KeyReuse { .. } | BooksError::Invalid(_)) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::MalformedBody(_) | ApiError::BadPath(_) | ApiError::Faults(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::InvalidBody(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnknownKey | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Outage(_) | ApiError::Transient(_) | ApiError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadPath(rejection.body_text())
    }
}

/// Parses a JSON body ourselves (instead of axum's `Json`) so a missing
/// content type is accepted and syntax (400) vs shape (422) errors map
/// cleanly.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidBody(e.to_string()),
        _ => ApiError::MalformedBody(e.to_string()),
    })
}

/// All routes, over shared state.
pub fn router(partners: Partners) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/payments", post(charge))
        .route("/v1/payments/{key}", get(payment_status))
        .route("/v1/payments/{key}/void", post(void))
        .route("/v1/documents", post(document))
        .route("/v1/emails", post(email))
        .route("/v1/audit", get(audit))
        .route("/v1/traces", get(traces))
        .route(
            "/v1/faults",
            get(get_faults).post(patch_faults).put(put_faults),
        )
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            partners.clone(),
            note_traceparent,
        ))
        .with_state(partners)
}

/// Notes the W3C `traceparent` header of every request that carries one (`GET /v1/traces`),
/// so a test or an operator sees the trace a saga's call belongs to.
async fn note_traceparent(
    State(partners): State<Partners>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(value) = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        partners.note_traced(request.method().as_str(), request.uri().path(), value);
    }
    next.run(request).await
}

async fn traces(State(partners): State<Partners>) -> Response {
    Json(partners.traced()).into_response()
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn charge(State(partners): State<Partners>, body: Bytes) -> Response {
    exchange(&partners, Request::Charge(&body)).await
}

async fn void(
    State(partners): State<Partners>,
    key: Result<Path<String>, PathRejection>,
) -> Response {
    match key {
        Ok(Path(key)) => exchange(&partners, Request::Void(&key)).await,
        Err(rejection) => refused(&partners, Service::Payment, rejection.into()).await,
    }
}

async fn payment_status(
    State(partners): State<Partners>,
    key: Result<Path<String>, PathRejection>,
) -> Response {
    match key {
        Ok(Path(key)) => exchange(&partners, Request::Payment(&key)).await,
        Err(rejection) => refused(&partners, Service::Payment, rejection.into()).await,
    }
}

async fn document(State(partners): State<Partners>, body: Bytes) -> Response {
    exchange(&partners, Request::Document(&body)).await
}

async fn email(State(partners): State<Partners>, body: Bytes) -> Response {
    exchange(&partners, Request::Email(&body)).await
}

async fn audit(State(partners): State<Partners>) -> Response {
    Json(partners.audit()).into_response()
}

async fn get_faults(State(partners): State<Partners>) -> Json<FaultConfig> {
    Json(partners.faults())
}

async fn patch_faults(State(partners): State<Partners>, body: Bytes) -> Result<Response, ApiError> {
    let patch: Value = parse_json(&body).map_err(as_fault_error)?;
    let config = partners.patch_faults(patch)?;
    tracing::info!(?config, "fault config patched");
    Ok(Json(config).into_response())
}

async fn put_faults(State(partners): State<Partners>, body: Bytes) -> Result<Response, ApiError> {
    let value: Value = parse_json(&body).map_err(as_fault_error)?;
    let config = FaultConfig::from_json(value)?;
    partners.set_faults(config.clone())?;
    tracing::info!(?config, "fault config replaced");
    Ok(Json(config).into_response())
}

/// The brief wants every refused fault config as a 400.
fn as_fault_error(error: ApiError) -> ApiError {
    ApiError::Faults(FaultConfigError(error.to_string()))
}

/// Serves one request: the fault plan is rolled, its latency slept, then the books answer
/// ([`Partners::answer`], shared with in-process callers) and the reply goes out as planned.
async fn exchange(partners: &Partners, request: Request<'_>) -> Response {
    let plan = partners.plan(request.service(), request.is_charge());
    if !partners.pause(plan.latency).await {
        return ApiError::ShuttingDown.into_response();
    }
    deliver(partners, partners.answer(request, &plan)).await
}

/// Serves a request the route could not read, through the same plan and latency.
async fn refused(partners: &Partners, service: Service, error: ApiError) -> Response {
    let plan = partners.plan(service, false);
    if !partners.pause(plan.latency).await {
        return ApiError::ShuttingDown.into_response();
    }
    deliver(partners, partners.refuse(service, error, &plan)).await
}

/// Puts a [`Wire`] on the socket: whole, held, or cut with the connection aborted.
async fn deliver(partners: &Partners, wire: Wire) -> Response {
    let status = StatusCode::from_u16(wire.status).unwrap_or(StatusCode::IM_A_TEAPOT);
    let reply = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        wire.body,
    )
        .into_response();
    match wire.delivery {
        Delivery::Now => reply,
        Delivery::After(delay) => {
            if partners.pause(delay).await {
                reply
            } else {
                // Stopping: do not hold graceful shutdown for the full delay.
                aborting(reply, 0).await
            }
        }
        Delivery::CutAfter(keep) => aborting(reply, keep).await,
    }
}

async fn body_bytes(body: Body) -> Bytes {
    // Our own replies are small and in memory; this cannot fail in practice.
    axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default()
}

/// Sends the head and the first `keep` body bytes, then fails the body
/// stream, which makes hyper abort the connection mid-response.
async fn aborting(reply: Response, keep: usize) -> Response {
    let (mut parts, body) = reply.into_parts();
    let bytes = body_bytes(body).await;
    let prefix = bytes.slice(..keep.min(bytes.len()));
    parts.headers.remove(header::CONTENT_LENGTH);
    let head = futures_util::stream::iter((!prefix.is_empty()).then_some(Ok(prefix)));
    let tail = futures_util::stream::once(async {
        // Return Pending once so hyper flushes what it has before the abort.
        tokio::task::yield_now().await;
        Err(io::Error::other("simulated connection drop"))
    });
    Response::from_parts(parts, Body::from_stream(head.chain(tail)))
}
