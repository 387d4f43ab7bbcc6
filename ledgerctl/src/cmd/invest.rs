//! `ledgerctl invest`: submit, withdraw, show, trace, watch.

use std::time::Duration;

use anyhow::Result;
use ledger_client::Submission;

use crate::cli::{Cli, InvestCmd};
use crate::output::{investment_json, investment_line, print_or_json, trace_json, trace_text};

pub async fn run(cli: &Cli, cmd: &InvestCmd) -> Result<()> {
    let client = cli.client().await?;
    let investment = match cmd {
        InvestCmd::Submit {
            deal,
            user,
            amount,
            request_id,
            waitlist,
            waitlist_ttl,
        } => {
            let mut submission = Submission::new(deal.clone(), user.clone(), amount.clone());
            if let Some(id) = request_id {
                submission.request_id = id.clone();
            }
            if *waitlist {
                submission = submission.waitlisted(waitlist_ttl.map(|d| d.as_millis() as u64));
            }
            client.submit(&submission).await?.investment
        }
        InvestCmd::Withdraw { request_id } => client.withdraw(request_id).await?,
        InvestCmd::Show { request_id } => client.investment(request_id).await?,
        InvestCmd::Trace { request_id } => {
            let trace = client.trace_investment(request_id).await?;
            return print_or_json(cli, trace_json(&trace), || trace_text(&trace));
        }
        InvestCmd::Watch {
            request_id,
            timeout_s,
        } => {
            let current = client.investment(request_id).await?;
            if !cli.json {
                println!("{}", investment_line(&current));
            }
            if ledger_client::is_final(&current) {
                current
            } else {
                client
                    .wait_final(request_id, Duration::from_secs(*timeout_s))
                    .await?
            }
        }
    };
    print_or_json(cli, investment_json(&investment), || {
        investment_line(&investment)
    })
}
