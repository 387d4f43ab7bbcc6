//! Money (I7), against the partners' audit. An investment's payment key is
//! `"{request_id}:payment"` and its documents key `"{request_id}:documents"`. Per request the
//! net charged (charges − refunds) is 0 or the amount, and the amount exactly when CONFIRMED;
//! no refund comes before a charge; nothing is charged for a request that is unknown or
//! REJECTED; per deal the net charged stays within the deal's amount; a CONFIRMED investment
//! has exactly one document. A document for a CANCELLED investment is a known imperfection
//! (the documents partner cannot void): counted as an orphan, not a violation.
//!
//! PENDING investments mean the run did not quiesce (the liveness check reports them); their
//! net must still be 0 or the amount. Without an audit (no executors in the run) the verdict is
//! `Unknown`: nothing was checked, and saying so beats a `Valid` that checked nothing.

use std::collections::HashMap;

use ledger_partners::{AuditEntry, AuditLog, ChargeStatus};
use serde::{Deserialize, Serialize};

use super::context::{parse_rid, Context, FinalIndex, Rid, RidMap};
use super::verdict::{CheckName, CheckResult, Verdict, Violation, Violations};
use crate::history::{FinalInvestment, InvStatus};

const PAYMENT_STEP: &str = "payment";
const DOCUMENTS_STEP: &str = "documents";

/// The partners' effects, in numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyCounts {
    /// Charge events (succeeded or declined).
    pub charges: u64,
    /// Of which declined.
    pub declined_charges: u64,
    /// Refund events.
    pub refunds: u64,
    /// Keys voided before any charge arrived.
    pub voids: u64,
    /// Document events.
    pub documents: u64,
    /// Documents of investments that ended CANCELLED (accepted: no void API for documents).
    pub orphan_documents: u64,
    /// Payment keys with more than one charge event (the partner should record one).
    pub duplicate_charges: u64,
    /// E-mail events.
    pub emails: u64,
}

/// What the payment partner recorded for one request.
#[derive(Debug, Default)]
struct PaymentBook<'a> {
    charges: u32,
    charged_cents: i128,
    refunds: u32,
    refunded_cents: i128,
    /// The first charge's amount and user, to compare with the investment.
    first_charge: Option<(i128, &'a str)>,
    /// Sequence number of a refund that came before any succeeded charge.
    early_refund: Option<u64>,
}

impl PaymentBook<'_> {
    fn net_cents(&self) -> i128 {
        self.charged_cents - self.refunded_cents
    }
}

/// What the documents partner recorded for one request.
#[derive(Debug, Default)]
struct DocumentBook<'a> {
    count: u32,
    /// The first document's deal and amount.
    first: Option<(&'a str, i128)>,
}

/// The audit, grouped by request.
#[derive(Debug, Default)]
pub(crate) struct Books<'a> {
    payments: RidMap<PaymentBook<'a>>,
    documents: RidMap<DocumentBook<'a>>,
    /// `(seq, key)` of payment or document events whose key names no request.
    foreign: Vec<(u64, &'a str)>,
    /// `(seq, key)` of events whose amount is not a whole number of cents.
    bad_amounts: Vec<(u64, &'a str)>,
    counts: MoneyCounts,
}

impl<'a> Books<'a> {
    pub(crate) fn new(audit: &'a AuditLog) -> Books<'a> {
        let mut books = Books::default();
        for event in &audit.events {
            books.record(event.seq, &event.entry);
        }
        books.counts.duplicate_charges =
            books.payments.values().filter(|p| p.charges > 1).count() as u64;
        books
    }

    fn record(&mut self, seq: u64, entry: &'a AuditEntry) {
        match entry {
            AuditEntry::Charge {
                key,
                user_id,
                amount,
                status,
                ..
            } => {
                self.counts.charges += 1;
                self.counts.declined_charges += u64::from(*status == ChargeStatus::Declined);
                let cents = self.cents(seq, key, amount.mantissa(), amount.scale());
                if let Some(book) = self.payment(seq, key) {
                    book.charges += 1;
                    book.first_charge.get_or_insert((cents, user_id));
                    if *status == ChargeStatus::Succeeded {
                        book.charged_cents += cents;
                    }
                }
            }
            AuditEntry::Refund { key, amount, .. } => {
                self.counts.refunds += 1;
                let cents = self.cents(seq, key, amount.mantissa(), amount.scale());
                if let Some(book) = self.payment(seq, key) {
                    if book.charged_cents <= book.refunded_cents {
                        book.early_refund.get_or_insert(seq);
                    }
                    book.refunds += 1;
                    book.refunded_cents += cents;
                }
            }
            AuditEntry::Void { .. } => self.counts.voids += 1,
            AuditEntry::Document {
                key,
                deal_id,
                amount,
                ..
            } => {
                self.counts.documents += 1;
                let cents = self.cents(seq, key, amount.mantissa(), amount.scale());
                match key_rid(key, DOCUMENTS_STEP) {
                    Some(rid) => {
                        let book = self.documents.entry(rid).or_default();
                        book.count += 1;
                        book.first.get_or_insert((deal_id, cents));
                    }
                    None => self.foreign.push((seq, key)),
                }
            }
            AuditEntry::Email { .. } => self.counts.emails += 1,
        }
    }

    fn payment(&mut self, seq: u64, key: &'a str) -> Option<&mut PaymentBook<'a>> {
        match key_rid(key, PAYMENT_STEP) {
            Some(rid) => Some(self.payments.entry(rid).or_default()),
            None => {
                self.foreign.push((seq, key));
                None
            }
        }
    }

    fn cents(&mut self, seq: u64, key: &'a str, mantissa: i128, scale: u32) -> i128 {
        match cents_of(mantissa, scale) {
            Some(cents) => cents,
            None => {
                self.bad_amounts.push((seq, key));
                0
            }
        }
    }

    /// The counts of the summary; orphan documents need the final state.
    pub(crate) fn counts(&self, reference: Option<&FinalIndex<'_>>) -> MoneyCounts {
        let orphans = reference.map_or(0, |index| {
            index
                .primaries()
                .filter(|(_, rid, inv)| {
                    inv.status == InvStatus::Cancelled && self.documents.contains_key(rid)
                })
                .count() as u64
        });
        MoneyCounts {
            orphan_documents: orphans,
            ..self.counts.clone()
        }
    }
}

/// The request id of a key `"{request_id}:{step}"`.
fn key_rid(key: &str, step: &str) -> Option<Rid> {
    let (request_id, suffix) = key.rsplit_once(':')?;
    (suffix == step).then(|| parse_rid(request_id)).flatten()
}

/// A decimal `mantissa × 10^-scale` in whole cents, if it is one (the partners accept at most
/// two fraction digits as written, but a trailing zero such as `"1.500"` is still whole cents).
fn cents_of(mantissa: i128, scale: u32) -> Option<i128> {
    if scale <= 2 {
        mantissa.checked_mul(10i128.checked_pow(2 - scale)?)
    } else {
        let divisor = 10i128.checked_pow(scale - 2)?;
        (mantissa % divisor == 0).then(|| mantissa / divisor)
    }
}

pub(super) fn check(ctx: &Context<'_>, books: Option<&Books<'_>>) -> CheckResult {
    let verdict = match (books, &ctx.reference) {
        (None, _) => Verdict::unknown("no sagas in this run (no partners' audit)"),
        (Some(_), None) => Verdict::unknown("no node's final state was read"),
        (Some(books), Some(reference)) => {
            let mut out = Violations::new();
            check_events(books, &mut out);
            check_unknown_requests(ctx, books, reference, &mut out);
            check_investments(ctx, books, reference, &mut out);
            check_deals(ctx, books, reference, &mut out);
            out.into_verdict()
        }
    };
    CheckResult::new(CheckName::Money, verdict)
}

fn check_events(books: &Books<'_>, out: &mut Violations) {
    for &(seq, key) in &books.foreign {
        out.report(|| {
            Violation::new(format!(
                "audit event {seq} has key {key:?}, which names no request's payment or documents"
            ))
        });
    }
    for &(seq, key) in &books.bad_amounts {
        out.report(|| {
            Violation::new(format!(
                "audit event {seq} (key {key:?}) has an amount that is not a whole number of cents"
            ))
        });
    }
}

/// Charges and documents exist only for admitted investments.
fn check_unknown_requests(
    ctx: &Context<'_>,
    books: &Books<'_>,
    reference: &FinalIndex<'_>,
    out: &mut Violations,
) {
    let mut charged: Vec<(&Rid, &PaymentBook<'_>)> = books
        .payments
        .iter()
        .filter(|(_, book)| book.charges > 0 || book.refunds > 0)
        .collect();
    charged.sort_unstable_by_key(|(rid, _)| **rid);
    for (&rid, _) in charged {
        let status = reference.get(rid).map(|inv| inv.status);
        if !matches!(status, None | Some(InvStatus::Rejected)) {
            continue;
        }
        report(ctx, rid, out, |request| {
            format!(
                "the payment partner charged {} request {request}",
                status.map_or("unknown", |_| "REJECTED")
            )
        });
    }
    let mut documented: Vec<&Rid> = books.documents.keys().collect();
    documented.sort_unstable();
    for &rid in documented {
        let status = reference.get(rid).map(|inv| inv.status);
        if matches!(status, None | Some(InvStatus::Rejected)) {
            report(ctx, rid, out, |request| {
                format!(
                    "the documents partner has a document for {} request {request}",
                    status.map_or("unknown", |_| "REJECTED")
                )
            });
        }
    }
}

fn check_investments(
    ctx: &Context<'_>,
    books: &Books<'_>,
    reference: &FinalIndex<'_>,
    out: &mut Violations,
) {
    let no_payment = PaymentBook::default();
    let no_documents = DocumentBook::default();
    for (_, rid, inv) in reference.primaries() {
        let payment = books.payments.get(&rid).unwrap_or(&no_payment);
        let documents = books.documents.get(&rid).unwrap_or(&no_documents);
        for problem in payment_problems(inv, payment)
            .into_iter()
            .chain(document_problems(inv, documents))
        {
            report(ctx, rid, out, |request| {
                format!("request {request}: {problem}")
            });
        }
    }
}

fn payment_problems(inv: &FinalInvestment, book: &PaymentBook<'_>) -> Vec<String> {
    let amount = i128::from(inv.amount_cents);
    let net = book.net_cents();
    let mut problems = Vec::new();
    if let Some(seq) = book.early_refund {
        problems.push(format!(
            "refund (audit event {seq}) without a charge before it"
        ));
    }
    if let Some((cents, user)) = book.first_charge {
        if cents != amount || user != inv.user_id {
            problems.push(format!(
                "charged {cents} cents to user {user} for an investment of {amount} cents by {}",
                inv.user_id
            ));
        }
    }
    let expected = match inv.status {
        InvStatus::Confirmed => Some(amount),
        // Never admitted (rejected, or still waiting): never charged.
        InvStatus::Cancelled | InvStatus::Rejected | InvStatus::Waitlisted => Some(0),
        InvStatus::Pending => None,
    };
    match expected {
        Some(expected) if net != expected => problems.push(format!(
            "{:?} with {net} cents net charged, expected {expected}",
            inv.status
        )),
        None if net != 0 && net != amount => problems.push(format!(
            "PENDING with {net} cents net charged, neither 0 nor its {amount}"
        )),
        _ => {}
    }
    problems
}

fn document_problems(inv: &FinalInvestment, book: &DocumentBook<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    if inv.status == InvStatus::Confirmed && book.count != 1 {
        problems.push(format!(
            "CONFIRMED with {} documents, expected 1",
            book.count
        ));
    }
    if let Some((deal_id, cents)) = book.first {
        if deal_id != inv.deal_id || cents != i128::from(inv.amount_cents) {
            problems.push(format!(
                "document for deal {deal_id} and {cents} cents, but the investment is {} cents in {}",
                inv.amount_cents, inv.deal_id
            ));
        }
    }
    problems
}

/// The net charged per deal stays within the deal's amount.
fn check_deals(
    ctx: &Context<'_>,
    books: &Books<'_>,
    reference: &FinalIndex<'_>,
    out: &mut Violations,
) {
    let mut net_by_deal: HashMap<&str, i128> = HashMap::new();
    for (_, rid, inv) in reference.primaries() {
        if let Some(book) = books.payments.get(&rid) {
            *net_by_deal.entry(inv.deal_id.as_str()).or_default() += book.net_cents();
        }
    }
    let mut net_by_deal: Vec<(&str, i128)> = net_by_deal.into_iter().collect();
    net_by_deal.sort_unstable();
    for (deal_id, net) in net_by_deal {
        let Some(terms) = ctx.deals.get(deal_id) else {
            continue;
        };
        if net > i128::from(terms.amount_cents) {
            out.report(|| {
                Violation::new(format!(
                    "deal {deal_id} has {net} cents net charged, above its amount of {} cents",
                    terms.amount_cents
                ))
            });
        }
    }
}

fn report(
    ctx: &Context<'_>,
    rid: Rid,
    out: &mut Violations,
    message: impl FnOnce(String) -> String,
) {
    out.report(|| {
        let request = uuid::Uuid::from_u128(rid).hyphenated().to_string();
        Violation::new(message(request.clone()))
            .ops(ctx.ok_ops_of(rid))
            .requests([request])
    });
}
