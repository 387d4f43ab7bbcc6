//! The voter set after promoting or removing one member, computed from the membership as the
//! leader reports it: pure, so that the rules are tested without a cluster.

use ledger_proto::pb;

/// Why a voter set for [`Client::promote`](super::Client::promote) or
/// [`Client::remove_member`](super::Client::remove_member) was not computed; nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VoterSetError {
    /// Only a learner can be promoted: the node must catch up as one first.
    #[error("node {0} is not a member: add it as a learner first")]
    NotAMember(u64),
    /// `ChangeMembership` names voters only, so a learner would stay.
    #[error("node {0} is a learner; removing learners is not supported")]
    RemovingLearner(u64),
    /// A cluster without voters could never commit again.
    #[error("node {0} is the last voter")]
    LastVoter(u64),
}

fn is_voter(member: &pb::Member) -> bool {
    member.role == pb::MemberRole::Voter as i32
}

fn voters(members: &[pb::Member]) -> Vec<u64> {
    members
        .iter()
        .filter(|m| is_voter(m))
        .map(|m| m.node_id)
        .collect()
}

/// The voters once learner `node_id` is one of them. A node that already votes leaves them as
/// they are, so a repeated promotion proposes nothing.
pub(super) fn after_promote(
    members: &[pb::Member],
    node_id: u64,
) -> Result<Vec<u64>, VoterSetError> {
    let mut voters = voters(members);
    match members.iter().find(|m| m.node_id == node_id) {
        None => return Err(VoterSetError::NotAMember(node_id)),
        Some(m) if is_voter(m) => {}
        Some(_) => voters.push(node_id),
    }
    Ok(voters)
}

/// The voters without `node_id`. A node that is not a member (already removed) leaves them as
/// they are, so a repeated removal proposes nothing.
pub(super) fn after_remove(
    members: &[pb::Member],
    node_id: u64,
) -> Result<Vec<u64>, VoterSetError> {
    let member = members.iter().find(|m| m.node_id == node_id);
    if member.is_some_and(|m| m.role == pb::MemberRole::Learner as i32) {
        return Err(VoterSetError::RemovingLearner(node_id));
    }
    let mut voters = voters(members);
    voters.retain(|&v| v != node_id);
    if voters.is_empty() {
        return Err(VoterSetError::LastVoter(node_id));
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node_id: u64, role: pb::MemberRole) -> pb::Member {
        pb::Member {
            node_id,
            addr: format!("127.0.0.1:{}", 7800 + node_id),
            role: role as i32,
            matched_index: 0,
        }
    }

    /// Voters 1, 2, 3 and learner 4.
    fn three_voters_and_a_learner() -> Vec<pb::Member> {
        vec![
            member(1, pb::MemberRole::Voter),
            member(2, pb::MemberRole::Voter),
            member(3, pb::MemberRole::Voter),
            member(4, pb::MemberRole::Learner),
        ]
    }

    #[test]
    fn promoting_a_learner_adds_it_to_the_voters() {
        assert_eq!(
            after_promote(&three_voters_and_a_learner(), 4),
            Ok(vec![1, 2, 3, 4])
        );
    }

    #[test]
    fn promoting_a_voter_again_keeps_the_voters() {
        assert_eq!(
            after_promote(&three_voters_and_a_learner(), 2),
            Ok(vec![1, 2, 3])
        );
    }

    #[test]
    fn promoting_a_stranger_is_refused() {
        assert_eq!(
            after_promote(&three_voters_and_a_learner(), 9),
            Err(VoterSetError::NotAMember(9))
        );
    }

    #[test]
    fn removing_a_voter_leaves_the_others() {
        assert_eq!(
            after_remove(&three_voters_and_a_learner(), 1),
            Ok(vec![2, 3])
        );
    }

    #[test]
    fn removing_a_node_no_longer_there_keeps_the_voters() {
        assert_eq!(
            after_remove(&three_voters_and_a_learner(), 9),
            Ok(vec![1, 2, 3])
        );
    }

    #[test]
    fn removing_a_learner_is_refused() {
        assert_eq!(
            after_remove(&three_voters_and_a_learner(), 4),
            Err(VoterSetError::RemovingLearner(4))
        );
    }

    #[test]
    fn removing_the_last_voter_is_refused_even_with_learners_left() {
        let members = vec![
            member(1, pb::MemberRole::Voter),
            member(4, pb::MemberRole::Learner),
        ];
        assert_eq!(after_remove(&members, 1), Err(VoterSetError::LastVoter(1)));
    }

    #[test]
    fn the_messages_name_the_node_and_the_way_out() {
        assert_eq!(
            VoterSetError::NotAMember(5).to_string(),
            "node 5 is not a member: add it as a learner first"
        );
        assert_eq!(
            VoterSetError::RemovingLearner(4).to_string(),
            "node 4 is a learner; removing learners is not supported"
        );
        assert_eq!(
            VoterSetError::LastVoter(1).to_string(),
            "node 1 is the last voter"
        );
    }
}
