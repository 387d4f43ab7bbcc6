//! Small builders for hand-made histories: a test says what happened (an admission at a
//! position, a cancellation, a read) and gets a coherent [`CheckInput`] (three equal final
//! states, matching counters, digests, an audit of every saga's effects, healthy liveness);
//! an invalid case then breaks one thing in it.

use ledger_partners::{AuditEntry, AuditEvent, AuditLog, Books, ChargeRequest, DocumentRequest};
use ledger_state_machine::Money;

use super::{check, CheckName, Verdict, Verdicts};
use crate::history::{
    Call, CheckInput, DealRead, DealTerms, Decision, DigestSample, FinalDeal, FinalInvestment,
    InvStatus, Liveness, NodeFinal, Op, OpResult, Reply,
};

/// The deal every history has.
pub(crate) const DEAL: &str = "d";

/// The request id numbered `n`.
pub(crate) fn rid(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// A submit the builder recorded: its op index and request id.
#[derive(Clone, Debug)]
pub(crate) struct Sub {
    pub(crate) op: u64,
    pub(crate) rid: String,
}

/// A history under construction. Ops run one after the other (each 10 µs long, 100 µs apart)
/// unless a test moves their times.
pub(crate) struct Hist {
    pub(crate) deals: Vec<DealTerms>,
    pub(crate) ops: Vec<Op>,
    pub(crate) invs: Vec<FinalInvestment>,
    /// Where the deal closed, if it did.
    pub(crate) closed_at: Option<(u64, u32)>,
    clock_us: u64,
    next_rid: u64,
}

impl Hist {
    /// One deal of `max_investors` seats and `amount_cents`.
    pub(crate) fn with_deal(max_investors: u32, amount_cents: u64) -> Hist {
        Hist {
            deals: vec![DealTerms {
                deal_id: DEAL.into(),
                amount_cents,
                max_investors,
                min_ticket_cents: None,
                max_ticket_cents: None,
            }],
            ops: Vec::new(),
            invs: Vec::new(),
            closed_at: None,
            clock_us: 1_000,
            next_rid: 0,
        }
    }

    /// Two seats, 100.00.
    pub(crate) fn new() -> Hist {
        Hist::with_deal(2, 10_000)
    }

    /// A fresh submit, admitted at `pos` and acknowledged; the final state holds it PENDING.
    pub(crate) fn admit(&mut self, user: &str, amount_cents: u64, pos: (u64, u32)) -> Sub {
        self.decide(user, amount_cents, pos, None)
    }

    /// A fresh submit, rejected at `pos` for `reason` and acknowledged.
    pub(crate) fn reject(
        &mut self,
        user: &str,
        amount_cents: u64,
        pos: (u64, u32),
        reason: &str,
    ) -> Sub {
        self.decide(user, amount_cents, pos, Some(reason))
    }

    fn decide(
        &mut self,
        user: &str,
        amount_cents: u64,
        pos: (u64, u32),
        reason: Option<&str>,
    ) -> Sub {
        let rid = self.fresh_rid();
        self.record(&rid, user, amount_cents, pos, reason);
        let reply = reply(pos, reason, false);
        let op = self.push(submit(&rid, user, amount_cents, false), OpResult::Ok(reply));
        Sub { op, rid }
    }

    /// A fresh submit asking for the waitlist, waitlisted at `pos` and acknowledged; the final
    /// state holds it WAITLISTED.
    pub(crate) fn waitlist(&mut self, user: &str, amount_cents: u64, pos: (u64, u32)) -> Sub {
        let rid = self.fresh_rid();
        self.record(&rid, user, amount_cents, pos, None);
        let inv = self.inv_mut(&rid);
        inv.status = InvStatus::Waitlisted;
        inv.saga_step = None;
        inv.waitlist = true;
        inv.waitlisted = true;
        let reply = Reply::Submitted(Decision {
            log_index: pos.0,
            offset: pos.1,
            admitted: false,
            waitlisted: true,
            reject_reason: None,
            replayed: false,
        });
        let mut call = submit(&rid, user, amount_cents, false);
        if let Call::Submit { waitlist, .. } = &mut call {
            *waitlist = true;
        }
        let op = self.push(call, OpResult::Ok(reply));
        Sub { op, rid }
    }

    /// A waitlisted request admitted at `at` (the cancellation that freed its seat): PENDING.
    pub(crate) fn admit_from_waitlist(&mut self, sub: &Sub, at: (u64, u32)) {
        let inv = self.inv_mut(&sub.rid);
        inv.status = InvStatus::Pending;
        inv.saga_step = Some("PAYMENT".into());
        inv.admitted_at = Some(at);
    }

    /// A waitlisted request that left the waitlist at `at` without a seat.
    pub(crate) fn end_waitlisted(&mut self, sub: &Sub, at: (u64, u32)) {
        self.end_wait(&sub.rid, at);
    }

    fn end_wait(&mut self, rid: &str, at: (u64, u32)) {
        let inv = self.inv_mut(rid);
        inv.status = InvStatus::Rejected;
        inv.reject_reason = Some("WAITLIST_CLOSED".into());
        inv.waitlist_ended_at = Some(at);
    }

    /// An acknowledged `Withdraw` of a waitlisted request, at `at`.
    pub(crate) fn withdraw(&mut self, sub: &Sub, at: (u64, u32)) -> u64 {
        self.end_waitlisted(sub, at);
        let call = Call::Withdraw {
            request_id: sub.rid.clone(),
        };
        let reply = Reply::Withdrawn {
            log_index: at.0,
            offset: at.1,
        };
        self.push(call, OpResult::Ok(reply))
    }

    /// The deal closes at `at`: every request still waiting leaves the waitlist there.
    pub(crate) fn close(&mut self, at: (u64, u32)) {
        self.closed_at = Some(at);
        let waiting: Vec<String> = self
            .invs
            .iter()
            .filter(|inv| inv.status == InvStatus::Waitlisted)
            .map(|inv| inv.request_id.clone())
            .collect();
        for rid in waiting {
            self.end_wait(&rid, at);
        }
    }

    /// A submit with an unknown outcome; when `took_effect_at` is set, the final state holds it
    /// admitted there.
    pub(crate) fn info(
        &mut self,
        user: &str,
        amount_cents: u64,
        took_effect_at: Option<(u64, u32)>,
    ) -> Sub {
        let rid = self.fresh_rid();
        if let Some(pos) = took_effect_at {
            self.record(&rid, user, amount_cents, pos, None);
        }
        let result = OpResult::Info {
            error: "timeout".into(),
        };
        let op = self.push(submit(&rid, user, amount_cents, false), result);
        Sub { op, rid }
    }

    /// The same request again, same payload: the recorded decision, replayed.
    pub(crate) fn resubmit(&mut self, sub: &Sub) -> u64 {
        let inv = self.inv(&sub.rid).clone();
        let pos = (inv.log_index, inv.offset);
        let reply = reply(pos, inv.reject_reason.as_deref(), true);
        let call = submit(&sub.rid, &inv.user_id, inv.amount_cents, true);
        self.push(call, OpResult::Ok(reply))
    }

    /// The same request id with another amount: refused with ALREADY_EXISTS.
    pub(crate) fn resubmit_other(&mut self, sub: &Sub) -> u64 {
        let inv = self.inv(&sub.rid).clone();
        let call = submit(&sub.rid, &inv.user_id, inv.amount_cents + 1, true);
        let result = OpResult::Fail {
            code: "ALREADY_EXISTS".into(),
            message: "request exists with another payload".into(),
        };
        self.push(call, result)
    }

    /// A linearizable read of the deal that returned these counters.
    pub(crate) fn read(&mut self, investor_count: u32, reserved_cents: u64) -> u64 {
        let read = DealRead {
            investor_count,
            reserved_cents,
            confirmed_count: 0,
            confirmed_cents: 0,
        };
        let call = Call::ReadDeal {
            deal_id: DEAL.into(),
        };
        self.push(call, OpResult::Ok(Reply::Deal(read)))
    }

    pub(crate) fn confirm(&mut self, sub: &Sub) {
        let inv = self.inv_mut(&sub.rid);
        inv.status = InvStatus::Confirmed;
        inv.saga_step = Some("DONE".into());
    }

    /// The saga's payment was declined at `at`: CANCELLED, seat released there.
    pub(crate) fn cancel(&mut self, sub: &Sub, at: (u64, u32)) {
        let inv = self.inv_mut(&sub.rid);
        inv.status = InvStatus::Cancelled;
        inv.cancelled_at = Some(at);
        inv.cancel_cause = Some("PAYMENT_DECLINED".into());
        inv.saga_step = Some("DONE".into());
    }

    pub(crate) fn inv(&self, rid: &str) -> &FinalInvestment {
        self.invs
            .iter()
            .find(|inv| inv.request_id == rid)
            .expect("the test recorded this request")
    }

    pub(crate) fn inv_mut(&mut self, rid: &str) -> &mut FinalInvestment {
        self.invs
            .iter_mut()
            .find(|inv| inv.request_id == rid)
            .expect("the test recorded this request")
    }

    fn fresh_rid(&mut self) -> String {
        self.next_rid += 1;
        rid(self.next_rid)
    }

    fn record(
        &mut self,
        rid: &str,
        user: &str,
        amount_cents: u64,
        pos: (u64, u32),
        reason: Option<&str>,
    ) {
        self.invs.push(FinalInvestment {
            request_id: rid.into(),
            deal_id: DEAL.into(),
            user_id: user.into(),
            amount_cents,
            status: match reason {
                Some(_) => InvStatus::Rejected,
                None => InvStatus::Pending,
            },
            reject_reason: reason.map(Into::into),
            log_index: pos.0,
            offset: pos.1,
            cancelled_at: None,
            saga_step: reason.is_none().then(|| "PAYMENT".into()),
            cancel_cause: None,
            refunded: false,
            waitlist: false,
            waitlisted: false,
            admitted_at: None,
            waitlist_ended_at: None,
        });
    }

    fn push(&mut self, call: Call, result: OpResult) -> u64 {
        let index = self.ops.len() as u64;
        self.ops.push(Op {
            index,
            worker: 0,
            node: 1,
            invoke_us: self.clock_us,
            complete_us: self.clock_us + 10,
            call,
            result,
        });
        self.clock_us += 100;
        index
    }

    /// The run as the checker reads it.
    pub(crate) fn input(&self) -> CheckInput {
        let mut investments = self.invs.clone();
        investments.sort_by_key(|inv| (inv.log_index, inv.offset));
        let applied_index = investments
            .iter()
            .flat_map(|inv| [Some(inv.log_index), inv.cancelled_at.map(|c| c.0)])
            .flatten()
            .max()
            .unwrap_or(1)
            + 5;
        let node = |node_id| NodeFinal {
            node_id,
            applied_index,
            digest: "final-digest".into(),
            deals: self.final_deals(),
            investments: investments.clone(),
        };
        CheckInput {
            deals: self.deals.clone(),
            history: self.ops.clone(),
            finals: (1..=3).map(node).collect(),
            digests: (1..=3)
                .map(|node_id| DigestSample {
                    node_id,
                    applied_index: 2,
                    digest: "early-digest".into(),
                })
                .collect(),
            audit: Some(self.audit()),
            liveness: healthy_liveness(),
            log_times: (1..=3)
                .map(|node_id| crate::history::LogTimeSample {
                    node_id,
                    wall_ms: 1_800_000_000_000,
                    log_time_ms: 1_800_000_000_000 - 50,
                })
                .collect(),
        }
    }

    fn final_deals(&self) -> Vec<FinalDeal> {
        self.deals
            .iter()
            .map(|terms| {
                let mine = || self.invs.iter().filter(|inv| inv.deal_id == terms.deal_id);
                let active = || {
                    mine().filter(|inv| {
                        matches!(inv.status, InvStatus::Pending | InvStatus::Confirmed)
                    })
                };
                let confirmed = || mine().filter(|inv| inv.status == InvStatus::Confirmed);
                FinalDeal {
                    terms: terms.clone(),
                    counters: DealRead {
                        investor_count: active().count() as u32,
                        reserved_cents: active().map(|inv| inv.amount_cents).sum(),
                        confirmed_count: confirmed().count() as u32,
                        confirmed_cents: confirmed().map(|inv| inv.amount_cents).sum(),
                    },
                    closed_at: self.closed_at,
                }
            })
            .collect()
    }

    /// What the partners would have recorded: a charge and a document for every CONFIRMED
    /// investment, a declined charge for every CANCELLED one.
    fn audit(&self) -> AuditLog {
        let mut books = Books::new();
        for inv in &self.invs {
            match inv.status {
                InvStatus::Confirmed => {
                    let _ = books.charge(charge(inv), false, format!("pay-{}", inv.request_id));
                    let _ = books.document(document(inv), format!("doc-{}", inv.request_id));
                }
                InvStatus::Cancelled => {
                    let _ = books.charge(charge(inv), true, format!("pay-{}", inv.request_id));
                }
                InvStatus::Pending | InvStatus::Rejected | InvStatus::Waitlisted => {}
            }
        }
        AuditLog {
            events: books.events().to_vec(),
        }
    }
}

fn submit(rid: &str, user: &str, amount_cents: u64, resubmit: bool) -> Call {
    Call::Submit {
        request_id: rid.into(),
        deal_id: DEAL.into(),
        user_id: user.into(),
        amount_cents,
        resubmit,
        waitlist: false,
        waitlist_ttl_ms: None,
    }
}

fn reply(pos: (u64, u32), reason: Option<&str>, replayed: bool) -> Reply {
    Reply::Submitted(Decision {
        log_index: pos.0,
        offset: pos.1,
        admitted: reason.is_none(),
        waitlisted: false,
        reject_reason: reason.map(Into::into),
        replayed,
    })
}

pub(crate) fn charge(inv: &FinalInvestment) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: format!("{}:payment", inv.request_id),
        user_id: inv.user_id.clone(),
        amount: Money::from_cents(inv.amount_cents).to_decimal(),
        currency: "EUR".into(),
    }
}

pub(crate) fn document(inv: &FinalInvestment) -> DocumentRequest {
    DocumentRequest {
        idempotency_key: format!("{}:documents", inv.request_id),
        request_id: inv.request_id.clone(),
        deal_id: inv.deal_id.clone(),
        user_id: inv.user_id.clone(),
        amount: Money::from_cents(inv.amount_cents).to_decimal(),
    }
}

/// Appends an event to an audit, numbered after the last one.
pub(crate) fn push_event(audit: &mut AuditLog, entry: AuditEntry) {
    let seq = audit.events.last().map_or(1, |e| e.seq + 1);
    audit.events.push(AuditEvent {
        seq,
        entry,
        latency_ms: 0,
    });
}

/// A leader 1 s after healing, sagas terminal after 2 s, a probe ok after 1.5 s.
pub(crate) fn healthy_liveness() -> Liveness {
    Liveness {
        healed_us: 10_000_000,
        leader_us: Some(11_000_000),
        sagas_terminal_us: Some(12_000_000),
        probe_ok_us: Some(11_500_000),
        stuck: Vec::new(),
        waited_us: 3_000_000,
    }
}

/// Sets an op's invocation and completion times.
pub(crate) fn at_times(input: &mut CheckInput, op: u64, invoke_us: u64, complete_us: u64) {
    let op = &mut input.history[op as usize];
    op.invoke_us = invoke_us;
    op.complete_us = complete_us;
}

/// The verdict of one check.
pub(crate) fn verdict_of(verdicts: &Verdicts, name: CheckName) -> &Verdict {
    &verdicts.get(name).expect("every check runs").verdict
}

/// Asserts the whole run is valid, printing the report if not.
pub(crate) fn assert_valid(input: &CheckInput) -> Verdicts {
    let verdicts = check(input);
    assert_eq!(
        verdicts.overall,
        super::Overall::Valid,
        "\n{}",
        super::render_text(&verdicts)
    );
    verdicts
}

/// Asserts `name` is invalid with a violation that points at `ops` (when given) and whose
/// message contains `words`; returns every check found invalid.
pub(crate) fn assert_caught(
    input: &CheckInput,
    name: CheckName,
    ops: &[u64],
    words: &str,
) -> Vec<CheckName> {
    let verdicts = check(input);
    let report = super::render_text(&verdicts);
    let Verdict::Invalid { violations, .. } = verdict_of(&verdicts, name) else {
        panic!("{name} should be invalid\n{report}");
    };
    let found = violations
        .iter()
        .any(|v| v.message.contains(words) && ops.iter().all(|op| v.ops.contains(op)));
    assert!(
        found,
        "{name}: no violation with ops {ops:?} saying {words:?}\n{report}"
    );
    verdicts
        .checks
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Invalid { .. }))
        .map(|c| c.name)
        .collect()
}
