//! `ledgerctl deal export` and `deal verify`: a deal's decisions as JSON lines with a manifest,
//! and the check of their receipt chain (`docs/receipts.md`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ledger_client::pb;
use ledger_state_machine::receipts::DecisionRecord;
use ledger_state_machine::{Money, Receipt, RejectReason, RequestId, Verdict};
use serde::{Deserialize, Serialize};

use crate::output::deal_json;

/// What the manifest's `format` says.
pub const EXPORT_FORMAT: &str = "admission-ledger deal export 1";

/// One decision of an export, a line of the JSON lines file.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportLine {
    pub deal_seq: u64,
    pub request_id: String,
    pub deal_id: String,
    pub user_id: String,
    pub amount: String,
    pub waitlist: bool,
    pub waitlist_ttl_ms: Option<u64>,
    pub log_index: u64,
    pub offset: u32,
    pub decided_at_ms: u64,
    /// The decision as made: PENDING (admitted), REJECTED or WAITLISTED.
    pub verdict: String,
    /// For a REJECTED verdict, why.
    pub reject_reason: Option<String>,
    /// The receipt hash, 64 hex digits.
    pub receipt: String,
    /// What became of it since (not covered by the receipt).
    pub status: String,
    pub admitted_at: Option<(u64, u32)>,
    pub cancelled_at: Option<(u64, u32)>,
    /// Where a waitlisted request left the waitlist without a seat.
    #[serde(default)]
    pub waitlist_ended_at: Option<(u64, u32)>,
}

/// The manifest written beside the lines, `FILE.manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub deal: serde_json::Value,
    pub decisions: u64,
    pub receipt_head: HeadJson,
    /// BLAKE3 of the lines file, hex.
    pub lines_blake3: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeadJson {
    pub deal_seq: u64,
    pub hash: String,
}

/// The 32 bytes of a hash written as 64 hex digits (as [`parse_receipt`] checked).
pub fn hash_bytes(hex: &str) -> Result<Vec<u8>> {
    let hash = blake3::Hash::from_hex(hex).map_err(|e| anyhow::anyhow!("{hex:?}: {e}"))?;
    Ok(hash.as_bytes().to_vec())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn manifest_path(lines: &Path) -> PathBuf {
    let mut name = lines.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str) -> String {
    E::try_from(value).map(name).unwrap_or("?").to_owned()
}

fn line_of(inv: &pb::Investment) -> Result<ExportLine> {
    let receipt = inv
        .receipt
        .as_ref()
        .with_context(|| format!("{} has no receipt", inv.request_id))?;
    let status = pb::InvestmentStatus::try_from(inv.status).unwrap_or_default();
    let (verdict, reject_reason) = if inv.waitlisted {
        ("WAITLISTED", None)
    } else if status == pb::InvestmentStatus::Rejected {
        let reason = enum_name(inv.reject_reason, |r: pb::RejectReason| r.as_str_name());
        ("REJECTED", Some(reason))
    } else {
        ("PENDING", None)
    };
    Ok(ExportLine {
        deal_seq: receipt.deal_seq,
        request_id: inv.request_id.clone(),
        deal_id: inv.deal_id.clone(),
        user_id: inv.user_id.clone(),
        amount: inv.amount.clone(),
        waitlist: inv.waitlist,
        waitlist_ttl_ms: inv.waitlist_ttl_ms,
        log_index: inv.log_index,
        offset: inv.offset,
        decided_at_ms: inv.decided_at_ms,
        verdict: verdict.to_owned(),
        reject_reason,
        receipt: hex(&receipt.hash),
        status: status.as_str_name().to_owned(),
        admitted_at: (inv.admitted_log_index != 0)
            .then_some((inv.admitted_log_index, inv.admitted_offset)),
        cancelled_at: (inv.cancelled_log_index != 0)
            .then_some((inv.cancelled_log_index, inv.cancelled_offset)),
        waitlist_ended_at: (inv.waitlist_ended_log_index != 0)
            .then_some((inv.waitlist_ended_log_index, inv.waitlist_ended_offset)),
    })
}

/// Writes `out` (JSON lines) and `out.manifest.json`; returns the manifest.
pub fn write(out: &Path, deal: &pb::Deal, decisions: &[pb::Investment]) -> Result<Manifest> {
    let mut text = String::new();
    for inv in decisions {
        text += &serde_json::to_string(&line_of(inv)?)?;
        text.push('\n');
    }
    std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    let head = deal.receipt_head.clone().unwrap_or_default();
    let manifest = Manifest {
        format: EXPORT_FORMAT.to_owned(),
        deal: deal_json(deal),
        decisions: decisions.len() as u64,
        receipt_head: HeadJson {
            deal_seq: head.deal_seq,
            hash: hex(&head.hash),
        },
        lines_blake3: blake3::hash(text.as_bytes()).to_hex().to_string(),
    };
    let path = manifest_path(out);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(manifest)
}

/// The result of a verification that could be carried out.
pub struct Verified {
    /// What deciding every request again found.
    pub redecided: crate::redecide::Redecided,
    /// The deal the manifest names.
    pub deal_id: String,
    pub decisions: u64,
    pub head: Receipt,
}

pub fn verdict_of(line: &ExportLine) -> Result<Verdict> {
    Ok(
        match (line.verdict.as_str(), line.reject_reason.as_deref()) {
            ("PENDING", None) => Verdict::Pending,
            ("WAITLISTED", None) => Verdict::Waitlisted,
            ("REJECTED", Some(reason)) => Verdict::Rejected(reject_reason(reason)?),
            (verdict, reason) => bail!("unknown verdict {verdict} ({reason:?})"),
        },
    )
}

fn reject_reason(name: &str) -> Result<RejectReason> {
    Ok(match name {
        "DEAL_NOT_FOUND" => RejectReason::DealNotFound,
        "DEAL_CLOSED" => RejectReason::DealClosed,
        "TICKET_OUT_OF_RANGE" => RejectReason::TicketOutOfRange,
        "DUPLICATE_INVESTOR" => RejectReason::DuplicateInvestor,
        "INVESTOR_LIMIT_REACHED" => RejectReason::InvestorLimitReached,
        "AMOUNT_EXCEEDS_REMAINING" => RejectReason::AmountExceedsRemaining,
        "DEAL_NOT_OPEN" => RejectReason::DealNotOpen,
        "WAITLIST_CLOSED" => RejectReason::WaitlistClosed,
        other => bail!("unknown reject reason {other}"),
    })
}

/// Recomputes the chain over the lines of `lines` and checks it against every line's receipt,
/// the manifest's head and, if given, one receipt `(deal_seq, hash)` an investor holds.
pub fn verify(lines: &Path, receipt: Option<(u64, String)>) -> Result<Verified> {
    let manifest_file = manifest_path(lines);
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(&manifest_file)
            .with_context(|| format!("reading {}", manifest_file.display()))?,
    )
    .with_context(|| format!("{} is not a manifest", manifest_file.display()))?;
    if manifest.format != EXPORT_FORMAT {
        bail!("unknown export format {:?}", manifest.format);
    }
    let text =
        std::fs::read_to_string(lines).with_context(|| format!("reading {}", lines.display()))?;
    let mut head = Receipt::GENESIS;
    let mut held = receipt.clone();
    let mut lines = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line: ExportLine =
            serde_json::from_str(raw).with_context(|| format!("line {}: not a decision", n + 1))?;
        let expected_seq = head.deal_seq + 1;
        if line.deal_seq != expected_seq {
            bail!(
                "line {}: decision {} where decision {expected_seq} should be: one was removed, \
                 added or moved",
                n + 1,
                line.deal_seq
            );
        }
        let request_id = RequestId::parse(&line.request_id)
            .map_err(|e| anyhow::anyhow!("line {}: request_id: {e}", n + 1))?;
        let amount = Money::parse(&line.amount)
            .map_err(|e| anyhow::anyhow!("line {}: amount: {e}", n + 1))?;
        let record = DecisionRecord {
            deal_seq: line.deal_seq,
            request_id,
            deal_id: &line.deal_id,
            user_id: &line.user_id,
            amount,
            waitlist_ttl_ms: line.waitlist.then(|| line.waitlist_ttl_ms.unwrap_or(0)),
            log_index: line.log_index,
            offset: line.offset,
            decided_at_ms: line.decided_at_ms,
            verdict: verdict_of(&line).with_context(|| format!("line {}", n + 1))?,
        };
        head = head.next(&record.canonical_bytes());
        if head.hash_hex() != line.receipt {
            bail!(
                "line {}: decision {} ({}) does not match its receipt: it, or a decision before \
                 it, was changed or reordered",
                n + 1,
                line.deal_seq,
                line.request_id
            );
        }
        if held.as_ref().is_some_and(|(seq, _)| *seq == line.deal_seq) {
            let (_, hash) = held.take().unwrap_or_default();
            if hash != line.receipt {
                bail!(
                    "receipt {}:{hash} is not in this chain: decision {} has {}",
                    line.deal_seq,
                    line.deal_seq,
                    line.receipt
                );
            }
        }
        lines.push(line);
    }
    let found = HeadJson {
        deal_seq: head.deal_seq,
        hash: head.hash_hex(),
    };
    if found != manifest.receipt_head || head.deal_seq != manifest.decisions {
        bail!(
            "the decisions end at {}:{}, but the manifest's head is {}:{} ({} decisions): \
             decisions are missing at the end, or were added",
            found.deal_seq,
            found.hash,
            manifest.receipt_head.deal_seq,
            manifest.receipt_head.hash,
            manifest.decisions
        );
    }
    if let Some((seq, _)) = held {
        bail!(
            "receipt {seq} is beyond the {} decisions of this export",
            head.deal_seq
        );
    }
    if blake3::hash(text.as_bytes()).to_hex().as_str() != manifest.lines_blake3 {
        bail!("the lines were changed after the export (checksum differs from the manifest)");
    }
    let redecided = crate::redecide::check(&manifest.deal, &lines)
        .context("the decisions do not follow the rules")?;
    Ok(Verified {
        redecided,
        deal_id: manifest.deal["deal_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        decisions: head.deal_seq,
        head,
    })
}

/// Parses `SEQ:HASH`.
pub fn parse_receipt(text: &str) -> Result<(u64, String), String> {
    let (seq, hash) = text.split_once(':').ok_or("expected SEQ:HASH")?;
    let seq = seq.parse().map_err(|_| "SEQ must be a number")?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("HASH must be 64 hex digits".into());
    }
    Ok((seq, hash.to_ascii_lowercase()))
}
