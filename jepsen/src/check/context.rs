//! What every check reads, prepared once: request ids parsed, the reference final state indexed
//! by request id, the history's submits grouped by request id, and the acknowledged decisions
//! in real-time order.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use ledger_state_machine::RequestId;

use crate::history::{
    Call, CheckInput, DealTerms, Decision, FinalInvestment, InvStatus, NodeFinal, Op, OpResult,
    Reply,
};

/// A request id as the UUID's 128 bits: request ids are compared as UUIDs, not as text.
pub(crate) type Rid = u128;

/// A map keyed by request id. Request ids are UUIDs chosen by the harness, not by an adversary,
/// so a multiplicative hash is enough, and several times cheaper than SipHash over a million
/// lookups.
pub(crate) type RidMap<V> = HashMap<Rid, V, BuildHasherDefault<RidHasher>>;

/// Folds the 128 bits and multiplies by an odd constant (as FxHash does).
#[derive(Default)]
pub(crate) struct RidHasher(u64);

impl Hasher for RidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u128(&mut self, word: u128) {
        self.write_u64(word as u64);
        self.write_u64((word >> 64) as u64);
    }
}

/// Parses a request id; `None` for text that is not a UUID (no real request has such an id).
pub(crate) fn parse_rid(text: &str) -> Option<Rid> {
    RequestId::parse(text).ok().map(RequestId::as_u128)
}

/// A position in the log: an entry's index and a command's offset in it. Log order is the
/// order of positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Pos {
    pub(crate) log_index: u64,
    pub(crate) offset: u32,
}

impl Pos {
    pub(crate) const fn new(log_index: u64, offset: u32) -> Pos {
        Pos { log_index, offset }
    }

    pub(crate) fn of_reply(decision: &Decision) -> Pos {
        Pos::new(decision.log_index, decision.offset)
    }

    pub(crate) fn of_decision(inv: &FinalInvestment) -> Pos {
        Pos::new(inv.log_index, inv.offset)
    }

    /// Where the investment took its seat: its decision, or for one admitted from the
    /// waitlist the cancellation that freed the seat.
    pub(crate) fn of_admission(inv: &FinalInvestment) -> Pos {
        inv.admitted_at
            .map_or_else(|| Pos::of_decision(inv), |(i, o)| Pos::new(i, o))
    }

    pub(crate) fn of_cancel(inv: &FinalInvestment) -> Option<Pos> {
        inv.cancelled_at
            .map(|(log_index, offset)| Pos::new(log_index, offset))
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.log_index, self.offset)
    }
}

/// A `Submit` call's fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SubmitCall<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) deal_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) amount_cents: u64,
}

impl<'a> SubmitCall<'a> {
    pub(crate) fn of(op: &'a Op) -> Option<SubmitCall<'a>> {
        match &op.call {
            Call::Submit {
                request_id,
                deal_id,
                user_id,
                amount_cents,
                ..
            } => Some(SubmitCall {
                request_id,
                deal_id,
                user_id,
                amount_cents: *amount_cents,
            }),
            Call::ReadDeal { .. } | Call::Withdraw { .. } => None,
        }
    }

    /// Whether the final state recorded this payload for the request id.
    pub(crate) fn same_payload(&self, inv: &FinalInvestment) -> bool {
        self.deal_id == inv.deal_id
            && self.user_id == inv.user_id
            && self.amount_cents == inv.amount_cents
    }
}

/// The decision of an ok `Submit`.
pub(crate) fn ok_decision(op: &Op) -> Option<&Decision> {
    match &op.result {
        OpResult::Ok(Reply::Submitted(decision)) => Some(decision),
        _ => None,
    }
}

/// Whether the investment holds or held a seat (admitted at its decision or from the waitlist).
pub(crate) fn is_admitted(inv: &FinalInvestment) -> bool {
    matches!(
        inv.status,
        InvStatus::Pending | InvStatus::Confirmed | InvStatus::Cancelled
    )
}

/// A decision as it was made: admitted, waitlisted, or rejected for a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decided<'a> {
    Admitted,
    Waitlisted,
    Rejected(Option<&'a str>),
}

impl<'a> Decided<'a> {
    /// The state machine's verdict.
    pub(crate) fn of_verdict(verdict: ledger_state_machine::Verdict) -> Decided<'static> {
        match verdict {
            ledger_state_machine::Verdict::Pending => Decided::Admitted,
            ledger_state_machine::Verdict::Waitlisted => Decided::Waitlisted,
            ledger_state_machine::Verdict::Rejected(reason) => {
                Decided::Rejected(Some(reason.as_str()))
            }
        }
    }

    fn of_reply(reply: &'a Decision) -> Decided<'a> {
        if reply.waitlisted {
            Decided::Waitlisted
        } else if reply.admitted {
            Decided::Admitted
        } else {
            Decided::Rejected(reply.reject_reason.as_deref())
        }
    }

    /// What was decided, from what became of it: a request decided WAITLISTED may have been
    /// admitted since or ended on the waitlist.
    pub(crate) fn of_final(inv: &'a FinalInvestment) -> Decided<'a> {
        if inv.waitlisted || inv.status == InvStatus::Waitlisted {
            Decided::Waitlisted
        } else if inv.status == InvStatus::Rejected {
            Decided::Rejected(inv.reject_reason.as_deref())
        } else {
            Decided::Admitted
        }
    }
}

/// Whether a reply carries the decision the final state recorded: same position, same
/// verdict, same reason when rejected.
pub(crate) fn same_decision(reply: &Decision, inv: &FinalInvestment) -> bool {
    Pos::of_reply(reply) == Pos::of_decision(inv)
        && Decided::of_reply(reply) == Decided::of_final(inv)
}

pub(crate) fn describe_reply(reply: &Decision) -> String {
    describe(Decided::of_reply(reply), Pos::of_reply(reply))
}

pub(crate) fn describe_final(inv: &FinalInvestment) -> String {
    describe(Decided::of_final(inv), Pos::of_decision(inv))
}

fn describe(decided: Decided<'_>, pos: Pos) -> String {
    match decided {
        Decided::Admitted => format!("admitted at {pos}"),
        Decided::Waitlisted => format!("waitlisted at {pos}"),
        Decided::Rejected(reason) => {
            format!("rejected ({}) at {pos}", reason.unwrap_or("no reason"))
        }
    }
}

/// One node's final investments indexed by request id.
#[derive(Debug)]
pub(crate) struct FinalIndex<'a> {
    pub(crate) node: &'a NodeFinal,
    by_rid: RidMap<usize>,
    /// Investments whose request id appeared earlier in the same list: decided twice (I4).
    pub(crate) duplicates: Vec<usize>,
    /// Investments whose request id is not a UUID.
    pub(crate) unparsed: Vec<usize>,
    /// The parsed request id of each investment, in list order; `None` for the unparsed and
    /// the duplicates, so that every request counts once.
    primary: Vec<Option<Rid>>,
}

impl<'a> FinalIndex<'a> {
    pub(crate) fn new(node: &'a NodeFinal) -> FinalIndex<'a> {
        let mut index = FinalIndex {
            node,
            by_rid: RidMap::with_capacity_and_hasher(node.investments.len(), Default::default()),
            duplicates: Vec::new(),
            unparsed: Vec::new(),
            primary: Vec::with_capacity(node.investments.len()),
        };
        for (at, inv) in node.investments.iter().enumerate() {
            let rid = parse_rid(&inv.request_id);
            let primary = match rid {
                None => {
                    index.unparsed.push(at);
                    None
                }
                // The first occurrence is the decision; later ones are duplicates.
                Some(rid) => match index.by_rid.entry(rid) {
                    Entry::Occupied(_) => {
                        index.duplicates.push(at);
                        None
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(at);
                        Some(rid)
                    }
                },
            };
            index.primary.push(primary);
        }
        index
    }

    pub(crate) fn get(&self, rid: Rid) -> Option<&'a FinalInvestment> {
        self.position(rid)
            .and_then(|at| self.node.investments.get(at))
    }

    /// Where the list holds the request's decision.
    pub(crate) fn position(&self, rid: Rid) -> Option<usize> {
        self.by_rid.get(&rid).copied()
    }

    /// The request id of the investment at `at`, if it is parsed and not a duplicate.
    pub(crate) fn rid_at(&self, at: usize) -> Option<Rid> {
        self.primary.get(at).copied().flatten()
    }

    /// The investments counted for their request id: `(position in the list, request, it)`.
    pub(crate) fn primaries(&self) -> impl Iterator<Item = (usize, Rid, &'a FinalInvestment)> + '_ {
        self.node
            .investments
            .iter()
            .zip(&self.primary)
            .enumerate()
            .filter_map(|(at, (inv, rid))| Some((at, (*rid)?, inv)))
    }
}

/// An acknowledged decision (an ok `Submit`), as real-time order sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Acked {
    /// Position of the op in the history.
    pub(crate) op: usize,
    pub(crate) invoke_us: u64,
    pub(crate) complete_us: u64,
    /// The position the reply named.
    pub(crate) pos: Pos,
}

/// The acknowledged decisions sorted for real-time questions, each answered by a binary search:
/// which decision acknowledged before time `t` is the latest in the log, and which fresh
/// (non-replayed) decision invoked after `t` is the earliest.
#[derive(Debug, Default)]
pub(crate) struct RealTime {
    by_complete: Vec<Acked>,
    /// `latest[i]`: the acked op of `by_complete[..=i]` with the largest position.
    latest: Vec<Acked>,
    fresh_by_invoke: Vec<Acked>,
    /// `earliest[i]`: the smallest position of `fresh_by_invoke[i..]`.
    earliest: Vec<Pos>,
}

impl RealTime {
    fn new(history: &[Op]) -> RealTime {
        let mut acked = Vec::new();
        let mut fresh = Vec::new();
        for (at, op) in history.iter().enumerate() {
            let Some(decision) = ok_decision(op) else {
                continue;
            };
            let one = Acked {
                op: at,
                invoke_us: op.invoke_us,
                complete_us: op.complete_us,
                pos: Pos::of_reply(decision),
            };
            acked.push(one);
            if !decision.replayed {
                fresh.push(one);
            }
        }
        acked.sort_unstable_by_key(|a| a.complete_us);
        fresh.sort_unstable_by_key(|a| a.invoke_us);
        let latest = acked
            .iter()
            .scan(None::<Acked>, |best, &a| {
                let keep = match *best {
                    Some(b) if b.pos >= a.pos => b,
                    _ => a,
                };
                *best = Some(keep);
                Some(keep)
            })
            .collect();
        let mut earliest: Vec<Pos> = fresh
            .iter()
            .rev()
            .scan(None::<Pos>, |best, a| {
                let keep = best.map_or(a.pos, |b: Pos| b.min(a.pos));
                *best = Some(keep);
                Some(keep)
            })
            .collect();
        earliest.reverse();
        RealTime {
            by_complete: acked,
            latest,
            fresh_by_invoke: fresh,
            earliest,
        }
    }

    /// Of the decisions acknowledged strictly before `t_us`, the one latest in the log.
    pub(crate) fn latest_acked_before(&self, t_us: u64) -> Option<Acked> {
        let n = self.by_complete.partition_point(|a| a.complete_us < t_us);
        n.checked_sub(1).and_then(|i| self.latest.get(i).copied())
    }

    /// The earliest position of a fresh decision invoked strictly after `t_us`.
    pub(crate) fn earliest_fresh_after(&self, t_us: u64) -> Option<Pos> {
        let n = self
            .fresh_by_invoke
            .partition_point(|a| a.invoke_us <= t_us);
        self.earliest.get(n).copied()
    }

    /// Fresh decisions, by invocation time.
    pub(crate) fn fresh(&self) -> &[Acked] {
        &self.fresh_by_invoke
    }
}

/// A `Submit` op with what the checks ask about it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Submitted<'a> {
    pub(crate) op: &'a Op,
    pub(crate) call: SubmitCall<'a>,
    /// Its request id, if a UUID.
    pub(crate) rid: Option<Rid>,
    /// What the reference final state holds for that request id.
    pub(crate) recorded: Option<&'a FinalInvestment>,
}

/// Everything the checks share.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub(crate) input: &'a CheckInput,
    /// The final state the checks compare with: the node with the highest applied index.
    pub(crate) reference: Option<FinalIndex<'a>>,
    /// The workload's deals by id.
    pub(crate) deals: HashMap<&'a str, &'a DealTerms>,
    /// The request id of every op (`None` for reads and ids that are not UUIDs), parsed once.
    op_rids: Vec<Option<Rid>>,
    /// Where the reference holds each op's request (`None` when it does not): looked up once
    /// for all the checks.
    op_recorded: Vec<Option<usize>>,
    /// `(request, position in history)` of every `Submit` with a UUID request id, by request.
    by_request: Vec<(Rid, usize)>,
    pub(crate) real_time: RealTime,
    /// Why real-time questions cannot be answered, if an op's times are impossible.
    pub(crate) clock_error: Option<String>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(input: &'a CheckInput) -> Context<'a> {
        let reference = input
            .finals
            .iter()
            .rev()
            .max_by_key(|node| node.applied_index)
            .map(FinalIndex::new);
        let requests = RequestIndex::new(&input.history, reference.as_ref());
        Context {
            input,
            reference,
            deals: input
                .deals
                .iter()
                .map(|d| (d.deal_id.as_str(), d))
                .collect(),
            op_rids: requests.op_rids,
            op_recorded: requests.op_recorded,
            by_request: requests.by_request,
            real_time: RealTime::new(&input.history),
            clock_error: clock_error(&input.history),
        }
    }

    pub(crate) fn op(&self, at: usize) -> Option<&'a Op> {
        self.input.history.get(at)
    }

    /// The `Submit` ops, in history order.
    pub(crate) fn submits(&self) -> impl Iterator<Item = Submitted<'a>> + '_ {
        let recorded = |at: &Option<usize>| {
            let reference = self.reference.as_ref()?;
            reference.node.investments.get((*at)?)
        };
        self.input
            .history
            .iter()
            .zip(self.op_rids.iter().zip(&self.op_recorded))
            .filter_map(move |(op, (rid, at))| {
                Some(Submitted {
                    op,
                    call: SubmitCall::of(op)?,
                    rid: *rid,
                    recorded: recorded(at),
                })
            })
    }

    /// The `Submit` ops of a request, in history order.
    pub(crate) fn ops_of(&self, rid: Rid) -> impl Iterator<Item = &'a Op> + '_ {
        let from = self.by_request.partition_point(|&(r, _)| r < rid);
        self.by_request[from..]
            .iter()
            .take_while(move |&&(r, _)| r == rid)
            .filter_map(|&(_, at)| self.op(at))
    }

    /// The indices of a request's ok `Submit` ops: the evidence a violation points at.
    pub(crate) fn ok_ops_of(&self, rid: Rid) -> Vec<u64> {
        self.ops_of(rid)
            .filter(|op| ok_decision(op).is_some())
            .map(|op| op.index)
            .collect()
    }

    /// The requests that have `Submit` ops, each once, with its ops' positions in history.
    pub(crate) fn requests(&self) -> impl Iterator<Item = (Rid, &[(Rid, usize)])> + '_ {
        self.by_request
            .chunk_by(|a, b| a.0 == b.0)
            .filter_map(|group| Some((group.first()?.0, group)))
    }
}

/// The history's request ids, parsed and looked up in the reference once.
struct RequestIndex {
    op_rids: Vec<Option<Rid>>,
    op_recorded: Vec<Option<usize>>,
    by_request: Vec<(Rid, usize)>,
}

impl RequestIndex {
    fn new(history: &[Op], reference: Option<&FinalIndex<'_>>) -> RequestIndex {
        let op_rids: Vec<Option<Rid>> = history
            .iter()
            .map(|op| SubmitCall::of(op).and_then(|call| parse_rid(call.request_id)))
            .collect();
        let op_recorded = op_rids
            .iter()
            .map(|rid| reference?.position((*rid)?))
            .collect();
        let mut by_request: Vec<(Rid, usize)> = op_rids
            .iter()
            .enumerate()
            .filter_map(|(at, rid)| Some(((*rid)?, at)))
            .collect();
        by_request.sort_unstable();
        RequestIndex {
            op_rids,
            op_recorded,
            by_request,
        }
    }
}

fn clock_error(history: &[Op]) -> Option<String> {
    history
        .iter()
        .find(|op| op.complete_us < op.invoke_us)
        .map(|op| {
            format!(
                "op {} completes at {} us, before its invocation at {} us",
                op.index, op.complete_us, op.invoke_us
            )
        })
}
