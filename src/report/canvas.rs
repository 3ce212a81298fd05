//! A small RGB raster with the drawing primitives the reports need, axis-tick helpers, and the
//! atomic PNG writer.

use std::path::Path;

use image::{ImageFormat, Rgb, RgbImage};

use super::font::{self, ADVANCE, GLYPH_H, GLYPH_W};

pub type Color = [u8; 3];

pub const WHITE: Color = [255, 255, 255];
pub const TEXT: Color = [30, 30, 30];
pub const AXIS: Color = [60, 60, 60];
pub const GRID: Color = [225, 225, 225];
pub const MUTED: Color = [120, 120, 120];

/// An RGB canvas; every drawing call clips to the image.
pub struct Canvas {
    img: RgbImage,
}

impl Canvas {
    pub fn new(width: u32, height: u32, background: Color) -> Self {
        Canvas { img: RgbImage::from_pixel(width, height, Rgb(background)) }
    }

    pub fn put(&mut self, x: i64, y: i64, c: Color) {
        if x >= 0 && y >= 0 && (x as u64) < self.img.width() as u64 && (y as u64) < self.img.height() as u64 {
            self.img.put_pixel(x as u32, y as u32, Rgb(c));
        }
    }

    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Color) {
        let x0 = x.max(0);
        let y0 = y.max(0);
        let x1 = (x + w).min(self.img.width() as i64);
        let y1 = (y + h).min(self.img.height() as i64);
        for yy in y0..y1 {
            for xx in x0..x1 {
                self.img.put_pixel(xx as u32, yy as u32, Rgb(c));
            }
        }
    }

    /// One-pixel outline of the rectangle `[x, x + w) x [y, y + h)`.
    pub fn rect_outline(&mut self, x: i64, y: i64, w: i64, h: i64, c: Color) {
        self.fill_rect(x, y, w, 1, c);
        self.fill_rect(x, y + h - 1, w, 1, c);
        self.fill_rect(x, y, 1, h, c);
        self.fill_rect(x + w - 1, y, 1, h, c);
    }

    /// A line from `(x0, y0)` to `(x1, y1)` drawn with a square brush `thickness` pixels wide.
    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: Color, thickness: u32) {
        if !(x0.is_finite() && y0.is_finite() && x1.is_finite() && y1.is_finite()) {
            return;
        }
        let t = thickness.max(1) as i64;
        let off = (t - 1) / 2;
        // Keep the coordinates in a sane range so a wild value cannot make the loop huge.
        let lim = 1.0e5;
        let (mut x, mut y) = (x0.clamp(-lim, lim).round() as i64, y0.clamp(-lim, lim).round() as i64);
        let (xe, ye) = (x1.clamp(-lim, lim).round() as i64, y1.clamp(-lim, lim).round() as i64);
        let dx = (xe - x).abs();
        let dy = -(ye - y).abs();
        let sx = if x < xe { 1 } else { -1 };
        let sy = if y < ye { 1 } else { -1 };
        let mut err = dx + dy;
        loop {
            self.fill_rect(x - off, y - off, t, t, c);
            if x == xe && y == ye {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// A filled disc of radius `r` centred on `(cx, cy)`.
    pub fn disc(&mut self, cx: f64, cy: f64, r: f64, c: Color) {
        if !(cx.is_finite() && cy.is_finite()) {
            return;
        }
        let ri = r.ceil() as i64;
        let (x0, y0) = (cx.round() as i64, cy.round() as i64);
        for dy in -ri..=ri {
            for dx in -ri..=ri {
                if ((dx * dx + dy * dy) as f64) <= r * r + 0.5 {
                    self.put(x0 + dx, y0 + dy, c);
                }
            }
        }
    }

    /// `text` with its top-left corner at `(x, y)`.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: u32, c: Color) {
        let s = scale.max(1) as i64;
        for (i, ch) in text.chars().enumerate() {
            let rows = font::glyph(ch);
            let cx = x + i as i64 * ADVANCE as i64 * s;
            for (gy, row) in rows.iter().enumerate() {
                for gx in 0..GLYPH_W {
                    if row >> (GLYPH_W - 1 - gx) & 1 == 1 {
                        self.fill_rect(cx + gx as i64 * s, y + gy as i64 * s, s, s, c);
                    }
                }
            }
        }
    }

    /// `text` centred horizontally on `cx`, top at `y`.
    pub fn text_centered(&mut self, cx: i64, y: i64, text: &str, scale: u32, c: Color) {
        let w = font::text_width(text, scale) as i64;
        self.text(cx - w / 2, y, text, scale, c);
    }

    /// `text` with its right edge at `right`, top at `y`.
    pub fn text_right(&mut self, right: i64, y: i64, text: &str, scale: u32, c: Color) {
        let w = font::text_width(text, scale) as i64;
        self.text(right - w, y, text, scale, c);
    }

    /// `text` rotated 90 degrees counter-clockwise (read bottom to top); `(x, y)` is the top-left
    /// corner of its bounding box, which is `GLYPH_H * scale` wide (descenders reach past it to
    /// the right) and `text_width` tall.
    pub fn text_vertical(&mut self, x: i64, y: i64, text: &str, scale: u32, c: Color) {
        let s = scale.max(1) as i64;
        let total = font::text_width(text, 1) as i64;
        for (i, ch) in text.chars().enumerate() {
            let rows = font::glyph(ch);
            for (gy, row) in rows.iter().enumerate() {
                for gx in 0..GLYPH_W {
                    if row >> (GLYPH_W - 1 - gx) & 1 == 1 {
                        let hx = i as i64 * ADVANCE as i64 + gx as i64;
                        let px = x + gy as i64 * s;
                        let py = y + (total - 1 - hx) * s;
                        self.fill_rect(px, py, s, s, c);
                    }
                }
            }
        }
    }

    /// Writes the canvas as a PNG at `path` atomically (see [`save_png_atomic`]).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        save_png_atomic(&self.img, path)
    }
}

/// Writes `img` to `path.with_extension("png.tmp")`, then renames it over `path`; creates the
/// parent directories first.
pub fn save_png_atomic(img: &RgbImage, path: &Path) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
    }
    let tmp = path.with_extension("png.tmp");
    if let Err(e) = img.save_with_format(&tmp, ImageFormat::Png) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: {e}", tmp.display()));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}

/// Linear blend from `a` (t = 0) to `b` (t = 1).
pub fn lerp_color(a: Color, b: Color, t: f64) -> Color {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let mix = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * t).round() as u8;
    [mix(a[0], b[0]), mix(a[1], b[1]), mix(a[2], b[2])]
}

/// Perceived brightness in 0..=255.
pub fn luminance(c: Color) -> f64 {
    0.299 * c[0] as f64 + 0.587 * c[1] as f64 + 0.114 * c[2] as f64
}

/// Pixel height of one text line, for layout code.
pub fn line_height(scale: u32) -> i64 {
    (GLYPH_H * scale) as i64
}

/// Ticks for a linear axis: the range `[lo, hi]` widened to multiples of a 1-2-5 step chosen to
/// give about `target` intervals, and the tick values. `lo < hi` is required of the caller.
pub fn linear_ticks(lo: f64, hi: f64, target: usize) -> (f64, f64, f64, Vec<f64>) {
    let step = nice_step((hi - lo) / target.max(1) as f64);
    let a = (lo / step + 1e-9).floor() * step;
    let b = (hi / step - 1e-9).ceil() * step;
    let n = ((b - a) / step).round() as i64;
    let ticks = (0..=n).map(|i| a + i as f64 * step).collect();
    (a, b, step, ticks)
}

/// The 1-2-5 multiple of a power of ten nearest above `raw`.
pub fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 + 1e-9 {
        1.0
    } else if norm <= 2.0 + 1e-9 {
        2.0
    } else if norm <= 5.0 + 1e-9 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// A tick label for `v` on an axis whose ticks are `step` apart.
pub fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { (-step.log10() - 1e-9).ceil() as usize };
    let s = format!("{:.*}", decimals.min(10), v);
    // Avoid "-0" and "-0.00".
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// A label for a value on a log axis (a power of ten or a 2/5 multiple of one).
pub fn log_tick_label(v: f64) -> String {
    if (1e-3..1e4).contains(&v) {
        let decimals = if v >= 1.0 { 0 } else { (-v.log10().floor()) as usize };
        format!("{:.*}", decimals, v)
    } else {
        let e = v.log10().floor() as i32;
        let m = (v / 10f64.powi(e)).round() as i32;
        if m == 1 {
            format!("1e{e}")
        } else {
            format!("{m}e{e}")
        }
    }
}
