//! SVG timeline of a demo run: what was decided, what settled and how fast, second by second.
//!
//! Rendering uses plotters' SVG backend without its `ttf` feature: the SVG backend writes text as
//! `<text>` elements and leaves the font to the viewer, so no system font library is needed.

use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Width and height of the picture, in pixels.
const SIZE: (u32, u32) = (1200, 800);

/// Log scale is used when the worst latency is more than this many times the typical p50:
/// beyond that a linear axis squashes p50 and p99 into the floor.
const LOG_SCALE_RATIO: f64 = 100.0;

// One colour per series, all seven distinct (Tableau 10).
const ADMITTED: RGBColor = RGBColor(44, 160, 44);
const REJECTED: RGBColor = RGBColor(214, 39, 40);
const CONFIRMED: RGBColor = RGBColor(31, 119, 180);
const CANCELLED: RGBColor = RGBColor(255, 127, 14);
const P50: RGBColor = RGBColor(148, 103, 189);
const P99: RGBColor = RGBColor(140, 86, 75);
const MAX: RGBColor = RGBColor(227, 119, 194);
const WAITLISTED: RGBColor = RGBColor(188, 189, 34);
const WAITLIST_LENGTH: RGBColor = RGBColor(23, 190, 207);

/// One second of a run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Second {
    /// Seconds since the start of the run (0, 1, 2, ...).
    pub t: u64,
    /// Requests decided in this second, by outcome.
    pub admitted: u64,
    pub rejected: u64,
    /// Admitted investments that reached their final state in this second.
    pub confirmed: u64,
    pub cancelled: u64,
    /// Requests decided WAITLISTED in this second.
    pub waitlisted: u64,
    /// The deal's waitlist length, as sampled during this second (None: not sampled).
    pub waitlist_length: Option<u64>,
    /// Submit latency of the requests decided in this second, in ms (None when none were decided).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// Why a plot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("nothing to plot: no seconds recorded")]
    Empty,
    #[error("drawing the plot: {0}")]
    Draw(String),
}

fn draw_err(e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// Writes an SVG of the run to `path`: two panels stacked vertically, sharing the time axis
/// (seconds). Top: decisions per second (admitted, rejected) and finals per second (confirmed,
/// cancelled) as lines, with a legend. Bottom: Submit latency p50 / p99 / max in ms per second,
/// log scale if max/p50 > 100 else linear, with a legend. Title given by `title`.
///
/// A second missing from `seconds` (a jump in `t`), or one without latencies, breaks that
/// series' line rather than bridging it; a lone point is drawn as a dot.
///
/// # Errors
/// [`PlotError::Empty`] for no seconds; [`PlotError::Draw`] when plotters fails, including
/// when the file cannot be written.
pub fn write_timeline_svg(path: &Path, title: &str, seconds: &[Second]) -> Result<(), PlotError> {
    if seconds.is_empty() {
        return Err(PlotError::Empty);
    }
    // Both panels get the same x range so their time axes line up; never an empty range.
    let x_max = seconds.iter().map(|s| s.t).max().unwrap_or(0).max(1);

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let body = root.titled(title, ("sans-serif", 28)).map_err(draw_err)?;
    let half = body.dim_in_pixel().1 / 2;
    let (top, bottom) = body.split_vertically(half);

    let counts = [
        count_series("admitted", ADMITTED, seconds, |s| s.admitted),
        count_series("rejected", REJECTED, seconds, |s| s.rejected),
        count_series("confirmed", CONFIRMED, seconds, |s| s.confirmed),
        count_series("cancelled", CANCELLED, seconds, |s| s.cancelled),
        count_series("waitlisted", WAITLISTED, seconds, |s| s.waitlisted),
        Series {
            label: "waitlist length",
            color: WAITLIST_LENGTH,
            points: seconds
                .iter()
                .map(|s| s.waitlist_length.map(|n| (s.t, n)))
                .collect(),
        },
    ];
    let count_max = seconds
        .iter()
        .flat_map(|s| {
            [
                s.admitted,
                s.rejected,
                s.confirmed,
                s.cancelled,
                s.waitlisted,
                s.waitlist_length.unwrap_or(0),
            ]
        })
        .max()
        .unwrap_or(0);
    // 10% headroom so the peak is not glued to the frame; at least 1 so the range is never empty.
    let count_top = count_max.saturating_add(count_max / 10).saturating_add(1);
    draw_panel(
        &top,
        "decisions and finals per second; waitlist length",
        None,
        "per second",
        x_max,
        0u64..count_top,
        &|v: &u64| v.to_string(),
        &counts,
    )?;

    let scale = LatencyScale::of(seconds);
    let latencies = [
        latency_series("p50", P50, seconds, |s| s.p50_ms, &scale),
        latency_series("p99", P99, seconds, |s| s.p99_ms, &scale),
        latency_series("max", MAX, seconds, |s| s.max_ms, &scale),
    ];
    match scale {
        LatencyScale::Linear { top } => draw_panel(
            &bottom,
            "Submit latency (linear scale)",
            Some("seconds"),
            "ms",
            x_max,
            0f64..top,
            &ms_label,
            &latencies,
        )?,
        LatencyScale::Log { floor, top } => draw_panel(
            &bottom,
            "Submit latency (log scale)",
            Some("seconds"),
            "ms",
            x_max,
            (floor..top).log_scale(),
            &ms_label,
            &latencies,
        )?,
    }

    // Dropping the backend would also write the file, but would swallow an I/O error.
    root.present().map_err(draw_err)
}

/// One line of a panel: `None` points are gaps.
struct Series<V> {
    label: &'static str,
    color: RGBColor,
    points: Vec<Option<(u64, V)>>,
}

fn count_series(
    label: &'static str,
    color: RGBColor,
    seconds: &[Second],
    field: impl Fn(&Second) -> u64,
) -> Series<u64> {
    Series {
        label,
        color,
        points: seconds.iter().map(|s| Some((s.t, field(s)))).collect(),
    }
}

fn latency_series(
    label: &'static str,
    color: RGBColor,
    seconds: &[Second],
    field: impl Fn(&Second) -> Option<f64>,
    scale: &LatencyScale,
) -> Series<f64> {
    Series {
        label,
        color,
        points: seconds
            .iter()
            .map(|s| finite(field(s)).map(|v| (s.t, scale.fit(v))))
            .collect(),
    }
}

/// NaN and infinities are treated as missing: they would poison axis ranges.
fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

/// The y axis of the latency panel, with its range.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LatencyScale {
    Linear {
        top: f64,
    },
    /// `floor` is positive: a log axis cannot show zero, so smaller values are drawn at `floor`.
    Log {
        floor: f64,
        top: f64,
    },
}

impl LatencyScale {
    fn of(seconds: &[Second]) -> Self {
        let all = || {
            seconds
                .iter()
                .flat_map(|s| [s.p50_ms, s.p99_ms, s.max_ms])
                .filter_map(finite)
        };
        let max = all().fold(0.0_f64, f64::max);
        // "Typical" p50 is the median over the run, so one odd second does not flip the scale.
        let mut p50s: Vec<f64> = seconds
            .iter()
            .filter_map(|s| finite(s.p50_ms))
            .filter(|v| *v > 0.0)
            .collect();
        p50s.sort_by(f64::total_cmp);
        let typical_p50 = p50s.get(p50s.len() / 2).copied();

        match typical_p50 {
            Some(p50) if max / p50 > LOG_SCALE_RATIO => {
                let least = all().filter(|v| *v > 0.0).fold(p50, f64::min);
                Log {
                    floor: least / 2.0,
                    top: headroom(max * 2.0, max),
                }
            }
            _ => Linear {
                top: headroom(max * 1.1, max).max(1.0),
            },
        }
    }

    /// Where a value is drawn on this scale.
    fn fit(&self, v: f64) -> f64 {
        match *self {
            Linear { .. } => v,
            Log { floor, .. } => v.max(floor),
        }
    }
}
use LatencyScale::{Linear, Log};

/// `wanted` unless it overflowed to infinity, then `fallback`.
fn headroom(wanted: f64, fallback: f64) -> f64 {
    if wanted.is_finite() {
        wanted
    } else {
        fallback
    }
}

/// Tick labels in ms: whole numbers from 10 up, a few significant decimals below.
fn ms_label(v: &f64) -> String {
    let s = if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else if v.abs() >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Draws one panel: frame, mesh, the series and their legend.
#[allow(clippy::too_many_arguments)]
fn draw_panel<Y, V>(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    x_desc: Option<&str>,
    y_desc: &str,
    x_max: u64,
    y_spec: Y,
    y_label: &dyn Fn(&V) -> String,
    series: &[Series<V>],
) -> Result<(), PlotError>
where
    Y: AsRangedCoord<Value = V>,
    Y::CoordDescType: ValueFormatter<V>,
    V: Copy + 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        // Same on both panels, so their plotting areas and time axes line up.
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..x_max, y_spec)
        .map_err(draw_err)?;

    let mut mesh = chart.configure_mesh();
    mesh.y_desc(y_desc)
        .y_label_formatter(y_label)
        .x_labels(20)
        .max_light_lines(1);
    if let Some(x_desc) = x_desc {
        mesh.x_desc(x_desc);
    }
    mesh.draw().map_err(draw_err)?;

    for s in series {
        let segments = segments(&s.points);
        let color = s.color;
        let line = ShapeStyle::from(&color).stroke_width(2);
        chart
            .draw_series(
                segments
                    .iter()
                    .filter(|seg| seg.len() > 1)
                    .map(|seg| PathElement::new(seg.clone(), line)),
            )
            .map_err(draw_err)?
            .label(s.label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
        // A path needs two points; a lone one (a run of one second, or a gap on both sides)
        // would otherwise not show at all.
        chart
            .draw_series(
                segments
                    .iter()
                    .filter(|seg| seg.len() == 1)
                    .map(|seg| Circle::new(seg[0], 3, color.filled())),
            )
            .map_err(draw_err)?;
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)
}

/// Splits points into runs to draw as lines: a run ends at a missing value or a jump in `t`.
fn segments<V: Copy>(points: &[Option<(u64, V)>]) -> Vec<Vec<(u64, V)>> {
    let mut out = Vec::new();
    let mut current: Vec<(u64, V)> = Vec::new();
    for p in points {
        match *p {
            Some(p) => {
                let continues = current
                    .last()
                    .is_some_and(|&(t, _)| t.checked_add(1) == Some(p.0));
                if !continues && !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                current.push(p);
            }
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const LABELS: [&str; 7] = [
        "admitted",
        "rejected",
        "confirmed",
        "cancelled",
        "p50",
        "p99",
        "max",
    ];

    /// A temp file path unique to this process and test, removed on drop.
    struct TempSvg(PathBuf);

    impl TempSvg {
        fn new(name: &str) -> Self {
            let file = format!("ledger-plot-{}-{}.svg", std::process::id(), name);
            TempSvg(std::env::temp_dir().join(file))
        }
    }

    impl Drop for TempSvg {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Writes `seconds`, checks the file is an SVG with every legend label, returns its text.
    fn render(name: &str, seconds: &[Second]) -> String {
        let tmp = TempSvg::new(name);
        write_timeline_svg(&tmp.0, "demo: 200 seats", seconds).expect("plot written");
        assert!(tmp.0.exists(), "no file at {}", tmp.0.display());
        let svg = std::fs::read_to_string(&tmp.0).expect("readable");
        assert!(
            svg.starts_with("<svg"),
            "starts with {:?}",
            &svg[..20.min(svg.len())]
        );
        assert!(svg.trim_end().ends_with("</svg>"));
        for label in LABELS {
            // Text is emitted as the content of a <text> element, one per line.
            assert!(
                svg.contains(&format!(">\n{label}\n</text>")),
                "legend {label} missing"
            );
        }
        for desc in ["seconds", "per second", "ms"] {
            assert!(
                svg.contains(&format!(">\n{desc}\n</text>")),
                "axis label {desc} missing"
            );
        }
        svg
    }

    /// A rush: a burst of decisions, then finals trailing off, with a latency spike.
    fn rush(n: u64) -> Vec<Second> {
        (0..n)
            .map(|t| {
                let busy = t < 10;
                Second {
                    t,
                    admitted: if busy { 20 } else { 0 },
                    rejected: if busy { 400 + t * 37 } else { t % 3 },
                    confirmed: if (2..30).contains(&t) { 7 } else { 0 },
                    cancelled: u64::from(t % 5 == 0),
                    waitlisted: if busy { 30 } else { 0 },
                    waitlist_length: Some(if busy { 30 * t } else { 300 - t }),
                    p50_ms: busy.then_some(1.5 + t as f64 / 10.0),
                    p99_ms: busy.then_some(12.0 + t as f64),
                    max_ms: busy.then_some(if t == 3 { 900.0 } else { 30.0 }),
                }
            })
            .collect()
    }

    #[test]
    fn writes_svg_with_legend_and_axis_labels() {
        let svg = render("basic", &rush(20));
        assert!(svg.contains("demo: 200 seats"));
        assert!(svg.contains("waitlist length"), "the waitlist has a line");
        assert!(
            svg.contains("(log scale)"),
            "max/p50 = 900/2 should pick log scale"
        );
    }

    #[test]
    fn empty_input_is_an_error() {
        let tmp = TempSvg::new("empty");
        let err = write_timeline_svg(&tmp.0, "empty", &[]).unwrap_err();
        assert!(matches!(err, PlotError::Empty), "{err:?}");
        assert!(!tmp.0.exists());
    }

    #[test]
    fn single_second_without_latencies() {
        let svg = render(
            "single",
            &[Second {
                t: 0,
                admitted: 3,
                ..Default::default()
            }],
        );
        assert!(svg.contains("(linear scale)"));
    }

    #[test]
    fn all_zero_counts_and_no_latencies() {
        let seconds: Vec<Second> = (0..5)
            .map(|t| Second {
                t,
                ..Default::default()
            })
            .collect();
        render("zeros", &seconds);
    }

    #[test]
    fn long_run_of_120_seconds() {
        let svg = render("long", &rush(120));
        assert!(svg.contains("<polyline"), "lines drawn");
    }

    #[test]
    fn odd_latencies_do_not_break_log_scale() {
        let mut seconds = rush(12);
        seconds[1].p50_ms = Some(0.0);
        seconds[2].p99_ms = Some(f64::NAN);
        seconds[4].max_ms = Some(f64::INFINITY);
        seconds[5].max_ms = Some(-1.0);
        seconds[6].t = 40; // a gap in time
        render("odd", &seconds);
    }

    #[test]
    fn unwritable_path_is_a_draw_error() {
        let dir =
            std::env::temp_dir().join(format!("ledger-plot-{}-no-such-dir", std::process::id()));
        let err = write_timeline_svg(&dir.join("x.svg"), "t", &rush(3)).unwrap_err();
        assert!(matches!(err, PlotError::Draw(_)), "{err:?}");
    }

    #[test]
    fn scale_choice() {
        let at = |p50: f64, max: f64| Second {
            p50_ms: Some(p50),
            p99_ms: Some(p50),
            max_ms: Some(max),
            ..Default::default()
        };
        assert!(matches!(LatencyScale::of(&[at(2.0, 200.0)]), Linear { .. }));
        let log = LatencyScale::of(&[at(2.0, 201.0)]);
        assert_eq!(
            log,
            Log {
                floor: 1.0,
                top: 402.0
            }
        );
        assert_eq!(log.fit(0.0), 1.0);
        assert_eq!(LatencyScale::of(&[Second::default()]), Linear { top: 1.0 });
    }

    #[test]
    fn segments_break_at_gaps() {
        let pts = [
            Some((0, 1)),
            Some((1, 2)),
            None,
            Some((3, 3)),
            Some((5, 4)),
            Some((6, 5)),
        ];
        assert_eq!(
            segments(&pts),
            vec![vec![(0, 1), (1, 2)], vec![(3, 3)], vec![(5, 4), (6, 5)]]
        );
    }

    #[test]
    fn tick_labels() {
        assert_eq!(ms_label(&1000.0), "1000");
        assert_eq!(ms_label(&2.5), "2.5");
        assert_eq!(ms_label(&1.0), "1");
        assert_eq!(ms_label(&0.0), "0");
        assert_eq!(ms_label(&0.02), "0.02");
    }
}
