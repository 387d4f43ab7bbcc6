//! `ledgerctl cluster status` and `cluster init`.

use std::time::Duration;

use anyhow::{Context, Result};
use ledger_client::Client;
use serde_json::json;

use crate::cli::Cli;
use crate::output::{members_line, status_json};

pub async fn status(cli: &Cli) -> Result<()> {
    // Not through `Client::connect`: status must work with no leader at all.
    let mut config = cli.config()?;
    config.attempt_timeout = Duration::from_secs(2);
    let client = Client::unconnected(config)?;
    let rows = client.statuses().await;
    if cli.json {
        let items: Vec<_> = rows
            .iter()
            .map(|(addr, status)| match status {
                Ok(s) => status_json(addr, s),
                Err(error) => json!({"endpoint": addr, "error": error.to_string()}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    println!(
        "{:<22} {:>4} {:<9} {:>6} {:>5} {:>9} {:>9}  {:<16}  members",
        "endpoint", "id", "role", "leader", "term", "applied", "snapshot", "digest"
    );
    for (addr, status) in rows {
        match status {
            Ok(s) => println!(
                "{addr:<22} {:>4} {:<9} {:>6} {:>5} {:>9} {:>9}  {:<16}  {}",
                s.node_id,
                s.role,
                s.leader_id.map_or("-".to_owned(), |l| l.to_string()),
                s.term,
                s.applied_index,
                s.snapshot_index,
                &s.state_digest[..16.min(s.state_digest.len())],
                members_line(&s.members)
            ),
            Err(error) => println!("{addr:<22} unreachable: {error}"),
        }
    }
    Ok(())
}

/// `--members` (`id=host:port` each) as `(id, address)` pairs, in the order given.
pub fn parse_members(members: &[String]) -> Result<Vec<(u64, String)>> {
    let mut parsed = Vec::new();
    for member in members {
        let (id, addr) = member
            .split_once('=')
            .with_context(|| format!("{member:?} is not id=host:port"))?;
        let id: u64 = id.parse().with_context(|| format!("node id {id:?}"))?;
        parsed.push((id, addr.to_owned()));
    }
    Ok(parsed)
}

pub async fn init(cli: &Cli, members: &[String]) -> Result<()> {
    let parsed = parse_members(members)?;
    Client::unconnected(cli.config()?)?.init(&parsed).await?;
    println!("initialized");
    Ok(())
}
