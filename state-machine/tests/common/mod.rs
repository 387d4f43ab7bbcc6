//! A small driver for the state machine in tests: it numbers entries, stamps them with a clock
//! the test controls, and checks every invariant after each entry.

#![allow(dead_code)]

use ledger_state_machine::*;

/// Log time the tests start at (an arbitrary 2026 timestamp).
pub const T0_MS: u64 = 1_790_000_000_000;

pub struct Harness {
    pub state: AdmissionState,
    pub log_index: u64,
    pub time_ms: u64,
    pub leader_id: NodeId,
    pub events: Vec<SagaEvent>,
}

impl Default for Harness {
    fn default() -> Harness {
        Harness::new()
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness {
            state: AdmissionState::new(),
            log_index: 0,
            time_ms: T0_MS,
            leader_id: 1,
            events: Vec::new(),
        }
    }

    /// Applies one entry with `commands` and checks the invariants.
    pub fn apply(&mut self, commands: Vec<Command>) -> Vec<Applied> {
        self.log_index += 1;
        let entry = Entry {
            header: EntryHeader {
                leader_id: self.leader_id,
                time_ms: self.time_ms,
            },
            commands,
        };
        self.events.clear();
        let results = self
            .state
            .apply_entry(self.log_index, &entry, &mut self.events)
            .expect("entries are applied in order");
        if let Err(violation) = self.state.check_invariants() {
            panic!("after entry {}: {violation}", self.log_index);
        }
        results
    }

    /// A new harness that applied `entries`, one entry each, log time 10 ms apart.
    pub fn replaying(entries: Vec<Vec<Command>>) -> Harness {
        let mut h = Harness::new();
        for commands in entries {
            h.apply(commands);
            h.time_ms += 10;
        }
        h
    }

    pub fn apply_one(&mut self, command: Command) -> Applied {
        self.apply(vec![command])
            .pop()
            .expect("one result per command")
    }

    /// Moves log time on by `ms` and applies empty entries so that what it makes due happens;
    /// one entry may advance log time only so far (`Params::log_time_step_max_ms`), so a long
    /// step takes several entries, as it does in a live cluster.
    pub fn advance(&mut self, ms: u64) {
        let target = self.time_ms + ms;
        loop {
            let step = self.state.params().log_time_step_max_ms;
            self.time_ms = target.min(self.state.now_ms() + step).max(self.time_ms);
            self.apply(Vec::new());
            if self.state.now_ms() >= target {
                break;
            }
        }
        self.time_ms = target;
    }

    pub fn create_deal(&mut self, deal_id: &str, amount: &str, max_investors: u32) {
        let outcome = self.apply_one(create_deal(deal_id, amount, max_investors, None, None));
        assert_eq!(outcome, Ok(Outcome::DealCreated { created: true }));
    }

    pub fn submit(&mut self, request: u128, deal_id: &str, user_id: &str, amount: &str) -> Verdict {
        match self.apply_one(submit(request, deal_id, user_id, amount)) {
            Ok(Outcome::Submitted { decision, .. }) => decision.verdict,
            other => panic!("submit gave {other:?}"),
        }
    }

    pub fn heartbeat(&mut self, node_id: NodeId) {
        assert_eq!(
            self.apply_one(Command::ExecutorHeartbeat {
                node_id,
                applied_index: self.log_index,
            }),
            Ok(Outcome::HeartbeatRecorded)
        );
    }

    pub fn saga(&self, request: u128) -> Saga {
        self.state
            .investment(rid(request))
            .and_then(|inv| inv.saga)
            .expect("an admitted investment")
    }

    pub fn status(&self, request: u128) -> Status {
        self.state
            .investment(rid(request))
            .expect("a decided request")
            .status
    }

    /// Records `result` under the saga's current owner and epoch, as its executor would.
    pub fn record(&mut self, request: u128, result: StepResult) -> Outcome {
        let saga = self.saga(request);
        let executor = saga.assignee.expect("an assigned saga");
        self.apply_one(Command::RecordStep(RecordStep {
            request_id: rid(request),
            executor,
            epoch: saga.epoch,
            result,
        }))
        .expect("a well-formed step result")
    }
}

pub fn rid(n: u128) -> RequestId {
    RequestId::from_u128(n).expect("tests use non-zero request ids")
}

pub fn money(text: &str) -> Money {
    Money::parse(text).expect("tests use valid amounts")
}

/// A valid `CreateDeal` (1,000.00, two seats), to change with struct update syntax.
pub fn deal_terms(deal_id: &str) -> CreateDeal {
    match create_deal(deal_id, "1000", 2, None, None) {
        Command::CreateDeal(create) => create,
        _ => unreachable!(),
    }
}

pub fn create_deal(
    deal_id: &str,
    amount: &str,
    max_investors: u32,
    min_ticket: Option<&str>,
    max_ticket: Option<&str>,
) -> Command {
    Command::CreateDeal(CreateDeal {
        deal_id: deal_id.into(),
        amount: money(amount),
        max_investors,
        min_ticket: min_ticket.map(money),
        max_ticket: max_ticket.map(money),
        opens_at_ms: None,
        closes_at_ms: None,
        max_waitlist: MAX_WAITLIST_DEFAULT,
    })
}

pub fn submit(request: u128, deal_id: &str, user_id: &str, amount: &str) -> Command {
    Command::Submit(Submit {
        request_id: rid(request),
        deal_id: deal_id.into(),
        user_id: user_id.into(),
        amount: money(amount),
        waitlist: false,
        waitlist_ttl_ms: None,
    })
}

/// A request that opts in to the waitlist, with an optional `waitlist_ttl_ms`.
pub fn submit_waitlisted(
    request: u128,
    deal_id: &str,
    user_id: &str,
    amount: &str,
    ttl_ms: Option<u64>,
) -> Command {
    Command::Submit(Submit {
        request_id: rid(request),
        deal_id: deal_id.into(),
        user_id: user_id.into(),
        amount: money(amount),
        waitlist: true,
        waitlist_ttl_ms: ttl_ms,
    })
}

pub fn paid(id: &str) -> StepResult {
    StepResult::PaymentSucceeded {
        payment_id: id.into(),
    }
}

pub fn documented(id: &str) -> StepResult {
    StepResult::DocumentsGenerated {
        document_id: id.into(),
    }
}

pub fn notified(id: &str) -> StepResult {
    StepResult::NotifySent {
        message_id: id.into(),
    }
}

/// `view` without what snapshots before format 6 did not keep (the deciding leader and the
/// saga's history), to compare a converted snapshot with a replay.
pub fn without_history(mut view: InvestmentView) -> InvestmentView {
    view.decided_by = None;
    if let Some(saga) = &mut view.saga {
        saga.history.clear();
    }
    view
}
