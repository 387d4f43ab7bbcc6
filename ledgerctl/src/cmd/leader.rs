//! `ledgerctl leader transfer`.

use anyhow::Result;
use serde_json::json;

use crate::cli::Cli;
use crate::output::print_or_json;

/// Hands leadership to voter `node_id`.
pub async fn transfer(cli: &Cli, node_id: u64) -> Result<()> {
    let client = cli.client().await?;
    let leader = client.transfer_leader(node_id).await?;
    print_or_json(cli, json!({"leader_id": leader}), || {
        format!("node {leader} leads")
    })
}
