//! One Markdown row per run, from its report folder: what docs/JEPSEN.md tabulates.

use std::path::Path;

use anyhow::{Context, Result};

use crate::check::{Overall, Verdict, Verdicts};
use crate::report::Stats;

/// The table's header.
pub const HEADER: &str = "| nemesis | seed | s | submits ok / fail / info | p50 / p99 ms healthy | p50 / p99 ms in faults | leader changes | membership changes | snapshot installs | confirmed / cancelled / pending | charges / refunds / voids / dup. | log time drift s | verdicts |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|";

fn read<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<T> {
    let bytes = std::fs::read(dir.join(name)).with_context(|| format!("read {name}"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parse {name}"))
}

/// The row of the run in `dir`.
pub fn row(dir: &Path) -> Result<String> {
    let config: serde_json::Value = read(dir, "config.json")?;
    let stats: Stats = read(dir, "stats.json")?;
    let verdicts: Verdicts = read(dir, "verdicts.json")?;
    let summary = &verdicts.summary;
    let money = summary.money.clone().unwrap_or_default();
    let cancelled: u64 = summary.cancelled.values().sum();
    let checks = match verdicts.overall {
        Overall::Valid => format!("all {} valid", verdicts.checks.len()),
        _ => verdicts
            .checks
            .iter()
            .filter(|c| !matches!(c.verdict, Verdict::Valid))
            .map(|c| match &c.verdict {
                Verdict::Invalid { total, .. } => format!("{:?} INVALID ({total})", c.name),
                Verdict::Unknown { reason } => format!("{:?} unknown ({reason})", c.name),
                Verdict::Valid => String::new(),
            })
            .collect::<Vec<_>>()
            .join("; "),
    };
    Ok(format!(
        "| {} | {} | {} | {} / {} / {} | {:.1} / {:.1} | {:.1} / {:.1} | {} | {} | {} | {} / {} / {} | {} / {} / {} / {} | {:.1} | {} |",
        config["family"].as_str().unwrap_or("?").to_lowercase(),
        config["seed"],
        config["time"]["secs"],
        stats.submits.ok,
        stats.submits.fail,
        stats.submits.info,
        stats.latency_healthy.p50_ms,
        stats.latency_healthy.p99_ms,
        stats.latency_in_faults.p50_ms,
        stats.latency_in_faults.p99_ms,
        stats.leader_changes,
        stats.membership_changes,
        stats.snapshot_installs,
        summary.confirmed,
        cancelled,
        summary.pending,
        money.charges,
        money.refunds,
        money.voids,
        money.duplicate_charges,
        stats.log_time_drift_max_ms as f64 / 1_000.0,
        checks,
    ))
}
