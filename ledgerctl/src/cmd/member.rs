//! `ledgerctl member add-learner | promote | remove`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use ledger_client::pb;
use serde_json::json;

use crate::cli::{Cli, MemberCmd};
use crate::exit::EXIT_STILL_CATCHING_UP;
use crate::output::{member_json, members_line, print_or_json};

pub async fn run(cli: &Cli, cmd: &MemberCmd) -> Result<ExitCode> {
    let client = cli.client().await?;
    let reply = match cmd {
        MemberCmd::AddLearner {
            node_id,
            addr,
            catch_up_timeout_s,
        } => {
            let added = client
                .add_learner_waiting(*node_id, addr, Duration::from_secs(*catch_up_timeout_s))
                .await?;
            let progress = format!(
                "matched {} of {}",
                added.matched_index, added.catch_up_index
            );
            print_or_json(
                cli,
                json!({
                    "node_id": node_id, "added": true, "caught_up": added.caught_up,
                    "matched_index": added.matched_index, "catch_up_index": added.catch_up_index,
                    "log_index": added.log_index,
                    "members": added.members.iter().map(member_json).collect::<Vec<_>>(),
                }),
                || match added.caught_up {
                    true => format!(
                        "node {node_id} is a learner (membership entry {}) and has caught up \
                         ({progress}); members: {}",
                        added.log_index,
                        members_line(&added.members)
                    ),
                    false => format!(
                        "node {node_id} was added as a learner (membership entry {}) but is \
                         still catching up ({progress}) after {catch_up_timeout_s} s; watch \
                         `cluster status` and promote it only once it has caught up",
                        added.log_index
                    ),
                },
            )?;
            return Ok(match added.caught_up {
                true => ExitCode::SUCCESS,
                false => ExitCode::from(EXIT_STILL_CATCHING_UP),
            });
        }
        MemberCmd::Promote { node_id } | MemberCmd::Remove { node_id } => {
            let status = client.status().await?;
            let member = status.members.iter().find(|m| m.node_id == *node_id);
            let mut voters: Vec<u64> = status
                .members
                .iter()
                .filter(|m| m.role == pb::MemberRole::Voter as i32)
                .map(|m| m.node_id)
                .collect();
            let retain = match cmd {
                MemberCmd::Promote { .. } => {
                    match member {
                        None => bail!("node {node_id} is not a member: add it as a learner first"),
                        // Already promoted (a repeated command): the node proposes nothing and
                        // says so.
                        Some(m) if m.role == pb::MemberRole::Voter as i32 => {}
                        Some(_) => voters.push(*node_id),
                    }
                    true
                }
                _ => {
                    // `ChangeMembership` names voters only: a learner would stay.
                    if member.is_some_and(|m| m.role == pb::MemberRole::Learner as i32) {
                        bail!("node {node_id} is a learner; removing learners is not supported");
                    }
                    // Not a member (already removed, by a repeated command): the voters stay
                    // as they are, and the node proposes nothing and says so.
                    voters.retain(|v| v != node_id);
                    if voters.is_empty() {
                        bail!("node {node_id} is the last voter");
                    }
                    false
                }
            };
            client.change_membership(&voters, retain).await?
        }
    };
    print_or_json(
        cli,
        json!({"log_index": reply.log_index, "changed": reply.changed, "members": reply.members.iter().map(member_json).collect::<Vec<_>>()}),
        || {
            format!(
                "members at log index {}{}: {}",
                reply.log_index,
                if reply.changed {
                    ""
                } else {
                    " (already in force, nothing changed)"
                },
                members_line(&reply.members)
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
