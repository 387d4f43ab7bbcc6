//! `ledger-partners`: simulated third-party payment, document and email
//! services for tests and demos of the admission ledger, with fault injection.
//!
//! The API (see `partners/README.md`) is one HTTP server with JSON bodies and
//! in-memory books:
//! `POST /v1/payments`, `POST /v1/payments/{key}/void`,
//! `GET /v1/payments/{key}`, `POST /v1/documents`, `POST /v1/emails`,
//! `GET /v1/audit`, `GET|POST|PUT /v1/faults`, `GET /healthz`.
//!
//! Main types:
//! - [`Books`] (module [`books`]): the pure ledgers — idempotency per key,
//!   void-before-charge, refund-once — and the [`AuditLog`] checkers read.
//! - [`FaultConfig`] (module [`faults`]): latency, decline, 5xx, outage,
//!   unknown-outcome and garbage-reply knobs, validated; [`FaultState`] rolls
//!   the per-request dice (seedable).
//! - [`Partners`] (module [`server`]): shared state behind the routes;
//!   [`serve`] runs it on a listener until a shutdown future completes;
//!   [`SpawnedPartners`] starts one on `127.0.0.1:0` for tests.
//! - [`tls`]: HTTPS — a rustls server config from PEM files, throwaway
//!   certificates ([`tls::generate`]), and the handshaking listener behind
//!   [`serve_partners_tls`] and [`SpawnedPartners::start_tls`].
//! - [`ApiError`] (module [`http`]): every error reply, turned into
//!   `{"error": "..."}` with its status in one `IntoResponse` impl.
//! - [`Partners::answer`] (module [`exchange`]): one request's reply as a
//!   [`Wire`] (status, body, delivered at once, held or cut), without a
//!   socket or a clock; the routes serve it, and in-process callers (the
//!   node's simulation partners) use it directly after rolling
//!   [`Partners::plan`] and waiting its latency on their own clock.
//! - [`config::Args`]: the binary's clap flags (`LEDGER_PARTNERS_*` env).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use ledger_partners::{FaultConfig, SpawnedPartners};
//! let server = SpawnedPartners::start(FaultConfig::quiet()).await?;
//! println!("partners at {}", server.base_url());
//! let audit = server.partners().audit();
//! assert!(audit.events.is_empty());
//! server.shutdown().await
//! # }
//! ```

pub mod books;
pub mod config;
pub mod exchange;
pub mod faults;
pub mod http;
pub mod server;
pub mod tls;

pub use books::{
    AuditEntry, AuditEvent, AuditLog, Books, BooksError, ChargeReceipt, ChargeRequest,
    ChargeStatus, DocumentReceipt, DocumentRequest, EmailReceipt, EmailRequest, PaymentState,
    PaymentView, VoidReceipt, VoidStatus,
};
pub use exchange::{Delivery, Request, Wire};
pub use faults::{
    FaultConfig, FaultConfigError, FaultState, Latency, Plan, PostFault, Service, ServiceFaults,
    UnknownMode,
};
pub use http::{router, ApiError};
pub use server::{
    serve, serve_partners, serve_partners_tls, Partners, SpawnedPartners, TlsFailures,
    TracedRequest, TRACED_KEPT,
};
