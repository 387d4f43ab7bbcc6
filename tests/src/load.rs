//! Client-side load: submissions retried under the same request id (so a retry never decides
//! twice, I4), with the instants a test needs to check real-time order (I5).

use std::time::{Duration, Instant};

use ledger_client::NodeClients;
use ledger_proto::pb;
use tonic::Code;

/// A new submission (a fresh UUID as its request id) of `amount` to `deal_id` by `user_id`,
/// without the waitlist.
pub fn new_request(deal_id: &str, user_id: String, amount: String) -> pb::SubmitRequest {
    pb::SubmitRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        deal_id: deal_id.to_owned(),
        user_id,
        amount,
        waitlist: false,
        waitlist_ttl_ms: None,
    }
}

/// How long one attempt may take before it counts as lost (and is retried).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bounds on the retries of one request.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Most attempts, the first included.
    pub attempts: u32,
    /// Most time from the first send to giving up.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 60,
            budget: Duration::from_secs(30),
        }
    }
}

/// A submission that got a reply.
#[derive(Clone, Debug)]
pub struct Acked {
    /// What was sent (every attempt sent exactly this).
    pub request: pb::SubmitRequest,
    /// The reply.
    pub response: pb::SubmitResponse,
    /// When the first attempt was sent.
    pub first_sent: Instant,
    /// When the reply arrived.
    pub received: Instant,
    /// How many attempts it took (1 = no retry).
    pub attempts: u32,
    /// The codes of the failed attempts, in order.
    pub retried_on: Vec<Code>,
}

impl Acked {
    /// The decision as `(status, reject_reason, log_index, offset)`.
    pub fn decision(&self) -> Decision {
        Decision::of_response(&self.response)
    }
}

/// What a decision is, for comparing replies and replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decision {
    /// `pb::InvestmentStatus` as a number.
    pub status: i32,
    /// `pb::RejectReason` as a number.
    pub reason: i32,
    /// Log index of the deciding entry.
    pub log_index: u64,
    /// Position in that entry.
    pub offset: u32,
}

impl Decision {
    /// The decision an investment records.
    pub fn of(investment: &pb::Investment) -> Decision {
        Decision {
            status: investment.status,
            reason: investment.reject_reason,
            log_index: investment.log_index,
            offset: investment.offset,
        }
    }

    /// The decision a `Submit` reply carries; panics if it carries no investment.
    pub fn of_response(response: &pb::SubmitResponse) -> Decision {
        let investment = response
            .investment
            .as_ref()
            .expect("a SubmitResponse carries its investment");
        let decision = Decision::of(investment);
        assert_eq!(
            (decision.log_index, decision.offset),
            (response.log_index, response.offset),
            "the reply's position differs from its investment's: {response:?}"
        );
        decision
    }

    /// Whether the request was admitted.
    pub fn admitted(&self) -> bool {
        self.status == pb::InvestmentStatus::Pending as i32
    }

    /// `(log_index, offset)`: the position in the decision order.
    pub fn position(&self) -> (u64, u32) {
        (self.log_index, self.offset)
    }
}

/// Whether a failed attempt may be retried with the same request id: the node had no leader, the
/// connection failed or broke, or the attempt timed out. Its outcome is unknown, and a retry
/// returns the original decision if there was one.
pub fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
    )
}

/// Submits `request` to `node`, retrying retryable failures with the default policy; panics if
/// it is not decided.
pub async fn submit_to(node: &NodeClients, request: pb::SubmitRequest) -> Acked {
    submit_retrying(
        std::slice::from_ref(node),
        0,
        request,
        RetryPolicy::default(),
    )
    .await
    .expect("submit")
}

/// Submits `request` to `nodes[first_node]`, retrying retryable failures on the next node
/// (round robin) with the same request, within `policy`. Returns the reply, or the last error
/// (`Err` at once for a non-retryable one).
pub async fn submit_retrying(
    nodes: &[NodeClients],
    first_node: usize,
    request: pb::SubmitRequest,
    policy: RetryPolicy,
) -> Result<Acked, tonic::Status> {
    let first_sent = Instant::now();
    let mut retried_on = Vec::new();
    for (node, attempt) in (first_node..).zip(1..=policy.attempts) {
        let mut client = nodes[node % nodes.len()].admission.clone();
        let result = tokio::time::timeout(ATTEMPT_TIMEOUT, client.submit(request.clone())).await;
        let status = match result {
            Ok(Ok(response)) => {
                return Ok(Acked {
                    request,
                    response: response.into_inner(),
                    first_sent,
                    received: Instant::now(),
                    attempts: attempt,
                    retried_on,
                })
            }
            Ok(Err(status)) => status,
            Err(_) => tonic::Status::deadline_exceeded("attempt timed out in the test client"),
        };
        if !retryable(status.code()) || first_sent.elapsed() >= policy.budget {
            return Err(status);
        }
        retried_on.push(status.code());
        // Back off a little, more on each attempt, so an election can finish.
        tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt.min(10)))).await;
    }
    Err(tonic::Status::unavailable(format!(
        "gave up after {} attempts: {retried_on:?}",
        policy.attempts
    )))
}

/// Connects to every node of `ids` in `cluster`, in that order.
pub async fn connect_all(cluster: &crate::TestCluster, ids: &[u64]) -> Vec<NodeClients> {
    let mut clients = Vec::with_capacity(ids.len());
    for &id in ids {
        clients.push(cluster.client(id).await);
    }
    clients
}

/// Creates a deal of `amount` (money) with `max_investors` seats; panics on failure.
pub async fn create_deal(
    client: &NodeClients,
    deal_id: &str,
    amount: &str,
    max_investors: u32,
) -> pb::Deal {
    let mut admission = client.admission.clone();
    admission
        .create_deal(ledger_client::open_deal(deal_id, amount, max_investors))
        .await
        .unwrap_or_else(|e| panic!("create deal {deal_id}: {e}"))
        .into_inner()
}
