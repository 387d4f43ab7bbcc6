//! `ledgerctl snapshot`: make a node build a snapshot now.

use anyhow::{Context, Result};
use ledger_client::Client;
use serde_json::json;

use crate::cli::Cli;
use crate::output::print_or_json;

/// The address of member `node_id`, from the leader's membership.
async fn member_addr(client: &Client, node_id: u64) -> Result<String> {
    let status = client.status().await?;
    status
        .members
        .iter()
        .find(|m| m.node_id == node_id)
        .map(|m| m.addr.clone())
        .with_context(|| format!("node {node_id} is not a member"))
}

/// Makes node `node_id` build a snapshot now.
pub async fn run(cli: &Cli, node_id: u64) -> Result<()> {
    let client = cli.client().await?;
    let addr = member_addr(&client, node_id).await?;
    let index = client.trigger_snapshot(&addr).await?;
    print_or_json(
        cli,
        json!({"node_id": node_id, "snapshot_index": index}),
        || format!("node {node_id} has a snapshot at index {index}"),
    )
}
