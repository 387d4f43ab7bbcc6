//! `ledgerctl user show`.

use anyhow::Result;
use ledger_client::pb;
use serde_json::json;

use crate::cli::Cli;
use crate::output::{investment_json, investment_line};

/// A user's pending, confirmed and waitlisted investments.
pub async fn show(cli: &Cli, user_id: &str) -> Result<()> {
    let user = cli.client().await?.user(user_id).await?;
    if cli.json {
        let list = |l: &[pb::Investment]| l.iter().map(investment_json).collect::<Vec<_>>();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"user_id": user.user_id, "pending": list(&user.pending), "confirmed": list(&user.confirmed), "waitlisted": list(&user.waitlisted)})
            )?
        );
    } else {
        println!(
            "{}: {} pending, {} confirmed, {} waitlisted",
            user.user_id,
            user.pending.len(),
            user.confirmed.len(),
            user.waitlisted.len()
        );
        for inv in user
            .pending
            .iter()
            .chain(&user.confirmed)
            .chain(&user.waitlisted)
        {
            println!("  {}", investment_line(inv));
        }
    }
    Ok(())
}
