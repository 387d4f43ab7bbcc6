//! What the fuzz targets share: a small language of state machine operations that libFuzzer's
//! bytes are read as (through `arbitrary`), and the driver that turns it into log entries,
//! applies them and checks the state after each one.
//!
//! Ids come from short lists, so that requests, deals, users and executors collide often;
//! amounts, seat counts, parameters and clock moves favour the edges of their ranges and include
//! invalid values, which validation must refuse without changing anything.

use arbitrary::Arbitrary;
use ledger_state_machine::{
    AdmissionState, Applied, Command, CreateDeal, Entry, EntryError, EntryHeader, Money, NodeId,
    Params, RecordStep, RequestId, SagaEvent, SagaStep, StepResult, Submit, TraceContext,
    TracedSubmit, ERROR_TEXT_LEN_MAX, EXTERNAL_ID_LEN_MAX, MAX_INVESTORS_LIMIT,
};

/// Log time of the first entry (an arbitrary 2026 timestamp), as in the crate's own tests.
pub const T0_MS: u64 = 1_790_000_000_000;
/// Most entries one input makes; keeps an execution short.
pub const ENTRIES_MAX: usize = 48;
/// Most commands one entry carries.
pub const COMMANDS_MAX: usize = 12;

/// Deal ids: four valid (the fourth is never created by the lists below unless asked), two
/// invalid.
const DEAL_IDS: [&str; 6] = ["alpha", "beta", "gamma", "ghost", "", "bad id"];
/// User ids: six valid, two invalid.
const USER_IDS: [&str; 8] = [
    "ana",
    "bob",
    "cyd",
    "dee",
    "eve",
    "ana@example.com:7",
    "",
    "bad/user",
];
/// Amounts at the edges, in cents: one cent, round numbers, just below and at the largest
/// amount, and the invalid zero, `MAX + 1` and `u64::MAX`.
const AMOUNTS_CENTS: [u64; 11] = [
    1,
    99,
    100,
    5_000,
    10_000,
    1_000_000,
    Money::MAX.cents() - 1,
    Money::MAX.cents(),
    0,
    Money::MAX.cents() + 1,
    u64::MAX,
];
/// Request ids: 1..=24, and 0 (the nil UUID, invalid) for index 0.
const REQUESTS: u8 = 25;
/// Executors (and leaders): nodes 0..=4.
const NODES: u8 = 5;

/// An amount: mostly from the edge list, sometimes any number of cents.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Amount {
    /// An index into the edge list.
    Edge(u8),
    /// Any count of cents.
    Cents(u64),
}

impl Amount {
    fn money(self) -> Money {
        match self {
            Amount::Edge(i) => {
                Money::from_cents(AMOUNTS_CENTS[usize::from(i) % AMOUNTS_CENTS.len()])
            }
            Amount::Cents(c) => Money::from_cents(c),
        }
    }
}

/// A text for step results and abort reasons: valid ids, the empty text, texts at and past
/// the length limits, a control character, multi-byte characters.
fn text(choice: u8) -> String {
    match choice % 8 {
        0 => "p-1".into(),
        1 => "doc-7".into(),
        2 => String::new(),
        3 => "x".repeat(EXTERNAL_ID_LEN_MAX),
        4 => "x".repeat(EXTERNAL_ID_LEN_MAX + 1),
        5 => "y".repeat(ERROR_TEXT_LEN_MAX + 1),
        6 => "bell\u{7}".into(),
        _ => "é".repeat(EXTERNAL_ID_LEN_MAX / 2),
    }
}

fn request(choice: u8) -> RequestId {
    let n = choice % REQUESTS;
    // The nil UUID cannot be built through `from_u128`; it can only come from a decoded
    // command, which the codec lets through, so build it that way.
    RequestId::from_u128(u128::from(n)).unwrap_or_else(|| {
        ledger_state_machine::codec::decode(&[0]).expect("a zero varint decodes to the nil id")
    })
}

fn node(choice: u8) -> NodeId {
    NodeId::from(choice % NODES)
}

/// A deal's seat limit: 0 (invalid), 1–3, the largest allowed, one past it.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct Seats(u8);

impl Seats {
    fn count(self) -> u32 {
        match self.0 % 6 {
            0 => 0,
            4 => MAX_INVESTORS_LIMIT,
            5 => MAX_INVESTORS_LIMIT + 1,
            n => u32::from(n),
        }
    }
}

/// Which index a heartbeat says its replica applied, relative to the entry carrying it.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Lag {
    /// Caught up.
    None,
    /// Some entries behind.
    Behind(u16),
    /// Exactly at the bound, or one past it.
    AtBound(bool),
    /// Reports nothing applied.
    Nothing,
    /// Claims an index ahead of the log (only through a forged command).
    Ahead,
}

/// The saga assignment a step result claims.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Fence {
    /// The saga's current assignee and epoch, as its executor would.
    Current,
    /// The current assignee with the previous epoch.
    StaleEpoch,
    /// The current epoch from another node.
    WrongNode,
    /// Anything.
    Raw { node: u8, epoch: u8 },
}

/// A step result.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Kind {
    Paid(u8),
    Declined(u8),
    Documented(u8),
    DocumentsFailed(u8),
    Voided(bool),
    Notified(u8),
    NotifyFailed(u8),
    Retrying { step: u8, attempts: u32, error: u8 },
}

impl Kind {
    fn result(self) -> StepResult {
        match self {
            Kind::Paid(t) => StepResult::PaymentSucceeded {
                payment_id: text(t),
            },
            Kind::Declined(t) => StepResult::PaymentDeclined { reason: text(t) },
            Kind::Documented(t) => StepResult::DocumentsGenerated {
                document_id: text(t),
            },
            Kind::DocumentsFailed(t) => StepResult::DocumentsFailed { error: text(t) },
            Kind::Voided(refunded) => StepResult::PaymentVoided { refunded },
            Kind::Notified(t) => StepResult::NotifySent {
                message_id: text(t),
            },
            Kind::NotifyFailed(t) => StepResult::NotifyFailed { error: text(t) },
            Kind::Retrying {
                step,
                attempts,
                error,
            } => StepResult::Retrying {
                step: [
                    SagaStep::Payment,
                    SagaStep::Documents,
                    SagaStep::Void,
                    SagaStep::Notify,
                    SagaStep::Done,
                ][usize::from(step) % 5],
                attempts,
                error: text(error),
            },
        }
    }
}

/// A value for one of [`Params`]' fields: the bounds of its range, one past each, or anything.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum ParamValue {
    Default,
    Min,
    Max,
    BelowMin,
    AboveMax,
    Raw(u64),
}

impl ParamValue {
    fn pick(self, range: std::ops::RangeInclusive<u64>, default: u64) -> u64 {
        match self {
            ParamValue::Default => default,
            ParamValue::Min => *range.start(),
            ParamValue::Max => *range.end(),
            ParamValue::BelowMin => range.start().wrapping_sub(1),
            ParamValue::AboveMax => range.end().saturating_add(1),
            ParamValue::Raw(v) => v,
        }
    }
}

/// One command of an entry.
#[derive(Arbitrary, Clone, Debug)]
pub enum Op {
    Create {
        deal: u8,
        amount: Amount,
        seats: Seats,
        min: Option<Amount>,
        max: Option<Amount>,
        /// Opens and closes this many seconds of log time from now (raw, so invalid orders too).
        opens_in_s: Option<u16>,
        closes_in_s: Option<u16>,
        /// Raw, so 0 and past the limit too.
        max_waitlist: u16,
    },
    Close {
        deal: u8,
    },
    Submit {
        request: u8,
        deal: u8,
        user: u8,
        amount: Amount,
        /// `Some(ttl)`: asks for the waitlist, with a time to live in seconds if given.
        waitlist: Option<Option<u16>>,
        /// `Some(t)`: sent with a trace context (`SubmitTraced`) made of `t` (0: an all-zero
        /// trace id, which validation refuses).
        trace: Option<u8>,
    },
    Withdraw {
        request: u8,
    },
    Heartbeat {
        node: u8,
        lag: Lag,
    },
    Retire {
        node: u8,
    },
    Step {
        request: u8,
        kind: Kind,
        fence: Fence,
    },
    Abort {
        request: u8,
        reason: u8,
    },
    SetParams {
        deadline: ParamValue,
        lease: ParamValue,
        lag: ParamValue,
        step: ParamValue,
    },
}

/// How the leader's clock moves before an entry.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Clock {
    Same,
    /// Forward by that many milliseconds.
    Forward(u16),
    /// Forward by that many seconds.
    ForwardSeconds(u16),
    /// Backward by that many milliseconds (a new leader with a slower clock).
    Back(u16),
    /// Forward by exactly the largest step one entry may make, or one more.
    StepMax(bool),
    /// Far ahead: a clock gone wrong.
    Jump,
    /// Any timestamp.
    Raw(u64),
}

/// Which log index the entry is applied at.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum IndexMove {
    /// The next one, as Raft does.
    Next,
    /// A gap (after a snapshot, indexes need not be contiguous for the state machine).
    Skip(u8),
    /// The last index again: must be refused with nothing changed.
    Repeat,
}

/// One log entry.
#[derive(Arbitrary, Clone, Debug)]
pub struct EntrySpec {
    pub clock: Clock,
    pub leader: u8,
    pub index: IndexMove,
    pub ops: Vec<Op>,
}

/// A whole input: entries, in log order.
#[derive(Arbitrary, Clone, Debug)]
pub struct Program {
    pub entries: Vec<EntrySpec>,
}

/// Applies [`Program`]s to a state, the way the node does, and checks it.
pub struct Driver {
    pub state: AdmissionState,
    pub log_index: u64,
    pub time_ms: u64,
    pub events: Vec<SagaEvent>,
    /// Every entry applied, with its index, to replay.
    pub applied: Vec<(u64, Entry)>,
}

impl Default for Driver {
    fn default() -> Driver {
        Driver::new()
    }
}

impl Driver {
    pub fn new() -> Driver {
        Driver {
            state: AdmissionState::new(),
            log_index: 0,
            time_ms: T0_MS,
            events: Vec::new(),
            applied: Vec::new(),
        }
    }

    /// The commands of `spec`, built against the state as it is before the entry (a step
    /// result's fence reads the saga's current assignment).
    pub fn commands(&self, spec: &EntrySpec) -> Vec<Command> {
        spec.ops
            .iter()
            .take(COMMANDS_MAX)
            .map(|op| self.command(op))
            .collect()
    }

    fn command(&self, op: &Op) -> Command {
        let deal_id = |d: u8| DEAL_IDS[usize::from(d) % DEAL_IDS.len()].to_owned();
        match *op {
            Op::Create {
                deal,
                amount,
                seats,
                min,
                max,
                opens_in_s,
                closes_in_s,
                max_waitlist,
            } => {
                let at = |s: Option<u16>| {
                    s.map(|s| self.state.now_ms().saturating_add(u64::from(s) * 1_000))
                };
                Command::CreateDeal(CreateDeal {
                    deal_id: deal_id(deal),
                    amount: amount.money(),
                    max_investors: seats.count(),
                    min_ticket: min.map(Amount::money),
                    max_ticket: max.map(Amount::money),
                    opens_at_ms: at(opens_in_s),
                    closes_at_ms: at(closes_in_s),
                    max_waitlist: u32::from(max_waitlist % 16),
                })
            }
            Op::Close { deal } => Command::CloseDeal {
                deal_id: deal_id(deal),
            },
            Op::Submit {
                request: r,
                deal,
                user,
                amount,
                waitlist,
                trace,
            } => {
                let submit = Submit {
                    request_id: request(r),
                    deal_id: deal_id(deal),
                    user_id: USER_IDS[usize::from(user) % USER_IDS.len()].to_owned(),
                    amount: amount.money(),
                    waitlist: waitlist.is_some(),
                    waitlist_ttl_ms: waitlist.flatten().map(|s| u64::from(s) * 1_000),
                };
                match trace {
                    None => Command::Submit(submit),
                    Some(t) => Command::SubmitTraced(TracedSubmit {
                        submit,
                        trace: TraceContext {
                            trace_id: [t; 16],
                            parent_id: [t.wrapping_add(1); 8],
                            flags: t & 1,
                        },
                    }),
                }
            }
            Op::Withdraw { request: r } => Command::Withdraw {
                request_id: request(r),
            },
            Op::Heartbeat { node: n, lag } => {
                let next = self.log_index + 1;
                let bound = self.state.params().executor_lag_max_entries;
                let applied_index = match lag {
                    Lag::None => next,
                    Lag::Behind(k) => next.saturating_sub(u64::from(k)),
                    Lag::AtBound(past) => next.saturating_sub(bound + u64::from(past)),
                    Lag::Nothing => 0,
                    Lag::Ahead => u64::MAX,
                };
                Command::ExecutorHeartbeat {
                    node_id: node(n),
                    applied_index,
                }
            }
            Op::Retire { node: n } => Command::ExecutorRetire { node_id: node(n) },
            Op::Step {
                request: r,
                kind,
                fence,
            } => {
                let request_id = request(r);
                let saga = self.state.investment(request_id).and_then(|inv| inv.saga);
                let (assignee, epoch) = saga
                    .map(|s| (s.assignee.unwrap_or(0), s.epoch))
                    .unwrap_or((0, 0));
                let (executor, epoch) = match fence {
                    Fence::Current => (assignee, epoch),
                    Fence::StaleEpoch => (assignee, epoch.wrapping_sub(1)),
                    Fence::WrongNode => (assignee.wrapping_add(1) % u64::from(NODES), epoch),
                    Fence::Raw { node: n, epoch } => (node(n), u64::from(epoch)),
                };
                Command::RecordStep(RecordStep {
                    request_id,
                    executor,
                    epoch,
                    result: kind.result(),
                })
            }
            Op::Abort { request: r, reason } => Command::AbortSaga {
                request_id: request(r),
                reason: text(reason),
            },
            Op::SetParams {
                deadline,
                lease,
                lag,
                step,
            } => {
                let default = Params::default();
                Command::SetParams(Params {
                    saga_deadline_ms: deadline
                        .pick(Params::SAGA_DEADLINE_MS_RANGE, default.saga_deadline_ms),
                    executor_lease_ms: lease
                        .pick(Params::EXECUTOR_LEASE_MS_RANGE, default.executor_lease_ms),
                    executor_lag_max_entries: lag.pick(
                        Params::EXECUTOR_LAG_MAX_ENTRIES_RANGE,
                        default.executor_lag_max_entries,
                    ),
                    log_time_step_max_ms: step.pick(
                        Params::LOG_TIME_STEP_MAX_MS_RANGE,
                        default.log_time_step_max_ms,
                    ),
                })
            }
        }
    }

    /// The entry of `spec` and the index it is applied at; moves the driver's clock.
    pub fn entry(&mut self, spec: &EntrySpec) -> (u64, Entry) {
        let step_max = self.state.params().log_time_step_max_ms;
        self.time_ms = match spec.clock {
            Clock::Same => self.time_ms,
            Clock::Forward(ms) => self.time_ms.saturating_add(u64::from(ms)),
            Clock::ForwardSeconds(s) => self.time_ms.saturating_add(u64::from(s) * 1_000),
            Clock::Back(ms) => self.time_ms.saturating_sub(u64::from(ms)),
            Clock::StepMax(past) => self
                .state
                .now_ms()
                .saturating_add(step_max + u64::from(past)),
            Clock::Jump => self.time_ms.saturating_add(1_000_000_000),
            Clock::Raw(ms) => ms,
        };
        let index = match spec.index {
            IndexMove::Next => self.log_index + 1,
            IndexMove::Skip(k) => self.log_index + 2 + u64::from(k),
            IndexMove::Repeat => self.log_index,
        };
        let entry = Entry {
            header: EntryHeader {
                leader_id: node(spec.leader),
                time_ms: self.time_ms,
            },
            commands: self.commands(spec),
        };
        (index, entry)
    }

    /// Applies one entry and checks what `apply_entry` promises:
    /// - an entry at an index already applied is refused and changes nothing;
    /// - otherwise one result per command, and the invariants (I1–I3 and the coherence of every
    ///   derived value) hold after the entry;
    /// - a command that failed with a `CommandError` changed nothing: applying the same entry
    ///   with each failed command replaced by another invalid command gives the same state.
    pub fn apply(&mut self, index: u64, entry: Entry, strict: bool) -> Vec<Applied> {
        let before = strict.then(|| self.state.clone());
        self.events.clear();
        let result = self.state.apply_entry(index, &entry, &mut self.events);
        let results = match result {
            Err(EntryError::OutOfOrder { last, got }) => {
                assert!(got <= last, "refused in-order entry {got} after {last}");
                assert_eq!(index, got);
                if let Some(before) = before {
                    assert_eq!(
                        before.digest(),
                        self.state.digest(),
                        "a refused entry changed the state"
                    );
                }
                assert!(self.events.is_empty(), "a refused entry emitted events");
                return Vec::new();
            }
            Err(other) => panic!("entry {index} refused: {other}"),
            Ok(results) => results,
        };
        assert!(index > self.log_index || self.log_index == 0);
        assert_eq!(results.len(), entry.commands.len());
        if let Err(violation) = self.state.check_invariants() {
            panic!("after entry {index}: {violation}\nentry: {entry:?}\nresults: {results:?}");
        }
        if let Some(mut before) = before {
            if results.iter().any(Result::is_err) {
                let mut without = entry.clone();
                for (command, result) in without.commands.iter_mut().zip(&results) {
                    if result.is_err() {
                        *command = Command::CloseDeal {
                            deal_id: String::new(),
                        };
                    }
                }
                let mut events = Vec::new();
                let again = before
                    .apply_entry(index, &without, &mut events)
                    .expect("the same index is accepted again");
                for ((a, b), command) in results.iter().zip(&again).zip(&entry.commands) {
                    if a.is_ok() {
                        assert_eq!(a, b, "{command:?} gave another result");
                    }
                }
                assert_eq!(
                    before.digest(),
                    self.state.digest(),
                    "a command that failed changed the state; results: {results:?}"
                );
            }
        }
        self.log_index = index;
        self.applied.push((index, entry));
        results
    }

    /// Runs a whole program, checking after every entry.
    pub fn run(&mut self, program: &Program, strict: bool) {
        for spec in program.entries.iter().take(ENTRIES_MAX) {
            let (index, entry) = self.entry(spec);
            self.apply(index, entry, strict);
        }
    }

    /// What holds of any state at rest: the queries answer without panicking, a snapshot
    /// decodes to the same digest, the snapshot copy encodes to the same bytes, and replaying
    /// the applied entries on a new state reaches the same digest.
    pub fn check_at_rest(&self) {
        check_state(&self.state);
        let mut replica = AdmissionState::new();
        let mut events = Vec::new();
        for (index, entry) in &self.applied {
            replica
                .apply_entry(*index, entry, &mut events)
                .expect("the same entries apply again");
        }
        assert_eq!(replica.digest(), self.state.digest(), "replay diverged");
    }
}

/// The checks every coherent state passes: queries, snapshot round trip, digest.
pub fn check_state(state: &AdmissionState) {
    let bytes = state.encode_snapshot();
    assert_eq!(
        state.snapshot_copy().encode(),
        bytes,
        "snapshot copy differs from the state's snapshot"
    );
    let loaded = match AdmissionState::decode_snapshot(&bytes) {
        Ok(loaded) => loaded,
        Err(error) => panic!("the state's own snapshot is refused: {error}"),
    };
    assert_eq!(loaded.digest(), state.digest(), "snapshot round trip");
    assert_eq!(loaded.encode_snapshot(), bytes, "snapshot re-encoding");
    let _ = state.deals(0, 10);
    for deal in DEAL_IDS {
        if let Some(view) = state.deal(deal) {
            assert!(view.investor_count <= view.terms.max_investors);
            assert!(view.reserved_amount <= view.terms.amount);
            let _ = state.deal_investments(deal, 0, 10);
        }
    }
    for user in USER_IDS {
        let _ = state.user(user);
    }
    for n in 0..NODES {
        let _ = state.executor_sagas(node(n));
    }
    let _ = state.unassigned_sagas();
    let _ = state.open_sagas(
        ledger_state_machine::SagaFilter {
            older_than_ms: 1,
            failing: true,
        },
        10,
    );
    let _ = state.executors();
    let _ = state.open_saga_count();
}
