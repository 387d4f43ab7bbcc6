//! The run's report: counts, latency inside and outside fault windows, what the cluster went
//! through (elections, membership changes, snapshot installs), and a plot of throughput and
//! latency over time with the fault windows shaded.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::history::{Call, Op, OpResult};
use crate::nemesis::Fault;
use crate::observer::StatusSample;

/// A fault as it was applied.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultRecord {
    /// When it was applied, µs since the start.
    pub start_us: u64,
    /// When it was healed.
    pub end_us: u64,
    /// What was scheduled.
    pub fault: Fault,
    /// What it hit.
    pub description: String,
    /// Why it could not be applied, if it could not.
    pub error: Option<String>,
}

/// Operation counts of one kind.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Invoked.
    pub invoked: u64,
    /// Definite answer.
    pub ok: u64,
    /// Definite failure.
    pub fail: u64,
    /// Outcome unknown.
    pub info: u64,
}

/// Latency percentiles of successful operations, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    /// How many operations.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Worst.
    pub max_ms: f64,
}

/// What the report says besides the checker's verdicts. Fields missing from an older run's
/// `stats.json` read as zero.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Submits.
    pub submits: Counts,
    /// Linearizable deal reads.
    pub reads: Counts,
    /// `Withdraw` operations.
    pub withdraws: Counts,
    /// Submit latency while a fault was active.
    pub latency_in_faults: Latency,
    /// Submit latency while healthy.
    pub latency_healthy: Latency,
    /// Distinct terms in which some node led.
    pub leader_terms: u64,
    /// Times the leader changed (as seen by the observer).
    pub leader_changes: u64,
    /// Membership changes the nemesis made.
    pub membership_changes: u64,
    /// "snapshot installed" lines in the nodes' logs.
    pub snapshot_installs: u64,
    /// "snapshot built" lines in the nodes' logs.
    pub snapshot_builds: u64,
    /// Faults that could not be applied.
    pub faults_failed: u64,
    /// The largest distance seen between a node's log time and the harness's real clock, ms
    /// (log time is the leader's stamp, so some lag is normal; ten minutes is a skewed clock
    /// leaking into it).
    pub log_time_drift_max_ms: u64,
}

fn in_window(at_us: u64, faults: &[FaultRecord]) -> bool {
    faults
        .iter()
        .any(|f| f.error.is_none() && f.start_us <= at_us && at_us < f.end_us)
}

fn latency(histogram: &Histogram<u64>) -> Latency {
    let ms = |us: u64| us as f64 / 1_000.0;
    Latency {
        count: histogram.len(),
        p50_ms: ms(histogram.value_at_quantile(0.5)),
        p90_ms: ms(histogram.value_at_quantile(0.9)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        max_ms: ms(histogram.max()),
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Counts what happened in the run.
pub fn stats(
    history: &[Op],
    faults: &[FaultRecord],
    samples: &[StatusSample],
    dir: &Path,
) -> Stats {
    let mut stats = Stats::default();
    let (mut inside, mut outside) = (histogram(), histogram());
    for op in history {
        let counts = match op.call {
            Call::Submit { .. } => &mut stats.submits,
            Call::ReadDeal { .. } => &mut stats.reads,
            Call::Withdraw { .. } => &mut stats.withdraws,
        };
        counts.invoked += 1;
        match op.result {
            OpResult::Ok(_) => counts.ok += 1,
            OpResult::Fail { .. } => counts.fail += 1,
            OpResult::Info { .. } => counts.info += 1,
        }
        if matches!(op.call, Call::Submit { .. }) && matches!(op.result, OpResult::Ok(_)) {
            let took = (op.complete_us - op.invoke_us).max(1);
            let target = if in_window(op.invoke_us, faults) {
                &mut inside
            } else {
                &mut outside
            };
            let _ = target.record(took);
        }
    }
    stats.latency_in_faults = latency(&inside);
    stats.latency_healthy = latency(&outside);
    let leaders: Vec<(u64, u64)> = samples
        .iter()
        .filter(|s| s.role == "leader")
        .map(|s| (s.term, s.node_id))
        .collect();
    stats.leader_terms = leaders
        .iter()
        .map(|(t, _)| *t)
        .collect::<BTreeSet<_>>()
        .len() as u64;
    let mut ordered = leaders.clone();
    ordered.sort_unstable();
    ordered.dedup();
    stats.leader_changes = ordered.len().saturating_sub(1) as u64;
    stats.membership_changes = faults
        .iter()
        .filter(|f| f.error.is_none())
        .map(|f| {
            ["added learner", "promoted", "removed"]
                .iter()
                .map(|word| f.description.matches(word).count() as u64)
                .sum::<u64>()
        })
        .sum();
    stats.faults_failed = faults.iter().filter(|f| f.error.is_some()).count() as u64;
    stats.log_time_drift_max_ms = samples
        .iter()
        .filter_map(|s| {
            s.log_time_ms
                .filter(|&t| t > 0)
                .map(|t| t.abs_diff(s.wall_ms))
        })
        .max()
        .unwrap_or(0);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("node-") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            stats.snapshot_installs += text.matches("snapshot installed").count() as u64;
            stats.snapshot_builds += text.matches("snapshot built").count() as u64;
        }
    }
    stats
}

/// One second of the run, for the plot.
#[derive(Clone, Debug, Default)]
struct Second {
    ok: u64,
    fail: u64,
    info: u64,
    latencies_us: Vec<u64>,
}

fn seconds(history: &[Op], total_s: usize) -> Vec<Second> {
    let mut seconds = vec![Second::default(); total_s + 1];
    for op in history {
        let Some(second) = seconds.get_mut((op.complete_us / 1_000_000) as usize) else {
            continue;
        };
        match op.result {
            OpResult::Ok(_) => {
                second.ok += 1;
                if matches!(op.call, Call::Submit { .. }) {
                    second.latencies_us.push(op.complete_us - op.invoke_us);
                }
            }
            OpResult::Fail { .. } => second.fail += 1,
            OpResult::Info { .. } => second.info += 1,
        }
    }
    seconds
}

fn quantile(sorted: &[u64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[at] as f64 / 1_000.0)
}

/// (second's middle, p50, p99, max) in ms.
type SecondLatency = (f64, Option<f64>, Option<f64>, Option<f64>);

const OK: RGBColor = RGBColor(44, 160, 44);
const FAIL: RGBColor = RGBColor(214, 39, 40);
const INFO: RGBColor = RGBColor(255, 127, 14);
const P50: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(148, 103, 189);
const MAX: RGBColor = RGBColor(140, 86, 75);
const SHADE: RGBColor = RGBColor(220, 220, 220);

fn draw_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("plot: {e}")
}

/// Writes an SVG: operations per second by outcome (top) and submit latency p50/p99/max per
/// second on a log scale (bottom), fault windows shaded grey in both.
pub fn plot(path: &Path, title: &str, history: &[Op], faults: &[FaultRecord]) -> Result<()> {
    let total_s =
        (history.iter().map(|op| op.complete_us).max().unwrap_or(0) / 1_000_000) as usize + 1;
    let seconds = seconds(history, total_s);
    let x_max = total_s as f64;
    let root = SVGBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let body = root.titled(title, ("sans-serif", 24)).map_err(draw_err)?;
    let half = body.dim_in_pixel().1 / 2;
    let (top, bottom) = body.split_vertically(half);
    let windows: Vec<(f64, f64)> = faults
        .iter()
        .filter(|f| f.error.is_none())
        .map(|f| (f.start_us as f64 / 1e6, f.end_us as f64 / 1e6))
        .collect();

    let ops_max = seconds
        .iter()
        .map(|s| s.ok + s.fail + s.info)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..ops_max)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("operations / s")
        .draw()
        .map_err(draw_err)?;
    chart
        .draw_series(
            windows
                .iter()
                .map(|&(a, b)| Rectangle::new([(a, 0.0), (b, ops_max)], SHADE.filled())),
        )
        .map_err(draw_err)?;
    for (label, color, pick) in [
        ("ok", OK, (|s: &Second| s.ok) as fn(&Second) -> u64),
        ("fail", FAIL, |s: &Second| s.fail),
        ("info (unknown)", INFO, |s: &Second| s.info),
    ] {
        chart
            .draw_series(LineSeries::new(
                seconds
                    .iter()
                    .enumerate()
                    .map(|(t, s)| (t as f64 + 0.5, pick(s) as f64)),
                color.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)?;

    let per_second: Vec<SecondLatency> = seconds
        .iter()
        .enumerate()
        .map(|(t, s)| {
            let mut sorted = s.latencies_us.clone();
            sorted.sort_unstable();
            (
                t as f64 + 0.5,
                quantile(&sorted, 0.5),
                quantile(&sorted, 0.99),
                sorted.last().map(|&m| m as f64 / 1_000.0),
            )
        })
        .collect();
    let lat_max = per_second
        .iter()
        .filter_map(|(_, _, _, m)| *m)
        .fold(10.0f64, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, (0.1f64..lat_max).log_scale())
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("submit latency, ms (log)")
        .draw()
        .map_err(draw_err)?;
    chart
        .draw_series(
            windows
                .iter()
                .map(|&(a, b)| Rectangle::new([(a, 0.1), (b, lat_max)], SHADE.filled())),
        )
        .map_err(draw_err)?;
    for (label, color, index) in [("p50", P50, 1usize), ("p99", P99, 2), ("max", MAX, 3)] {
        let points: Vec<(f64, f64)> = per_second
            .iter()
            .filter_map(|p| {
                let value = match index {
                    1 => p.1,
                    2 => p.2,
                    _ => p.3,
                };
                value.map(|v| (p.0, v.max(0.1)))
            })
            .collect();
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 2, color.filled())),
            )
            .map_err(draw_err)?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)?;
    Ok(())
}
