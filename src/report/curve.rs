//! The learning-curve chart: loss and accuracy against epoch, the training curve per logging
//! interval (steps.csv) where there is one, the test points per epoch (metrics.csv).

use std::path::Path;

use super::canvas::{self, Canvas, Color, AXIS, GRID, MUTED, TEXT, WHITE};
use super::font;
use super::{MetricsRow, StepRow};

/// Width of the learning-curve PNG in pixels.
pub const CURVE_WIDTH: u32 = 900;
/// Height of the learning-curve PNG in pixels.
pub const CURVE_HEIGHT: u32 = 500;

const TRAIN_COLOR: Color = [31, 119, 180];
const TEST_COLOR: Color = [230, 110, 15];

/// The panel rectangles: plot area of panel `i` (0 = loss, 1 = accuracy).
const PANEL_W: i64 = CURVE_WIDTH as i64 / 2;
const PLOT_LEFT: i64 = 80;
const PLOT_RIGHT_PAD: i64 = 24;
const PLOT_TOP: i64 = 104;
const PLOT_BOTTOM: i64 = CURVE_HEIGHT as i64 - 70;

struct Series {
    name: String,
    color: Color,
    points: Vec<(f64, f64)>,
}

#[derive(Clone, Copy)]
struct Rect {
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
}

/// How values map to the vertical axis.
enum YScale {
    Linear { lo: f64, hi: f64, step: f64, ticks: Vec<f64> },
    Log { lo_exp: f64, hi_exp: f64, ticks: Vec<f64> },
}

impl YScale {
    fn frac(&self, v: f64) -> f64 {
        match self {
            YScale::Linear { lo, hi, .. } => (v - lo) / (hi - lo),
            YScale::Log { lo_exp, hi_exp, .. } => (v.log10() - lo_exp) / (hi_exp - lo_exp),
        }
    }

    fn ticks(&self) -> &[f64] {
        match self {
            YScale::Linear { ticks, .. } | YScale::Log { ticks, .. } => ticks,
        }
    }

    fn label(&self, v: f64) -> String {
        match self {
            YScale::Linear { step, .. } => canvas::tick_label(v, *step),
            YScale::Log { .. } => canvas::log_tick_label(v),
        }
    }
}

/// Learning-curve PNG (`CURVE_WIDTH` x `CURVE_HEIGHT`): loss against epoch on the left (train
/// and, where present, test; a log axis when the loss spans more than two decades), accuracy in
/// percent on the right, with tick labels, a legend and `title`. Written atomically. The train
/// curves come from `steps` (one point per logging interval) when it has rows, else from the
/// epoch `rows`; the test points always from `rows`.
///
/// Accuracies are read as fractions in `[0, 1]` and shown as percentages; when any accuracy is
/// above 1 the values are taken to be percentages already. Non-finite values are skipped. No
/// rows gives a chart that says "no data".
pub fn learning_curve_png(
    path: &Path,
    rows: &[MetricsRow],
    steps: &[StepRow],
    title: &str,
) -> Result<(), String> {
    let mut c = Canvas::new(CURVE_WIDTH, CURVE_HEIGHT, WHITE);
    draw_title(&mut c, title);

    let finite = |v: f64| v.is_finite();
    let epochs: Vec<f64> =
        rows.iter().map(|r| r.epoch).chain(steps.iter().map(|r| r.epoch)).filter(|&e| finite(e)).collect();
    if epochs.is_empty() {
        c.text_centered(CURVE_WIDTH as i64 / 2, CURVE_HEIGHT as i64 / 2 - 14, "no data", 4, MUTED);
        return c.save(path);
    }

    let acc_values = rows
        .iter()
        .flat_map(|r| [Some(r.train_acc), r.test_acc])
        .flatten()
        .chain(steps.iter().map(|r| r.accuracy))
        .filter(|v| finite(*v));
    let acc_scale = if acc_values.clone().any(|v| v > 1.0 + 1e-9) { 1.0 } else { 100.0 };

    let collect = |f: &dyn Fn(&MetricsRow) -> Option<f64>, scale: f64| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| f(r).map(|v| (r.epoch, v * scale)))
            .filter(|&(e, v)| finite(e) && finite(v))
            .collect()
    };
    let per_step = |f: &dyn Fn(&StepRow) -> f64, scale: f64| -> Vec<(f64, f64)> {
        steps.iter().map(|r| (r.epoch, f(r) * scale)).filter(|&(e, v)| finite(e) && finite(v)).collect()
    };
    let (train_loss, train_acc) = if steps.is_empty() {
        (collect(&|r| Some(r.train_loss), 1.0), collect(&|r| Some(r.train_acc), acc_scale))
    } else {
        (per_step(&|r| r.loss, 1.0), per_step(&|r| r.accuracy, acc_scale))
    };
    let loss = [
        Series { name: "train".into(), color: TRAIN_COLOR, points: train_loss },
        Series { name: "test".into(), color: TEST_COLOR, points: collect(&|r| r.test_loss, 1.0) },
    ];
    let acc = [
        Series { name: "train".into(), color: TRAIN_COLOR, points: train_acc },
        Series { name: "test".into(), color: TEST_COLOR, points: collect(&|r| r.test_acc, acc_scale) },
    ];
    let has_test = !loss[1].points.is_empty() || !acc[1].points.is_empty();
    draw_legend(&mut c, if has_test { &loss[..] } else { &loss[..1] });

    // Shared epoch axis, starting at zero for the usual non-negative epochs.
    let (mut xlo, mut xhi) =
        epochs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &e| (a.min(e), b.max(e)));
    if xlo >= 0.0 {
        xlo = 0.0;
    }
    if xhi - xlo < 1e-9 {
        xhi = xlo + 1.0;
    }
    let (xlo, xhi, xstep, xticks) = canvas::linear_ticks(xlo, xhi, 6);
    let xaxis = XAxis { lo: xlo, hi: xhi, step: xstep, ticks: xticks };

    let loss_values: Vec<f64> = loss.iter().flat_map(|s| s.points.iter().map(|p| p.1)).collect();
    let loss_scale = loss_y_scale(&loss_values);
    let loss_title = match loss_scale {
        Some(YScale::Log { .. }) => "loss (log scale)",
        _ => "loss",
    };
    draw_panel(&mut c, panel_rect(0), loss_title, "epoch", &loss, &[], &xaxis, loss_scale.as_ref());

    let acc_values: Vec<f64> = acc.iter().flat_map(|s| s.points.iter().map(|p| p.1)).collect();
    let acc_axis = acc_y_scale(&acc_values);
    draw_panel(&mut c, panel_rect(1), "accuracy (%)", "epoch", &acc, &[], &xaxis, acc_axis.as_ref());

    c.save(path)
}

struct XAxis {
    lo: f64,
    hi: f64,
    step: f64,
    ticks: Vec<f64>,
}

fn panel_rect(i: i64) -> Rect {
    let x0 = i * PANEL_W;
    Rect { left: x0 + PLOT_LEFT, top: PLOT_TOP, right: x0 + PANEL_W - PLOT_RIGHT_PAD, bottom: PLOT_BOTTOM }
}

fn draw_title(c: &mut Canvas, title: &str) {
    let max_w = CURVE_WIDTH - 20;
    let (scale, text) = if font::text_width(title, 3) <= max_w {
        (3, title.to_string())
    } else {
        (2, font::fit(title, 2, max_w))
    };
    c.text_centered(CURVE_WIDTH as i64 / 2, 14, &text, scale, TEXT);
}

fn draw_legend(c: &mut Canvas, series: &[Series]) {
    const SWATCH: i64 = 28;
    const GAP: i64 = 8;
    const SEP: i64 = 36;
    let widths: Vec<i64> =
        series.iter().map(|s| SWATCH + GAP + font::text_width(&s.name, 2) as i64).collect();
    let total: i64 = widths.iter().sum::<i64>() + SEP * (series.len() as i64 - 1);
    let mut x = CURVE_WIDTH as i64 / 2 - total / 2;
    let y = 50;
    for (s, w) in series.iter().zip(&widths) {
        c.line(x as f64, (y + 7) as f64, (x + SWATCH) as f64, (y + 7) as f64, s.color, 3);
        c.disc((x + SWATCH / 2) as f64, (y + 7) as f64, 3.5, s.color);
        c.text(x + SWATCH + GAP, y, &s.name, 2, TEXT);
        x += w + SEP;
    }
}

/// A log axis when every loss is positive and they span more than two decades; else linear.
fn loss_y_scale(values: &[f64]) -> Option<YScale> {
    let (lo, hi) = min_max(values)?;
    if lo > 0.0 && hi / lo > 100.0 {
        let lo_exp = lo.log10().floor();
        let mut hi_exp = hi.log10().ceil();
        if hi_exp <= lo_exp {
            hi_exp = lo_exp + 1.0;
        }
        let decades = (hi_exp - lo_exp) as i32;
        let mut ticks = Vec::new();
        for e in lo_exp as i32..=hi_exp as i32 {
            let p = 10f64.powi(e);
            ticks.push(p);
            if decades <= 3 && e < hi_exp as i32 {
                ticks.push(2.0 * p);
                ticks.push(5.0 * p);
            }
        }
        return Some(YScale::Log { lo_exp, hi_exp, ticks });
    }
    Some(linear_scale(lo, hi, None))
}

/// Accuracy axis in percent, kept within 0..=100.
fn acc_y_scale(values: &[f64]) -> Option<YScale> {
    let (lo, hi) = min_max(values)?;
    Some(linear_scale(lo, hi, Some((0.0, 100.0))))
}

fn linear_scale(data_lo: f64, data_hi: f64, clamp: Option<(f64, f64)>) -> YScale {
    let (mut lo, mut hi) = (data_lo, data_hi);
    if hi - lo < 1e-12 * lo.abs().max(1.0) {
        let d = if lo.abs() > 0.0 { lo.abs() * 0.1 } else { 1.0 };
        lo -= d;
        hi += d;
    }
    // A little headroom so that curves do not run along the frame.
    let pad = (hi - lo) * 0.04;
    let (mut a, mut b, step, _) = canvas::linear_ticks(lo - pad, hi + pad, 5);
    if let Some((cl, ch)) = clamp {
        if data_lo >= cl {
            a = a.max(cl);
        }
        if data_hi <= ch {
            b = b.min(ch);
        }
    }
    // Non-negative data (losses) never gets a negative axis.
    if data_lo >= 0.0 && a < 0.0 {
        a = 0.0;
    }
    let first = (a / step - 1e-9).ceil() as i64;
    let last = (b / step + 1e-9).floor() as i64;
    let ticks = (first..=last).map(|i| i as f64 * step).collect();
    YScale::Linear { lo: a, hi: b, step, ticks }
}

fn min_max(values: &[f64]) -> Option<(f64, f64)> {
    let mut it = values.iter().copied().filter(|v| v.is_finite());
    let first = it.next()?;
    Some(it.fold((first, first), |(a, b), v| (a.min(v), b.max(v))))
}

/// A shaded band under a series: (x, low, high) points, drawn before the curves.
struct Band {
    color: Color,
    points: Vec<(f64, f64, f64)>,
}

#[allow(clippy::too_many_arguments)]
fn draw_panel(
    c: &mut Canvas,
    r: Rect,
    title: &str,
    xlabel: &str,
    series: &[Series],
    bands: &[Band],
    x: &XAxis,
    y: Option<&YScale>,
) {
    let (w, h) = (r.right - r.left, r.bottom - r.top);
    c.text_centered((r.left + r.right) / 2, r.top - 26, title, 2, TEXT);

    let sx = |v: f64| r.left as f64 + (v - x.lo) / (x.hi - x.lo) * w as f64;

    // Vertical grid and x ticks.
    let xlabel_scale = 2;
    for &t in &x.ticks {
        let px = sx(t).round() as i64;
        c.fill_rect(px, r.top, 1, h, GRID);
        c.fill_rect(px, r.bottom, 1, 6, AXIS);
        c.text_centered(px, r.bottom + 10, &canvas::tick_label(t, x.step), xlabel_scale, TEXT);
    }
    c.text_centered((r.left + r.right) / 2, r.bottom + 38, xlabel, 2, TEXT);

    let Some(y) = y else {
        c.rect_outline(r.left, r.top, w + 1, h + 1, AXIS);
        c.text_centered((r.left + r.right) / 2, (r.top + r.bottom) / 2 - 10, "no data", 3, MUTED);
        return;
    };
    let sy = |v: f64| r.bottom as f64 - y.frac(v) * h as f64;

    // Horizontal grid and y ticks; smaller labels when the large ones would not fit.
    let labels: Vec<String> = y.ticks().iter().map(|&t| y.label(t)).collect();
    let widest = labels.iter().map(|l| font::text_width(l, 2)).max().unwrap_or(0) as i64;
    let yscale = if widest <= PLOT_LEFT - 14 { 2 } else { 1 };
    for (&t, label) in y.ticks().iter().zip(&labels) {
        let py = sy(t).round() as i64;
        c.fill_rect(r.left, py, w, 1, GRID);
        c.fill_rect(r.left - 6, py, 6, 1, AXIS);
        c.text_right(r.left - 10, py - canvas::line_height(yscale) / 2, label, yscale, TEXT);
    }

    // Bands: every pixel column between two points filled from the low edge to the high one.
    let cy = |v: f64| sy(v).clamp(r.top as f64, r.bottom as f64);
    for b in bands {
        for pair in b.points.windows(2) {
            let ((x0, lo0, hi0), (x1, lo1, hi1)) = (pair[0], pair[1]);
            let (p0, p1) = (sx(x0).round() as i64, sx(x1).round() as i64);
            for px in p0.max(r.left)..=p1.min(r.right) {
                let f = if p1 > p0 { (px - p0) as f64 / (p1 - p0) as f64 } else { 0.0 };
                let (lo, hi) = (cy(lo0 + f * (lo1 - lo0)), cy(hi0 + f * (hi1 - hi0)));
                let (top, bottom) = (hi.min(lo).round() as i64, hi.max(lo).round() as i64);
                c.fill_rect(px, top, 1, bottom - top + 1, b.color);
            }
        }
    }

    // Curves, clipped to the plot area.
    let clip = |(px, py): (f64, f64)| {
        (px.clamp(r.left as f64, r.right as f64), py.clamp(r.top as f64, r.bottom as f64))
    };
    for s in series {
        let pts: Vec<(f64, f64)> = s.points.iter().map(|&(e, v)| clip((sx(e), sy(v)))).collect();
        for pair in pts.windows(2) {
            c.line(pair[0].0, pair[0].1, pair[1].0, pair[1].1, s.color, 2);
        }
        if pts.len() <= 60 {
            for &(px, py) in &pts {
                c.disc(px, py, 3.0, s.color);
            }
        }
    }
    c.rect_outline(r.left, r.top, w + 1, h + 1, AXIS);
}

/// One top's test-error curves of a comparison: one curve per run, (step, error as a fraction).
#[derive(Clone, Debug)]
pub struct ErrorCurve {
    pub name: String,
    pub runs: Vec<Vec<(u64, f64)>>,
}

const CURVE_COLORS: [Color; 4] = [[31, 119, 180], [230, 110, 15], [44, 160, 44], [148, 103, 189]];

/// The comparison chart (`CURVE_WIDTH` x `CURVE_HEIGHT`): test error in percent against step, per
/// top the mean over its runs as a line and the runs' range (lowest to highest) as a light band.
/// At each step the mean and range take the runs that have a point there. Written atomically.
pub fn error_curves_png(path: &Path, curves: &[ErrorCurve], title: &str) -> Result<(), String> {
    let mut c = Canvas::new(CURVE_WIDTH, CURVE_HEIGHT, WHITE);
    draw_title(&mut c, title);
    let mut series = Vec::new();
    let mut bands = Vec::new();
    for (i, curve) in curves.iter().enumerate() {
        let color = CURVE_COLORS[i % CURVE_COLORS.len()];
        let mut steps: Vec<u64> = curve.runs.iter().flatten().map(|p| p.0).collect();
        steps.sort_unstable();
        steps.dedup();
        let (mut mean, mut band) = (Vec::new(), Vec::new());
        for s in steps {
            let at: Vec<f64> = curve
                .runs
                .iter()
                .filter_map(|run| run.iter().find(|p| p.0 == s).map(|p| 100.0 * p.1))
                .filter(|v| v.is_finite())
                .collect();
            if at.is_empty() {
                continue;
            }
            let m = at.iter().sum::<f64>() / at.len() as f64;
            let (lo, hi) =
                at.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            mean.push((s as f64, m));
            band.push((s as f64, lo, hi));
        }
        series.push(Series { name: curve.name.clone(), color, points: mean });
        bands.push(Band { color: canvas::lerp_color(color, WHITE, 0.75), points: band });
    }
    draw_legend(&mut c, &series);
    let xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    let Some((_, xmax)) = min_max(&xs) else {
        c.text_centered(CURVE_WIDTH as i64 / 2, CURVE_HEIGHT as i64 / 2 - 14, "no data", 4, MUTED);
        return c.save(path);
    };
    let (xlo, xhi, xstep, xticks) = canvas::linear_ticks(0.0, xmax.max(1.0), 8);
    let xaxis = XAxis { lo: xlo, hi: xhi, step: xstep, ticks: xticks };
    let ys: Vec<f64> = bands.iter().flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2])).collect();
    let yaxis = min_max(&ys).map(|(lo, hi)| linear_scale(lo, hi, Some((0.0, 100.0))));
    let rect = Rect {
        left: PLOT_LEFT,
        top: PLOT_TOP,
        right: CURVE_WIDTH as i64 - PLOT_RIGHT_PAD,
        bottom: PLOT_BOTTOM,
    };
    draw_panel(&mut c, rect, "test error (%)", "step", &series, &bands, &xaxis, yaxis.as_ref());
    c.save(path)
}
