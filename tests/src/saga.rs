//! The saga scenarios' harness (issue #4, `DESIGN.md` §4.4): a [`SagaCluster`] of nodes running
//! saga executors against an in-process partner simulator, load helpers, a bounded wait until
//! every saga is over (I8), and the checks of every investment against the partners' audit (I7,
//! plus no duplicate effect per idempotency key).
//!
//! Keys, as the executor uses them: `"{request_id}:payment"` (charge, and void/refund),
//! `"{request_id}:documents"`, `"{request_id}:notify"`.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ledger_client::NodeClients;
use ledger_partners::{AuditEntry, AuditLog, ChargeStatus, FaultConfig, SpawnedPartners};
use ledger_proto::pb;
use rust_decimal::Decimal;

use crate::check::{list_investments, money};
use crate::load::{self, Acked, RetryPolicy};
use crate::{wait_until, ClusterOptions, Rng, TestCluster};

/// Concurrent client tasks used by [`submit_all`].
pub const SUBMIT_TASKS: usize = 16;
/// How long one read of the harness (`Status`, `GetDeal`) may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A cluster whose nodes run saga executors, and the partners they call.
///
/// Field order matters: the nodes are killed (the cluster dropped) before the partners stop.
pub struct SagaCluster {
    /// The nodes (`--executor true --partners-url <partners>`).
    pub cluster: TestCluster,
    /// The partner simulator, in this test process on `127.0.0.1:0`.
    pub partners: SpawnedPartners,
}

impl SagaCluster {
    /// `nodes` voters with executors, partners with `faults`; returns once every node's executor
    /// is live in the replicated state.
    pub async fn start(nodes: u64, faults: FaultConfig) -> SagaCluster {
        SagaCluster::start_with(ClusterOptions::new(nodes), faults).await
    }

    /// [`SagaCluster::start`] with more cluster options (executors and the partners' URL are
    /// added to them).
    pub async fn start_with(options: ClusterOptions, faults: FaultConfig) -> SagaCluster {
        let partners = SpawnedPartners::start(faults)
            .await
            .expect("start the partner simulator on 127.0.0.1:0");
        let options = options
            .executor(true)
            .flag("--partners-url", partners.base_url());
        let cluster = TestCluster::start(options).await;
        let saga = SagaCluster { cluster, partners };
        let ids = saga.cluster.running();
        saga.wait_executors_live(&ids).await;
        saga
    }

    /// Clients of every running node, in id order.
    pub async fn clients(&self) -> Arc<Vec<NodeClients>> {
        let ids = self.cluster.running();
        Arc::new(load::connect_all(&self.cluster, &ids).await)
    }

    /// A copy of the partners' audit.
    pub fn audit(&self) -> AuditLog {
        self.partners.partners().audit()
    }

    /// Replaces the partners' fault config.
    pub fn set_faults(&self, faults: FaultConfig) {
        self.partners
            .partners()
            .set_faults(faults)
            .expect("a valid fault config");
    }

    /// The executors as the leader's replica sees them.
    pub async fn executors(&self) -> Vec<pb::ExecutorStatus> {
        let leader = self.cluster.leader().await;
        self.cluster
            .status(leader)
            .await
            .unwrap_or_else(|e| panic!("status of leader {leader}: {e}"))
            .executors
    }

    /// Waits until the executors of `ids` are all live in the leader's replica.
    pub async fn wait_executors_live(&self, ids: &[u64]) {
        let ids = ids.to_vec();
        wait_until(
            Duration::from_secs(20),
            &format!("the executors of nodes {ids:?} to be live"),
            || {
                let ids = ids.clone();
                async move {
                    let leader = agreed_leader_of(&self.cluster).await?;
                    let executors = self.cluster.status(leader).await?.executors;
                    let live = |id: u64| executors.iter().any(|e| e.node_id == id && e.live);
                    if ids.iter().all(|&id| live(id)) {
                        Ok(())
                    } else {
                        Err(format!("executors: {executors:?}"))
                    }
                }
            },
        )
        .await;
    }

    /// Panics if a node process this cluster started has exited on its own.
    pub fn assert_nodes_alive(&mut self) {
        let exited = self.cluster.exited();
        assert!(exited.is_empty(), "node processes exited: {exited:?}");
    }
}

/// The node every running member names leader, or why there is none yet (no waiting).
async fn agreed_leader_of(cluster: &TestCluster) -> Result<u64, String> {
    for id in cluster.running() {
        if let Ok(status) = cluster.status(id).await {
            if status.role == "leader" {
                return Ok(id);
            }
        }
    }
    Err("no node leads".to_owned())
}

/// A fault config with no faults and a small fixed latency on every service (so calls overlap a
/// little without slowing the test), seeded for repeatable dice.
pub fn quiet_faults(seed: u64) -> FaultConfig {
    let mut faults = FaultConfig::quiet();
    for service in [
        &mut faults.payment,
        &mut faults.documents,
        &mut faults.email,
    ] {
        service.latency = ledger_partners::Latency::new(2, 2);
    }
    faults.seed = Some(seed);
    faults
}

pub use crate::load::create_deal;

/// A deal, read linearizably.
pub async fn get_deal(client: &NodeClients, deal_id: &str) -> Result<pb::Deal, String> {
    let mut admission = client.admission.clone();
    let call = admission.get_deal(pb::GetDealRequest {
        deal_id: deal_id.to_owned(),
        consistency: pb::Consistency::Linearizable as i32,
    });
    match tokio::time::timeout(READ_TIMEOUT, call).await {
        Ok(Ok(deal)) => Ok(deal.into_inner()),
        Ok(Err(status)) => Err(format!("GetDeal {deal_id}: {status}")),
        Err(_) => Err(format!("GetDeal {deal_id} timed out")),
    }
}

/// `count` requests spread round robin over `deal_ids`, one distinct user each
/// (`"{user_prefix}-{n}"`), tickets of `tickets.0..tickets.1` cents.
pub fn requests(
    rng: &mut Rng,
    deal_ids: &[&str],
    count: usize,
    user_prefix: &str,
    tickets: (u64, u64),
) -> Vec<pb::SubmitRequest> {
    (0..count)
        .map(|n| pb::SubmitRequest {
            request_id: rng.uuid(),
            deal_id: deal_ids[n % deal_ids.len()].to_owned(),
            user_id: format!("{user_prefix}-{n}"),
            amount: money(rng.range(tickets.0, tickets.1)),
            waitlist: false,
            waitlist_ttl_ms: None,
        })
        .collect()
}

/// Submits every request through all `clients` ([`SUBMIT_TASKS`] concurrent tasks, nodes round
/// robin, retries under the same request id); panics if one is not decided. Replies in request
/// order.
pub async fn submit_all(
    clients: &Arc<Vec<NodeClients>>,
    requests: Vec<pb::SubmitRequest>,
) -> Vec<Acked> {
    let tasks = SUBMIT_TASKS.min(requests.len()).max(1);
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let clients = clients.clone();
        let mine: Vec<(usize, pb::SubmitRequest)> = requests
            .iter()
            .cloned()
            .enumerate()
            .skip(task)
            .step_by(tasks)
            .collect();
        handles.push(tokio::spawn(async move {
            let mut acked = Vec::with_capacity(mine.len());
            for (n, request) in mine {
                let id = request.request_id.clone();
                let ack = load::submit_retrying(&clients, n, request, RetryPolicy::default())
                    .await
                    .unwrap_or_else(|e| panic!("submit {id}: {e}"));
                acked.push((n, ack));
            }
            acked
        }));
    }
    let mut all = Vec::with_capacity(requests.len());
    for handle in handles {
        all.extend(handle.await.expect("a submitting task panicked"));
    }
    all.sort_by_key(|(n, _)| *n);
    all.into_iter().map(|(_, ack)| ack).collect()
}

/// The request ids of the admitted (PENDING at decision) replies.
pub fn admitted(acked: &[Acked]) -> Vec<String> {
    acked
        .iter()
        .filter(|ack| ack.decision().admitted())
        .map(|ack| ack.request.request_id.clone())
        .collect()
}

fn is_terminal(inv: &pb::Investment) -> bool {
    matches!(
        pb::InvestmentStatus::try_from(inv.status),
        Ok(pb::InvestmentStatus::Confirmed | pb::InvestmentStatus::Cancelled)
    )
}

fn is_admitted(inv: &pb::Investment) -> bool {
    inv.status != pb::InvestmentStatus::Rejected as i32
}

/// Whether an admitted investment's saga is over: terminal status and saga step DONE.
pub fn saga_over(inv: &pb::Investment) -> bool {
    is_terminal(inv) && inv.saga_step == pb::SagaStep::Done as i32
}

fn name_of_status(status: i32) -> String {
    pb::InvestmentStatus::try_from(status)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("status {status}"))
}

fn name_of_step(step: i32) -> String {
    pb::SagaStep::try_from(step)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("step {step}"))
}

/// Counts of investments per (status, saga step), for progress and failure messages.
pub fn progress(list: &[pb::Investment]) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for inv in list {
        *counts
            .entry((name_of_status(inv.status), name_of_step(inv.saga_step)))
            .or_default() += 1;
    }
    counts
}

/// I8: waits, at most `timeout`, until every admitted investment of `deal_ids` is CONFIRMED or
/// CANCELLED with its saga step DONE, reading through `client`; returns every investment of those
/// deals (rejected ones too). On timeout, panics with the counts per (status, step) and the first
/// unfinished investment.
///
/// Each poll first checks cheap necessary conditions (no executor reports open sagas; every
/// deal's active count equals its confirmed count), then lists the investments linearizably.
pub async fn wait_sagas_done(
    client: &NodeClients,
    deal_ids: &[&str],
    timeout: Duration,
) -> Vec<pb::Investment> {
    wait_until(
        timeout,
        "every admitted investment CONFIRMED or CANCELLED with its saga DONE (I8)",
        || async move {
            let mut cluster = client.cluster.clone();
            let status = tokio::time::timeout(
                READ_TIMEOUT,
                cluster.status(pb::StatusRequest { with_digest: false }),
            )
            .await
            .map_err(|_| "Status timed out".to_owned())?
            .map_err(|e| format!("Status: {e}"))?
            .into_inner();
            let open: u32 = status.executors.iter().map(|e| e.open_sagas).sum();
            if open > 0 {
                let per: Vec<(u64, bool, u32)> = status
                    .executors
                    .iter()
                    .map(|e| (e.node_id, e.live, e.open_sagas))
                    .collect();
                return Err(format!(
                    "{open} open sagas; (executor, live, open): {per:?}"
                ));
            }
            for deal_id in deal_ids {
                let deal = get_deal(client, deal_id).await?;
                if deal.investor_count != deal.confirmed_count {
                    return Err(format!(
                        "deal {deal_id}: {} active, {} confirmed",
                        deal.investor_count, deal.confirmed_count
                    ));
                }
            }
            let mut all = Vec::new();
            for deal_id in deal_ids {
                let list = list_investments(client, deal_id, pb::Consistency::Linearizable)
                    .await
                    .map_err(|e| format!("ListInvestments {deal_id}: {e}"))?;
                all.extend(list);
            }
            match all.iter().find(|inv| is_admitted(inv) && !saga_over(inv)) {
                None => Ok(all),
                Some(open) => Err(format!("{:?}; first unfinished: {open:?}", progress(&all))),
            }
        },
    )
    .await
}

/// What [`check_sagas`] counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SagaReport {
    /// Investments admitted (a saga ran).
    pub admitted: usize,
    /// Investments rejected at decision (no saga, no effect).
    pub rejected: usize,
    /// CONFIRMED.
    pub confirmed: usize,
    /// CANCELLED, per cause name.
    pub cancelled: BTreeMap<String, usize>,
    /// Cancelled after a refund (`refunded`).
    pub refunded: usize,
    /// Sagas whose e-mail retries were exhausted.
    pub notify_failed: usize,
    /// Charge events (one per key at most), of which `declined_charges` declined.
    pub charges: usize,
    /// Declined charge events.
    pub declined_charges: usize,
    /// Refund events.
    pub refunds: usize,
    /// Void events (a key voided before any charge).
    pub voids: usize,
    /// Document events.
    pub documents: usize,
    /// E-mail events about outcomes.
    pub emails: usize,
    /// E-mails telling an investor they were admitted from the waitlist.
    pub waitlist_emails: usize,
}

impl SagaReport {
    /// How many were cancelled with `cause`.
    pub fn cancelled_with(&self, cause: pb::CancelCause) -> usize {
        self.cancelled
            .get(cause.as_str_name())
            .copied()
            .unwrap_or(0)
    }

    /// How many were cancelled, whatever the cause.
    pub fn cancelled_total(&self) -> usize {
        self.cancelled.values().sum()
    }
}

/// The effects the audit recorded under one request's keys.
#[derive(Debug, Default)]
struct Effects {
    /// Charge events: (payment id, user, amount, status).
    charges: Vec<(String, String, Decimal, ChargeStatus)>,
    refunds: usize,
    voids: usize,
    /// Document ids.
    documents: Vec<String>,
    /// (message id, subject).
    emails: Vec<(String, String)>,
}

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|e| panic!("not money: {text:?}: {e}"))
}

/// Checks every investment of `investments` (all of the scenario's deals, after
/// [`wait_sagas_done`]) against the partners' `audit`:
///
/// - I8: every admitted investment is CONFIRMED or CANCELLED and its saga step is DONE;
/// - I7: for every request, net charged under its payment key is its amount if CONFIRMED, else
///   0; every key in the audit belongs to an admitted investment (so no charge exists without
///   one), with the suffix of its kind;
/// - at most one charge, refund, void, document and e-mail per key (no duplicate effect);
/// - CONFIRMED: a succeeded charge and one document whose ids are the ones recorded, no refund;
/// - CANCELLED: a cause; `refunded` exactly when a refund is in the audit; PAYMENT_DECLINED has a
///   declined charge; DOCUMENTS_FAILED had a succeeded charge, now refunded;
/// - unless `notify_failed`, exactly one e-mail, with the recorded message id and a subject
///   naming the final status.
pub fn check_sagas(investments: &[pb::Investment], audit: &AuditLog) -> SagaReport {
    use pb::{CancelCause as C, InvestmentStatus as S};
    let by_id: HashMap<&str, &pb::Investment> = investments
        .iter()
        .map(|inv| (inv.request_id.as_str(), inv))
        .collect();
    assert_eq!(
        by_id.len(),
        investments.len(),
        "an investment is listed twice"
    );
    let mut report = SagaReport::default();

    // Every audited key belongs to an admitted investment, under the right suffix (I7, second
    // half: no charge without an admitted investment).
    let mut effects: HashMap<&str, Effects> = HashMap::new();
    for event in &audit.events {
        let key = event.entry.key();
        let (request_id, suffix) = key
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("audit key {key:?} is not \"request_id:step\""));
        let inv = by_id.get(request_id).unwrap_or_else(|| {
            panic!("I7: the audit has {event:?} for a request that is not an investment here")
        });
        assert!(
            is_admitted(inv),
            "I7: the audit has {event:?} for a rejected request {inv:?}"
        );
        let expected_suffix = match &event.entry {
            AuditEntry::Charge { .. } | AuditEntry::Refund { .. } | AuditEntry::Void { .. } => {
                "payment"
            }
            AuditEntry::Document { .. } => "documents",
            // An investor admitted from the waitlist is told so before the charge.
            AuditEntry::Email { .. }
                if suffix == "waitlist-admitted" && inv.admitted_log_index != 0 =>
            {
                report.waitlist_emails += 1;
                continue;
            }
            AuditEntry::Email { .. } => "notify",
        };
        assert_eq!(
            suffix, expected_suffix,
            "audit event under a wrong key: {event:?}"
        );
        let seen = effects.entry(&inv.request_id).or_default();
        match &event.entry {
            AuditEntry::Charge {
                payment_id,
                user_id,
                amount,
                status,
                ..
            } => {
                report.charges += 1;
                if *status == ChargeStatus::Declined {
                    report.declined_charges += 1;
                }
                seen.charges
                    .push((payment_id.clone(), user_id.clone(), *amount, *status));
            }
            AuditEntry::Refund { .. } => {
                report.refunds += 1;
                seen.refunds += 1;
            }
            AuditEntry::Void { .. } => {
                report.voids += 1;
                seen.voids += 1;
            }
            AuditEntry::Document {
                document_id,
                request_id: doc_request,
                user_id,
                amount,
                ..
            } => {
                report.documents += 1;
                assert_eq!(
                    (doc_request.as_str(), user_id.as_str(), *amount),
                    (request_id, inv.user_id.as_str(), decimal(&inv.amount)),
                    "a document with another payload than its investment's: {event:?}"
                );
                seen.documents.push(document_id.clone());
            }
            AuditEntry::Email {
                message_id,
                subject,
                ..
            } => {
                report.emails += 1;
                seen.emails.push((message_id.clone(), subject.clone()));
            }
        }
    }
    let net = audit.net_charged();

    for inv in investments {
        let id = &inv.request_id;
        if !is_admitted(inv) {
            report.rejected += 1;
            assert_eq!(
                inv.saga_step,
                pb::SagaStep::Unspecified as i32,
                "a rejected request has a saga: {inv:?}"
            );
            continue;
        }
        report.admitted += 1;
        // I8.
        assert!(
            saga_over(inv),
            "I8: investment {id} is not over: status {}, step {}: {inv:?}",
            name_of_status(inv.status),
            name_of_step(inv.saga_step)
        );
        let none = Effects::default();
        let seen = effects.get(id.as_str()).unwrap_or(&none);
        // No duplicate effect under one key.
        assert!(
            seen.charges.len() <= 1
                && seen.refunds <= 1
                && seen.voids <= 1
                && seen.documents.len() <= 1
                && seen.emails.len() <= 1,
            "duplicate effects for {id}: {seen:?}"
        );
        assert!(
            seen.charges.is_empty() || seen.voids == 0,
            "{id}: both charged and voided before the charge: {seen:?}"
        );
        if let Some((_, user, amount, _)) = seen.charges.first() {
            assert_eq!(
                (user.as_str(), *amount),
                (inv.user_id.as_str(), decimal(&inv.amount)),
                "{id} was charged another user or amount"
            );
        }
        // I7.
        let kept = net
            .get(&format!("{id}:payment"))
            .copied()
            .unwrap_or(Decimal::ZERO);
        let status = S::try_from(inv.status).expect("a known status");
        let expected = if status == S::Confirmed {
            decimal(&inv.amount)
        } else {
            Decimal::ZERO
        };
        assert_eq!(
            kept,
            expected,
            "I7: {id} is {} with amount {}, but {kept} is net charged: {seen:?}; {inv:?}",
            name_of_status(inv.status),
            inv.amount
        );
        let cause = C::try_from(inv.cancel_cause).expect("a known cancel cause");
        match status {
            S::Confirmed => {
                report.confirmed += 1;
                assert_eq!(cause, C::Unspecified, "{id}: confirmed with a cancel cause");
                assert!(!inv.refunded, "{id}: confirmed and refunded");
                let (payment_id, _, _, charge) = seen
                    .charges
                    .first()
                    .unwrap_or_else(|| panic!("{id}: confirmed without a charge"));
                assert_eq!(*charge, ChargeStatus::Succeeded, "{id}");
                assert_eq!(&inv.payment_id, payment_id, "{id}: another payment id");
                assert_eq!(
                    seen.documents.as_slice(),
                    std::slice::from_ref(&inv.document_id),
                    "{id}: a confirmed investment has exactly its one document"
                );
            }
            S::Cancelled => {
                *report
                    .cancelled
                    .entry(cause.as_str_name().to_owned())
                    .or_default() += 1;
                assert_ne!(cause, C::Unspecified, "{id}: cancelled without a cause");
                assert_eq!(
                    inv.refunded,
                    seen.refunds == 1,
                    "{id}: `refunded` is {} but the audit has {} refunds",
                    inv.refunded,
                    seen.refunds
                );
                if inv.refunded {
                    report.refunded += 1;
                }
                match cause {
                    C::PaymentDeclined => {
                        assert!(
                            matches!(seen.charges.as_slice(), [(_, _, _, ChargeStatus::Declined)]),
                            "{id}: PAYMENT_DECLINED without a declined charge: {seen:?}"
                        );
                        // Nothing was charged, so no payment id is recorded (proto contract).
                        assert!(
                            inv.payment_id.is_empty(),
                            "{id}: declined with a payment id"
                        );
                    }
                    C::DocumentsFailed => {
                        assert!(
                            matches!(
                                seen.charges.as_slice(),
                                [(_, _, _, ChargeStatus::Succeeded)]
                            ) && inv.refunded,
                            "{id}: DOCUMENTS_FAILED must follow a succeeded charge, refunded: \
                             {seen:?}; {inv:?}"
                        );
                    }
                    _ => {}
                }
            }
            _ => unreachable!("checked by saga_over"),
        }
        // The e-mail, at least once with its key (exactly once in the audit), naming the outcome.
        if inv.notify_failed {
            report.notify_failed += 1;
            assert!(
                inv.message_id.is_empty(),
                "{id}: notify_failed with a message id"
            );
        } else {
            let (message_id, subject) = match seen.emails.as_slice() {
                [one] => one,
                other => panic!("{id}: {} e-mails instead of one: {other:?}", other.len()),
            };
            assert_eq!(&inv.message_id, message_id, "{id}: another message id");
            let word = if status == S::Confirmed {
                "confirmed"
            } else {
                "cancelled"
            };
            assert!(
                subject.contains(word),
                "{id} is {} but its e-mail says {subject:?}",
                name_of_status(inv.status)
            );
        }
    }
    report
}

/// The deal's counters once every saga is over: the active investments are exactly the confirmed
/// ones (cancelled ones released their seat and amount), and `confirmed_count`/`confirmed_amount`
/// match the listing. `list` is the deal's investments.
pub fn check_deal_settled(deal: &pb::Deal, list: &[pb::Investment]) {
    let confirmed: Vec<&pb::Investment> = list
        .iter()
        .filter(|inv| inv.deal_id == deal.deal_id)
        .filter(|inv| inv.status == pb::InvestmentStatus::Confirmed as i32)
        .collect();
    let sum: Decimal = confirmed.iter().map(|inv| decimal(&inv.amount)).sum();
    let count = u32::try_from(confirmed.len()).expect("fits u32");
    assert_eq!(
        (deal.investor_count, deal.confirmed_count),
        (count, count),
        "deal {}: (investor_count, confirmed_count) vs {count} confirmed listed",
        deal.deal_id
    );
    assert_eq!(
        (
            decimal(&deal.reserved_amount),
            decimal(&deal.confirmed_amount)
        ),
        (sum, sum),
        "deal {}: (reserved_amount, confirmed_amount) vs {sum} confirmed listed",
        deal.deal_id
    );
}

/// [`check_sagas`] plus [`check_deal_settled`] for every deal of `deal_ids`: the whole end-of-
/// scenario check. Returns the report.
pub async fn check_settled(
    client: &NodeClients,
    deal_ids: &[&str],
    investments: &[pb::Investment],
    audit: &AuditLog,
) -> SagaReport {
    let report = check_sagas(investments, audit);
    for deal_id in deal_ids {
        let deal = get_deal(client, deal_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        check_deal_settled(&deal, investments);
    }
    report
}

/// Investment `request_id` read linearizably from `node`, or why it could not be read.
pub async fn investment(node: &NodeClients, request_id: &str) -> Result<pb::Investment, String> {
    node.admission
        .clone()
        .get_investment(pb::GetInvestmentRequest {
            request_id: request_id.into(),
            consistency: pb::Consistency::Linearizable as i32,
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| format!("GetInvestment {request_id}: {e}"))
}

#[cfg(test)]
mod tests {
    use ledger_partners::AuditEvent;

    use super::*;

    fn investment(
        id: &str,
        status: pb::InvestmentStatus,
        cause: pb::CancelCause,
    ) -> pb::Investment {
        let confirmed = status == pb::InvestmentStatus::Confirmed;
        pb::Investment {
            request_id: id.into(),
            deal_id: "d".into(),
            user_id: format!("u-{id}"),
            amount: "10.00".into(),
            status: status as i32,
            saga_step: pb::SagaStep::Done as i32,
            cancel_cause: cause as i32,
            payment_id: if confirmed {
                format!("pay-{id}")
            } else {
                String::new()
            },
            document_id: if confirmed {
                format!("doc-{id}")
            } else {
                String::new()
            },
            message_id: format!("msg-{id}"),
            ..pb::Investment::default()
        }
    }

    fn charge(id: &str, status: ChargeStatus) -> AuditEntry {
        AuditEntry::Charge {
            key: format!("{id}:payment"),
            payment_id: format!("pay-{id}"),
            user_id: format!("u-{id}"),
            amount: decimal("10.00"),
            currency: "EUR".into(),
            status,
        }
    }

    fn document(id: &str) -> AuditEntry {
        AuditEntry::Document {
            key: format!("{id}:documents"),
            document_id: format!("doc-{id}"),
            request_id: id.into(),
            deal_id: "d".into(),
            user_id: format!("u-{id}"),
            amount: decimal("10.00"),
        }
    }

    fn email(id: &str, subject: &str) -> AuditEntry {
        AuditEntry::Email {
            key: format!("{id}:notify"),
            message_id: format!("msg-{id}"),
            to: "x@y".into(),
            subject: subject.into(),
            body: String::new(),
        }
    }

    fn audit(entries: Vec<AuditEntry>) -> AuditLog {
        AuditLog {
            events: entries
                .into_iter()
                .zip(1..)
                .map(|(entry, seq)| AuditEvent {
                    seq,
                    entry,
                    latency_ms: 0,
                })
                .collect(),
        }
    }

    fn good() -> (Vec<pb::Investment>, Vec<AuditEntry>) {
        use pb::{CancelCause as C, InvestmentStatus as S};
        let investments = vec![
            investment("a", S::Confirmed, C::Unspecified),
            investment("b", S::Cancelled, C::PaymentDeclined),
        ];
        let entries = vec![
            charge("a", ChargeStatus::Succeeded),
            document("a"),
            email("a", "Your investment in d is confirmed"),
            charge("b", ChargeStatus::Declined),
            email("b", "Your investment in d was cancelled"),
        ];
        (investments, entries)
    }

    #[test]
    fn a_settled_history_passes() {
        let (investments, entries) = good();
        let report = check_sagas(&investments, &audit(entries));
        assert_eq!((report.confirmed, report.cancelled_total()), (1, 1));
        assert_eq!((report.charges, report.declined_charges), (2, 1));
    }

    #[test]
    #[should_panic(expected = "I7")]
    fn a_cancelled_investment_still_charged_is_refused() {
        let (mut investments, mut entries) = good();
        investments[1].cancel_cause = pb::CancelCause::DocumentsFailed as i32;
        entries[3] = charge("b", ChargeStatus::Succeeded);
        check_sagas(&investments, &audit(entries));
    }

    #[test]
    #[should_panic(expected = "duplicate effects")]
    fn a_second_document_under_one_key_is_refused() {
        let (investments, mut entries) = good();
        entries.push(document("a"));
        check_sagas(&investments, &audit(entries));
    }

    #[test]
    #[should_panic(expected = "I7")]
    fn a_charge_without_an_investment_is_refused() {
        let (investments, mut entries) = good();
        entries.push(charge("zzz", ChargeStatus::Succeeded));
        check_sagas(&investments, &audit(entries));
    }

    #[test]
    #[should_panic(expected = "I8")]
    fn an_unfinished_saga_is_refused() {
        let (mut investments, entries) = good();
        investments[0].saga_step = pb::SagaStep::Notify as i32;
        check_sagas(&investments, &audit(entries));
    }
}
