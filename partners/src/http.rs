//! The axum routes, the single error → response conversion ([`ApiError`]),
//! and the reply mangling used by post-effect faults.

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

use crate::books::{Books, BooksError, ChargeRequest, DocumentRequest, EmailRequest};
use crate::faults::{FaultConfig, FaultConfigError, Plan, PostFault, Service};
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
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
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
        .route(
            "/v1/faults",
            get(get_faults).post(patch_faults).put(put_faults),
        )
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(partners)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn charge(State(partners): State<Partners>, body: Bytes) -> Response {
    let input = parse_json::<ChargeRequest>(&body);
    guarded(
        &partners,
        Service::Payment,
        true,
        input,
        |books, req, plan| {
            let receipt =
                books.charge(req, plan.decline, format!("pay_{}", plan.new_id.simple()))?;
            tracing::info!(payment_id = %receipt.payment_id, status = ?receipt.status, "charge");
            Ok(Json(receipt).into_response())
        },
    )
    .await
}

async fn void(
    State(partners): State<Partners>,
    key: Result<Path<String>, PathRejection>,
) -> Response {
    let input = key.map(|Path(key)| key).map_err(ApiError::from);
    guarded(
        &partners,
        Service::Payment,
        false,
        input,
        |books, key, _| {
            let receipt = books.void(&key)?;
            tracing::info!(key, status = ?receipt.status, "void");
            Ok(Json(receipt).into_response())
        },
    )
    .await
}

async fn payment_status(
    State(partners): State<Partners>,
    key: Result<Path<String>, PathRejection>,
) -> Response {
    let input = key.map(|Path(key)| key).map_err(ApiError::from);
    guarded(
        &partners,
        Service::Payment,
        false,
        input,
        |books, key, _| {
            let view = books.payment(&key).ok_or(ApiError::UnknownKey)?;
            Ok(Json(view).into_response())
        },
    )
    .await
}

async fn document(State(partners): State<Partners>, body: Bytes) -> Response {
    let input = parse_json::<DocumentRequest>(&body);
    guarded(
        &partners,
        Service::Documents,
        false,
        input,
        |books, req, plan| {
            let receipt = books.document(req, format!("doc_{}", plan.new_id.simple()))?;
            tracing::info!(document_id = %receipt.document_id, "document");
            Ok(Json(receipt).into_response())
        },
    )
    .await
}

async fn email(State(partners): State<Partners>, body: Bytes) -> Response {
    let input = parse_json::<EmailRequest>(&body);
    guarded(
        &partners,
        Service::Email,
        false,
        input,
        |books, req, plan| {
            let receipt = books.email(req, format!("msg_{}", plan.new_id.simple()))?;
            tracing::info!(message_id = %receipt.message_id, "email");
            Ok(Json(receipt).into_response())
        },
    )
    .await
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

/// Runs one partner request through the fault pipeline:
/// latency → outage → transient error → request check → effect (under the
/// books lock, never across an await) → post-effect fault.
async fn guarded<T>(
    partners: &Partners,
    service: Service,
    is_charge: bool,
    input: Result<T, ApiError>,
    apply: impl FnOnce(&mut Books, T, &Plan) -> Result<Response, ApiError>,
) -> Response {
    let plan = partners.plan(service, is_charge);
    if !partners.pause(plan.latency).await {
        return ApiError::ShuttingDown.into_response();
    }
    if plan.outage {
        return ApiError::Outage(service).into_response();
    }
    if plan.error {
        tracing::debug!(%service, "injected transient error");
        return ApiError::Transient(service).into_response();
    }
    let input = match input {
        Ok(input) => input,
        Err(error) => return error.into_response(),
    };
    let reply = partners
        .with_books(|books| {
            let before = books.events_len();
            let reply = apply(books, input, &plan);
            books.stamp_latency(before, plan.latency);
            reply
        })
        .unwrap_or_else(IntoResponse::into_response);
    match plan.post {
        None => reply,
        Some(fault) => {
            tracing::debug!(%service, ?fault, "injected post-effect fault");
            degrade(partners, reply, fault).await
        }
    }
}

/// Mangles a reply whose effect was already applied.
async fn degrade(partners: &Partners, reply: Response, fault: PostFault) -> Response {
    match fault {
        PostFault::Delay(delay) => {
            if partners.pause(delay).await {
                reply
            } else {
                // Stopping: do not hold graceful shutdown for the full delay.
                aborting(reply, 0).await
            }
        }
        PostFault::Drop => aborting(reply, 0).await,
        PostFault::TruncatedBody => {
            let (parts, body) = reply.into_parts();
            let bytes = body_bytes(body).await;
            let half = bytes.len() / 2;
            aborting(Response::from_parts(parts, Body::from(bytes)), half).await
        }
        PostFault::MalformedJson => {
            let (mut parts, body) = reply.into_parts();
            let bytes = body_bytes(body).await;
            // Half an object plus junk is never valid JSON.
            let mut garbage = bytes[..bytes.len() / 2].to_vec();
            garbage.extend_from_slice(b"\x00<<garbage>>");
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(garbage))
        }
        PostFault::UnexpectedStatus(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
            let body = json!({ "error": format!("simulated unexpected status {code}") });
            (status, Json(body)).into_response()
        }
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
