//! Property tests: random sequences of every command, checked after every applied command
//! against the invariants (I1–I3 and I10, recomputed from the investments), a naive reference
//! model of the decision rules, the waitlist and saga steps (I4 and the rules themselves), and
//! replay determinism and snapshot equivalence (I9).
//!
//! Cases: at least 256 per property; `PROPTEST_CASES=N` raises it for longer runs.

mod common;

use std::collections::BTreeMap;

use common::{rid, T0_MS};
use ledger_state_machine::*;
use proptest::prelude::*;

const DEALS: &[&str] = &["alpha", "beta", "gamma"];
/// The last deal id is never created: requests for it exercise rule 2.
const DEAL_IDS: &[&str] = &["alpha", "beta", "gamma", "ghost"];
const USERS: &[&str] = &["ana", "bob", "cyd", "dee", "eve"];
/// Amounts at the edges: one cent, round numbers, and the largest amount allowed.
const AMOUNTS_CENTS: &[u64] = &[1, 99, 100, 5_000, 10_000, 100_000_000_000_000];
const DEAL_AMOUNTS_CENTS: &[u64] = &[100, 10_000, 1_000_000, 100_000_000_000_000];

#[derive(Clone, Debug)]
enum Fence {
    Current,
    StaleEpoch,
    WrongNode,
}

#[derive(Clone, Debug)]
enum Kind {
    Paid,
    Declined,
    Documented,
    DocumentsFailed,
    Voided,
    Notified,
    NotifyFailed,
    Retrying(SagaStep),
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        deal: usize,
        amount: u64,
        max_investors: u32,
        min: Option<u64>,
        max: Option<u64>,
        /// Opens this long after the entry's time, if set.
        opens_in: Option<u64>,
        /// Closes this long after the entry's time, if set.
        closes_in: Option<u64>,
        max_waitlist: u32,
    },
    Close {
        deal: usize,
    },
    Submit {
        request: u128,
        deal: usize,
        user: usize,
        amount: u64,
        waitlist: bool,
        ttl_ms: Option<u64>,
    },
    Withdraw {
        request: u128,
    },
    Heartbeat {
        node: NodeId,
        /// The executor's replica reports having applied nothing: refused once the log is
        /// longer than the lag bound.
        lagging: bool,
    },
    Retire {
        node: NodeId,
    },
    Step {
        request: u128,
        kind: Kind,
        fence: Fence,
    },
    Abort {
        request: u128,
    },
    /// Moves the leader's clock, possibly backwards (a new leader with a slower clock).
    Clock {
        delta_ms: i64,
    },
    Leader {
        node: NodeId,
    },
    SetParams {
        deadline_ms: u64,
        lease_ms: u64,
        lag_max: u64,
        step_max_ms: u64,
    },
    /// A command that validation must refuse.
    Malformed {
        which: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let pick = |list: &'static [u64]| proptest::sample::select(list);
    let request = 1u128..=30;
    let step = prop_oneof![
        Just(SagaStep::Payment),
        Just(SagaStep::Documents),
        Just(SagaStep::Void),
        Just(SagaStep::Notify),
    ];
    let kind = prop_oneof![
        3 => Just(Kind::Paid),
        1 => Just(Kind::Declined),
        3 => Just(Kind::Documented),
        1 => Just(Kind::DocumentsFailed),
        2 => Just(Kind::Voided),
        2 => Just(Kind::Notified),
        1 => Just(Kind::NotifyFailed),
        1 => step.prop_map(Kind::Retrying),
    ];
    let fence = prop_oneof![
        8 => Just(Fence::Current),
        1 => Just(Fence::StaleEpoch),
        1 => Just(Fence::WrongNode),
    ];
    let schedule = || proptest::option::weighted(0.2, pick(&[1, 10_000, 400_000]));
    prop_oneof![
        2 => (0..DEALS.len(), pick(DEAL_AMOUNTS_CENTS), 1u32..=3, proptest::option::of(pick(AMOUNTS_CENTS)), proptest::option::of(pick(AMOUNTS_CENTS)), schedule(), schedule(), 1u32..=3)
            .prop_map(|(deal, amount, max_investors, min, max, opens_in, closes_in, max_waitlist)| {
                // A closing after the opening, when both are set.
                let closes_in = closes_in.map(|c| c + opens_in.unwrap_or(0));
                Op::Create { deal, amount, max_investors, min, max, opens_in, closes_in, max_waitlist }
            }),
        1 => (0..DEAL_IDS.len()).prop_map(|deal| Op::Close { deal }),
        12 => (request.clone(), 0..DEAL_IDS.len(), 0..USERS.len(), pick(AMOUNTS_CENTS), proptest::bool::weighted(0.4), proptest::option::weighted(0.3, pick(&[1, 5_000, 60_000])))
            .prop_map(|(request, deal, user, amount, waitlist, ttl_ms)| Op::Submit { request, deal, user, amount, waitlist, ttl_ms: ttl_ms.filter(|_| waitlist) }),
        1 => request.clone().prop_map(|request| Op::Withdraw { request }),
        3 => (1u64..=4, proptest::bool::weighted(0.2)).prop_map(|(node, lagging)| Op::Heartbeat { node, lagging }),
        1 => (1u64..=4).prop_map(|node| Op::Retire { node }),
        12 => (request.clone(), kind, fence).prop_map(|(request, kind, fence)| Op::Step { request, kind, fence }),
        1 => request.prop_map(|request| Op::Abort { request }),
        3 => prop_oneof![Just(0i64), Just(1), Just(999), Just(5_000), Just(10_000), Just(10_001), Just(300_000), Just(-20_000), Just(1_000_000_000)]
            .prop_map(|delta_ms| Op::Clock { delta_ms }),
        1 => (1u64..=4).prop_map(|node| Op::Leader { node }),
        1 => (pick(&[1_000, 2_000, 300_000]), pick(&[100, 1_000, 10_000]), pick(&[1, 20, 1_000]), pick(&[100, 5_000, 3_600_000]))
            .prop_map(|(deadline_ms, lease_ms, lag_max, step_max_ms)| Op::SetParams { deadline_ms, lease_ms, lag_max, step_max_ms }),
        1 => (0u8..5).prop_map(|which| Op::Malformed { which }),
    ]
}

/// A deal's terms in the model: amount, max investors, min ticket, max ticket (cents), opens
/// at, closes at, max waitlist.
type ModelTerms = (
    u64,
    u32,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    u32,
);

/// The naive reference: the rules of `DESIGN.md` §4.2 and the saga steps of §4.4, written as
/// plainly as possible (linear scans, no indexes, no executors).
#[derive(Default)]
struct Model {
    /// deal id → terms, closed
    deals: BTreeMap<&'static str, (ModelTerms, bool)>,
    investments: Vec<ModelInvestment>,
    now_ms: u64,
    deadline_ms: u64,
    lag_max: u64,
    step_max_ms: u64,
}

struct ModelInvestment {
    request: u128,
    deal: &'static str,
    user: &'static str,
    amount: u64,
    /// `Some(ttl)` when it asked for the waitlist.
    waitlist: Option<Option<u64>>,
    /// The first decision.
    verdict: Verdict,
    status: Status,
    reject: Option<RejectReason>,
    /// `None` for requests never admitted.
    step: Option<SagaStep>,
    deadline_ms: u64,
    decided_at_ms: u64,
}

impl Model {
    fn find(&self, request: u128) -> Option<&ModelInvestment> {
        self.investments.iter().find(|i| i.request == request)
    }

    fn find_mut(&mut self, request: u128) -> Option<&mut ModelInvestment> {
        self.investments.iter_mut().find(|i| i.request == request)
    }

    fn tick(&mut self, time_ms: u64) {
        // Log time never goes back, and one entry moves it at most `step_max_ms` on (§4.3).
        self.now_ms = if self.now_ms == 0 {
            time_ms
        } else {
            self.now_ms.max(time_ms.min(self.now_ms + self.step_max_ms))
        };
        for inv in &mut self.investments {
            if matches!(inv.step, Some(SagaStep::Payment | SagaStep::Documents))
                && inv.deadline_ms <= self.now_ms
            {
                inv.step = Some(SagaStep::Void);
            }
        }
        // Scheduled closings, then waitlisted requests whose time to live passed.
        let now = self.now_ms;
        let due: Vec<&'static str> = self
            .deals
            .iter()
            .filter(|(_, (terms, closed))| !closed && terms.5.is_some_and(|at| at <= now))
            .map(|(&deal, _)| deal)
            .collect();
        for deal in due {
            self.close(deal);
        }
        for inv in &mut self.investments {
            let ttl = inv.waitlist.flatten();
            if inv.status == Status::Waitlisted
                && ttl.is_some_and(|ttl| inv.decided_at_ms + ttl <= now)
            {
                inv.status = Status::Rejected;
                inv.reject = Some(RejectReason::WaitlistClosed);
            }
        }
    }

    fn close(&mut self, deal: &'static str) {
        if let Some((_, closed)) = self.deals.get_mut(deal) {
            *closed = true;
        }
        for inv in &mut self.investments {
            if inv.deal == deal && inv.status == Status::Waitlisted {
                inv.status = Status::Rejected;
                inv.reject = Some(RejectReason::WaitlistClosed);
            }
        }
    }

    /// Rule 8: capacity freed in `deal`; waitlisted requests that fit are admitted in order.
    fn admit_waitlisted(&mut self, deal: &'static str) {
        let Some(&((total, max_investors, ..), closed)) = self.deals.get(deal) else {
            return;
        };
        if closed {
            return;
        }
        for i in 0..self.investments.len() {
            let active = |inv: &ModelInvestment| inv.deal == deal && inv.status.is_active();
            let count = self.investments.iter().filter(|i| active(i)).count() as u32;
            let reserved: u64 = self
                .investments
                .iter()
                .filter(|i| active(i))
                .map(|i| i.amount)
                .sum();
            let now = self.now_ms;
            let deadline = self.deadline_ms;
            let inv = &mut self.investments[i];
            if inv.deal != deal || inv.status != Status::Waitlisted {
                continue;
            }
            if count >= max_investors {
                return;
            }
            if reserved + inv.amount <= total {
                inv.status = Status::Pending;
                inv.step = Some(SagaStep::Payment);
                inv.deadline_ms = now + deadline;
            }
        }
    }

    /// 1-based rank of a waitlisted request among its deal's.
    fn waitlist_position(&self, request: u128) -> Option<u32> {
        let inv = self.find(request)?;
        if inv.status != Status::Waitlisted {
            return None;
        }
        let ahead = self
            .investments
            .iter()
            .take_while(|i| i.request != request)
            .filter(|i| i.deal == inv.deal && i.status == Status::Waitlisted)
            .count();
        Some(ahead as u32 + 1)
    }

    /// `Err(())` for a request id reused with another payload.
    fn submit(
        &mut self,
        request: u128,
        deal: &'static str,
        user: &'static str,
        amount: u64,
        waitlist: Option<Option<u64>>,
    ) -> Result<Verdict, ()> {
        if let Some(seen) = self.find(request) {
            return if (seen.deal, seen.user, seen.amount, seen.waitlist)
                == (deal, user, amount, waitlist)
            {
                Ok(seen.verdict)
            } else {
                Err(())
            };
        }
        let active = |i: &&ModelInvestment| i.deal == deal && i.status.is_active();
        let waiting = self
            .investments
            .iter()
            .filter(|i| i.deal == deal && i.status == Status::Waitlisted)
            .count() as u32;
        let waitlist_or = |reason, max_waitlist: u32| {
            if waitlist.is_some() && waiting < max_waitlist {
                Ok(Verdict::Waitlisted)
            } else {
                Err(reason)
            }
        };
        let decided = match self.deals.get(deal) {
            None => Err(RejectReason::DealNotFound),
            Some(((_, _, _, _, Some(opens), _, _), _)) if self.now_ms < *opens => {
                Err(RejectReason::DealNotOpen)
            }
            Some((_, true)) => Err(RejectReason::DealClosed),
            Some(((total, max_investors, min, max, _, _, max_waitlist), false)) => {
                let count = self.investments.iter().filter(active).count() as u32;
                let reserved: u64 = self
                    .investments
                    .iter()
                    .filter(active)
                    .map(|i| i.amount)
                    .sum();
                if min.is_some_and(|m| amount < m) || max.is_some_and(|m| amount > m) {
                    Err(RejectReason::TicketOutOfRange)
                } else if self
                    .investments
                    .iter()
                    .filter(|i| i.deal == deal && i.status.holds_place())
                    .any(|i| i.user == user)
                {
                    Err(RejectReason::DuplicateInvestor)
                } else if count >= *max_investors {
                    waitlist_or(RejectReason::InvestorLimitReached, *max_waitlist)
                } else if reserved + amount > *total {
                    waitlist_or(RejectReason::AmountExceedsRemaining, *max_waitlist)
                } else {
                    Ok(Verdict::Pending)
                }
            }
        };
        let (verdict, status, reject) = match decided {
            Ok(Verdict::Pending) => (Verdict::Pending, Status::Pending, None),
            Ok(_) => (Verdict::Waitlisted, Status::Waitlisted, None),
            Err(reason) => (Verdict::Rejected(reason), Status::Rejected, Some(reason)),
        };
        self.investments.push(ModelInvestment {
            request,
            deal,
            user,
            amount,
            waitlist,
            verdict,
            status,
            reject,
            step: (status == Status::Pending).then_some(SagaStep::Payment),
            deadline_ms: self.now_ms + self.deadline_ms,
            decided_at_ms: self.now_ms,
        });
        Ok(verdict)
    }

    fn withdraw(&mut self, request: u128) -> Result<Outcome, ()> {
        match self.investments.iter_mut().find(|i| i.request == request) {
            Some(inv) if inv.status == Status::Waitlisted => {
                inv.status = Status::Rejected;
                inv.reject = Some(RejectReason::WaitlistClosed);
                Ok(Outcome::Withdrawn)
            }
            _ => Err(()),
        }
    }

    /// Applies an accepted step result; returns the new (status, step).
    fn step(&mut self, request: u128, kind: &Kind) -> (Status, SagaStep) {
        let inv = self
            .find_mut(request)
            .expect("accepted results are for known requests");
        let step = inv.step.expect("accepted results are for sagas");
        let (status, next) = match (step, kind) {
            (SagaStep::Payment, Kind::Paid) => (inv.status, SagaStep::Documents),
            (SagaStep::Payment, Kind::Declined) => (Status::Cancelled, SagaStep::Notify),
            (SagaStep::Documents, Kind::Documented) => (Status::Confirmed, SagaStep::Notify),
            (SagaStep::Documents, Kind::DocumentsFailed) => (inv.status, SagaStep::Void),
            (SagaStep::Void, Kind::Voided) => (Status::Cancelled, SagaStep::Notify),
            (SagaStep::Notify, Kind::Notified | Kind::NotifyFailed) => (inv.status, SagaStep::Done),
            (step, Kind::Retrying(_)) => (inv.status, step),
            other => panic!("the model does not accept {other:?}"),
        };
        let freed = inv.status == Status::Pending && status == Status::Cancelled;
        inv.status = status;
        inv.step = Some(next);
        let deal = inv.deal;
        if freed {
            self.admit_waitlisted(deal);
        }
        (status, next)
    }

    fn expects_step(&self, request: u128, kind: &Kind) -> Result<(), IgnoreReason> {
        let inv = self.find(request).ok_or(IgnoreReason::UnknownInvestment)?;
        let step = inv.step.ok_or(IgnoreReason::NoSaga)?;
        let wanted = match kind {
            Kind::Paid | Kind::Declined => SagaStep::Payment,
            Kind::Documented | Kind::DocumentsFailed => SagaStep::Documents,
            Kind::Voided => SagaStep::Void,
            Kind::Notified | Kind::NotifyFailed => SagaStep::Notify,
            Kind::Retrying(step) => *step,
        };
        if step == wanted {
            Ok(())
        } else {
            Err(IgnoreReason::WrongStep)
        }
    }
}

fn result_of(kind: &Kind) -> StepResult {
    match kind {
        Kind::Paid => StepResult::PaymentSucceeded {
            payment_id: "pay".into(),
        },
        Kind::Declined => StepResult::PaymentDeclined {
            reason: "declined".into(),
        },
        Kind::Documented => StepResult::DocumentsGenerated {
            document_id: "doc".into(),
        },
        Kind::DocumentsFailed => StepResult::DocumentsFailed {
            error: "down".into(),
        },
        Kind::Voided => StepResult::PaymentVoided { refunded: true },
        Kind::Notified => StepResult::NotifySent {
            message_id: "msg".into(),
        },
        Kind::NotifyFailed => StepResult::NotifyFailed {
            error: "bounced".into(),
        },
        Kind::Retrying(step) => StepResult::Retrying {
            step: *step,
            attempts: 2,
            error: "timeout".into(),
        },
    }
}

fn malformed(which: u8) -> Command {
    match which {
        0 => Command::Submit(Submit {
            request_id: rid(1),
            deal_id: "alpha".into(),
            user_id: "ana".into(),
            amount: Money::ZERO,
            waitlist: false,
            waitlist_ttl_ms: None,
        }),
        1 => Command::Submit(Submit {
            request_id: rid(1),
            deal_id: "al pha".into(),
            user_id: "ana".into(),
            amount: Money::from_cents(1),
            waitlist: true,
            waitlist_ttl_ms: None,
        }),
        2 => Command::CreateDeal(CreateDeal {
            deal_id: "alpha".into(),
            amount: Money::from_cents(Money::MAX.cents() + 1),
            max_investors: 1,
            min_ticket: None,
            max_ticket: None,
            opens_at_ms: None,
            closes_at_ms: None,
            max_waitlist: 1,
        }),
        3 => Command::Submit(Submit {
            request_id: rid(1),
            deal_id: "alpha".into(),
            user_id: "ana".into(),
            amount: Money::from_cents(1),
            waitlist: false,
            waitlist_ttl_ms: Some(1_000),
        }),
        _ => Command::SetParams(Params {
            saga_deadline_ms: 0,
            executor_lease_ms: 0,
            ..Params::default()
        }),
    }
}

/// Drives the state machine and the model through `ops`, one command per entry, checking
/// everything after each. Returns the entries applied, for replays.
fn run(ops: &[Op]) -> Result<(AdmissionState, Vec<(u64, Entry)>), TestCaseError> {
    let mut state = AdmissionState::new();
    let mut model = Model {
        deadline_ms: Params::default().saga_deadline_ms,
        lag_max: Params::default().executor_lag_max_entries,
        step_max_ms: Params::default().log_time_step_max_ms,
        ..Model::default()
    };
    let mut decisions: BTreeMap<u128, Decision> = BTreeMap::new();
    let mut entries = Vec::new();
    let mut events = Vec::new();
    let mut time_ms = T0_MS;
    let mut leader_id: NodeId = 1;

    for (n, op) in ops.iter().enumerate() {
        let log_index = n as u64 + 1;
        let command = match op {
            Op::Create {
                deal,
                amount,
                max_investors,
                min,
                max,
                opens_in,
                closes_in,
                max_waitlist,
            } => Command::CreateDeal(CreateDeal {
                deal_id: DEALS[*deal].into(),
                amount: Money::from_cents(*amount),
                max_investors: *max_investors,
                min_ticket: min.map(Money::from_cents),
                max_ticket: max.map(Money::from_cents),
                opens_at_ms: opens_in.map(|d| time_ms + d),
                closes_at_ms: closes_in.map(|d| time_ms + d),
                max_waitlist: *max_waitlist,
            }),
            Op::Close { deal } => Command::CloseDeal {
                deal_id: DEAL_IDS[*deal].into(),
            },
            Op::Submit {
                request,
                deal,
                user,
                amount,
                waitlist,
                ttl_ms,
            } => Command::Submit(Submit {
                request_id: rid(*request),
                deal_id: DEAL_IDS[*deal].into(),
                user_id: USERS[*user].into(),
                amount: Money::from_cents(*amount),
                waitlist: *waitlist,
                waitlist_ttl_ms: *ttl_ms,
            }),
            Op::Withdraw { request } => Command::Withdraw {
                request_id: rid(*request),
            },
            Op::Heartbeat { node, lagging } => Command::ExecutorHeartbeat {
                node_id: *node,
                applied_index: if *lagging { 0 } else { log_index - 1 },
            },
            Op::Retire { node } => Command::ExecutorRetire { node_id: *node },
            Op::Step {
                request,
                kind,
                fence,
            } => {
                let saga = state.investment(rid(*request)).and_then(|i| i.saga);
                let (executor, epoch) = saga.map_or((1, 1), |s| (s.assignee.unwrap_or(0), s.epoch));
                let (executor, epoch) = match fence {
                    Fence::Current => (executor, epoch),
                    Fence::StaleEpoch => (executor, epoch.saturating_sub(1)),
                    Fence::WrongNode => (executor + 1, epoch),
                };
                Command::RecordStep(RecordStep {
                    request_id: rid(*request),
                    executor,
                    epoch,
                    result: result_of(kind),
                })
            }
            Op::Abort { request } => Command::AbortSaga {
                request_id: rid(*request),
                reason: "operator".into(),
            },
            Op::Clock { delta_ms } => {
                time_ms = time_ms.saturating_add_signed(*delta_ms);
                Command::ExecutorHeartbeat {
                    node_id: 4,
                    applied_index: log_index - 1,
                }
            }
            Op::Leader { node } => {
                leader_id = *node;
                Command::ExecutorHeartbeat {
                    node_id: *node,
                    applied_index: log_index - 1,
                }
            }
            Op::SetParams {
                deadline_ms,
                lease_ms,
                lag_max,
                step_max_ms,
            } => Command::SetParams(Params {
                saga_deadline_ms: *deadline_ms,
                executor_lease_ms: *lease_ms,
                executor_lag_max_entries: *lag_max,
                log_time_step_max_ms: *step_max_ms,
            }),
            Op::Malformed { which } => malformed(*which),
        };
        let entry = Entry {
            header: EntryHeader { leader_id, time_ms },
            commands: vec![command],
        };
        let before = state.investment(rid(op_request(op)));
        events.clear();
        let mut results = state
            .apply_entry(log_index, &entry, &mut events)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let result = results.pop().expect("one result per command");
        model.tick(time_ms);

        // What the model expects of this command.
        match op {
            Op::Submit {
                request,
                deal,
                user,
                amount,
                waitlist,
                ttl_ms,
            } => {
                let asked = waitlist.then_some(*ttl_ms);
                match model.submit(*request, DEAL_IDS[*deal], USERS[*user], *amount, asked) {
                    Err(()) => prop_assert_eq!(
                        &result,
                        &Err(CommandError::RequestConflict {
                            request_id: rid(*request)
                        })
                    ),
                    Ok(expected) => {
                        let Ok(Outcome::Submitted { decision, replayed }) = &result else {
                            return Err(TestCaseError::fail(format!("submit gave {result:?}")));
                        };
                        prop_assert_eq!(
                            decision.verdict,
                            expected,
                            "rules disagree with the model on {:?}",
                            op
                        );
                        // I4: decided once; a resubmission gets the first decision, unchanged.
                        match decisions.get(request) {
                            Some(first) => {
                                prop_assert!(*replayed);
                                prop_assert_eq!(first, decision);
                            }
                            None => {
                                prop_assert!(!*replayed);
                                prop_assert_eq!(
                                    (decision.log_index, decision.offset),
                                    (log_index, 0)
                                );
                                decisions.insert(*request, *decision);
                            }
                        }
                    }
                }
            }
            Op::Step {
                request,
                kind,
                fence,
            } => {
                let expected = model.expects_step(*request, kind);
                let saga_before = before.as_ref().and_then(|i| i.saga.as_ref());
                // The entry's new log time may lapse the owner's lease before the result applies;
                // then the saga was reassigned (an event with a newer epoch) and fencing is right.
                let reassigned = saga_before.is_some_and(|s| {
                    events
                        .iter()
                        .any(|e| e.request_id == rid(*request) && e.epoch != s.epoch)
                });
                let owned = saga_before.is_some_and(|s| s.assignee.is_some()) && !reassigned;
                match (&result, expected) {
                    (
                        Ok(Outcome::StepIgnored(IgnoreReason::StaleEpoch)),
                        Ok(()) | Err(IgnoreReason::WrongStep),
                    ) => {
                        prop_assert!(
                            !matches!(fence, Fence::Current) || !owned,
                            "a current owner was fenced"
                        );
                    }
                    (Ok(Outcome::StepIgnored(got)), Err(want)) => prop_assert_eq!(*got, want),
                    (Ok(Outcome::StepRecorded { status, step }), Ok(())) => {
                        prop_assert!(
                            matches!(fence, Fence::Current) && owned,
                            "a stale result was accepted"
                        );
                        prop_assert_eq!((*status, *step), model.step(*request, kind));
                    }
                    (got, want) => {
                        return Err(TestCaseError::fail(format!(
                            "step gave {got:?}, model says {want:?}"
                        )))
                    }
                }
            }
            Op::Withdraw { request } => match model.withdraw(*request) {
                Ok(outcome) => prop_assert_eq!(&result, &Ok(outcome)),
                Err(()) => prop_assert!(
                    matches!(
                        result,
                        Err(CommandError::NotWaitlisted { .. }
                            | CommandError::InvestmentNotFound { .. })
                    ),
                    "got {:?}",
                    result
                ),
            },
            Op::Abort { request } => {
                let compensable = model
                    .find(*request)
                    .and_then(|i| i.step)
                    .is_some_and(|s| s.is_compensable());
                if compensable {
                    prop_assert_eq!(&result, &Ok(Outcome::SagaAborted));
                    model.find_mut(*request).expect("known").step = Some(SagaStep::Void);
                } else {
                    prop_assert!(result.is_err());
                }
            }
            Op::Create {
                deal,
                amount,
                max_investors,
                min,
                max,
                opens_in,
                closes_in,
                max_waitlist,
            } => {
                let terms = (
                    *amount,
                    *max_investors,
                    *min,
                    *max,
                    opens_in.map(|d| time_ms + d),
                    closes_in.map(|d| time_ms + d),
                    *max_waitlist,
                );
                let valid = matches!(&entry.commands[0], c if c.validate().is_ok());
                match model.deals.get(DEALS[*deal]) {
                    _ if !valid => prop_assert!(
                        matches!(result, Err(CommandError::InvalidArgument { .. })),
                        "got {:?}",
                        result
                    ),
                    Some((existing, _)) if *existing == terms => {
                        prop_assert_eq!(&result, &Ok(Outcome::DealCreated { created: false }))
                    }
                    Some(_) => prop_assert!(
                        matches!(result, Err(CommandError::DealConflict { .. })),
                        "got {:?}",
                        result
                    ),
                    None => {
                        prop_assert_eq!(&result, &Ok(Outcome::DealCreated { created: true }));
                        model.deals.insert(DEALS[*deal], (terms, false));
                    }
                }
            }
            Op::Close { deal } => match model.deals.get(DEAL_IDS[*deal]) {
                Some(_) => {
                    prop_assert_eq!(&result, &Ok(Outcome::DealClosed));
                    model.close(DEAL_IDS[*deal]);
                }
                None => prop_assert!(
                    matches!(result, Err(CommandError::DealNotFound { .. })),
                    "got {:?}",
                    result
                ),
            },
            Op::SetParams {
                deadline_ms,
                lag_max,
                step_max_ms,
                ..
            } => {
                prop_assert_eq!(&result, &Ok(Outcome::ParamsSet));
                model.deadline_ms = *deadline_ms;
                model.lag_max = *lag_max;
                model.step_max_ms = *step_max_ms;
            }
            Op::Malformed { .. } => prop_assert!(
                matches!(result, Err(CommandError::InvalidArgument { .. })),
                "got {:?}",
                result
            ),
            Op::Heartbeat { lagging: true, .. } if log_index > model.lag_max => {
                prop_assert_eq!(&result, &Ok(Outcome::HeartbeatRefused { lag: log_index }))
            }
            Op::Heartbeat { .. } | Op::Clock { .. } | Op::Leader { .. } => {
                prop_assert_eq!(&result, &Ok(Outcome::HeartbeatRecorded))
            }
            Op::Retire { .. } => prop_assert_eq!(&result, &Ok(Outcome::ExecutorRetired)),
        }

        // After every command: invariants from scratch, and every investment as the model has it.
        if let Err(violation) = state.check_invariants() {
            return Err(TestCaseError::fail(format!("after {op:?}: {violation}")));
        }
        // Requests naming an unknown deal are kept apart (issue #11); the model never reaches
        // the bound on how many are kept.
        let unknown_deal = |i: &&ModelInvestment| i.reject == Some(RejectReason::DealNotFound);
        let rejected_unknown = model.investments.iter().filter(unknown_deal).count();
        prop_assert_eq!(
            state.investment_count(),
            model.investments.len() - rejected_unknown
        );
        prop_assert_eq!(state.unknown_deal_rejections(), (rejected_unknown, 0));
        for inv in &model.investments {
            let view = state
                .investment(rid(inv.request))
                .expect("every decided request is recorded");
            prop_assert_eq!(view.status, inv.status, "status of {}", inv.request);
            prop_assert_eq!(
                view.reject_reason,
                inv.reject,
                "reject reason of {}",
                inv.request
            );
            prop_assert_eq!(
                view.waitlist_position,
                model.waitlist_position(inv.request),
                "waitlist position of {}",
                inv.request
            );
            prop_assert_eq!(
                view.saga.map(|s| s.step),
                inv.step,
                "step of {}",
                inv.request
            );
        }
        for event in &events {
            let view = state
                .investment(event.request_id)
                .expect("events name known requests");
            match view.saga {
                Some(saga) => prop_assert!(event.epoch <= saga.epoch),
                // A waitlisted request that ended without a seat.
                None => prop_assert_eq!(
                    (event.status, view.reject_reason),
                    (Status::Rejected, Some(RejectReason::WaitlistClosed))
                ),
            }
        }
        entries.push((log_index, entry));
    }
    Ok((state, entries))
}

fn op_request(op: &Op) -> u128 {
    match op {
        Op::Step { request, .. }
        | Op::Submit { request, .. }
        | Op::Abort { request }
        | Op::Withdraw { request } => *request,
        _ => 1,
    }
}

fn replay(entries: &[(u64, Entry)]) -> AdmissionState {
    let mut state = AdmissionState::new();
    let mut events = Vec::new();
    for (log_index, entry) in entries {
        state
            .apply_entry(*log_index, entry, &mut events)
            .expect("in order");
    }
    state
}

fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: default.cases.max(256),
        ..default
    }
}

proptest! {
    #![proptest_config(config())]

    /// Rules, saga steps, I1–I4 and every derived index, after every command.
    #[test]
    fn every_command_keeps_the_invariants_and_matches_the_model(ops in proptest::collection::vec(op(), 1..250)) {
        run(&ops)?;
    }

    /// I9: two replicas fed the same entries have the same digest and the same answers.
    #[test]
    fn replicas_fed_the_same_entries_agree(ops in proptest::collection::vec(op(), 1..150)) {
        let (state, entries) = run(&ops)?;
        let other = replay(&entries);
        prop_assert_eq!(state.digest(), other.digest());
        prop_assert_eq!(state.last_log_index(), other.last_log_index());
        for request in 1..=30 {
            prop_assert_eq!(state.investment(rid(request)), other.investment(rid(request)));
        }
    }

    /// Snapshot at any point, restore, continue: the same digest, outcomes and events as never
    /// snapshotting.
    #[test]
    fn snapshot_restore_continue_equals_continue(ops in proptest::collection::vec(op(), 2..150), cut in any::<proptest::sample::Index>()) {
        let (state, entries) = run(&ops)?;
        let cut = cut.index(entries.len());
        let mut straight = replay(&entries[..cut]);
        let bytes = straight.encode_snapshot();
        // The copy a node encodes off the apply path writes the very same bytes.
        prop_assert!(straight.snapshot_copy().encode() == bytes);
        let mut restored = AdmissionState::decode_snapshot(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(restored.digest(), straight.digest());
        for (log_index, entry) in &entries[cut..] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let left = straight.apply_entry(*log_index, entry, &mut a).expect("in order");
            let right = restored.apply_entry(*log_index, entry, &mut b).expect("in order");
            prop_assert_eq!(left, right);
            prop_assert_eq!(a, b);
        }
        prop_assert_eq!(restored.digest(), state.digest());
        prop_assert!(restored.check_invariants().is_ok());
    }

    /// Batching many commands into one entry decides exactly as one command per entry does,
    /// when time and leader stay the same.
    #[test]
    fn batching_never_changes_decisions(ops in proptest::collection::vec(op(), 1..100)) {
        let ops: Vec<Op> = ops.into_iter().filter(|op| matches!(op, Op::Submit { .. } | Op::Create { .. } | Op::Close { .. } | Op::Heartbeat { lagging: false, .. })).collect();
        let (single, entries) = run(&ops)?;
        let mut batched = AdmissionState::new();
        let batch = Entry {
            header: EntryHeader { leader_id: 1, time_ms: T0_MS },
            commands: entries.iter().map(|(_, e)| e.commands[0].clone()).collect(),
        };
        batched.apply_entry(1, &batch, &mut Vec::new()).expect("first entry");
        prop_assert!(batched.check_invariants().is_ok());
        for request in 1..=30 {
            let (a, b) = (single.investment(rid(request)), batched.investment(rid(request)));
            prop_assert_eq!(a.as_ref().map(|i| (i.status, i.reject_reason)), b.as_ref().map(|i| (i.status, i.reject_reason)));
        }
    }

    /// Decoding never panics, whatever the bytes: corrupt snapshots and entries are refused or,
    /// if they happen to decode, describe a state that holds the invariants.
    #[test]
    fn decoding_arbitrary_or_corrupted_bytes_never_panics(
        ops in proptest::collection::vec(op(), 1..60),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
        noise in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let (state, entries) = run(&ops)?;
        let mut bytes = state.encode_snapshot();
        for (at, value) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value | 1;
        }
        if let Ok(decoded) = AdmissionState::decode_snapshot(&bytes) {
            prop_assert!(decoded.check_invariants().is_ok());
        }
        let _ = AdmissionState::decode_snapshot(&noise);
        let _ = codec::decode_entry(&noise);
        let encoded = codec::encode_entry(&entries[0].1);
        prop_assert_eq!(codec::decode_entry(&encoded).ok(), Some(entries[0].1.clone()));
        let mut truncated = encoded.clone();
        truncated.pop();
        prop_assert!(codec::decode_entry(&truncated).is_err());
    }
}
