//! The verdicts as a plain-text report: the table of checks, the violations kept, the notes,
//! and the summary.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::summary::{OpCounts, Summary};
use super::verdict::{CheckResult, Verdict, Verdicts};

/// A human-readable report of the verdicts.
pub fn render_text(verdicts: &Verdicts) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = write_report(&mut text, verdicts);
    text
}

fn write_report(out: &mut String, verdicts: &Verdicts) -> std::fmt::Result {
    writeln!(out, "overall: {}", verdicts.overall)?;
    writeln!(out)?;
    writeln!(out, "{:<20} {:<12} verdict", "check", "invariants")?;
    writeln!(out, "{:-<20} {:-<12} {:-<40}", "", "", "")?;
    for check in &verdicts.checks {
        writeln!(
            out,
            "{:<20} {:<12} {}",
            check.name.as_str(),
            check.invariants,
            verdict_cell(&check.verdict)
        )?;
    }
    write_violations(out, &verdicts.checks)?;
    write_notes(out, &verdicts.checks)?;
    write_summary(out, &verdicts.summary)
}

fn verdict_cell(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Valid => "valid".to_owned(),
        Verdict::Invalid { total, .. } => format!("INVALID ({total} violations)"),
        Verdict::Unknown { reason } => format!("unknown: {reason}"),
    }
}

fn write_violations(out: &mut String, checks: &[CheckResult]) -> std::fmt::Result {
    let invalid: Vec<_> = checks
        .iter()
        .filter_map(|c| match &c.verdict {
            Verdict::Invalid { violations, total } => Some((c.name, violations, *total)),
            _ => None,
        })
        .collect();
    if invalid.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nviolations")?;
    for (name, violations, total) in invalid {
        for violation in violations {
            writeln!(out, "  [{name}] {}", violation.message)?;
            if !violation.ops.is_empty() {
                writeln!(out, "      ops: {}", join(&violation.ops))?;
            }
            if !violation.request_ids.is_empty() {
                writeln!(out, "      requests: {}", violation.request_ids.join(", "))?;
            }
        }
        let hidden = total.saturating_sub(violations.len() as u64);
        if hidden > 0 {
            writeln!(out, "  [{name}] ... and {hidden} more")?;
        }
    }
    Ok(())
}

fn write_notes(out: &mut String, checks: &[CheckResult]) -> std::fmt::Result {
    let notes: Vec<_> = checks
        .iter()
        .filter_map(|c| c.note.as_ref().map(|note| (c.name, note)))
        .collect();
    if notes.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nnotes")?;
    for (name, note) in notes {
        writeln!(out, "  [{name}] {note}")?;
    }
    Ok(())
}

fn write_summary(out: &mut String, summary: &Summary) -> std::fmt::Result {
    writeln!(out, "\nsummary")?;
    writeln!(
        out,
        "  {:<10} {:>10} {:>10} {:>10} {:>10}",
        "ops", "invoked", "ok", "fail", "info"
    )?;
    write_ops(out, "submit", &summary.submits)?;
    write_ops(out, "read_deal", &summary.reads)?;
    write_ops(out, "withdraw", &summary.withdraws)?;
    writeln!(
        out,
        "  decisions: {} admitted ({} from a waitlist); rejected: {}; {} still waitlisted",
        summary.admitted,
        summary.admitted_from_waitlist,
        by_key(&summary.rejected),
        summary.waitlisted
    )?;
    writeln!(
        out,
        "  sagas: {} confirmed; cancelled: {}; {} still pending",
        summary.confirmed,
        by_key(&summary.cancelled),
        summary.pending
    )?;
    match &summary.money {
        Some(m) => writeln!(
            out,
            "  money: {} charges ({} declined), {} refunds, {} voids, {} documents ({} orphan), \
             {} duplicate charges, {} e-mails",
            m.charges,
            m.declined_charges,
            m.refunds,
            m.voids,
            m.documents,
            m.orphan_documents,
            m.duplicate_charges,
            m.emails
        )?,
        None => writeln!(out, "  money: no partners' audit")?,
    }
    if let Some(i) = &summary.indefinite {
        writeln!(
            out,
            "  indefinite submits: {} took effect, {} did not",
            i.took_effect, i.no_effect
        )?;
    }
    Ok(())
}

fn write_ops(out: &mut String, kind: &str, ops: &OpCounts) -> std::fmt::Result {
    writeln!(
        out,
        "  {kind:<10} {:>10} {:>10} {:>10} {:>10}",
        ops.invoked, ops.ok, ops.fail, ops.info
    )
}

fn by_key(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(key, n)| format!("{key} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn join(ops: &[u64]) -> String {
    ops.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
