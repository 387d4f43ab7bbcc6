//! What a run records and what the checker reads: the operations the clients performed
//! (invoke / ok / fail / info), what every node holds at the end, the state digests seen during
//! the run, the partners' audit, and what liveness looked like after healing.
//!
//! Money is in cents (`u64`) throughout; times are microseconds since the start of the run, on
//! the harness's monotonic clock.

use serde::{Deserialize, Serialize};

/// One client operation, from its invocation to its completion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Invocation order (0, 1, 2, ...), unique in a history.
    pub index: u64,
    /// The client worker that performed it; a worker performs one operation at a time.
    pub worker: u32,
    /// The node the request was sent to.
    pub node: u64,
    /// When the request was sent.
    pub invoke_us: u64,
    /// When the reply (or the give-up) came; `>= invoke_us`.
    pub complete_us: u64,
    /// What was asked.
    pub call: Call,
    /// What came back.
    pub result: OpResult,
}

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// `Admission.Submit`.
    Submit {
        /// The request id (UUID text).
        request_id: String,
        /// The deal.
        deal_id: String,
        /// The investor.
        user_id: String,
        /// The ticket, in cents.
        amount_cents: u64,
        /// True when this request id was sent before by the workload on purpose (W4), with the
        /// same or (see `amount_cents`) a different payload.
        resubmit: bool,
        /// The request opts into the deal's waitlist.
        #[serde(default)]
        waitlist: bool,
        /// Its time on the waitlist, in log time.
        #[serde(default)]
        waitlist_ttl_ms: Option<u64>,
    },
    /// `Admission.Withdraw` of a request the worker saw WAITLISTED.
    Withdraw {
        /// The request id (UUID text).
        request_id: String,
    },
    /// A linearizable `Admission.GetDeal`.
    ReadDeal {
        /// The deal.
        deal_id: String,
    },
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// A definite answer.
    Ok(Reply),
    /// A definite failure: the request certainly had no effect (e.g. `ALREADY_EXISTS` for a
    /// request id resubmitted with another payload, `INVALID_ARGUMENT`, `NOT_FOUND`).
    Fail {
        /// The gRPC code's name, e.g. `ALREADY_EXISTS`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// Outcome unknown (timeout, connection lost, leader lost after proposing): the request may
    /// or may not have taken effect.
    Info {
        /// What went wrong.
        error: String,
    },
}

/// A definite answer's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// A `Submit` was decided.
    Submitted(Decision),
    /// A deal as a linearizable read saw it.
    Deal(DealRead),
    /// A waitlisted request left the waitlist at this position (`Withdraw`).
    Withdrawn {
        /// The log index of the command that ended it.
        log_index: u64,
        /// Its offset in that entry.
        offset: u32,
    },
}

/// A decision as a client received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The log index of the entry that decided the request.
    pub log_index: u64,
    /// The request's position in that entry.
    pub offset: u32,
    /// True when admitted at the decision (the reply's status was PENDING, or for a replay
    /// any status but REJECTED, of a request not decided WAITLISTED).
    pub admitted: bool,
    /// True when decided WAITLISTED (for a replay: whatever became of it since).
    #[serde(default)]
    pub waitlisted: bool,
    /// The reject reason's proto name (e.g. `INVESTOR_LIMIT_REACHED`) when rejected at the
    /// decision.
    pub reject_reason: Option<String>,
    /// True when the server said this request id had been decided before (a replay).
    pub replayed: bool,
}

/// A deal's counters as a read returned them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealRead {
    /// PENDING + CONFIRMED investments.
    pub investor_count: u32,
    /// Sum of PENDING + CONFIRMED amounts, in cents.
    pub reserved_cents: u64,
    /// CONFIRMED investments.
    pub confirmed_count: u32,
    /// Sum of CONFIRMED amounts, in cents.
    pub confirmed_cents: u64,
}

/// A deal's terms, as created by the workload (before any submit to it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealTerms {
    /// The deal.
    pub deal_id: String,
    /// Its amount, in cents.
    pub amount_cents: u64,
    /// Its seat limit.
    pub max_investors: u32,
    /// Smallest ticket, in cents.
    pub min_ticket_cents: Option<u64>,
    /// Largest ticket, in cents.
    pub max_ticket_cents: Option<u64>,
}

/// Investment status, as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvStatus {
    /// Admitted, saga running.
    Pending,
    /// Admitted, paid, documents generated.
    Confirmed,
    /// Admitted, then cancelled; seat and amount released at `cancelled_at`.
    Cancelled,
    /// Refused at decision time, or ended on the waitlist.
    Rejected,
    /// On its deal's waitlist.
    Waitlisted,
}

/// One investment as a node holds it at the end of the run (read with STALE consistency from
/// that node, after the cluster converged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalInvestment {
    /// Request id (UUID text).
    pub request_id: String,
    /// The deal.
    pub deal_id: String,
    /// The investor.
    pub user_id: String,
    /// The ticket, in cents.
    pub amount_cents: u64,
    /// Current status.
    pub status: InvStatus,
    /// The reject reason's proto name when rejected.
    pub reject_reason: Option<String>,
    /// Decision position: log index.
    pub log_index: u64,
    /// Decision position: offset in the entry.
    pub offset: u32,
    /// For CANCELLED: the position `(log_index, offset)` of the command that cancelled it
    /// (released its seat and amount).
    pub cancelled_at: Option<(u64, u32)>,
    /// The saga step's proto name (`PAYMENT`, ..., `DONE`), `None` without a saga.
    pub saga_step: Option<String>,
    /// The cancel cause's proto name when cancelled.
    pub cancel_cause: Option<String>,
    /// True when compensation refunded a charge.
    pub refunded: bool,
    /// The request opted into the waitlist.
    #[serde(default)]
    pub waitlist: bool,
    /// Decided WAITLISTED (whatever became of it since).
    #[serde(default)]
    pub waitlisted: bool,
    /// For a request admitted from the waitlist: the position of the command whose
    /// cancellation gave it its seat.
    #[serde(default)]
    pub admitted_at: Option<(u64, u32)>,
    /// For a request that left the waitlist without a seat: where (a `Withdraw`, the deal's
    /// closing, or the start of the entry whose log time passed its TTL).
    #[serde(default)]
    pub waitlist_ended_at: Option<(u64, u32)>,
}

/// One deal as a node holds it at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalDeal {
    /// Terms.
    pub terms: DealTerms,
    /// Counters.
    pub counters: DealRead,
    /// Where the deal closed, if it did.
    #[serde(default)]
    pub closed_at: Option<(u64, u32)>,
}

/// Everything read from one node at the end of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFinal {
    /// The node.
    pub node_id: u64,
    /// Its applied index when read.
    pub applied_index: u64,
    /// Its state digest at that index.
    pub digest: String,
    /// Every deal of the workload.
    pub deals: Vec<FinalDeal>,
    /// Every investment of those deals, in decision order.
    pub investments: Vec<FinalInvestment>,
}

/// A `(node, applied index, digest)` seen in a `Status` reply during or after the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestSample {
    /// The node.
    pub node_id: u64,
    /// Its applied index.
    pub applied_index: u64,
    /// Its digest at that index.
    pub digest: String,
}

/// A node's log time next to the harness's own (real) clock, sampled during the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogTimeSample {
    /// The node.
    pub node_id: u64,
    /// The harness's wall clock when it asked, Unix ms (never faked).
    pub wall_ms: u64,
    /// The node's log time then (`ListSagas.now_ms`), Unix ms.
    pub log_time_ms: u64,
}

/// What the harness saw after the last fault was healed (I8).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    /// When the last fault was healed.
    pub healed_us: u64,
    /// When one leader was agreed on by every running member, if it happened.
    pub leader_us: Option<u64>,
    /// When every saga had become terminal (saga step NOTIFY or DONE, status not PENDING), if it
    /// happened.
    pub sagas_terminal_us: Option<u64>,
    /// When a fresh probe submit got a definite answer, if it did.
    pub probe_ok_us: Option<u64>,
    /// Request ids still PENDING when the harness stopped waiting.
    pub stuck: Vec<String>,
    /// How long the harness waited after healing, in microseconds.
    pub waited_us: u64,
}

/// Everything the checker needs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CheckInput {
    /// The deals the workload created, before any submit.
    pub deals: Vec<DealTerms>,
    /// Every operation, in invocation order.
    pub history: Vec<Op>,
    /// Each running member's final state.
    pub finals: Vec<NodeFinal>,
    /// Digests seen during the run.
    pub digests: Vec<DigestSample>,
    /// The partners' audit at the end; `None` when the run had no executors (no sagas ran).
    pub audit: Option<ledger_partners::AuditLog>,
    /// Liveness after healing.
    pub liveness: Liveness,
    /// Log time against the real clock during the run (absent in older recordings).
    #[serde(default)]
    pub log_times: Vec<LogTimeSample>,
}
