//! `ledgerctl deal`: create, close, show, list, export, verify, archive.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ledger_client::pb;
use serde_json::json;

use crate::cli::{Cli, DealCmd};
use crate::export;
use crate::output::{deal_json, deal_line, print_or_json};

async fn archive(
    cli: &Cli,
    deal_id: &str,
    export: Option<&Path>,
    receipt_head: Option<&(u64, String)>,
) -> Result<()> {
    let (deal_seq, hash) = match (export, receipt_head) {
        (Some(file), _) => {
            let verified = export::verify(file, None)
                .with_context(|| format!("{} does not verify", file.display()))?;
            if verified.deal_id != deal_id {
                bail!(
                    "{} is an export of deal {:?}, not {deal_id:?}",
                    file.display(),
                    verified.deal_id
                );
            }
            (verified.head.deal_seq, verified.head.hash.to_vec())
        }
        (None, Some((seq, hex))) => (*seq, export::hash_bytes(hex)?),
        (None, None) => bail!("give --export FILE or --receipt-head SEQ:HASH"),
    };
    let client = cli.client().await?;
    let reply = client
        .archive_deal(deal_id, pb::Receipt { deal_seq, hash })
        .await?;
    let head = reply.receipt_head.clone().unwrap_or_default();
    let head = format!("{}:{}", head.deal_seq, export::hex(&head.hash));
    print_or_json(
        cli,
        json!({"deal_id": reply.deal_id, "archived": reply.archived, "receipt_head": head,
               "log_index": reply.log_index, "confirmed_count": reply.confirmed_count,
               "confirmed_amount": reply.confirmed_amount}),
        || {
            format!(
                "deal {} archived{} at log index {} (receipt head {head}; {} confirmed, {})",
                reply.deal_id,
                if reply.archived { "" } else { " already" },
                reply.log_index,
                reply.confirmed_count,
                reply.confirmed_amount
            )
        },
    )
}

pub async fn run(cli: &Cli, cmd: &DealCmd) -> Result<()> {
    if let DealCmd::Verify { file, receipt } = cmd {
        let verified = export::verify(file, receipt.clone())
            .with_context(|| format!("{} does not verify", file.display()))?;
        let head = format!("{}:{}", verified.head.deal_seq, verified.head.hash_hex());
        let again = &verified.redecided;
        return print_or_json(
            cli,
            json!({"verified": true, "decisions": verified.decisions, "receipt_head": head,
                   "redecided": again.decisions,
                   "admitted_from_waitlist": again.admitted_from_waitlist}),
            || {
                format!(
                    "verified: {} decisions, receipt head {head}; {} decided again by the \
                     rules as recorded, {} admissions from the waitlist where recorded",
                    verified.decisions, again.decisions, again.admitted_from_waitlist
                )
            },
        );
    }
    if let DealCmd::Archive {
        deal_id,
        export,
        receipt_head,
    } = cmd
    {
        return archive(cli, deal_id, export.as_deref(), receipt_head.as_ref()).await;
    }
    let client = cli.client().await?;
    let deal = match cmd {
        DealCmd::Create {
            deal_id,
            amount,
            max_investors,
            min_ticket,
            max_ticket,
            opens_in,
            closes_in,
            max_waitlist,
        } => {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let at = |d: &Option<Duration>| d.map(|d| now_ms + d.as_millis() as u64);
            client
                .create_deal(pb::CreateDealRequest {
                    deal_id: deal_id.clone(),
                    amount: amount.clone(),
                    max_investors: *max_investors,
                    min_ticket: min_ticket.clone(),
                    max_ticket: max_ticket.clone(),
                    opens_at_ms: at(opens_in),
                    closes_at_ms: at(closes_in),
                    max_waitlist: *max_waitlist,
                })
                .await?
        }
        DealCmd::Close { deal_id } => client.close_deal(deal_id).await?,
        DealCmd::Export { deal_id, out } => {
            let (deal, decisions) = client.export_deal(deal_id).await?;
            let manifest = export::write(out, &deal, &decisions)?;
            return print_or_json(
                cli,
                json!({"file": out, "decisions": manifest.decisions,
                       "receipt_head": manifest.receipt_head}),
                || {
                    format!(
                        "{} decisions of {deal_id} written to {} (receipt head {}:{})",
                        manifest.decisions,
                        out.display(),
                        manifest.receipt_head.deal_seq,
                        manifest.receipt_head.hash
                    )
                },
            );
        }
        DealCmd::Verify { .. } | DealCmd::Archive { .. } => unreachable!("handled above"),
        DealCmd::Show { deal_id } => client.deal(deal_id).await?,
        DealCmd::List => {
            let deals = client.deals().await?;
            if cli.json {
                let list: Vec<_> = deals.iter().map(deal_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for deal in &deals {
                    println!("{}", deal_line(deal));
                }
                println!("{} deal(s)", deals.len());
            }
            return Ok(());
        }
    };
    print_or_json(cli, deal_json(&deal), || deal_line(&deal))
}
