//! openraft administration for the rest of the node, in plain types: what the metrics say
//! (members, role, indexes), the waits on them, bootstrap and membership changes, the campaign
//! loop and the election switches of a leadership transfer, and the one mapping of each of
//! openraft's errors onto [`ApiError`]. No module outside `raft/` names openraft's types.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState};

use super::Raft;
use crate::error::ApiError;

type Metrics = RaftMetrics<u64, BasicNode>;

/// A member as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its node id.
    pub node_id: u64,
    /// Its address.
    pub addr: String,
    /// A voter, else a learner.
    pub voter: bool,
    /// The last log index the leader knows it holds (0 if unknown, or not the leader).
    pub matched_index: u64,
}

/// What this node's Raft says of itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftStatus {
    /// The leader it knows, if any.
    pub leader_id: Option<u64>,
    /// The current term.
    pub term: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: &'static str,
    /// The last log index.
    pub last_log_index: u64,
    /// The last applied index.
    pub applied_index: u64,
    /// The index the last snapshot covers.
    pub snapshot_index: u64,
    /// The index the log is purged up to.
    pub purged_index: u64,
}

/// The membership in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Voters and learners, with their addresses.
    pub nodes: BTreeMap<u64, String>,
    /// The voter sets: one, or two while a change is joint.
    pub configs: Vec<BTreeSet<u64>>,
    /// The log index of its entry (0 for none).
    pub log_index: u64,
}

impl Membership {
    /// Whether `id` votes.
    pub fn is_voter(&self, id: u64) -> bool {
        self.configs.iter().any(|config| config.contains(&id))
    }

    /// The voters, of every configuration.
    pub fn voters(&self) -> BTreeSet<u64> {
        self.configs.iter().flatten().copied().collect()
    }
}

fn applied_index(metrics: &Metrics) -> u64 {
    metrics.last_applied.map_or(0, |l| l.index)
}

/// The last log index the leader knows `node_id` holds; 0 if unknown.
fn matched_index(metrics: &Metrics, node_id: u64) -> u64 {
    metrics
        .replication
        .as_ref()
        .and_then(|r| r.get(&node_id).copied().flatten())
        .map_or(0, |l| l.index)
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// This node's Raft status.
pub fn status(raft: &Raft) -> RaftStatus {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    RaftStatus {
        leader_id: metrics.current_leader,
        term: metrics.current_term,
        role: role(metrics.state),
        last_log_index: metrics.last_log_index.unwrap_or(0),
        applied_index: applied_index(&metrics),
        snapshot_index: metrics.snapshot.map_or(0, |l| l.index),
        purged_index: metrics.purged.map_or(0, |l| l.index),
    }
}

/// The membership in force, as this node knows it.
pub fn membership(raft: &Raft) -> Membership {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let config = &metrics.membership_config;
    Membership {
        nodes: config
            .membership()
            .nodes()
            .map(|(&id, node)| (id, node.addr.clone()))
            .collect(),
        configs: config.membership().get_joint_config().clone(),
        log_index: config.log_id().map_or(0, |l| l.index),
    }
}

/// Every member, voters and learners, with what the leader knows each holds.
pub fn members(raft: &Raft) -> Vec<Member> {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(&node_id, node)| Member {
            node_id,
            addr: node.addr.clone(),
            voter: voters.contains(&node_id),
            matched_index: matched_index(&metrics, node_id),
        })
        .collect()
}

/// Calls `changed` each time the leader this node knows changes (to another node or to none),
/// until Raft stops.
pub async fn on_leader_change(raft: Raft, changed: impl Fn()) {
    let mut metrics = raft.metrics();
    let mut leader = metrics.borrow().current_leader;
    while metrics.changed().await.is_ok() {
        let now = metrics.borrow().current_leader;
        if now != leader {
            leader = now;
            changed();
        }
    }
}

/// Waits until the entry at `log_index` is applied (hence committed) while node `me` leads. A
/// membership found already in force may still be uncommitted: a retry must not call it done
/// before it is.
pub async fn wait_committed_while_leading(
    raft: &Raft,
    me: u64,
    log_index: u64,
    timeout: Duration,
) -> Result<(), ApiError> {
    let metrics = raft
        .wait(Some(timeout))
        .metrics(
            |m| applied_index(m) >= log_index || m.current_leader != Some(me),
            "entry applied",
        )
        .await
        .map_err(|e| {
            ApiError::outcome_unknown(format!(
                "the membership entry at {log_index} has not committed yet: {e}"
            ))
        })?;
    if applied_index(&metrics) >= log_index {
        Ok(())
    } else {
        Err(ApiError::outcome_unknown(format!(
            "this node lost the leadership before the membership entry at {log_index} committed"
        )))
    }
}

/// Waits at most `wait` for `node_id`'s log to reach `target` in this leader's view; whether it
/// did.
pub async fn caught_up(raft: &Raft, node_id: u64, target: u64, wait: Duration) -> bool {
    let reached = |m: &Metrics| matched_index(m, node_id) >= target;
    if wait.is_zero() {
        return reached(&raft.metrics().borrow());
    }
    raft.wait(Some(wait))
        .metrics(reached, "caught up")
        .await
        .is_ok()
}

/// Waits at most `wait` for `node_id` to hold this leader's whole log; whether it did.
pub async fn holds_whole_log(raft: &Raft, node_id: u64, wait: Duration) -> bool {
    raft.wait(Some(wait))
        .metrics(
            |m| {
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&node_id))
                    .and_then(|l| l.map(|l| l.index));
                matched.is_some() && matched == m.last_log_index
            },
            "whole log replicated",
        )
        .await
        .is_ok()
}

/// Waits at most `wait` until `node_id` leads; the leader then known.
pub async fn wait_leader(raft: &Raft, node_id: u64, wait: Duration) -> Result<u64, ApiError> {
    let metrics = raft
        .wait(Some(wait))
        .metrics(|m| m.current_leader == Some(node_id), "leader")
        .await
        .map_err(|e| ApiError::Timeout(format!("node {node_id} did not become leader: {e}")))?;
    Ok(metrics.current_leader.unwrap_or(node_id))
}

/// Node `me` campaigns until it leads, for at most `total`. The first campaign makes the old
/// leader step down (higher term), but followers still inside the old leader's lease refuse
/// their votes; campaigning again every `retry` (a few heartbeat periods, before their own
/// election timers fire) wins.
pub async fn campaign(
    raft: &Raft,
    me: u64,
    retry: Duration,
    total: Duration,
) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + total;
    loop {
        raft.trigger()
            .elect()
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let won = raft
            .wait(Some(retry))
            .metrics(|m| m.current_leader == Some(me), "campaign")
            .await
            .is_ok();
        if won || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
    }
}

/// Builds a snapshot now and waits at most `wait` for it; the index it covers.
pub async fn snapshot_now(raft: &Raft, wait: Duration) -> Result<u64, ApiError> {
    let applied = applied_index(&raft.metrics().borrow());
    raft.trigger()
        .snapshot()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let metrics = raft
        .wait(Some(wait))
        .metrics(|m| m.snapshot.map_or(0, |l| l.index) >= applied, "snapshot")
        .await
        .map_err(|e| ApiError::Timeout(format!("snapshot not built in time: {e}")))?;
    Ok(metrics.snapshot.map_or(0, |l| l.index))
}

/// Sets this node's heartbeat and election switches.
pub fn set_switches(raft: &Raft, heartbeat: bool, elect: bool) {
    let config = raft.runtime_config();
    config.heartbeat(heartbeat);
    config.elect(elect);
}

/// Bootstraps the cluster with `nodes`. A retry of an `Init` that took effect (the membership
/// asked for is the one in force) succeeds.
pub async fn initialize(raft: &Raft, nodes: BTreeMap<u64, String>) -> Result<(), ApiError> {
    let basic: BTreeMap<u64, BasicNode> = nodes
        .iter()
        .map(|(&id, addr)| (id, BasicNode { addr: addr.clone() }))
        .collect();
    match raft.initialize(basic).await {
        Ok(()) => Ok(()),
        Err(RaftError::APIError(InitializeError::NotAllowed(_)))
            if membership(raft).nodes == nodes =>
        {
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(e))) => Err(
            ApiError::FailedPrecondition(format!("already initialized: {e}")),
        ),
        Err(RaftError::APIError(InitializeError::NotInMembers(e))) => {
            Err(ApiError::invalid("members", e.to_string()))
        }
        Err(RaftError::Fatal(fatal)) => Err(ApiError::outcome_unknown(fatal.to_string())),
    }
}

/// Adds a learner (not waiting for it to catch up); the log index of the membership entry.
pub async fn add_learner(raft: &Raft, node_id: u64, addr: String) -> Result<u64, ApiError> {
    // Not blocking: openraft's blocking form waits for the catch-up without a bound, and a slow
    // catch-up is not a failed add.
    let response = raft.add_learner(node_id, BasicNode { addr }, false).await?;
    Ok(response.log_id.index)
}

/// Changes the voters (`retain`: removed voters stay as learners); the log index of the
/// membership entry.
pub async fn change_membership(
    raft: &Raft,
    voters: BTreeSet<u64>,
    retain: bool,
) -> Result<u64, ApiError> {
    let response = raft.change_membership(voters, retain).await?;
    Ok(response.log_id.index)
}

/// A membership change that openraft did not confirm. A refusal of the change itself comes
/// before anything is appended; the rest may come after (see `batcher::settle`): unknown.
impl From<RaftError<u64, ClientWriteError<u64, BasicNode>>> for ApiError {
    fn from(error: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> ApiError {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                ApiError::OutcomeUnknown {
                    reason: "this node lost the leadership before the membership change \
                             committed"
                        .into(),
                    leader_id: forward.leader_id,
                    leader_addr: forward.leader_node.map(|n| n.addr),
                }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                ApiError::FailedPrecondition(e.to_string())
            }
            RaftError::Fatal(fatal) => ApiError::outcome_unknown(fatal.to_string()),
        }
    }
}

impl From<RaftError<u64, CheckIsLeaderError<u64, BasicNode>>> for ApiError {
    fn from(error: RaftError<u64, CheckIsLeaderError<u64, BasicNode>>) -> ApiError {
        match error {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)) => {
                ApiError::NoLeader {
                    leader_id: forward.leader_id,
                    leader_addr: forward.leader_node.map(|n| n.addr),
                }
            }
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)) => {
                ApiError::Unavailable(e.to_string())
            }
            RaftError::Fatal(fatal) => ApiError::Unavailable(fatal.to_string()),
        }
    }
}

/// Whether these metrics are a leader's.
pub fn leads(metrics: &openraft::RaftMetrics<u64, BasicNode>) -> bool {
    metrics.state == openraft::ServerState::Leader
}

/// Makes a node that led a term before it stopped start as a follower, by saving its vote for
/// itself as not (yet) granted; it returns the term it gave up.
///
/// openraft 0.9 resumes leadership at start-up when the saved vote is its own and committed. But
/// a leader counts towards a quorum only once its own copy is flushed, while two followers can
/// commit an entry before that: a leader that crashed can come back with a shorter log than its
/// term's committed one. Resumed, it served linearizable reads from that shorter log (found by
/// the simulation: seeds 5398, 8434 and 9764 of 10,000 read a deal as it was entries before),
/// and its next entry would reuse a log id its followers already hold with other content. A new
/// election in a later term can only be won with every committed entry.
pub async fn step_down_on_start<S>(
    node_id: u64,
    store: &mut S,
) -> Result<Option<u64>, crate::raft::StorageError>
where
    S: openraft::storage::RaftLogStorage<crate::raft::TypeConfig>,
{
    let Some(vote) = store.read_vote().await? else {
        return Ok(None);
    };
    if !vote.is_committed() || vote.leader_id.node_id != node_id {
        return Ok(None);
    }
    let term = vote.leader_id.term;
    store.save_vote(&openraft::Vote::new(term, node_id)).await?;
    Ok(Some(term))
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorage;
    use openraft::Vote;

    use super::*;
    use crate::raft::mem_log::MemDisk;

    #[tokio::test(start_paused = true)]
    async fn only_a_vote_won_by_this_node_is_given_back() {
        let disk = MemDisk::new(std::time::Duration::from_millis(1));
        let mut store = disk.open();
        assert_eq!(step_down_on_start(1, &mut store).await.unwrap(), None);

        store.save_vote(&Vote::new_committed(4, 1)).await.unwrap();
        assert_eq!(step_down_on_start(1, &mut store).await.unwrap(), Some(4));
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(4, 1)));
        // Once given back, nothing more to do.
        assert_eq!(step_down_on_start(1, &mut store).await.unwrap(), None);

        // A vote another node won is kept: this node followed it.
        store.save_vote(&Vote::new_committed(5, 2)).await.unwrap();
        assert_eq!(step_down_on_start(1, &mut store).await.unwrap(), None);
        assert_eq!(
            store.read_vote().await.unwrap(),
            Some(Vote::new_committed(5, 2))
        );
    }
}
