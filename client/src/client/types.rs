//! What the client's calls take and give: submissions, decisions, learners added.

use ledger_proto::pb;

/// A `CreateDeal` request for a deal open at once and until closed by hand, with no bounds on
/// tickets and the default waitlist: what load tools, examples and tests open.
pub fn open_deal(
    deal_id: impl Into<String>,
    amount: impl Into<String>,
    max_investors: u32,
) -> pb::CreateDealRequest {
    pb::CreateDealRequest {
        deal_id: deal_id.into(),
        amount: amount.into(),
        max_investors,
        min_ticket: None,
        max_ticket: None,
        opens_at_ms: None,
        closes_at_ms: None,
        max_waitlist: 0,
    }
}

/// One investment request. The `request_id` is what makes retries safe: the ledger decides a
/// request id once, and a resubmission returns the first decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// The request's id (a UUID).
    pub request_id: String,
    /// The deal.
    pub deal_id: String,
    /// The investor.
    pub user_id: String,
    /// The amount, a decimal string such as `"2500.00"`.
    pub amount: String,
    /// Wait on the deal's waitlist rather than be rejected for lack of seats or amount.
    pub waitlist: bool,
    /// With `waitlist`: how long (ms of log time) to wait at most; `None` until the deal closes.
    pub waitlist_ttl_ms: Option<u64>,
}

impl Submission {
    /// A request with a fresh random id.
    pub fn new(
        deal_id: impl Into<String>,
        user_id: impl Into<String>,
        amount: impl Into<String>,
    ) -> Submission {
        Submission {
            request_id: uuid::Uuid::new_v4().to_string(),
            deal_id: deal_id.into(),
            user_id: user_id.into(),
            amount: amount.into(),
            waitlist: false,
            waitlist_ttl_ms: None,
        }
    }

    /// The same request, opting in to the waitlist (for at most `ttl_ms` of log time if given).
    pub fn waitlisted(mut self, ttl_ms: Option<u64>) -> Submission {
        self.waitlist = true;
        self.waitlist_ttl_ms = ttl_ms;
        self
    }

    pub(super) fn to_request(&self) -> pb::SubmitRequest {
        pb::SubmitRequest {
            request_id: self.request_id.clone(),
            deal_id: self.deal_id.clone(),
            user_id: self.user_id.clone(),
            amount: self.amount.clone(),
            waitlist: self.waitlist,
            waitlist_ttl_ms: self.waitlist_ttl_ms,
        }
    }
}

/// The ledger's decision on a request: admitted (`PENDING`, then a saga runs) or `REJECTED`
/// with a reason. Either is a normal result.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The investment as decided.
    pub investment: pb::Investment,
    /// The log entry that decided it, and the request's position in that entry.
    pub log_index: u64,
    /// Position within the entry.
    pub offset: u32,
    /// The request had been decided before (a resubmission).
    pub replayed: bool,
    /// Attempts this call took (1 without retries).
    pub attempts: u32,
}

impl Decision {
    /// The investment's status at the decision.
    pub fn status(&self) -> pb::InvestmentStatus {
        status_of(&self.investment)
    }

    /// Admitted: a seat and the amount are held, and the saga runs.
    pub fn is_admitted(&self) -> bool {
        self.status() != pb::InvestmentStatus::Rejected
    }

    /// Why the request was rejected, if it was.
    pub fn reject_reason(&self) -> Option<pb::RejectReason> {
        (self.status() == pb::InvestmentStatus::Rejected).then(|| {
            pb::RejectReason::try_from(self.investment.reject_reason)
                .unwrap_or(pb::RejectReason::Unspecified)
        })
    }
}

/// An investment's status, `UNSPECIFIED` if the number is unknown to this client.
pub fn status_of(investment: &pb::Investment) -> pb::InvestmentStatus {
    pb::InvestmentStatus::try_from(investment.status).unwrap_or(pb::InvestmentStatus::Unspecified)
}

/// Whether an investment's saga is over (`CONFIRMED`, `CANCELLED`) or it never had one
/// (`REJECTED`).
pub fn is_final(investment: &pb::Investment) -> bool {
    matches!(
        status_of(investment),
        pb::InvestmentStatus::Confirmed
            | pb::InvestmentStatus::Cancelled
            | pb::InvestmentStatus::Rejected
    )
}

/// A learner in the membership, and how far it had caught up when
/// [`Client::add_learner_waiting`](super::Client::add_learner_waiting) returned.
#[derive(Clone, Debug)]
pub struct LearnerAdded {
    /// The learner's id.
    pub node_id: u64,
    /// The log index of the membership entry that holds it.
    pub log_index: u64,
    /// The membership as the leader last reported it.
    pub members: Vec<pb::Member>,
    /// Whether the learner's log had reached [`LearnerAdded::catch_up_index`]. False means
    /// added and still catching up, not a failure: do not promote it yet.
    pub caught_up: bool,
    /// The last log index the leader knew the learner to hold.
    pub matched_index: u64,
    /// The leader's last log index when it last checked: what the learner has to reach.
    pub catch_up_index: u64,
}

impl LearnerAdded {
    pub(super) fn new(node_id: u64, reply: pb::MembershipResponse) -> LearnerAdded {
        let matched_index = reply
            .members
            .iter()
            .find(|m| m.node_id == node_id)
            .map_or(0, |m| m.matched_index);
        LearnerAdded {
            node_id,
            log_index: reply.log_index,
            members: reply.members,
            caught_up: reply.caught_up,
            matched_index,
            catch_up_index: reply.catch_up_index,
        }
    }
}
