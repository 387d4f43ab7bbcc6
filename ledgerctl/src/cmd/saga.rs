//! `ledgerctl saga`: list open or stuck sagas, show one, compensate one.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::cli::{Cli, SagaCmd};
use crate::output::{
    investment_json, investment_line, investment_status, print_or_json, saga_step,
};

pub async fn run(cli: &Cli, cmd: &SagaCmd) -> Result<()> {
    let client = cli.client().await?;
    let investment = match cmd {
        SagaCmd::List {
            stuck,
            older_than_s,
            limit,
        } => {
            let reply = if *stuck {
                client
                    .list_sagas(Some(Duration::from_secs(*older_than_s)), true, *limit)
                    .await?
            } else {
                client.list_sagas(None, false, *limit).await?
            };
            if cli.json {
                let list: Vec<_> = reply.sagas.iter().map(investment_json).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"open_total": reply.open_total, "now_ms": reply.now_ms, "sagas": list})
                    )?
                );
            } else {
                println!(
                    "{:<36} {:<9} {:<9} {:>8} {:>8} {:>8}  last error",
                    "request", "status", "step", "attempts", "executor", "age s"
                );
                for inv in &reply.sagas {
                    println!(
                        "{:<36} {:<9} {:<9} {:>8} {:>8} {:>8}  {}",
                        inv.request_id,
                        investment_status(inv),
                        saga_step(inv),
                        inv.attempts,
                        inv.executor.map_or("-".to_owned(), |e| e.to_string()),
                        reply.now_ms.saturating_sub(inv.decided_at_ms) / 1000,
                        inv.last_error
                    );
                }
                println!(
                    "{} shown, {} open in all{}",
                    reply.sagas.len(),
                    reply.open_total,
                    if *stuck {
                        " (stuck: old or failing)"
                    } else {
                        ""
                    }
                );
            }
            return Ok(());
        }
        SagaCmd::Show { request_id } => client.investment(request_id).await?,
        SagaCmd::Compensate { request_id, reason } => {
            client.compensate_saga(request_id, reason).await?
        }
    };
    print_or_json(cli, investment_json(&investment), || {
        investment_line(&investment)
    })
}
