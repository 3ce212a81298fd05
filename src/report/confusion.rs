//! Confusion matrix: text table, PNG, and per-class accuracy.

use std::fmt::Write as _;
use std::path::Path;

use super::canvas::{self, Canvas, Color, AXIS, GRID, MUTED, TEXT, WHITE};
use super::font;

/// Colour of a cell whose whole row falls in it (rate 1); rate 0 is white.
pub const CONFUSION_DARK: Color = [8, 48, 107];

/// Per-class accuracy (row recall) from `counts[true][pred]`: the diagonal count over the row
/// sum, as a fraction in `[0, 1]`; `None` for a class with no samples.
pub fn per_class_accuracy(counts: &[Vec<u64>]) -> Vec<Option<f64>> {
    counts
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let total: u64 = row.iter().sum();
            (total > 0).then(|| row.get(i).copied().unwrap_or(0) as f64 / total as f64)
        })
        .collect()
}

/// Overall accuracy (trace over total) and the total; `None` when there are no samples.
fn overall(counts: &[Vec<u64>]) -> (Option<f64>, u64, u64) {
    let total: u64 = counts.iter().flatten().sum();
    let correct: u64 = counts.iter().enumerate().map(|(i, r)| r.get(i).copied().unwrap_or(0)).sum();
    ((total > 0).then(|| correct as f64 / total as f64), correct, total)
}

const NAME_CHARS: usize = 8;

fn short_name(name: &str) -> String {
    name.chars().take(NAME_CHARS).collect()
}

/// Confusion matrix `counts[true][pred]` (k x k) as a text table: a header row of predicted
/// class names (cut to 8 characters), one row per true class with its counts and its accuracy
/// (recall) in percent (`-` for a class with no samples), then the overall accuracy.
///
/// Missing names are shown as the class index and missing cells as 0, so the table never fails;
/// an empty matrix gives a one-line note.
pub fn confusion_table(class_names: &[String], counts: &[Vec<u64>]) -> String {
    let k = counts.len();
    if k == 0 {
        return "(empty confusion matrix)\n".to_string();
    }
    let names: Vec<String> = (0..k)
        .map(|i| short_name(class_names.get(i).map(String::as_str).unwrap_or(&i.to_string())))
        .collect();
    let cell = |i: usize, j: usize| counts[i].get(j).copied().unwrap_or(0);
    let widest_count =
        (0..k).flat_map(|i| (0..k).map(move |j| (i, j))).map(|(i, j)| cell(i, j)).max().unwrap_or(0);
    let col_w = NAME_CHARS.max(widest_count.to_string().len());
    let corner = "true\\pred";
    let label_w = corner.len().max(names.iter().map(|n| n.chars().count()).max().unwrap_or(0));
    let recall_head = "recall%";

    let mut s = String::new();
    let _ = write!(s, "{corner:<label_w$}");
    for n in &names {
        let _ = write!(s, "  {n:>col_w$}");
    }
    let _ = writeln!(s, "  {recall_head:>8}");
    for (i, (name, acc)) in names.iter().zip(per_class_accuracy(counts)).enumerate() {
        let _ = write!(s, "{name:<label_w$}");
        for j in 0..k {
            let _ = write!(s, "  {:>col_w$}", cell(i, j));
        }
        let acc = acc.map_or("-".to_string(), |a| format!("{:.1}", a * 100.0));
        let _ = writeln!(s, "  {acc:>8}");
    }
    match overall(counts) {
        (Some(a), correct, total) => {
            let _ = writeln!(s, "overall accuracy: {:.2}% ({correct}/{total})", a * 100.0);
        }
        _ => s.push_str("overall accuracy: - (no samples)\n"),
    }
    s
}

/// The geometry of a confusion PNG.
struct Layout {
    k: usize,
    cell: i64,
    label_scale: u32,
    labels: Vec<String>,
    label_w: i64,
    cols_vertical: bool,
    left: i64,
    top: i64,
    width: u32,
    height: u32,
}

const AXIS_SCALE: u32 = 2;
const PAD: i64 = 12;
const BAR_GAP: i64 = 18;
const BAR_W: i64 = 16;

fn layout(class_names: &[String], title: &str) -> Layout {
    let k = class_names.len();
    let cell = (520 / k as i64).clamp(12, 64);
    let label_scale = if cell >= 18 { 2 } else { 1 };
    let labels: Vec<String> = class_names.iter().map(|n| font::truncate(n, 12)).collect();
    let label_w = labels.iter().map(|l| font::text_width(l, label_scale)).max().unwrap_or(0) as i64;
    let cols_vertical = label_w > cell - 4;
    let axis_h = canvas::line_height(AXIS_SCALE);
    let left = PAD + axis_h + 18 + label_w + 8;
    let top = PAD + axis_h + 10 + axis_h + 18;
    let col_label_h = if cols_vertical { label_w } else { canvas::line_height(label_scale) };
    let matrix = k as i64 * cell;
    let bar_label_w = font::text_width("100%", AXIS_SCALE) as i64;
    let right = BAR_GAP + BAR_W + 8 + bar_label_w + PAD;
    let bottom = 8 + col_label_h + 14 + axis_h + PAD;
    let title_w = font::text_width(title, AXIS_SCALE) as i64 + 2 * PAD;
    let width = (left + matrix + right).max(title_w.min(900)).max(200);
    let height = top + matrix + bottom;
    Layout {
        k,
        cell,
        label_scale,
        labels,
        label_w,
        cols_vertical,
        left,
        top,
        width: width as u32,
        height: height as u32,
    }
}

fn validate(class_names: &[String], counts: &[Vec<u64>]) -> Result<usize, String> {
    let k = counts.len();
    if k == 0 {
        return Err("confusion matrix: no classes (k = 0)".into());
    }
    if let Some((i, row)) = counts.iter().enumerate().find(|(_, r)| r.len() != k) {
        return Err(format!("confusion matrix: row {i} has {} counts, expected {k}", row.len()));
    }
    if class_names.len() != k {
        return Err(format!("confusion matrix: {} class names for a {k}x{k} matrix", class_names.len()));
    }
    Ok(k)
}

/// Size in pixels of the image [`confusion_png`] draws for these classes and title.
pub fn confusion_png_size(class_names: &[String], title: &str) -> Result<(u32, u32), String> {
    if class_names.is_empty() {
        return Err("confusion matrix: no classes (k = 0)".into());
    }
    let l = layout(class_names, title);
    Ok((l.width, l.height))
}

/// Confusion-matrix PNG: cells shaded by their row-normalized rate (white to dark blue) with the
/// count in each cell (white on dark cells), class names on both axes, axis titles "true" and
/// "predicted", `title` with the overall accuracy under it, and a colour bar. Written atomically.
/// `counts` must be k x k with k = `class_names.len()` >= 1.
pub fn confusion_png(
    path: &Path,
    class_names: &[String],
    counts: &[Vec<u64>],
    title: &str,
) -> Result<(), String> {
    let k = validate(class_names, counts)?;
    let l = layout(class_names, title);
    debug_assert_eq!(l.k, k);
    let mut c = Canvas::new(l.width, l.height, WHITE);
    let axis_h = canvas::line_height(AXIS_SCALE);
    let matrix = k as i64 * l.cell;
    let (mx, my) = (l.left, l.top);

    // Title and overall accuracy.
    let title = font::fit(title, AXIS_SCALE, l.width - 2 * PAD as u32);
    c.text_centered(l.width as i64 / 2, PAD, &title, AXIS_SCALE, TEXT);
    let summary = match overall(counts) {
        (Some(a), correct, total) => format!("accuracy {:.2}% ({correct}/{total})", a * 100.0),
        _ => "no samples".to_string(),
    };
    c.text_centered(l.width as i64 / 2, PAD + axis_h + 10, &summary, AXIS_SCALE, MUTED);

    // Cells.
    let widest = counts.iter().flatten().copied().max().unwrap_or(0).to_string();
    let count_scale = [2u32, 1].into_iter().find(|&s| {
        font::text_width(&widest, s) as i64 <= l.cell - 4 * s as i64 && canvas::line_height(s) <= l.cell - 4
    });
    for (i, row) in counts.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (j, &n) in row.iter().enumerate() {
            let rate = if total > 0 { n as f64 / total as f64 } else { 0.0 };
            let bg = canvas::lerp_color(WHITE, CONFUSION_DARK, rate);
            let (x, y) = (mx + j as i64 * l.cell, my + i as i64 * l.cell);
            c.fill_rect(x, y, l.cell, l.cell, bg);
            if let Some(s) = count_scale {
                let fg = if canvas::luminance(bg) < 140.0 {
                    WHITE
                } else if n == 0 {
                    [170, 170, 170]
                } else {
                    TEXT
                };
                let ty = y + (l.cell - canvas::line_height(s)) / 2;
                c.text_centered(x + l.cell / 2, ty, &n.to_string(), s, fg);
            }
        }
    }
    // Cell separators and frame.
    for i in 1..k as i64 {
        c.fill_rect(mx + i * l.cell, my, 1, matrix, GRID);
        c.fill_rect(mx, my + i * l.cell, matrix, 1, GRID);
    }
    c.rect_outline(mx - 1, my - 1, matrix + 2, matrix + 2, AXIS);

    // Row labels (true classes) and the "true" axis title.
    let lh = canvas::line_height(l.label_scale);
    for (i, label) in l.labels.iter().enumerate() {
        let y = my + i as i64 * l.cell + (l.cell - lh) / 2;
        c.text_right(mx - 8, y, label, l.label_scale, TEXT);
    }
    let true_h = font::text_width("true", AXIS_SCALE) as i64;
    c.text_vertical(PAD, my + matrix / 2 - true_h / 2, "true", AXIS_SCALE, TEXT);

    // Column labels (predicted classes) and the "predicted" axis title.
    let below = my + matrix + 8;
    for (j, label) in l.labels.iter().enumerate() {
        let cx = mx + j as i64 * l.cell + l.cell / 2;
        if l.cols_vertical {
            // Read bottom to top, ending just below the matrix.
            c.text_vertical(cx - lh / 2, below, label, l.label_scale, TEXT);
        } else {
            c.text_centered(cx, below, label, l.label_scale, TEXT);
        }
    }
    let col_label_h = if l.cols_vertical { l.label_w } else { lh };
    c.text_centered(mx + matrix / 2, below + col_label_h + 14, "predicted", AXIS_SCALE, TEXT);

    // Colour bar.
    let bx = mx + matrix + BAR_GAP;
    for y in 0..matrix {
        let rate = 1.0 - y as f64 / (matrix - 1).max(1) as f64;
        c.fill_rect(bx, my + y, BAR_W, 1, canvas::lerp_color(WHITE, CONFUSION_DARK, rate));
    }
    c.rect_outline(bx - 1, my - 1, BAR_W + 2, matrix + 2, AXIS);
    let tx = bx + BAR_W + 8;
    c.text(tx, my, "100%", AXIS_SCALE, TEXT);
    c.text(tx, my + matrix / 2 - axis_h / 2, "50%", AXIS_SCALE, TEXT);
    c.text(tx, my + matrix - axis_h, "0%", AXIS_SCALE, TEXT);

    c.save(path)
}
