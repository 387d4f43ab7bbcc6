//! Synthetic runs: valid [`CheckInput`]s made by driving a real [`AdmissionState`], for testing
//! the checker and measuring it without a cluster.
//!
//! Clients submit (fresh requests, some asking for the waitlist, resubmits with the same or
//! another payload, requests for a deal that does not exist), withdraw waitlisted requests and
//! read deals; one deal closes two thirds of the way through; the leader batches their
//! commands into entries
//! together with saga step results (charges accepted or declined, documents generated or
//! failed, voids, e-mails), which the simulated partners record in their books. Every op
//! straddles its entry's moment (`invoke <= T <= complete`), so operations overlap as they
//! would under concurrency, yet the history is linearizable by construction. Some submits end
//! `Info`: half of those still took effect. At the end every saga runs to DONE.

use crate::rng::Rng;
use std::collections::{HashMap, HashSet, VecDeque};

use ledger_partners::{AuditLog, Books, ChargeRequest, DocumentRequest, EmailRequest, VoidStatus};
use ledger_state_machine::{
    AdmissionState, Applied, Command, CommandError, Entry, InvestmentView, Money, Outcome,
    RecordStep, RequestId, SagaStep, Status, StepResult, Submit, Verdict, PAGE_SIZE_MAX,
};

use crate::check::{replay_header, setup_entry};
use crate::history::{
    Call, CheckInput, DealRead, DealTerms, Decision, DigestSample, FinalDeal, FinalInvestment,
    InvStatus, Liveness, NodeFinal, Op, OpResult, Reply,
};

/// The shape of a synthetic run.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    /// Seeds every random choice: the same config gives the same run.
    pub seed: u64,
    /// Deals of the workload.
    pub deals: usize,
    /// Seats per deal.
    pub max_investors: u32,
    /// Each deal's amount, in cents.
    pub deal_amount_cents: u64,
    /// Distinct investors.
    pub users: usize,
    /// Client operations to generate (about).
    pub ops: usize,
    /// Most client operations decided in one entry.
    pub batch_max: usize,
    /// Nodes whose final state is reported (all equal).
    pub nodes: u64,
}

impl Default for SynthConfig {
    /// A small run with contention: three deals of six seats, thirty investors.
    fn default() -> SynthConfig {
        SynthConfig {
            seed: 7,
            deals: 3,
            max_investors: 6,
            deal_amount_cents: 10_000,
            users: 30,
            ops: 600,
            batch_max: 6,
            nodes: 3,
        }
    }
}

/// Generates a valid run.
pub fn generate(config: &SynthConfig) -> CheckInput {
    let mut run = Run::new(config);
    while run.ops.len() < config.ops {
        run.round();
    }
    run.drain();
    run.finish()
}

/// The leader's clock for entry `k`, in microseconds: entries are 1 ms apart.
fn entry_time_us(log_index: u64) -> u64 {
    10_000 + log_index * 1_000
}

/// How far an op's invocation and completion may lie from its entry's moment.
const SPREAD_US: u64 = 2_500;
/// Request ids count up from here (a version-4-looking UUID), so the nil UUID never comes up.
const FIRST_REQUEST: RequestId =
    match RequestId::from_u128(0x4000_0000_0000_4000_8000_0000_0000_0000) {
        Some(id) => id,
        None => panic!("the first request id is not nil"),
    };
/// How many of the oldest open sagas may take a step in an entry while clients still submit.
const SAGA_WINDOW: usize = 8;
/// Saga steps per entry once clients are done (an entry holds at most `ENTRY_COMMANDS_MAX`).
const DRAIN_STEPS_PER_ENTRY: usize = 10_000;
const DRAIN_ENTRIES_MAX: usize = 100_000;
const UNKNOWN_DEAL: &str = "deal-never-created";

/// A request a client made, kept for resubmits.
#[derive(Clone, Debug)]
struct Request {
    id: RequestId,
    deal_id: String,
    user_id: String,
    amount_cents: u64,
    waitlist: bool,
}

/// A client op waiting for its entry to be applied.
struct Pending {
    call: Call,
    /// Its command's offset, or `None` when it never reached the log.
    offset: Option<usize>,
    info: bool,
}

struct Run<'c> {
    config: &'c SynthConfig,
    rng: Rng,
    state: AdmissionState,
    books: Books,
    deals: Vec<DealTerms>,
    requests: Vec<Request>,
    /// Admitted investments whose saga is not DONE, in the order they are next looked at.
    open_sagas: VecDeque<RequestId>,
    /// Every investment ever put in `open_sagas`.
    sagas_seen: HashSet<RequestId>,
    /// Requests decided WAITLISTED, some of them still waiting: candidates to withdraw.
    waitlisted: Vec<RequestId>,
    /// Whether the deal that closes during the run has closed.
    closed_one: bool,
    cancelled_at: HashMap<RequestId, (u64, u32)>,
    ops: Vec<Op>,
    digests: Vec<DigestSample>,
    log_index: u64,
    next_request: u128,
}

impl<'c> Run<'c> {
    fn new(config: &'c SynthConfig) -> Run<'c> {
        let deals: Vec<DealTerms> = (0..config.deals)
            .map(|i| DealTerms {
                deal_id: format!("deal-{i}"),
                amount_cents: config.deal_amount_cents,
                max_investors: config.max_investors,
                // One deal refuses small tickets, so TICKET_OUT_OF_RANGE happens too.
                min_ticket_cents: (i == 0).then_some(100),
                max_ticket_cents: None,
            })
            .collect();
        let mut state = AdmissionState::new();
        // Same setup as the checker's replay: one executor, no deadline or lease ever due.
        let _ = state.apply_entry(1, &setup_entry(&deals), &mut Vec::new());
        Run {
            config,
            rng: Rng::new(config.seed),
            state,
            books: Books::new(),
            deals,
            requests: Vec::new(),
            open_sagas: VecDeque::new(),
            sagas_seen: HashSet::new(),
            waitlisted: Vec::new(),
            closed_one: false,
            cancelled_at: HashMap::new(),
            ops: Vec::new(),
            digests: Vec::new(),
            log_index: 1,
            next_request: FIRST_REQUEST.as_u128(),
        }
    }

    /// One entry: a batch of client commands and saga steps, then the reads that see it.
    fn round(&mut self) {
        self.log_index += 1;
        let mut commands = Vec::new();
        let mut pending = Vec::new();
        let clients = 1 + self.rng.range(0, self.config.batch_max as u64);
        if !self.closed_one && self.ops.len() * 3 >= self.config.ops * 2 {
            self.closed_one = true;
            if let Some(deal) = self.deals.get(1) {
                commands.push(Command::CloseDeal {
                    deal_id: deal.deal_id.clone(),
                });
            }
        }
        for _ in 0..clients {
            let roll = self.rng.range(0, 100);
            if roll < 15 {
                pending.push(self.read_call());
            } else {
                let withdraw = if roll < 20 {
                    self.withdraw_call()
                } else {
                    None
                };
                let (command, call) = withdraw.unwrap_or_else(|| self.submit_call());
                let info = self.rng.percent(8);
                // Half the indefinite submits never reached the log.
                let offset = if info && self.rng.percent(50) {
                    None
                } else {
                    commands.push(command);
                    Some(commands.len() - 1)
                };
                pending.push(Pending { call, offset, info });
            }
        }
        let steps = self.saga_steps(&mut commands, false);
        let results = self.apply(&commands);
        self.record_steps(&steps, &results);
        for one in pending {
            self.complete(one, &results);
        }
        self.sample_digest();
    }

    /// Runs every open saga to DONE.
    fn drain(&mut self) {
        // Bounded, in case a step is refused for ever.
        for _ in 0..DRAIN_ENTRIES_MAX {
            if self.open_sagas.is_empty() {
                break;
            }
            self.log_index += 1;
            let mut commands = Vec::new();
            let steps = self.saga_steps(&mut commands, true);
            let results = self.apply(&commands);
            self.record_steps(&steps, &results);
        }
    }

    fn apply(&mut self, commands: &[Command]) -> Vec<Applied> {
        let entry = Entry {
            header: replay_header(),
            commands: commands.to_vec(),
        };
        let mut events = Vec::new();
        let results = self
            .state
            .apply_entry(self.log_index, &entry, &mut events)
            .unwrap_or_default();
        // A saga opens at an admission, direct or from the waitlist.
        for event in events {
            if event.status == Status::Pending && self.sagas_seen.insert(event.request_id) {
                self.open_sagas.push_back(event.request_id);
            }
        }
        for result in &results {
            if let Ok(Outcome::Submitted {
                decision,
                replayed: false,
            }) = result
            {
                if decision.verdict == Verdict::Waitlisted {
                    self.waitlisted.push(decision.request_id);
                }
            }
        }
        results
    }

    fn read_call(&mut self) -> Pending {
        let deal = self.rng.range(0, self.deals.len() as u64) as usize;
        Pending {
            call: Call::ReadDeal {
                deal_id: self
                    .deals
                    .get(deal)
                    .map_or_else(String::new, |d| d.deal_id.clone()),
            },
            offset: None,
            info: false,
        }
    }

    /// A fresh request (now and then for a deal that does not exist), or a resubmit of an
    /// earlier one with the same or another payload.
    fn submit_call(&mut self) -> (Command, Call) {
        let roll = self.rng.range(0, 100);
        let (request, resubmit) = match roll {
            0..=9 if !self.requests.is_empty() => (self.earlier_request(), true),
            10..=14 if !self.requests.is_empty() => {
                let mut other = self.earlier_request();
                other.amount_cents += 1;
                (other, true)
            }
            _ => {
                let fresh = self.fresh_request(roll < 17);
                self.requests.push(fresh.clone());
                (fresh, false)
            }
        };
        let command = Command::Submit(Submit {
            request_id: request.id,
            deal_id: request.deal_id.clone(),
            user_id: request.user_id.clone(),
            amount: Money::from_cents(request.amount_cents),
            waitlist: request.waitlist,
            waitlist_ttl_ms: None,
        });
        let call = Call::Submit {
            request_id: request.id.to_string(),
            deal_id: request.deal_id,
            user_id: request.user_id,
            amount_cents: request.amount_cents,
            resubmit,
            waitlist: request.waitlist,
            waitlist_ttl_ms: None,
        };
        (command, call)
    }

    /// A withdrawal of a request still waiting, if there is one.
    fn withdraw_call(&mut self) -> Option<(Command, Call)> {
        while !self.waitlisted.is_empty() {
            let at = self.rng.range(0, self.waitlisted.len() as u64) as usize;
            let id = self.waitlisted.swap_remove(at);
            let waiting = self
                .state
                .investment(id)
                .is_some_and(|view| view.status == Status::Waitlisted);
            if waiting {
                let call = Call::Withdraw {
                    request_id: id.to_string(),
                };
                return Some((Command::Withdraw { request_id: id }, call));
            }
        }
        None
    }

    fn earlier_request(&mut self) -> Request {
        let at = self.rng.range(0, self.requests.len() as u64) as usize;
        self.requests
            .get(at)
            .cloned()
            .unwrap_or_else(|| self.fresh_request(false))
    }

    fn fresh_request(&mut self, unknown_deal: bool) -> Request {
        self.next_request += 1;
        let deal = self.rng.range(0, self.deals.len() as u64) as usize;
        let deal_id = match self.deals.get(deal) {
            Some(terms) if !unknown_deal => terms.deal_id.clone(),
            _ => UNKNOWN_DEAL.to_owned(),
        };
        // Tickets average the deal's amount over its seats: both limits bind now and then.
        let ticket_max = (self.config.deal_amount_cents * 2
            / u64::from(self.config.max_investors.max(1)))
        .max(2);
        Request {
            id: RequestId::from_u128(self.next_request).unwrap_or(FIRST_REQUEST),
            deal_id,
            user_id: format!("user-{}", self.rng.range(0, self.config.users as u64)),
            amount_cents: 50 + self.rng.range(0, ticket_max),
            waitlist: self.rng.percent(40),
        }
    }

    /// Appends saga step results (for a few open sagas at random, or for every open saga up to
    /// a bound when `everyone`), the partners doing the work first. Returns the request and offset of each.
    /// Sagas are taken from the front of the queue and put back at its end while open, so a
    /// round looks at a bounded window however many sagas are open.
    fn saga_steps(
        &mut self,
        commands: &mut Vec<Command>,
        everyone: bool,
    ) -> Vec<(RequestId, usize)> {
        let mut steps = Vec::new();
        // Each saga at most once per entry, and entries within what one may hold.
        let window = if everyone {
            DRAIN_STEPS_PER_ENTRY
        } else {
            SAGA_WINDOW
        }
        .min(self.open_sagas.len());
        for _ in 0..window {
            let Some(id) = self.open_sagas.pop_front() else {
                break;
            };
            let Some(view) = self.state.investment(id) else {
                continue;
            };
            let Some(saga) = view.saga.as_ref() else {
                continue;
            };
            if saga.step == SagaStep::Done {
                continue;
            }
            self.open_sagas.push_back(id);
            if !everyone && !self.rng.percent(40) {
                continue;
            }
            let result = self.perform(&view, saga.step);
            commands.push(Command::RecordStep(RecordStep {
                request_id: id,
                executor: saga.assignee.unwrap_or(1),
                epoch: saga.epoch,
                result,
            }));
            steps.push((id, commands.len() - 1));
        }
        steps
    }

    /// What the executor gets from the partners for the saga's current step.
    fn perform(&mut self, view: &InvestmentView, step: SagaStep) -> StepResult {
        let key = |step: &str| format!("{}:{step}", view.request_id);
        let amount = view.amount.to_decimal();
        match step {
            SagaStep::Payment => {
                let decline = self.rng.percent(15);
                let charge = ChargeRequest {
                    idempotency_key: key("payment"),
                    user_id: view.user_id.clone(),
                    amount,
                    currency: "EUR".into(),
                };
                let payment_id = format!("pay-{}", view.request_id);
                let _ = self.books.charge(charge, decline, payment_id.clone());
                if decline {
                    StepResult::PaymentDeclined {
                        reason: "declined".into(),
                    }
                } else {
                    StepResult::PaymentSucceeded { payment_id }
                }
            }
            SagaStep::Documents => {
                if self.rng.percent(8) {
                    return StepResult::DocumentsFailed {
                        error: "documents partner down".into(),
                    };
                }
                let document = DocumentRequest {
                    idempotency_key: key("documents"),
                    request_id: view.request_id.to_string(),
                    deal_id: view.deal_id.clone(),
                    user_id: view.user_id.clone(),
                    amount,
                };
                let document_id = format!("doc-{}", view.request_id);
                let _ = self.books.document(document, document_id.clone());
                StepResult::DocumentsGenerated { document_id }
            }
            SagaStep::Void => {
                let refunded = self
                    .books
                    .void(&key("payment"))
                    .is_ok_and(|r| r.status == VoidStatus::Refunded);
                StepResult::PaymentVoided { refunded }
            }
            SagaStep::Notify | SagaStep::Done => {
                let email = EmailRequest {
                    idempotency_key: key("notify"),
                    to: format!("{}@example.invalid", view.user_id),
                    subject: "your investment".into(),
                    body: format!("{:?}", view.status),
                };
                let message_id = format!("msg-{}", view.request_id);
                let _ = self.books.email(email, message_id.clone());
                StepResult::NotifySent { message_id }
            }
        }
    }

    fn record_steps(&mut self, steps: &[(RequestId, usize)], results: &[Applied]) {
        for &(id, offset) in steps {
            if let Some(Ok(Outcome::StepRecorded {
                status: Status::Cancelled,
                step: SagaStep::Notify,
            })) = results.get(offset)
            {
                self.cancelled_at
                    .insert(id, (self.log_index, offset as u32));
            }
        }
    }

    /// Turns a client call into an op with its reply and times around the entry's moment.
    fn complete(&mut self, pending: Pending, results: &[Applied]) {
        let moment_us = entry_time_us(self.log_index);
        let result = match (&pending.call, pending.offset) {
            (Call::ReadDeal { deal_id }, _) => self.read(deal_id),
            _ if pending.info => OpResult::Info {
                error: "deadline exceeded".into(),
            },
            (Call::Submit { .. }, Some(offset)) => self.reply(results.get(offset), offset),
            (Call::Withdraw { .. }, Some(offset)) => self.withdrawn(results.get(offset), offset),
            (Call::Submit { .. } | Call::Withdraw { .. }, None) => OpResult::Info {
                error: "connection lost".into(),
            },
        };
        // A read is linearized between this entry and the next.
        let moment_us = match pending.call {
            Call::ReadDeal { .. } => moment_us + 500,
            Call::Submit { .. } | Call::Withdraw { .. } => moment_us,
        };
        let invoke_us = moment_us - self.rng.range(0, SPREAD_US);
        let complete_us = moment_us + self.rng.range(0, SPREAD_US);
        self.ops.push(Op {
            index: 0,
            worker: 0,
            node: 1 + self.rng.range(0, self.config.nodes.max(1)),
            invoke_us,
            complete_us,
            call: pending.call,
            result,
        });
    }

    fn read(&self, deal_id: &str) -> OpResult {
        match self.state.deal(deal_id) {
            Some(view) => OpResult::Ok(Reply::Deal(DealRead {
                investor_count: view.investor_count,
                reserved_cents: view.reserved_amount.cents(),
                confirmed_count: view.confirmed_count,
                confirmed_cents: view.confirmed_amount.cents(),
            })),
            None => fail("NOT_FOUND", "deal not found"),
        }
    }

    fn withdrawn(&self, applied: Option<&Applied>, offset: usize) -> OpResult {
        match applied {
            Some(Ok(Outcome::Withdrawn)) => OpResult::Ok(Reply::Withdrawn {
                log_index: self.log_index,
                offset: offset as u32,
            }),
            Some(Err(error)) => fail("FAILED_PRECONDITION", &error.to_string()),
            _ => fail("INTERNAL", &format!("no result at offset {offset}")),
        }
    }

    fn reply(&self, applied: Option<&Applied>, offset: usize) -> OpResult {
        match applied {
            Some(Ok(Outcome::Submitted { decision, replayed })) => {
                let (admitted, reject_reason) = match decision.verdict {
                    Verdict::Pending => (true, None),
                    Verdict::Rejected(reason) => (false, Some(reason.as_str().to_owned())),
                    Verdict::Waitlisted => (false, None),
                };
                OpResult::Ok(Reply::Submitted(Decision {
                    log_index: decision.log_index,
                    offset: decision.offset,
                    admitted,
                    waitlisted: decision.verdict == Verdict::Waitlisted,
                    reject_reason,
                    replayed: *replayed,
                }))
            }
            Some(Err(CommandError::RequestConflict { .. })) => {
                fail("ALREADY_EXISTS", "request exists with another payload")
            }
            Some(Err(error)) => fail("INVALID_ARGUMENT", &error.to_string()),
            _ => fail("INTERNAL", &format!("no result at offset {offset}")),
        }
    }

    /// Digests of every node at about ten points of the run (a digest hashes the whole state).
    fn sample_digest(&mut self) {
        let every = (self.config.ops / self.config.batch_max.max(1) / 10).max(1) as u64;
        if !self.log_index.is_multiple_of(every) {
            return;
        }
        let digest = self.state.digest().to_string();
        for node_id in 1..=self.config.nodes {
            self.digests.push(DigestSample {
                node_id,
                applied_index: self.log_index,
                digest: digest.clone(),
            });
        }
    }

    fn finish(mut self) -> CheckInput {
        let node = self.final_state();
        let finals = (1..=self.config.nodes)
            .map(|node_id| NodeFinal {
                node_id,
                ..node.clone()
            })
            .collect();
        // History is in invocation order; op indices follow it.
        self.ops.sort_by_key(|op| op.invoke_us);
        for (index, op) in self.ops.iter_mut().enumerate() {
            op.index = index as u64;
            op.worker = (index % 64) as u32;
        }
        let healed_us = entry_time_us(self.log_index + 1);
        CheckInput {
            deals: self.deals,
            history: self.ops,
            finals,
            digests: self.digests,
            audit: Some(AuditLog {
                events: self.books.events().to_vec(),
            }),
            liveness: Liveness {
                healed_us,
                leader_us: Some(healed_us + 1_000_000),
                sagas_terminal_us: Some(healed_us + 2_000_000),
                probe_ok_us: Some(healed_us + 1_500_000),
                stuck: Vec::new(),
                waited_us: 3_000_000,
            },
            // The synthetic log runs on the real clock: one sample per node, in step.
            log_times: (1..=self.config.nodes)
                .map(|node_id| crate::history::LogTimeSample {
                    node_id,
                    wall_ms: 1_800_000_000_000,
                    log_time_ms: 1_800_000_000_000,
                })
                .collect(),
        }
    }

    fn final_state(&self) -> NodeFinal {
        let mut deals = Vec::new();
        let mut investments = Vec::new();
        for terms in &self.deals {
            let Some(view) = self.state.deal(&terms.deal_id) else {
                continue;
            };
            deals.push(FinalDeal {
                terms: terms.clone(),
                counters: DealRead {
                    investor_count: view.investor_count,
                    reserved_cents: view.reserved_amount.cents(),
                    confirmed_count: view.confirmed_count,
                    confirmed_cents: view.confirmed_amount.cents(),
                },
                closed_at: view.closed_at,
            });
            let mut start = Some(0);
            while let Some(from) = start {
                let Ok(page) = self
                    .state
                    .deal_investments(&terms.deal_id, from, PAGE_SIZE_MAX)
                else {
                    break;
                };
                investments.extend(page.items.iter().map(|v| self.final_investment(v)));
                start = page.next;
            }
        }
        NodeFinal {
            node_id: 0,
            applied_index: self.state.last_log_index(),
            digest: self.state.digest().to_string(),
            deals,
            investments,
        }
    }

    fn final_investment(&self, view: &InvestmentView) -> FinalInvestment {
        let saga = view.saga.as_ref();
        FinalInvestment {
            request_id: view.request_id.to_string(),
            deal_id: view.deal_id.clone(),
            user_id: view.user_id.clone(),
            amount_cents: view.amount.cents(),
            status: match view.status {
                Status::Pending => InvStatus::Pending,
                Status::Confirmed => InvStatus::Confirmed,
                Status::Cancelled => InvStatus::Cancelled,
                Status::Rejected => InvStatus::Rejected,
                Status::Waitlisted => InvStatus::Waitlisted,
            },
            reject_reason: view.reject_reason.map(|r| r.as_str().to_owned()),
            log_index: view.log_index,
            offset: view.offset,
            cancelled_at: self.cancelled_at.get(&view.request_id).copied(),
            saga_step: saga.map(|s| s.step.as_str().to_uppercase()),
            cancel_cause: saga.and_then(|s| s.cancel_cause.map(|c| c.as_str().to_owned())),
            refunded: saga.is_some_and(|s| s.refunded),
            waitlist: view.waitlist_requested,
            waitlisted: view.waitlisted,
            admitted_at: view.admitted_at,
            waitlist_ended_at: view.waitlist_ended_at,
        }
    }
}

fn fail(code: &str, message: &str) -> OpResult {
    OpResult::Fail {
        code: code.to_owned(),
        message: message.to_owned(),
    }
}
