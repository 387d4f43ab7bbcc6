//! `ledgerctl member add-learner | promote | remove`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use ledger_client::ClientError;
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
        MemberCmd::Promote { node_id } => client.promote(*node_id).await.map_err(refusal)?,
        MemberCmd::Remove { node_id } => client.remove_member(*node_id).await.map_err(refusal)?,
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

/// A voter set the client refused to compute is a plain failure of the command (`--json` code
/// `ERROR`, like any other refusal of ours), not an error the cluster or the transport gave.
fn refusal(error: ClientError) -> anyhow::Error {
    match error {
        ClientError::VoterSet(refused) => anyhow::Error::new(refused),
        other => other.into(),
    }
}
