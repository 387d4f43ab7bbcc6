//! openraft administration for the rest of the node: the mapping of openraft's errors onto
//! [`ApiError`], so that no module outside `raft/` names openraft's error types.

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::BasicNode;

use crate::error::ApiError;

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
