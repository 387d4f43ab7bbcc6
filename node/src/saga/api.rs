//! The partners as the executor sees them: [`PartnerApi`], its four operations, and their
//! vocabulary ([`Call`], [`Reply`], [`Charge`], [`CallError`]).
//!
//! The node holds an `Arc<dyn PartnerApi>`: the HTTP client ([`super::partners::HttpPartners`])
//! in production, the partners' books in-process (`super::sim::SimPartners`, feature `sim`) in
//! a simulation. The methods return boxed futures so that the trait stays object-safe without
//! a macro crate.

use futures_util::future::BoxFuture;
use ledger_state_machine::TraceContext;
use ledger_state_machine::{Money, SagaStep};
use serde::Deserialize;

/// How a partner call went, when it did not give its answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
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
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Charge {
    /// The partner's payment id.
    pub payment_id: String,
    /// `succeeded` or `declined`.
    pub status: String,
}

/// The payment, documents and e-mail partners. Every call carries its idempotency key, so
/// repeating it after any failure returns the partner's first result.
pub trait PartnerApi: Send + Sync {
    /// Charges `amount` to `user_id` under `key`.
    fn charge<'a>(
        &'a self,
        key: &'a str,
        user_id: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<Charge, CallError>>;

    /// Voids the payment `key`: refunds it if it was charged, else refuses any later charge with
    /// it. Answers whether a charge was refunded.
    fn void<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, CallError>>;

    /// Generates the legal documents of an investment; answers the document id.
    fn documents<'a>(
        &'a self,
        key: &'a str,
        request_id: &'a str,
        deal_id: &'a str,
        user_id: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<String, CallError>>;

    /// Sends an e-mail; answers the message id.
    fn email<'a>(
        &'a self,
        key: &'a str,
        to: &'a str,
        subject: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<String, CallError>>;
}

/// One partner call with its idempotency key and payload, as the step driver asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// [`PartnerApi::charge`].
    Charge {
        /// Idempotency key.
        key: String,
        /// Who is charged.
        user_id: String,
        /// How much.
        amount: Money,
    },
    /// [`PartnerApi::documents`].
    Documents {
        /// Idempotency key.
        key: String,
        /// The investment's request id.
        request_id: String,
        /// Its deal.
        deal_id: String,
        /// The investor.
        user_id: String,
        /// The ticket.
        amount: Money,
    },
    /// [`PartnerApi::void`].
    Void {
        /// The payment's idempotency key.
        key: String,
    },
    /// [`PartnerApi::email`].
    Email {
        /// Idempotency key.
        key: String,
        /// Recipient.
        to: String,
        /// Subject line.
        subject: String,
        /// Body.
        body: String,
    },
}

/// A partner's answer to a [`Call`], of the call's kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// To [`Call::Charge`].
    Charge(Charge),
    /// To [`Call::Documents`]: the document id.
    Documents(String),
    /// To [`Call::Void`]: whether a charge was refunded.
    Void(bool),
    /// To [`Call::Email`]: the message id.
    Email(String),
}

impl Call {
    /// The call's idempotency key.
    pub fn key(&self) -> &str {
        match self {
            Call::Charge { key, .. }
            | Call::Documents { key, .. }
            | Call::Void { key }
            | Call::Email { key, .. } => key,
        }
    }

    /// The partner and operation, as metrics name them.
    pub fn operation(&self) -> (&'static str, &'static str) {
        match self {
            Call::Charge { .. } => ("payment", "charge"),
            Call::Void { .. } => ("payment", "void"),
            Call::Documents { .. } => ("documents", "generate"),
            Call::Email { .. } => ("email", "send"),
        }
    }

    /// The saga step this call performs.
    pub fn step(&self) -> SagaStep {
        match self {
            Call::Charge { .. } => SagaStep::Payment,
            Call::Void { .. } => SagaStep::Void,
            Call::Documents { .. } => SagaStep::Documents,
            Call::Email { .. } => SagaStep::Notify,
        }
    }

    /// Makes the call at `partners`.
    pub async fn perform(&self, partners: &dyn PartnerApi) -> Result<Reply, CallError> {
        match self {
            Call::Charge {
                key,
                user_id,
                amount,
            } => partners
                .charge(key, user_id, *amount)
                .await
                .map(Reply::Charge),
            Call::Documents {
                key,
                request_id,
                deal_id,
                user_id,
                amount,
            } => partners
                .documents(key, request_id, deal_id, user_id, *amount)
                .await
                .map(Reply::Documents),
            Call::Void { key } => partners.void(key).await.map(Reply::Void),
            Call::Email {
                key,
                to,
                subject,
                body,
            } => partners
                .email(key, to, subject, body)
                .await
                .map(Reply::Email),
        }
    }
}

tokio::task_local! {
    /// The `traceparent` header of the partner call being made, when its saga has a trace.
    static CALL_TRACEPARENT: Option<String>;
}

/// The `traceparent` the partner call being made sends, if any ([`with_trace`]).
pub fn call_traceparent() -> Option<String> {
    CALL_TRACEPARENT.try_with(Clone::clone).ok().flatten()
}

/// Runs `call` sending `trace`'s child span for attempt `attempt` of the call with idempotency
/// key `key` as its `traceparent`. The span id is derived from the key and the attempt, so every
/// attempt is a span of its own, and a replay of the same saga (the simulation) sends the same.
pub async fn with_trace<F: std::future::Future>(
    trace: Option<TraceContext>,
    key: &str,
    attempt: usize,
    call: F,
) -> F::Output {
    let traceparent = trace.map(|trace| {
        let mut hasher = blake3::Hasher::new();
        hasher.update(key.as_bytes());
        hasher.update(&(attempt as u64).to_le_bytes());
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        trace.child(span_id).to_string()
    });
    CALL_TRACEPARENT.scope(traceparent, call).await
}
