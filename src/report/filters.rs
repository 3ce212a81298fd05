//! The grid of first-layer filters.

use std::path::Path;

use super::canvas::{Canvas, Color};

/// Colour of the gaps between filters (a blue-grey that is neither black nor white, so a cell's
/// edge is visible whatever its values).
pub const FILTER_GAP_COLOR: Color = [70, 90, 130];
/// Colour of a non-finite weight.
pub const FILTER_NAN_COLOR: Color = [255, 0, 255];

/// Where each filter of [`filter_grid_png`] lands in the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterGridLayout {
    /// Filters per row.
    pub cols: usize,
    /// Rows of filters.
    pub rows: usize,
    /// Each weight is drawn as a `scale` x `scale` block.
    pub scale: u32,
    /// Pixels between cells, and around the grid.
    pub gap: u32,
    /// Cell size in pixels (`kw * scale`, `kh * scale`).
    pub cell_w: u32,
    pub cell_h: u32,
    /// Image size in pixels.
    pub width: u32,
    pub height: u32,
}

impl FilterGridLayout {
    /// The layout for `out` filters of `kh` x `kw`; `None` when any of them is zero.
    pub fn new(out: usize, kh: usize, kw: usize) -> Option<Self> {
        if out == 0 || kh == 0 || kw == 0 {
            return None;
        }
        let cols = (out as f64).sqrt().ceil() as usize;
        let rows = out.div_ceil(cols);
        let side = kh.max(kw) as f64;
        let scale = ((40.0 / side).round() as u32).max(1);
        let gap = 2;
        let cell_w = kw as u32 * scale;
        let cell_h = kh as u32 * scale;
        let width = cols as u32 * (cell_w + gap) + gap;
        let height = rows as u32 * (cell_h + gap) + gap;
        Some(FilterGridLayout { cols, rows, scale, gap, cell_w, cell_h, width, height })
    }

    /// Top-left pixel of filter `o`'s cell (filters fill the grid row by row).
    pub fn cell_origin(&self, o: usize) -> (u32, u32) {
        let (r, c) = (o / self.cols, o % self.cols);
        (self.gap + c as u32 * (self.cell_w + self.gap), self.gap + r as u32 * (self.cell_h + self.gap))
    }

    /// Centre pixel of weight `(y, x)` of filter `o`.
    pub fn weight_pixel(&self, o: usize, y: usize, x: usize) -> (u32, u32) {
        let (cx, cy) = self.cell_origin(o);
        (cx + x as u32 * self.scale + self.scale / 2, cy + y as u32 * self.scale + self.scale / 2)
    }
}

/// Grid of first-layer filters. `weights` is `[out, inp, kh, kw]` row-major; channel 0 of each
/// filter is shown. Each filter is normalized to its own min..max (black..white; a constant
/// filter is mid grey, a non-finite weight magenta), each weight drawn as a square block so that
/// a cell is about 40 px, with 2 px gaps, in a grid of `ceil(sqrt(out))` columns (see
/// [`FilterGridLayout`]). Written atomically.
pub fn filter_grid_png(
    path: &Path,
    weights: &[f32],
    out: usize,
    inp: usize,
    kh: usize,
    kw: usize,
) -> Result<(), String> {
    if inp == 0 {
        return Err("filter grid: the filters have 0 input channels".into());
    }
    let layout = FilterGridLayout::new(out, kh, kw)
        .ok_or_else(|| format!("filter grid: empty filter bank ({out} filters of {kh}x{kw})"))?;
    let expected = out
        .checked_mul(inp)
        .and_then(|v| v.checked_mul(kh))
        .and_then(|v| v.checked_mul(kw))
        .ok_or("filter grid: shape overflows")?;
    if weights.len() != expected {
        return Err(format!(
            "filter grid: {} weights for a [{out}, {inp}, {kh}, {kw}] bank (expected {expected})",
            weights.len()
        ));
    }

    let mut c = Canvas::new(layout.width, layout.height, FILTER_GAP_COLOR);
    let s = layout.scale as i64;
    for o in 0..out {
        let start = o * inp * kh * kw;
        let filt = &weights[start..start + kh * kw];
        let (lo, hi) = filt
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let (ox, oy) = layout.cell_origin(o);
        for y in 0..kh {
            for x in 0..kw {
                let v = filt[y * kw + x];
                let color = if !v.is_finite() {
                    FILTER_NAN_COLOR
                } else if hi > lo {
                    let g = (((v - lo) / (hi - lo)) as f64 * 255.0).round().clamp(0.0, 255.0) as u8;
                    [g, g, g]
                } else {
                    [128, 128, 128]
                };
                c.fill_rect(ox as i64 + x as i64 * s, oy as i64 + y as i64 * s, s, s, color);
            }
        }
    }
    c.save(path)
}
