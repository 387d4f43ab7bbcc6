//! The partners' books: pure in-memory ledgers of charges, refunds, voids,
//! documents and emails, plus the audit trail. No I/O, no clocks, no
//! randomness (ids and the decline decision are passed in), so every rule
//! here is unit-testable on its own.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Longest accepted idempotency key, so one client cannot grow the books
/// without bound through a single huge key.
pub const MAX_KEY_LEN: usize = 256;

/// Longest accepted free-text field (ids, currency, email fields).
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// Why the books refused a request. Nothing is recorded when one of these is
/// returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BooksError {
    /// The key was voided before any charge with it arrived; the charge is
    /// refused for ever (HTTP 409, body `{"error":"voided"}`).
    #[error("voided")]
    Voided,
    /// The key was already used with a different payload (HTTP 422).
    #[error("idempotency key {key:?} was already used with a different payload")]
    KeyReuse {
        /// The reused key.
        key: String,
    },
    /// The request is well-formed JSON but semantically invalid (HTTP 422).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// `POST /v1/payments` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    /// Caller-chosen key; the same key always maps to the same charge.
    pub idempotency_key: String,
    /// Who is charged.
    pub user_id: String,
    /// Positive amount with at most two fraction digits, as a decimal string.
    pub amount: Decimal,
    /// Currency code, e.g. `"EUR"`; not interpreted.
    pub currency: String,
}

/// `POST /v1/documents` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRequest {
    /// Caller-chosen key; the same key always maps to the same document.
    pub idempotency_key: String,
    /// The admission request the document belongs to.
    pub request_id: String,
    /// The deal the document belongs to.
    pub deal_id: String,
    /// The investor.
    pub user_id: String,
    /// Admitted amount, as a decimal string.
    pub amount: Decimal,
}

/// `POST /v1/emails` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailRequest {
    /// Caller-chosen key; the same key always maps to the same message.
    pub idempotency_key: String,
    /// Recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Message body.
    pub body: String,
}

/// Outcome of a charge as decided when it first arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeStatus {
    /// The money was taken.
    Succeeded,
    /// The charge was refused; no money moved.
    Declined,
}

/// `POST /v1/payments` reply: the FIRST result recorded for the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeReceipt {
    /// Id of the charge (also assigned to declined charges).
    pub payment_id: String,
    /// Outcome decided when the charge first arrived.
    pub status: ChargeStatus,
}

/// `POST /v1/payments/{key}/void` reply status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoidStatus {
    /// A succeeded charge was refunded (now or by an earlier void).
    Refunded,
    /// No charge had arrived; the key is now refused for ever.
    Voided,
    /// The charge had been declined; nothing to refund.
    Declined,
}

/// `POST /v1/payments/{key}/void` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoidReceipt {
    /// What the void did (or had already done).
    pub status: VoidStatus,
}

/// Current state of a payment key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Charged and not refunded.
    Succeeded,
    /// Charge declined.
    Declined,
    /// Charged, then refunded by a void.
    Refunded,
    /// Voided before any charge arrived.
    Voided,
}

/// `GET /v1/payments/{key}` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentView {
    /// Absent for a voided key (no charge ever existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// Current state.
    pub status: PaymentState,
    /// Charged amount; absent for a voided key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Decimal>,
    /// Charged currency; absent for a voided key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Charged user; absent for a voided key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// `POST /v1/documents` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentReceipt {
    /// Id of the (single) document recorded for the key.
    pub document_id: String,
}

/// `POST /v1/emails` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailReceipt {
    /// Id of the (single) message recorded for the key.
    pub message_id: String,
}

/// One recorded effect, numbered in order of occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// 1-based, strictly increasing, no gaps.
    pub seq: u64,
    /// What happened.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// The latency the partner added to the request that caused this effect (its fault plan),
    /// in ms: what a load test subtracts to find its own overhead.
    #[serde(default)]
    pub latency_ms: u64,
}

/// The effect an [`AuditEvent`] records; serialized with a `kind` tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditEntry {
    /// A charge arrived for a new key (succeeded or declined).
    Charge {
        /// Idempotency key.
        key: String,
        /// Charge id.
        payment_id: String,
        /// Charged user.
        user_id: String,
        /// Amount (taken only if `status` is `succeeded`).
        amount: Decimal,
        /// Currency.
        currency: String,
        /// Outcome.
        status: ChargeStatus,
    },
    /// A succeeded charge was refunded in full.
    Refund {
        /// Idempotency key of the refunded charge.
        key: String,
        /// Refunded charge id.
        payment_id: String,
        /// Charged user.
        user_id: String,
        /// Refunded amount (the full charge).
        amount: Decimal,
        /// Currency.
        currency: String,
    },
    /// A key was voided before any charge arrived.
    Void {
        /// Idempotency key.
        key: String,
    },
    /// A document was generated.
    Document {
        /// Idempotency key.
        key: String,
        /// Document id.
        document_id: String,
        /// Admission request id.
        request_id: String,
        /// Deal id.
        deal_id: String,
        /// Investor.
        user_id: String,
        /// Admitted amount.
        amount: Decimal,
    },
    /// An email was sent.
    Email {
        /// Idempotency key.
        key: String,
        /// Message id.
        message_id: String,
        /// Recipient.
        to: String,
        /// Subject line.
        subject: String,
        /// Message body.
        body: String,
    },
}

impl AuditEntry {
    /// The idempotency key the entry belongs to.
    pub fn key(&self) -> &str {
        match self {
            AuditEntry::Charge { key, .. }
            | AuditEntry::Refund { key, .. }
            | AuditEntry::Void { key }
            | AuditEntry::Document { key, .. }
            | AuditEntry::Email { key, .. } => key,
        }
    }
}

/// `GET /v1/audit` reply, with helpers for invariant checkers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    /// Every recorded effect, in `seq` order.
    pub events: Vec<AuditEvent>,
}

impl AuditLog {
    /// Money actually kept per payment key: succeeded charges minus refunds.
    /// Keys whose net is zero (declined, refunded, voided) are still listed.
    pub fn net_charged(&self) -> HashMap<String, Decimal> {
        let mut net: HashMap<String, Decimal> = HashMap::new();
        for event in &self.events {
            match &event.entry {
                AuditEntry::Charge {
                    key,
                    amount,
                    status,
                    ..
                } => {
                    let taken = match status {
                        ChargeStatus::Succeeded => *amount,
                        ChargeStatus::Declined => Decimal::ZERO,
                    };
                    *net.entry(key.clone()).or_default() += taken;
                }
                AuditEntry::Refund { key, amount, .. } => {
                    *net.entry(key.clone()).or_default() -= *amount;
                }
                AuditEntry::Void { key } => {
                    net.entry(key.clone()).or_default();
                }
                AuditEntry::Document { .. } | AuditEntry::Email { .. } => {}
            }
        }
        net
    }

    /// Number of documents recorded per key (always 1 if the books are right).
    pub fn documents_per_key(&self) -> HashMap<String, usize> {
        self.count_per_key(|e| matches!(e, AuditEntry::Document { .. }))
    }

    /// Number of emails recorded per key (always 1 if the books are right).
    pub fn emails_per_key(&self) -> HashMap<String, usize> {
        self.count_per_key(|e| matches!(e, AuditEntry::Email { .. }))
    }

    fn count_per_key(&self, pick: impl Fn(&AuditEntry) -> bool) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for event in self.events.iter().filter(|e| pick(&e.entry)) {
            *counts.entry(event.entry.key().to_owned()).or_default() += 1;
        }
        counts
    }
}

/// What a payment key currently holds.
#[derive(Debug, Clone)]
enum PaymentRecord {
    Charged {
        request: ChargeRequest,
        receipt: ChargeReceipt,
        refunded: bool,
    },
    Voided,
}

/// The in-memory books of all three partners.
///
/// B-trees, not hash maps: a hash map doubles all at once, and every call waits on the books'
/// lock meanwhile. At 28,672 keys that stop took ~100 ms, which load runs saw as periodic
/// bursts of slow sagas (docs/performance.md); a B-tree grows a node at a time.
#[derive(Debug, Default)]
pub struct Books {
    payments: BTreeMap<String, PaymentRecord>,
    documents: BTreeMap<String, (DocumentRequest, DocumentReceipt)>,
    emails: BTreeMap<String, (EmailRequest, EmailReceipt)>,
    events: Vec<AuditEvent>,
}

impl Books {
    /// Empty books.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a charge for a new key (taking `payment_id` and the `decline`
    /// decision), or replays the first result for a known key.
    pub fn charge(
        &mut self,
        request: ChargeRequest,
        decline: bool,
        payment_id: String,
    ) -> Result<ChargeReceipt, BooksError> {
        validate_key(&request.idempotency_key)?;
        validate_text("user_id", &request.user_id)?;
        validate_text("currency", &request.currency)?;
        validate_amount(request.amount)?;
        match self.payments.get(&request.idempotency_key) {
            Some(PaymentRecord::Voided) => Err(BooksError::Voided),
            Some(PaymentRecord::Charged {
                request: first,
                receipt,
                ..
            }) => {
                if *first == request {
                    Ok(receipt.clone())
                } else {
                    Err(BooksError::KeyReuse {
                        key: request.idempotency_key,
                    })
                }
            }
            None => {
                let status = if decline {
                    ChargeStatus::Declined
                } else {
                    ChargeStatus::Succeeded
                };
                let receipt = ChargeReceipt { payment_id, status };
                self.record(AuditEntry::Charge {
                    key: request.idempotency_key.clone(),
                    payment_id: receipt.payment_id.clone(),
                    user_id: request.user_id.clone(),
                    amount: request.amount,
                    currency: request.currency.clone(),
                    status,
                });
                self.payments.insert(
                    request.idempotency_key.clone(),
                    PaymentRecord::Charged {
                        request,
                        receipt: receipt.clone(),
                        refunded: false,
                    },
                );
                Ok(receipt)
            }
        }
    }

    /// Refunds a succeeded charge (once), or voids a key no charge has used
    /// yet. Repeating it returns the same answer and records nothing more.
    pub fn void(&mut self, key: &str) -> Result<VoidReceipt, BooksError> {
        validate_key(key)?;
        let status = match self.payments.get_mut(key) {
            None => {
                self.payments.insert(key.to_owned(), PaymentRecord::Voided);
                self.record(AuditEntry::Void {
                    key: key.to_owned(),
                });
                VoidStatus::Voided
            }
            Some(PaymentRecord::Voided) => VoidStatus::Voided,
            Some(PaymentRecord::Charged { receipt, .. })
                if receipt.status == ChargeStatus::Declined =>
            {
                VoidStatus::Declined
            }
            Some(PaymentRecord::Charged { refunded: true, .. }) => VoidStatus::Refunded,
            Some(PaymentRecord::Charged {
                request,
                receipt,
                refunded,
            }) => {
                *refunded = true;
                let entry = AuditEntry::Refund {
                    key: key.to_owned(),
                    payment_id: receipt.payment_id.clone(),
                    user_id: request.user_id.clone(),
                    amount: request.amount,
                    currency: request.currency.clone(),
                };
                self.record(entry);
                VoidStatus::Refunded
            }
        };
        Ok(VoidReceipt { status })
    }

    /// Current state of a payment key, `None` if the key was never seen.
    pub fn payment(&self, key: &str) -> Option<PaymentView> {
        let view = match self.payments.get(key)? {
            PaymentRecord::Voided => PaymentView {
                payment_id: None,
                status: PaymentState::Voided,
                amount: None,
                currency: None,
                user_id: None,
            },
            PaymentRecord::Charged {
                request,
                receipt,
                refunded,
            } => PaymentView {
                payment_id: Some(receipt.payment_id.clone()),
                status: match (receipt.status, refunded) {
                    (ChargeStatus::Declined, _) => PaymentState::Declined,
                    (ChargeStatus::Succeeded, true) => PaymentState::Refunded,
                    (ChargeStatus::Succeeded, false) => PaymentState::Succeeded,
                },
                amount: Some(request.amount),
                currency: Some(request.currency.clone()),
                user_id: Some(request.user_id.clone()),
            },
        };
        Some(view)
    }

    /// Records a document for a new key, or returns the existing one.
    pub fn document(
        &mut self,
        request: DocumentRequest,
        document_id: String,
    ) -> Result<DocumentReceipt, BooksError> {
        validate_key(&request.idempotency_key)?;
        validate_text("request_id", &request.request_id)?;
        validate_text("deal_id", &request.deal_id)?;
        validate_text("user_id", &request.user_id)?;
        validate_amount(request.amount)?;
        if let Some((first, receipt)) = self.documents.get(&request.idempotency_key) {
            return if *first == request {
                Ok(receipt.clone())
            } else {
                Err(BooksError::KeyReuse {
                    key: request.idempotency_key,
                })
            };
        }
        let receipt = DocumentReceipt { document_id };
        self.record(AuditEntry::Document {
            key: request.idempotency_key.clone(),
            document_id: receipt.document_id.clone(),
            request_id: request.request_id.clone(),
            deal_id: request.deal_id.clone(),
            user_id: request.user_id.clone(),
            amount: request.amount,
        });
        self.documents
            .insert(request.idempotency_key.clone(), (request, receipt.clone()));
        Ok(receipt)
    }

    /// Records an email for a new key, or returns the existing one.
    pub fn email(
        &mut self,
        request: EmailRequest,
        message_id: String,
    ) -> Result<EmailReceipt, BooksError> {
        validate_key(&request.idempotency_key)?;
        validate_text("to", &request.to)?;
        if request.subject.len() > MAX_TEXT_LEN || request.body.len() > MAX_TEXT_LEN {
            return Err(BooksError::Invalid(format!(
                "subject and body must be at most {MAX_TEXT_LEN} bytes"
            )));
        }
        if let Some((first, receipt)) = self.emails.get(&request.idempotency_key) {
            return if *first == request {
                Ok(receipt.clone())
            } else {
                Err(BooksError::KeyReuse {
                    key: request.idempotency_key,
                })
            };
        }
        let receipt = EmailReceipt { message_id };
        self.record(AuditEntry::Email {
            key: request.idempotency_key.clone(),
            message_id: receipt.message_id.clone(),
            to: request.to.clone(),
            subject: request.subject.clone(),
            body: request.body.clone(),
        });
        self.emails
            .insert(request.idempotency_key.clone(), (request, receipt.clone()));
        Ok(receipt)
    }

    /// Every recorded effect, in order.
    pub fn events(&self) -> &[AuditEvent] {
        &self.events
    }

    /// A copy of the audit trail.
    pub fn audit(&self) -> AuditLog {
        AuditLog {
            events: self.events.clone(),
        }
    }

    fn record(&mut self, entry: AuditEntry) {
        let seq = self.events.len() as u64 + 1;
        self.events.push(AuditEvent {
            seq,
            entry,
            latency_ms: 0,
        });
    }

    /// Stamps the effects recorded since the audit held `from` events with the latency of the
    /// request that caused them.
    pub(crate) fn stamp_latency(&mut self, from: usize, latency: Duration) {
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        for event in self.events.iter_mut().skip(from) {
            event.latency_ms = latency_ms;
        }
    }

    /// How many effects the audit holds.
    pub(crate) fn events_len(&self) -> usize {
        self.events.len()
    }
}

fn validate_key(key: &str) -> Result<(), BooksError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(BooksError::Invalid(format!(
            "idempotency_key must be 1..={MAX_KEY_LEN} bytes"
        )));
    }
    Ok(())
}

fn validate_text(field: &str, value: &str) -> Result<(), BooksError> {
    if value.is_empty() || value.len() > MAX_TEXT_LEN {
        return Err(BooksError::Invalid(format!(
            "{field} must be non-empty and at most {MAX_TEXT_LEN} bytes"
        )));
    }
    Ok(())
}

/// Amounts are money: strictly positive, at most two fraction digits as
/// written (so "1.000" is refused rather than silently reinterpreted).
fn validate_amount(amount: Decimal) -> Result<(), BooksError> {
    if amount <= Decimal::ZERO {
        return Err(BooksError::Invalid(format!(
            "amount must be > 0, got {amount}"
        )));
    }
    if amount.scale() > 2 {
        return Err(BooksError::Invalid(format!(
            "amount must have at most 2 fraction digits, got {amount}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn charge_req(key: &str, amount: &str) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: key.into(),
            user_id: "u1".into(),
            amount: dec(amount),
            currency: "EUR".into(),
        }
    }

    fn doc_req(key: &str) -> DocumentRequest {
        DocumentRequest {
            idempotency_key: key.into(),
            request_id: "r1".into(),
            deal_id: "d1".into(),
            user_id: "u1".into(),
            amount: dec("10.00"),
        }
    }

    fn email_req(key: &str) -> EmailRequest {
        EmailRequest {
            idempotency_key: key.into(),
            to: "a@example.invalid".into(),
            subject: "hi".into(),
            body: "admitted".into(),
        }
    }

    #[test]
    fn charge_is_idempotent_per_key_and_replays_first_result() {
        let mut books = Books::new();
        let first = books.charge(charge_req("k", "10.00"), false, "p1".into());
        assert_eq!(
            first,
            Ok(ChargeReceipt {
                payment_id: "p1".into(),
                status: ChargeStatus::Succeeded
            })
        );
        // A retry that would now be declined still gets the first result.
        let again = books.charge(charge_req("k", "10.00"), true, "p2".into());
        assert_eq!(again, first);
        assert_eq!(books.events().len(), 1);
        // Another key is another charge.
        let other = books
            .charge(charge_req("k2", "10.00"), false, "p3".into())
            .unwrap();
        assert_eq!(other.payment_id, "p3");
        assert_eq!(books.events().len(), 2);
    }

    #[test]
    fn same_key_different_payload_is_refused_and_not_recorded() {
        let mut books = Books::new();
        books
            .charge(charge_req("k", "10.00"), false, "p1".into())
            .unwrap();
        let err = books
            .charge(charge_req("k", "11.00"), false, "p2".into())
            .unwrap_err();
        assert!(matches!(err, BooksError::KeyReuse { .. }));
        assert_eq!(books.events().len(), 1);
    }

    #[test]
    fn void_before_charge_refuses_later_charge() {
        let mut books = Books::new();
        assert_eq!(books.void("k").unwrap().status, VoidStatus::Voided);
        assert_eq!(books.void("k").unwrap().status, VoidStatus::Voided);
        let err = books
            .charge(charge_req("k", "10.00"), false, "p1".into())
            .unwrap_err();
        assert_eq!(err, BooksError::Voided);
        assert_eq!(err.to_string(), "voided");
        assert_eq!(books.payment("k").unwrap().status, PaymentState::Voided);
        assert_eq!(books.payment("k").unwrap().payment_id, None);
        // Exactly one void event, no charge.
        assert_eq!(books.events().len(), 1);
        assert!(matches!(books.events()[0].entry, AuditEntry::Void { .. }));
        assert_eq!(books.audit().net_charged()["k"], Decimal::ZERO);
    }

    #[test]
    fn void_after_charge_refunds_exactly_once() {
        let mut books = Books::new();
        books
            .charge(charge_req("k", "25.50"), false, "p1".into())
            .unwrap();
        assert_eq!(books.payment("k").unwrap().status, PaymentState::Succeeded);
        for _ in 0..3 {
            assert_eq!(books.void("k").unwrap().status, VoidStatus::Refunded);
        }
        let view = books.payment("k").unwrap();
        assert_eq!(view.status, PaymentState::Refunded);
        assert_eq!(view.payment_id.as_deref(), Some("p1"));
        assert_eq!(view.amount, Some(dec("25.50")));
        let refunds = books
            .events()
            .iter()
            .filter(|e| matches!(e.entry, AuditEntry::Refund { .. }))
            .count();
        assert_eq!(refunds, 1);
        assert_eq!(books.audit().net_charged()["k"], Decimal::ZERO);
        // Replaying the charge returns the first result, records nothing.
        let replay = books
            .charge(charge_req("k", "25.50"), false, "p9".into())
            .unwrap();
        assert_eq!(replay.payment_id, "p1");
        assert_eq!(books.events().len(), 2);
    }

    #[test]
    fn void_of_declined_charge_refunds_nothing() {
        let mut books = Books::new();
        let receipt = books
            .charge(charge_req("k", "10.00"), true, "p1".into())
            .unwrap();
        assert_eq!(receipt.status, ChargeStatus::Declined);
        assert_eq!(books.void("k").unwrap().status, VoidStatus::Declined);
        assert_eq!(books.void("k").unwrap().status, VoidStatus::Declined);
        assert_eq!(books.payment("k").unwrap().status, PaymentState::Declined);
        assert_eq!(books.events().len(), 1);
        assert_eq!(books.audit().net_charged()["k"], Decimal::ZERO);
    }

    #[test]
    fn unknown_key_has_no_state() {
        assert_eq!(Books::new().payment("nope"), None);
    }

    #[test]
    fn invalid_amounts_and_keys_are_refused_and_not_recorded() {
        let mut books = Books::new();
        for amount in ["0", "-1.00", "1.005"] {
            let err = books
                .charge(charge_req("k", amount), false, "p".into())
                .unwrap_err();
            assert!(matches!(err, BooksError::Invalid(_)), "{amount}: {err}");
        }
        let err = books
            .charge(charge_req("", "1.00"), false, "p".into())
            .unwrap_err();
        assert!(matches!(err, BooksError::Invalid(_)));
        assert!(books.void("").is_err());
        let long = "x".repeat(MAX_KEY_LEN + 1);
        assert!(books.void(&long).is_err());
        assert!(books.events().is_empty());
        assert_eq!(books.payment("k"), None);
    }

    #[test]
    fn documents_and_emails_are_idempotent_per_key() {
        let mut books = Books::new();
        let d1 = books.document(doc_req("dk"), "doc1".into()).unwrap();
        let d2 = books.document(doc_req("dk"), "doc2".into()).unwrap();
        assert_eq!(d1, d2);
        assert_eq!(d1.document_id, "doc1");
        let mut changed = doc_req("dk");
        changed.deal_id = "other".into();
        assert!(matches!(
            books.document(changed, "doc3".into()),
            Err(BooksError::KeyReuse { .. })
        ));

        let e1 = books.email(email_req("ek"), "m1".into()).unwrap();
        let e2 = books.email(email_req("ek"), "m2".into()).unwrap();
        assert_eq!(e1, e2);
        assert_eq!(e1.message_id, "m1");
        books.email(email_req("ek2"), "m3".into()).unwrap();

        let audit = books.audit();
        assert_eq!(audit.documents_per_key(), HashMap::from([("dk".into(), 1)]));
        assert_eq!(
            audit.emails_per_key(),
            HashMap::from([("ek".into(), 1), ("ek2".into(), 1)])
        );
    }

    #[test]
    fn audit_is_sequenced_in_order_and_round_trips_as_json() {
        let mut books = Books::new();
        books
            .charge(charge_req("a", "10.00"), false, "p1".into())
            .unwrap();
        books
            .charge(charge_req("b", "5.00"), true, "p2".into())
            .unwrap();
        books.void("c").unwrap();
        books.void("a").unwrap();
        books.document(doc_req("d"), "doc1".into()).unwrap();
        books.email(email_req("e"), "m1".into()).unwrap();
        books
            .charge(charge_req("f", "7.25"), false, "p3".into())
            .unwrap();

        let audit = books.audit();
        let seqs: Vec<u64> = audit.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6, 7]);
        let kinds: Vec<&str> = audit
            .events
            .iter()
            .map(|e| match e.entry {
                AuditEntry::Charge { .. } => "charge",
                AuditEntry::Refund { .. } => "refund",
                AuditEntry::Void { .. } => "void",
                AuditEntry::Document { .. } => "document",
                AuditEntry::Email { .. } => "email",
            })
            .collect();
        assert_eq!(
            kinds,
            ["charge", "charge", "void", "refund", "document", "email", "charge"]
        );

        let net = audit.net_charged();
        assert_eq!(net["a"], Decimal::ZERO);
        assert_eq!(net["b"], Decimal::ZERO);
        assert_eq!(net["c"], Decimal::ZERO);
        assert_eq!(net["f"], dec("7.25"));

        let json = serde_json::to_value(&audit).unwrap();
        assert_eq!(
            json["events"][0],
            serde_json::json!({
                "seq": 1, "kind": "charge", "key": "a", "payment_id": "p1",
                "user_id": "u1", "amount": "10.00", "currency": "EUR",
                "status": "succeeded", "latency_ms": 0
            })
        );
        assert_eq!(
            json["events"][2],
            serde_json::json!({"seq": 3, "kind": "void", "key": "c", "latency_ms": 0})
        );
        let back: AuditLog = serde_json::from_value(json).unwrap();
        assert_eq!(back, audit);
    }

    #[test]
    fn latency_is_stamped_on_the_effects_of_one_request_only() {
        let mut books = Books::default();
        books
            .charge(charge_req("a", "10.00"), false, "p1".into())
            .unwrap();
        let before = books.events_len();
        books.document(doc_req("d"), "doc1".into()).unwrap();
        books.stamp_latency(before, Duration::from_millis(117));
        let latencies: Vec<u64> = books.events().iter().map(|e| e.latency_ms).collect();
        assert_eq!(latencies, [0, 117]);
    }
}
