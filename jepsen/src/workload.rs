//! The clients: workers that submit investment requests and read deals against whichever nodes
//! run, recording every operation as invoke → ok / fail / info, and a deal manager that opens
//! new deals as the old ones fill.
//!
//! - **W1 contention**: many deals of 10 seats with amounts that bind, and some of 200 seats;
//!   concurrent submits from a pool of users (duplicates happen) and linearizable deal reads.
//! - **W4 idempotence**: some submits resend an earlier request id through another node, with
//!   the same payload or another amount.
//! - **W6 waitlist**: 40% of fresh requests opt into the waitlist (a fifth of them with a TTL
//!   of 1-5 s of log time), and workers withdraw some of the requests they saw WAITLISTED;
//!   compensations admit from the waitlists, and the deal manager closes the deals it retires,
//!   which ends their waitlists.
//! - W2 (final reads), W3 (money) and W5 (resolving `info`) happen after the run, in
//!   [`crate::run`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use ledger_client::pb;
use ledger_client::pb::admission_client::AdmissionClient;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::history::{Call, DealRead, DealTerms, Decision, Op, OpResult, Reply};
use crate::rng::Rng;
use crate::world::Targets;

/// Share of fresh requests that opt into the waitlist.
const WAITLIST_PERCENT: u64 = 40;
/// Share of those that also give a time to wait (log time), from the range below.
const WAITLIST_TTL_PERCENT: u64 = 20;
const WAITLIST_TTL_MS: (u64, u64) = (1_000, 5_000);

/// How long one client operation may take before it counts as `info` (outcome unknown).
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Records operations with times on one monotonic clock (tokio's, so that a simulated run
/// records simulated time).
pub struct Recorder {
    start: Instant,
    next: Mutex<u64>,
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    /// A recorder whose time zero is `start`.
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            start,
            next: Mutex::new(0),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Microseconds since the start.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// The next operation's index and its invocation time, taken together so that indices
    /// follow invocation order.
    pub fn invoke(&self) -> (u64, u64) {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let index = *next;
        *next += 1;
        (index, self.now_us())
    }

    /// Records a completed operation.
    pub fn record(&self, op: Op) {
        self.ops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(op);
    }

    /// Every operation recorded, in invocation order.
    pub fn history(&self) -> Vec<Op> {
        let mut ops = self
            .ops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        ops.sort_by_key(|op| op.index);
        ops
    }
}

/// Makes a lazily connected channel to a node's address.
pub type Connect = Arc<dyn Fn(&str) -> Option<Channel> + Send + Sync>;

/// Lazily connected channels to the nodes, one HTTP/2 connection per address.
#[derive(Clone)]
pub struct Channels {
    /// Ordered, so that dropping them closes the connections in the same order every time:
    /// a simulation replays.
    open: Arc<Mutex<BTreeMap<String, Channel>>>,
    connect: Connect,
}

impl Default for Channels {
    /// Channels over TCP.
    fn default() -> Channels {
        Channels::with(Arc::new(|addr| {
            Some(
                Endpoint::from_shared(format!("http://{addr}"))
                    .ok()?
                    .connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(1))
                    .keep_alive_timeout(Duration::from_secs(2))
                    .connect_lazy(),
            )
        }))
    }
}

impl Channels {
    /// Channels made by `connect` (the simulation's network).
    pub fn with(connect: Connect) -> Channels {
        Channels {
            open: Arc::default(),
            connect,
        }
    }

    /// The `Admission` client of the node at `addr`.
    pub fn admission(&self, addr: &str) -> Option<AdmissionClient<Channel>> {
        let mut channels = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let channel = match channels.get(addr) {
            Some(channel) => channel.clone(),
            None => {
                let channel = (self.connect)(addr)?;
                channels.insert(addr.to_owned(), channel.clone());
                channel
            }
        };
        Some(
            AdmissionClient::new(channel)
                .max_decoding_message_size(ledger_client::MESSAGE_BYTES_MAX),
        )
    }
}

/// The deals clients invest in: every deal created (for the checker) and the ones open to
/// submits now.
#[derive(Default)]
pub struct DealBook {
    all: RwLock<Vec<DealTerms>>,
    active: RwLock<Vec<DealTerms>>,
}

impl DealBook {
    /// Adds deals that were just created, making them the active ones (the older active deals
    /// stay active too, up to `keep` in all); returns the deals no longer active.
    pub fn open(&self, deals: Vec<DealTerms>, keep: usize) -> Vec<DealTerms> {
        self.all
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(deals.iter().cloned());
        let mut active = self.active.write().unwrap_or_else(PoisonError::into_inner);
        active.extend(deals);
        let excess = active.len().saturating_sub(keep);
        active.drain(..excess).collect()
    }

    /// Every deal created.
    pub fn all(&self) -> Vec<DealTerms> {
        self.all
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn pick(&self, rng: &mut Rng) -> Option<DealTerms> {
        let active = self.active.read().unwrap_or_else(PoisonError::into_inner);
        rng.pick(&active).cloned()
    }
}

/// A batch of `count` deal terms named `d{batch}-{n}`: mostly 10 seats, half of them with an
/// amount that binds before the seats do (some with ticket bounds), every fifth one 200 seats;
/// so that both capacity rules (seats, amount) turn requests away.
pub fn deal_batch(batch: u64, count: usize, rng: &mut Rng) -> Vec<DealTerms> {
    (0..count)
        .map(|n| {
            let deal_id = format!("d{batch}-{n}");
            if n % 5 == 4 {
                DealTerms {
                    deal_id,
                    amount_cents: 1_000_000_000, // 10,000,000.00: the 200 seats bind first
                    max_investors: 200,
                    min_ticket_cents: None,
                    max_ticket_cents: None,
                }
            } else {
                let bounded = rng.percent(30);
                let amount_binds = n % 2 == 0;
                DealTerms {
                    deal_id,
                    // 10,000.00 fills after ~6 tickets; 1,000,000.00 never does before 10 seats.
                    amount_cents: if amount_binds { 1_000_000 } else { 100_000_000 },
                    max_investors: 10,
                    min_ticket_cents: bounded.then_some(20_000),
                    max_ticket_cents: bounded.then_some(200_000),
                }
            }
        })
        .collect()
}

/// Money in cents as the wire's decimal text.
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Cents of the wire's decimal text (`None` if it is not money).
pub fn cents(text: &str) -> Option<u64> {
    let (units, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 2 {
        return None;
    }
    let units: u64 = units.parse().ok()?;
    let fraction: u64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<2}").parse().ok()?
    };
    units.checked_mul(100)?.checked_add(fraction)
}

/// What the workers do.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Concurrent workers.
    pub workers: usize,
    /// Operations per second, all workers together.
    pub rate: f64,
    /// Stop invoking after this long.
    pub duration: Duration,
    /// Stop invoking after this many operations.
    pub max_ops: u64,
    /// Seed of the workers' choices.
    pub seed: u64,
}

/// A request a worker sent before, kept to resend it (W4).
#[derive(Clone)]
struct Sent {
    request_id: String,
    deal_id: String,
    user_id: String,
    amount_cents: u64,
    waitlist: bool,
    waitlist_ttl_ms: Option<u64>,
}

/// Runs the workers until the duration or the op count is reached, or `stop` is set.
pub async fn run_workers(
    config: WorkloadConfig,
    targets: Targets,
    channels: Channels,
    deals: Arc<DealBook>,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let invoked = Arc::new(AtomicU64::new(0));
    let deadline = tokio::time::Instant::now() + config.duration;
    let mut handles = Vec::new();
    for worker in 0..config.workers {
        let period = Duration::from_secs_f64(config.workers as f64 / config.rate.max(0.1));
        let (targets, deals, recorder, stop, channels, invoked) = (
            targets.clone(),
            deals.clone(),
            recorder.clone(),
            stop.clone(),
            channels.clone(),
            invoked.clone(),
        );
        let max_ops = config.max_ops;
        let mut rng =
            Rng::new(config.seed ^ (worker as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
        handles.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sent: Vec<Sent> = Vec::new();
            // Requests this worker saw WAITLISTED, to withdraw some.
            let mut waiting: Vec<String> = Vec::new();
            loop {
                ticks.tick().await;
                if stop.load(Ordering::Relaxed)
                    || tokio::time::Instant::now() >= deadline
                    || invoked.fetch_add(1, Ordering::Relaxed) >= max_ops
                {
                    break;
                }
                let nodes = targets
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let Some(node) = rng.pick(&nodes).cloned() else {
                    continue;
                };
                let Some(client) = channels.admission(&node.addr) else {
                    continue;
                };
                let roll = rng.range(0, 100);
                let op = if roll < 5 {
                    let Some(deal) = deals.pick(&mut rng) else {
                        continue;
                    };
                    read_deal(&recorder, worker as u32, node.id, client, &deal.deal_id).await
                } else if roll < 12 && !sent.is_empty() {
                    let earlier = rng.pick(&sent).cloned().expect("not empty");
                    let amount_cents = if roll < 7 {
                        earlier.amount_cents + 1 // another payload: ALREADY_EXISTS expected
                    } else {
                        earlier.amount_cents
                    };
                    let request = Sent {
                        amount_cents,
                        ..earlier
                    };
                    submit(&recorder, worker as u32, node.id, client, &request, true).await
                } else if roll < 15 && !waiting.is_empty() {
                    let request_id =
                        waiting.swap_remove(rng.range(0, waiting.len() as u64) as usize);
                    withdraw(&recorder, worker as u32, node.id, client, request_id).await
                } else {
                    let Some(deal) = deals.pick(&mut rng) else {
                        continue;
                    };
                    let (low, high) = match (deal.min_ticket_cents, deal.max_ticket_cents) {
                        // Sometimes outside the bounds: TICKET_OUT_OF_RANGE.
                        (Some(min), Some(max)) => (min / 2, max + max / 4),
                        _ if deal.max_investors > 10 => (100_000, 1_000_000),
                        _ => (50_000, 300_000),
                    };
                    let waitlist = rng.percent(WAITLIST_PERCENT);
                    let request = Sent {
                        request_id: rng.uuid(),
                        deal_id: deal.deal_id.clone(),
                        user_id: format!("u{}", rng.range(0, 3_000)),
                        amount_cents: rng.range(low, high) / 100 * 100,
                        waitlist,
                        waitlist_ttl_ms: (waitlist && rng.percent(WAITLIST_TTL_PERCENT))
                            .then(|| rng.range(WAITLIST_TTL_MS.0, WAITLIST_TTL_MS.1)),
                    };
                    if sent.len() >= 64 {
                        sent.swap_remove(rng.range(0, 64) as usize);
                    }
                    sent.push(request.clone());
                    submit(&recorder, worker as u32, node.id, client, &request, false).await
                };
                if let OpResult::Ok(Reply::Submitted(Decision {
                    waitlisted: true, ..
                })) = &op.result
                {
                    if let Call::Submit { request_id, .. } = &op.call {
                        if waiting.len() >= 64 {
                            waiting.swap_remove(0);
                        }
                        waiting.push(request_id.clone());
                    }
                }
                recorder.record(op);
            }
        }));
    }
    for handle in handles {
        let _ = handle.await;
    }
}

/// A submit outside the workers (the liveness probe), recorded like theirs.
pub async fn submit_probe(
    recorder: &Recorder,
    node: u64,
    client: AdmissionClient<Channel>,
    submission: &ledger_client::Submission,
) -> Op {
    let request = Sent {
        request_id: submission.request_id.clone(),
        deal_id: submission.deal_id.clone(),
        user_id: submission.user_id.clone(),
        amount_cents: cents(&submission.amount).unwrap_or(100),
        waitlist: submission.waitlist,
        waitlist_ttl_ms: submission.waitlist_ttl_ms,
    };
    submit(recorder, u32::MAX, node, client, &request, false).await
}

async fn submit(
    recorder: &Recorder,
    worker: u32,
    node: u64,
    mut client: AdmissionClient<Channel>,
    request: &Sent,
    resubmit: bool,
) -> Op {
    let mut rpc = tonic::Request::new(pb::SubmitRequest {
        request_id: request.request_id.clone(),
        deal_id: request.deal_id.clone(),
        user_id: request.user_id.clone(),
        amount: money(request.amount_cents),
        waitlist: request.waitlist,
        waitlist_ttl_ms: request.waitlist_ttl_ms,
    });
    rpc.set_timeout(OP_TIMEOUT);
    let call = Call::Submit {
        request_id: request.request_id.clone(),
        deal_id: request.deal_id.clone(),
        user_id: request.user_id.clone(),
        amount_cents: request.amount_cents,
        resubmit,
        waitlist: request.waitlist,
        waitlist_ttl_ms: request.waitlist_ttl_ms,
    };
    recorded(recorder, worker, node, call, client.submit(rpc), |reply| {
        let investment = reply.investment.unwrap_or_default();
        // A replay answers what became of the request; `waitlisted` keeps what was decided.
        let waitlisted = investment.waitlisted;
        let rejected = !waitlisted && investment.status == pb::InvestmentStatus::Rejected as i32;
        Reply::Submitted(Decision {
            log_index: reply.log_index,
            offset: reply.offset,
            admitted: !waitlisted && !rejected,
            waitlisted,
            reject_reason: rejected.then(|| {
                pb::RejectReason::try_from(investment.reject_reason)
                    .map(|r| r.as_str_name().to_owned())
                    .unwrap_or_else(|_| format!("{}", investment.reject_reason))
            }),
            replayed: reply.replayed,
        })
    })
    .await
}

async fn withdraw(
    recorder: &Recorder,
    worker: u32,
    node: u64,
    mut client: AdmissionClient<Channel>,
    request_id: String,
) -> Op {
    let mut rpc = tonic::Request::new(pb::WithdrawRequest {
        request_id: request_id.clone(),
    });
    rpc.set_timeout(OP_TIMEOUT);
    let call = Call::Withdraw { request_id };
    recorded(recorder, worker, node, call, client.withdraw(rpc), |inv| {
        Reply::Withdrawn {
            log_index: inv.waitlist_ended_log_index,
            offset: inv.waitlist_ended_offset,
        }
    })
    .await
}

async fn read_deal(
    recorder: &Recorder,
    worker: u32,
    node: u64,
    mut client: AdmissionClient<Channel>,
    deal_id: &str,
) -> Op {
    let mut rpc = tonic::Request::new(pb::GetDealRequest {
        deal_id: deal_id.to_owned(),
        consistency: pb::Consistency::Linearizable as i32,
    });
    rpc.set_timeout(OP_TIMEOUT);
    let call = Call::ReadDeal {
        deal_id: deal_id.to_owned(),
    };
    recorded(recorder, worker, node, call, client.get_deal(rpc), |deal| {
        Reply::Deal(DealRead {
            investor_count: deal.investor_count,
            reserved_cents: cents(&deal.reserved_amount).unwrap_or(u64::MAX),
            confirmed_count: deal.confirmed_count,
            confirmed_cents: cents(&deal.confirmed_amount).unwrap_or(u64::MAX),
        })
    })
    .await
}

/// Invokes `rpc` (not started until awaited here, so the invocation time is right), bounded by
/// [`OP_TIMEOUT`], and records its outcome.
async fn recorded<T>(
    recorder: &Recorder,
    worker: u32,
    node: u64,
    call: Call,
    rpc: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    reply: impl FnOnce(T) -> Reply,
) -> Op {
    let (index, invoke_us) = recorder.invoke();
    let result = match tokio::time::timeout(OP_TIMEOUT + Duration::from_millis(500), rpc).await {
        Ok(Ok(answer)) => OpResult::Ok(reply(answer.into_inner())),
        Ok(Err(status)) => failure(&status),
        Err(_) => OpResult::Info {
            error: format!("no reply within {OP_TIMEOUT:?}"),
        },
    };
    Op {
        index,
        worker,
        node,
        invoke_us,
        complete_us: recorder.now_us(),
        call,
        result,
    }
}

/// A failed call: definite (`fail`) only for codes that promise nothing happened, or a node's
/// explicit word that it proposed nothing (`x-ledger-outcome: not-proposed`); everything else
/// (unavailable, timeouts, transport errors, internal errors) may have taken effect.
fn failure(status: &tonic::Status) -> OpResult {
    let not_proposed = status
        .metadata()
        .get("x-ledger-outcome")
        .and_then(|v| v.to_str().ok())
        == Some("not-proposed");
    if not_proposed {
        return OpResult::Fail {
            code: code_name(status.code()).to_owned(),
            message: status.message().to_owned(),
        };
    }
    match status.code() {
        Code::InvalidArgument
        | Code::AlreadyExists
        | Code::NotFound
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::OutOfRange => OpResult::Fail {
            code: code_name(status.code()).to_owned(),
            message: status.message().to_owned(),
        },
        code => OpResult::Info {
            error: format!("{}: {}", code_name(code), status.message()),
        },
    }
}

/// The gRPC code's canonical name (`ALREADY_EXISTS`).
pub use ledger_proto::code_name;
