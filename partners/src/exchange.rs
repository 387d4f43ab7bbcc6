//! One request's exchange without a socket: the request as a route receives it in, what the
//! server puts on the wire out ([`Wire`]).
//!
//! The HTTP routes ([`crate::http`]) and in-process callers (the node's simulation partners)
//! both go through [`Partners::answer`], so the books' answers, the fault plan and the reply
//! mangling are one code path, and a caller that classifies the [`Wire`] as it would classify
//! an HTTP reply sees the same outcomes either way. Nothing here sleeps or reads a clock: the
//! caller rolls the [`Plan`] ([`Partners::plan`]), waits `plan.latency` with whatever clock it
//! runs on, calls [`Partners::answer`], and waits a held reply's delay the same way.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::books::{
    Books, ChargeReceipt, ChargeRequest, DocumentReceipt, DocumentRequest, EmailReceipt,
    EmailRequest, PaymentView, VoidReceipt,
};
use crate::faults::{Plan, PostFault, Service};
use crate::http::{parse_json, ApiError};
use crate::server::Partners;

/// One request, as the routes receive it: the JSON body, or the key from the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// `POST /v1/payments` with this body.
    Charge(&'a [u8]),
    /// `POST /v1/payments/{key}/void`.
    Void(&'a str),
    /// `GET /v1/payments/{key}`.
    Payment(&'a str),
    /// `POST /v1/documents` with this body.
    Document(&'a [u8]),
    /// `POST /v1/emails` with this body.
    Email(&'a [u8]),
}

impl Request<'_> {
    /// The service whose fault knobs apply.
    pub fn service(&self) -> Service {
        match self {
            Request::Charge(_) | Request::Void(_) | Request::Payment(_) => Service::Payment,
            Request::Document(_) => Service::Documents,
            Request::Email(_) => Service::Email,
        }
    }

    /// Whether it is a new charge (only those roll the decline dice).
    pub fn is_charge(&self) -> bool {
        matches!(self, Request::Charge(_))
    }
}

/// What the server sends back for one request, before any socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    /// The HTTP status code.
    pub status: u16,
    /// The body (JSON, unless a fault garbled it).
    pub body: Vec<u8>,
    /// How it is delivered.
    pub delivery: Delivery,
}

/// How a [`Wire`] reaches the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// At once, whole.
    Now,
    /// Whole, after this delay (an unknown outcome for a caller that gives up first).
    After(Duration),
    /// The head and the first `n` body bytes, then the connection is aborted.
    CutAfter(usize),
}

impl Wire {
    fn now(status: u16, body: Vec<u8>) -> Wire {
        Wire {
            status,
            body,
            delivery: Delivery::Now,
        }
    }

    fn error(error: &ApiError) -> Wire {
        Wire::now(error.status().as_u16(), error_body(error))
    }
}

/// The body of every error reply, `{"error": "..."}`.
pub(crate) fn error_body(error: &ApiError) -> Vec<u8> {
    json_bytes(&json!({ "error": error.to_string() }))
}

fn json_bytes(value: &impl Serialize) -> Vec<u8> {
    // Our replies are plain structs of strings and decimals, which always serialize.
    serde_json::to_vec(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes())
}

impl Partners {
    /// The reply to `request` under `plan`, once the plan's latency has passed: outage →
    /// transient error → request check → effect (under the books lock) → post-effect fault.
    pub fn answer(&self, request: Request<'_>, plan: &Plan) -> Wire {
        let service = request.service();
        match request {
            Request::Charge(body) => settle(self, service, parse_json(body), plan, apply_charge),
            Request::Void(key) => settle(self, service, Ok(key), plan, apply_void),
            Request::Payment(key) => settle(self, service, Ok(key), plan, apply_payment),
            Request::Document(body) => {
                settle(self, service, parse_json(body), plan, apply_document)
            }
            Request::Email(body) => settle(self, service, parse_json(body), plan, apply_email),
        }
    }

    /// The reply to a request the route could not read (`error`), under `plan`: the outage and
    /// transient faults still come first, as for any request.
    pub(crate) fn refuse(&self, service: Service, error: ApiError, plan: &Plan) -> Wire {
        settle(self, service, Err::<&str, _>(error), plan, apply_payment)
    }
}

fn apply_charge(
    books: &mut Books,
    request: ChargeRequest,
    plan: &Plan,
) -> Result<ChargeReceipt, ApiError> {
    let payment_id = format!("pay_{}", plan.new_id.simple());
    let receipt = books.charge(request, plan.decline, payment_id)?;
    tracing::debug!(payment_id = %receipt.payment_id, status = ?receipt.status, "charge");
    Ok(receipt)
}

fn apply_void(books: &mut Books, key: &str, _: &Plan) -> Result<VoidReceipt, ApiError> {
    let receipt = books.void(key)?;
    tracing::debug!(key, status = ?receipt.status, "void");
    Ok(receipt)
}

fn apply_payment(books: &mut Books, key: &str, _: &Plan) -> Result<PaymentView, ApiError> {
    books.payment(key).ok_or(ApiError::UnknownKey)
}

fn apply_document(
    books: &mut Books,
    request: DocumentRequest,
    plan: &Plan,
) -> Result<DocumentReceipt, ApiError> {
    let receipt = books.document(request, format!("doc_{}", plan.new_id.simple()))?;
    tracing::debug!(document_id = %receipt.document_id, "document");
    Ok(receipt)
}

fn apply_email(
    books: &mut Books,
    request: EmailRequest,
    plan: &Plan,
) -> Result<EmailReceipt, ApiError> {
    let receipt = books.email(request, format!("msg_{}", plan.new_id.simple()))?;
    tracing::debug!(message_id = %receipt.message_id, "email");
    Ok(receipt)
}

/// One request through the fault pipeline after its latency. Only a reply the books produced
/// (an effect or their refusal) can be mangled afterwards.
fn settle<T, R: Serialize>(
    partners: &Partners,
    service: Service,
    input: Result<T, ApiError>,
    plan: &Plan,
    apply: impl FnOnce(&mut Books, T, &Plan) -> Result<R, ApiError>,
) -> Wire {
    if plan.outage {
        return Wire::error(&ApiError::Outage(service));
    }
    if plan.error {
        tracing::debug!(%service, "injected transient error");
        return Wire::error(&ApiError::Transient(service));
    }
    let input = match input {
        Ok(input) => input,
        Err(error) => return Wire::error(&error),
    };
    let reply = partners.with_books(|books| {
        let before = books.events_len();
        let reply = apply(books, input, plan);
        books.stamp_latency(before, plan.latency);
        reply
    });
    let (status, body) = match reply {
        Ok(value) => (200, json_bytes(&value)),
        Err(error) => (error.status().as_u16(), error_body(&error)),
    };
    match plan.post {
        None => Wire::now(status, body),
        Some(fault) => {
            tracing::debug!(%service, ?fault, "injected post-effect fault");
            degrade(status, body, fault)
        }
    }
}

/// Mangles a reply whose effect was already applied.
fn degrade(status: u16, body: Vec<u8>, fault: PostFault) -> Wire {
    match fault {
        PostFault::Delay(delay) => Wire {
            status,
            body,
            delivery: Delivery::After(delay),
        },
        PostFault::Drop => Wire {
            status,
            body,
            delivery: Delivery::CutAfter(0),
        },
        PostFault::TruncatedBody => {
            let half = body.len() / 2;
            Wire {
                status,
                body,
                delivery: Delivery::CutAfter(half),
            }
        }
        PostFault::MalformedJson => {
            // Half an object plus junk is never valid JSON.
            let mut garbage = body[..body.len() / 2].to_vec();
            garbage.extend_from_slice(b"\x00<<garbage>>");
            Wire::now(status, garbage)
        }
        PostFault::UnexpectedStatus(code) => Wire::now(
            code,
            json_bytes(&json!({ "error": format!("simulated unexpected status {code}") })),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{FaultConfig, UnknownMode};

    fn partners(config: FaultConfig) -> Partners {
        Partners::new(FaultConfig {
            seed: Some(7),
            ..config
        })
        .unwrap()
    }

    fn charge(key: &str) -> Vec<u8> {
        json_bytes(
            &json!({"idempotency_key": key, "user_id": "u", "amount": "5.00", "currency": "EUR"}),
        )
    }

    fn answer(partners: &Partners, request: Request<'_>) -> Wire {
        let plan = partners.plan(request.service(), request.is_charge());
        partners.answer(request, &plan)
    }

    #[test]
    fn a_quiet_charge_is_a_whole_200_with_the_receipt() {
        let p = partners(FaultConfig::quiet());
        let wire = answer(&p, Request::Charge(&charge("k")));
        assert_eq!((wire.status, wire.delivery), (200, Delivery::Now));
        let receipt: ChargeReceipt = serde_json::from_slice(&wire.body).unwrap();
        assert!(receipt.payment_id.starts_with("pay_"));
        assert_eq!(p.audit().events.len(), 1);
    }

    #[test]
    fn a_voided_key_refuses_the_charge_with_the_exact_body() {
        let p = partners(FaultConfig::quiet());
        assert_eq!(answer(&p, Request::Void("k")).status, 200);
        let wire = answer(&p, Request::Charge(&charge("k")));
        assert_eq!(
            (wire.status, wire.body.as_slice()),
            (409, &br#"{"error":"voided"}"#[..])
        );
    }

    #[test]
    fn outages_and_bad_input_apply_nothing_and_are_never_mangled() {
        let mut config = FaultConfig::quiet();
        config.payment.outage = true;
        config.payment.malformed_json_rate = 1.0;
        let p = partners(config);
        let wire = answer(&p, Request::Charge(&charge("k")));
        assert_eq!((wire.status, wire.delivery), (503, Delivery::Now));
        assert!(serde_json::from_slice::<serde_json::Value>(&wire.body).is_ok());

        let mut config = FaultConfig::quiet();
        config.documents.malformed_json_rate = 1.0;
        let p = partners(config);
        let wire = answer(&p, Request::Document(b"{not json"));
        assert_eq!(wire.status, 400);
        assert!(serde_json::from_slice::<serde_json::Value>(&wire.body).is_ok());
        assert!(p.audit().events.is_empty());
    }

    #[test]
    fn post_effect_faults_apply_the_effect_then_mangle_the_reply() {
        /// A fault config change, and what the reply must look like under it.
        type Case = (fn(&mut FaultConfig), fn(&Wire) -> bool);
        let cases: [Case; 4] = [
            (
                |c| {
                    c.payment.unknown_rate = 1.0;
                    c.unknown_mode = UnknownMode::Delay;
                    c.unknown_delay_ms = 1_234;
                },
                |w| w.delivery == Delivery::After(Duration::from_millis(1_234)),
            ),
            (
                |c| {
                    c.payment.unknown_rate = 1.0;
                    c.unknown_mode = UnknownMode::Drop;
                },
                |w| w.delivery == Delivery::CutAfter(0),
            ),
            (
                |c| c.payment.truncated_body_rate = 1.0,
                |w| w.delivery == Delivery::CutAfter(w.body.len() / 2),
            ),
            (
                |c| {
                    c.payment.unexpected_status_rate = 1.0;
                    c.unexpected_status = 302;
                },
                |w| w.status == 302 && w.delivery == Delivery::Now,
            ),
        ];
        for (configure, expected) in cases {
            let mut config = FaultConfig::quiet();
            configure(&mut config);
            let p = partners(config);
            let wire = answer(&p, Request::Charge(&charge("k")));
            assert!(expected(&wire), "{wire:?}");
            assert_eq!(p.audit().events.len(), 1, "the effect is applied");
        }
    }
}
