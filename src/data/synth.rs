//! Built-in synthetic FER-format data: procedurally drawn 48x48 grayscale faces with the seven
//! FER2013 expressions, for demos and tests on machines that have no copy of FER2013.
//!
//! Each face is drawn by evaluating signed distances per pixel in a face-local frame and
//! blending each shape with a smoothstep over about one pixel, so the features are anti-aliased
//! and survive resizing and the augmentation's resampling. Expressions differ in
//!
//! | class    | eyebrows                       | eyes          | mouth                                  |
//! |----------|--------------------------------|---------------|----------------------------------------|
//! | angry    | inner ends down, pulled in (V) | narrowed      | tight line, corners down; or bared snarl |
//! | disgust  | lowered, one side more         | narrowed, one more | one-sided sneer, nose wrinkles    |
//! | fear     | raised, straight, inner raised | wide          | wide open, stretched, corners down     |
//! | happy    | slightly raised                | a little narrowed | wide smile, corners up; half open with teeth |
//! | sad      | inner ends raised (/ \)        | slightly narrowed | small, corners down                |
//! | surprise | raised high, arched            | wide          | tall open oval                         |
//! | neutral  | flat                           | normal        | flat line                              |
//!
//! and every face has random nuisance: position (±3 px), scale (0.85–1.15), in-plane rotation
//! (±15°), head shape, hair, skin and background brightness, a linear lighting gradient,
//! expression intensity, feature placement, and Gaussian pixel noise (σ = 8).
//!
//! Everything is a pure function of the seed: a splitmix64 generator and `+ - * / sqrt` only
//! (see [`crate::rng::sin_cos`]), so the same seed gives identical pixels on every platform
//! and with any number of threads.

use std::io::{BufWriter, Write};
use std::path::Path;

use super::{DataSource, Dataset, Format, FER_CLASSES};
use crate::rng::{mix, sin_cos, Rng};

/// Side of the synthetic images (FER2013's size).
pub const SIZE: usize = 48;
/// Std of the Gaussian pixel noise.
pub const NOISE_STD: f64 = 8.0;
/// The test split's seed is `seed ^ TEST_SEED_XOR`.
pub const TEST_SEED_XOR: u64 = 0x7e57_5eed_0f1e_2013;

/// `count` faces, labels balanced over the 7 classes (counts differ by at most 1) in a
/// seeded shuffled order; pixels are raw values in 0..=255.
pub fn faces(count: usize, seed: u64) -> Dataset {
    let labels = balanced_labels(count, seed);
    let area = SIZE * SIZE;
    let mut pixels = vec![0f32; count * area];
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
    if threads == 1 {
        // One at a time, in this thread (a page has no threads to spawn): the same faces.
        for (i, (img, &label)) in pixels.chunks_mut(area).zip(&labels).enumerate() {
            draw_face(label as usize, mix(seed, i as u64), img);
        }
        return Dataset { c: 1, h: SIZE, w: SIZE, pixels, labels };
    }
    let per = count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (c, (chunk, labs)) in pixels.chunks_mut(per * area).zip(labels.chunks(per)).enumerate() {
            scope.spawn(move || {
                for (k, (img, &label)) in chunk.chunks_mut(area).zip(labs).enumerate() {
                    let i = (c * per + k) as u64;
                    draw_face(label as usize, mix(seed, i), img);
                }
            });
        }
    });
    Dataset { c: 1, h: SIZE, w: SIZE, pixels, labels }
}

/// The labels of [`faces`]: `i % 7` for i in 0..count, shuffled with a generator seeded by `seed`.
pub fn balanced_labels(count: usize, seed: u64) -> Vec<i32> {
    let mut labels: Vec<i32> = (0..count).map(|i| (i % FER_CLASSES.len()) as i32).collect();
    Rng::new(mix(seed, 0x001a_be15)).shuffle(&mut labels);
    labels
}

/// The most faces `dlsvm train --synth-count` and `dlsvm data synth --count` make (48x48 each).
pub const MAX_COUNT: usize = 200_000;

/// Refuses a number of synthetic training faces outside 1..=[`MAX_COUNT`].
pub fn check_count(count: usize) -> Result<(), String> {
    if count == 0 || count > MAX_COUNT {
        return Err(format!("{count}: expected 1 to {MAX_COUNT} synthetic faces"));
    }
    Ok(())
}

/// A "train" split of `faces(train, seed)` and a "test" split of
/// `faces(test, seed ^ TEST_SEED_XOR)`.
pub fn source(train: usize, test: usize, seed: u64) -> DataSource {
    DataSource {
        format: Format::Synthetic,
        path: "synthetic".to_string(),
        class_names: FER_CLASSES.iter().map(|s| s.to_string()).collect(),
        splits: vec![
            ("train".to_string(), faces(train, seed)),
            ("test".to_string(), faces(test, seed ^ TEST_SEED_XOR)),
        ],
    }
}

/// The fer2013.csv `Usage` value for one of our split names.
pub fn usage_for_split(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "train" | "training" => Some("Training"),
        "test" | "private_test" | "privatetest" => Some("PrivateTest"),
        "public_test" | "publictest" | "val" | "validation" => Some("PublicTest"),
        _ => None,
    }
}

/// Writes `src` in fer2013.csv format: header `emotion,pixels,Usage`, then one row per image with
/// its label and 2304 space-separated integers (rounded, clamped to 0..=255). Split "train" →
/// `Training`, "test"/"private_test" → `PrivateTest`, "public_test" → `PublicTest`. Written to a
/// temporary file in the same folder, then renamed over `path`.
pub fn write_fer_csv(path: &Path, src: &DataSource) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let mut usages = Vec::with_capacity(src.splits.len());
    for (name, ds) in &src.splits {
        let usage = usage_for_split(name).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("split {name:?} has no fer2013 Usage (train, test, private_test, public_test)"),
            )
        })?;
        if ds.h != SIZE || ds.w != SIZE {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("split {name:?} holds {}x{} images; fer2013.csv needs 48x48", ds.h, ds.w),
            ));
        }
        usages.push(usage);
    }
    let file_name = path.file_name().ok_or_else(|| {
        Error::new(ErrorKind::InvalidInput, format!("{} is not a file path", path.display()))
    })?;
    let tmp = path.with_file_name(format!(".{}.tmp{}", file_name.to_string_lossy(), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        out.write_all(b"emotion,pixels,Usage\n")?;
        let mut line = String::with_capacity(SIZE * SIZE * 4 + 32);
        for ((_, ds), usage) in src.splits.iter().zip(&usages) {
            let area = ds.h * ds.w;
            for (img, &label) in ds.pixels.chunks_exact(area).zip(&ds.labels) {
                line.clear();
                line.push_str(&label.to_string());
                line.push(',');
                for (k, &v) in img.iter().enumerate() {
                    if k > 0 {
                        line.push(' ');
                    }
                    push_u8(&mut line, to_byte(v));
                }
                line.push(',');
                line.push_str(usage);
                line.push('\n');
                out.write_all(line.as_bytes())?;
            }
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    match write() {
        Ok(()) => std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn to_byte(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        v.round().clamp(0.0, 255.0) as u8
    }
}

fn push_u8(s: &mut String, v: u8) {
    if v >= 100 {
        s.push((b'0' + v / 100) as char);
    }
    if v >= 10 {
        s.push((b'0' + v / 10 % 10) as char);
    }
    s.push((b'0' + v % 10) as char);
}

/// Writes a PNG contact sheet of the first `cols * rows` images of `ds` (raw 0..=255 values),
/// each drawn at twice its size with a 2 px gap.
pub fn preview_png(path: &Path, ds: &Dataset, cols: usize, rows: usize) -> Result<(), String> {
    const ZOOM: usize = 2;
    const GAP: usize = 2;
    let (h, w) = (ds.h, ds.w);
    let n = (cols * rows).min(ds.labels.len());
    if n == 0 || h == 0 || w == 0 {
        return Err("preview_png: nothing to draw".to_string());
    }
    let cell_w = w * ZOOM + GAP;
    let cell_h = h * ZOOM + GAP;
    let (iw, ih) = (cols * cell_w + GAP, rows * cell_h + GAP);
    let mut img = image::GrayImage::from_pixel(iw as u32, ih as u32, image::Luma([255u8]));
    for k in 0..n {
        let (gx, gy) = (GAP + (k % cols) * cell_w, GAP + (k / cols) * cell_h);
        let src = &ds.pixels[k * h * w..(k + 1) * h * w];
        for y in 0..h * ZOOM {
            for x in 0..w * ZOOM {
                let v = to_byte(src[(y / ZOOM) * w + x / ZOOM]);
                img.put_pixel((gx + x) as u32, (gy + y) as u32, image::Luma([v]));
            }
        }
    }
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Drawing.

type P = (f64, f64);

/// Expression parameters in the face frame (pixels at scale 1, origin at the face centre, y
/// down). Brow points are for the left side of the image (x < 0): inner, middle, outer.
#[derive(Clone, Copy)]
struct Expr {
    brow: [P; 3],
    eye_open: f64,
    mouth_y: f64,
    mouth_hw: f64,
    /// Lift of both mouth corners (positive: smile).
    curve: f64,
    /// Lift of one mouth corner (disgust's sneer).
    sneer: f64,
    /// Half-height of the mouth opening (0: closed).
    open: f64,
}

impl Expr {
    fn lerp(a: &Expr, b: &Expr, t: f64) -> Expr {
        let l = |x: f64, y: f64| x + t * (y - x);
        let lp = |p: P, q: P| (l(p.0, q.0), l(p.1, q.1));
        Expr {
            brow: [lp(a.brow[0], b.brow[0]), lp(a.brow[1], b.brow[1]), lp(a.brow[2], b.brow[2])],
            eye_open: l(a.eye_open, b.eye_open),
            mouth_y: l(a.mouth_y, b.mouth_y),
            mouth_hw: l(a.mouth_hw, b.mouth_hw),
            curve: l(a.curve, b.curve),
            sneer: l(a.sneer, b.sneer),
            open: l(a.open, b.open),
        }
    }
}

const NEUTRAL: Expr = Expr {
    brow: [(-3.8, -11.0), (-8.2, -11.8), (-12.6, -11.0)],
    eye_open: 1.9,
    mouth_y: 12.0,
    mouth_hw: 6.0,
    curve: 0.0,
    sneer: 0.0,
    open: 0.0,
};

/// The full-intensity expression of `class`; `variant` picks between the alternatives some
/// classes have (open or closed mouth).
fn expression(class: usize, variant: bool) -> Expr {
    match class {
        // angry
        0 => Expr {
            brow: [(-2.6, -8.2), (-7.6, -10.2), (-12.4, -12.4)],
            eye_open: 1.0,
            mouth_y: 12.3,
            mouth_hw: if variant { 6.5 } else { 4.8 },
            curve: if variant { -1.6 } else { -1.2 },
            sneer: 0.0,
            open: if variant { 2.6 } else { 0.0 },
        },
        // disgust
        1 => Expr {
            brow: [(-3.0, -9.2), (-8.0, -10.2), (-12.6, -10.6)],
            eye_open: 1.1,
            mouth_y: 12.0,
            mouth_hw: 5.6,
            curve: -0.6,
            sneer: 3.2,
            open: 0.7,
        },
        // fear
        2 => Expr {
            brow: [(-3.0, -14.8), (-8.0, -14.4), (-12.6, -13.0)],
            eye_open: 2.9,
            mouth_y: 12.6,
            mouth_hw: 6.8,
            curve: -1.4,
            sneer: 0.0,
            open: 2.4,
        },
        // happy
        3 => Expr {
            brow: [(-3.8, -11.6), (-8.2, -12.6), (-12.6, -11.8)],
            eye_open: 1.35,
            mouth_y: 11.4,
            mouth_hw: 8.2,
            curve: 3.4,
            sneer: 0.0,
            open: if variant { 2.4 } else { 0.0 },
        },
        // sad
        4 => Expr {
            brow: [(-3.4, -13.8), (-8.0, -12.4), (-12.6, -9.8)],
            eye_open: 1.5,
            mouth_y: 12.6,
            mouth_hw: 5.2,
            curve: -2.6,
            sneer: 0.0,
            open: 0.0,
        },
        // surprise
        5 => Expr {
            brow: [(-3.8, -14.6), (-8.2, -16.4), (-12.6, -14.6)],
            eye_open: 3.0,
            mouth_y: 13.2,
            mouth_hw: 3.8,
            curve: 0.0,
            sneer: 0.0,
            open: 4.6,
        },
        // neutral
        _ => NEUTRAL,
    }
}

fn smoothstep_cov(d: f64) -> f64 {
    // Coverage of a shape whose signed distance (in output pixels) is d: 1 inside, 0 outside,
    // smooth over one pixel.
    let t = (0.5 - d).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Approximate signed distance to an axis-aligned ellipse with half-axes (a, b).
fn sd_ellipse(p: P, a: f64, b: f64) -> f64 {
    let k0 = ((p.0 / a).sq() + (p.1 / b).sq()).sqrt();
    let k1 = ((p.0 / (a * a)).sq() + (p.1 / (b * b)).sq()).sqrt();
    if k1 < 1e-12 {
        -a.min(b)
    } else {
        k0 * (k0 - 1.0) / k1
    }
}

/// Exact signed distance to an axis-aligned ellipse with half-axes (a, b), for the thin
/// ellipses (eyes, mouth) where the cheap approximation smears past the tips. The closest point
/// is found by bisection on the root of Eberly's secular equation: arithmetic and `sqrt` only.
fn sd_ellipse_exact(p: P, a: f64, b: f64) -> f64 {
    // Work in the first quadrant with the major axis along x.
    let (x, y, e0, e1) = if a >= b { (p.0.abs(), p.1.abs(), a, b) } else { (p.1.abs(), p.0.abs(), b, a) };
    if y == 0.0 {
        let reach = (e0 * e0 - e1 * e1) / e0;
        if x < reach {
            // Inside, on the major axis: the closest point is off the axis.
            let xe = e0 * e0 * x / (e0 * e0 - e1 * e1);
            let ye = e1 * (1.0 - (xe / e0).sq()).max(0.0).sqrt();
            return -((xe - x).sq() + ye * ye).sqrt();
        }
        return x - e0;
    }
    if x == 0.0 {
        return y - e1;
    }
    let (z0, z1) = (x / e0, y / e1);
    let g = z0 * z0 + z1 * z1 - 1.0;
    if g == 0.0 {
        return 0.0;
    }
    let r0 = (e0 / e1).sq();
    let n0 = r0 * z0;
    let (mut s0, mut s1) = (z1 - 1.0, if g < 0.0 { 0.0 } else { (n0 * n0 + z1 * z1).sqrt() - 1.0 });
    let mut s = 0.5 * (s0 + s1);
    for _ in 0..64 {
        s = 0.5 * (s0 + s1);
        if s == s0 || s == s1 {
            break;
        }
        let f = (n0 / (s + r0)).sq() + (z1 / (s + 1.0)).sq() - 1.0;
        if f > 0.0 {
            s0 = s;
        } else if f < 0.0 {
            s1 = s;
        } else {
            break;
        }
    }
    let (xe, ye) = (r0 * x / (s + r0), y / (s + 1.0));
    let d = ((xe - x).sq() + (ye - y).sq()).sqrt();
    if g < 0.0 {
        -d
    } else {
        d
    }
}

/// Distance to the segment ab.
fn d_segment(p: P, a: P, b: P) -> f64 {
    let (px, py) = (p.0 - a.0, p.1 - a.1);
    let (bx, by) = (b.0 - a.0, b.1 - a.1);
    let t = ((px * bx + py * by) / (bx * bx + by * by).max(1e-12)).clamp(0.0, 1.0);
    let (dx, dy) = (px - t * bx, py - t * by);
    (dx * dx + dy * dy).sqrt()
}

fn d_polyline(p: P, pts: &[P]) -> f64 {
    pts.windows(2).map(|s| d_segment(p, s[0], s[1])).fold(f64::INFINITY, f64::min)
}

/// Everything random about one face, drawn once before the pixels.
struct Face {
    // Similarity transform: image pixel → face frame.
    cx: f64,
    cy: f64,
    cos: f64,
    sin: f64,
    scale: f64,
    head_a: f64,
    head_b: f64,
    hairline: Option<f64>,
    hair: f64,
    bg: f64,
    bg_grad: P,
    skin: f64,
    light: P,
    dark: f64,
    brows: [[P; 3]; 2],
    brow_w: f64,
    eyes: [P; 2],
    eye_hw: f64,
    eye_open: [f64; 2],
    iris: f64,
    mouth: [P; 13],
    mouth_y: f64,
    mouth_hw: f64,
    open: f64,
    teeth: bool,
    wrinkles: bool,
    nose_y: f64,
}

impl Face {
    fn new(class: usize, seed: u64) -> Face {
        let mut r = Rng::new(seed);
        let variant = r.chance(0.4);
        let t = r.range(0.3, 1.2);
        let mut e = Expr::lerp(&NEUTRAL, &expression(class, variant), t);
        let side = if r.chance(0.5) { 1.0 } else { -1.0 };

        let angle = r.range(-15.0, 15.0) * (std::f64::consts::PI / 180.0);
        let (sin, cos) = sin_cos(angle);
        let scale = r.range(0.85, 1.15);
        let cx = SIZE as f64 * 0.5 + r.range(-3.0, 3.0);
        let cy = SIZE as f64 * 0.5 + 1.0 + r.range(-3.0, 3.0);

        let skin = r.range(95.0, 205.0);
        let bg = r.range(15.0, 235.0);
        let dark = skin * r.range(0.35, 0.65);
        let hairline = if r.chance(0.75) { Some(r.range(-19.0, -14.5)) } else { None };
        let hair = if r.chance(0.8) { r.range(10.0, 70.0) } else { r.range(150.0, 220.0) };

        // Per-face jitter of the features.
        for p in e.brow.iter_mut() {
            p.0 += r.normal() * 0.3;
            p.1 += r.normal() * 0.35;
        }
        e.mouth_y += r.normal() * 0.6;
        e.mouth_hw *= r.range(0.9, 1.1);
        let eye_dx = r.range(7.8, 9.2);
        let eye_y = -5.0 + r.normal() * 0.5;
        let open_scale = r.range(0.85, 1.15);
        let mut eye_open = [e.eye_open * open_scale; 2];
        let mut brows = [e.brow; 2];
        for p in brows[1].iter_mut() {
            p.0 = -p.0;
        }
        if class == 1 {
            // Disgust: the sneer side's eye narrows more and its brow comes down.
            let s = if side > 0.0 { 1 } else { 0 };
            eye_open[s] *= 0.7;
            for p in brows[s].iter_mut() {
                p.1 += 0.9 * t;
            }
        }

        // Mouth centre line: both corners lifted by `curve`, one corner by `sneer`.
        let mut mouth = [(0.0, 0.0); 13];
        for (k, m) in mouth.iter_mut().enumerate() {
            let n = k as f64 / 6.0 - 1.0; // -1..1
            let lift = e.curve * n * n + e.sneer * (side * n).max(0.0).sq()
                - 0.25 * e.sneer * (-side * n).max(0.0).sq();
            *m = (n * e.mouth_hw, e.mouth_y - lift);
        }
        let teeth = e.open > 1.2 && (class == 3 || class == 0 || r.chance(0.3));

        Face {
            cx,
            cy,
            cos,
            sin,
            scale,
            head_a: r.range(16.5, 19.5),
            head_b: r.range(21.0, 24.5),
            hairline,
            hair,
            bg,
            bg_grad: (r.range(-1.5, 1.5), r.range(-1.5, 1.5)),
            skin,
            light: (r.range(-1.6, 1.6), r.range(-1.2, 1.2)),
            dark,
            brows,
            brow_w: r.range(0.9, 1.4),
            eyes: [(-eye_dx, eye_y), (eye_dx, eye_y)],
            eye_hw: r.range(3.3, 4.0),
            eye_open,
            iris: r.range(1.4, 1.8),
            mouth,
            mouth_y: e.mouth_y,
            mouth_hw: e.mouth_hw,
            open: e.open,
            teeth,
            wrinkles: class == 1,
            nose_y: r.range(3.8, 5.2),
        }
    }

    /// Upward lift of the mouth's centre line at x (interpolated), relative to mouth_y.
    fn mouth_lift(&self, x: f64) -> f64 {
        let n = ((x / self.mouth_hw + 1.0) * 6.0).clamp(0.0, 12.0);
        let k = (n.floor() as usize).min(11);
        let f = n - k as f64;
        let y = self.mouth[k].1 * (1.0 - f) + self.mouth[k + 1].1 * f;
        self.mouth_y - y
    }

    /// The value of the pixel whose centre is (px, py), before noise.
    fn shade(&self, px: f64, py: f64) -> f64 {
        let (x, y) = (px - self.cx, py - self.cy);
        let p = ((self.cos * x + self.sin * y) / self.scale, (-self.sin * x + self.cos * y) / self.scale);
        let s = self.scale; // face-frame distances → pixels
        let cov = |d: f64| smoothstep_cov(d * s);
        let mut v =
            self.bg + self.bg_grad.0 * (px - SIZE as f64 * 0.5) + self.bg_grad.1 * (py - SIZE as f64 * 0.5);

        // Hair behind the head (a slightly larger ellipse, only above the hairline).
        let d_head = sd_ellipse(p, self.head_a, self.head_b);
        if let Some(line) = self.hairline {
            let d_hair =
                sd_ellipse((p.0, p.1 + 1.5), self.head_a + 1.8, self.head_b + 1.5).max(p.1 - (line + 9.0));
            v += (self.hair - v) * cov(d_hair);
        }

        // Head, darker towards its rim.
        let k = ((p.0 / self.head_a).sq() + (p.1 / self.head_b).sq()).min(1.0);
        let skin = self.skin * (1.0 - 0.25 * k * k);
        v += (skin - v) * cov(d_head);

        // Hair over the forehead: above a gently curved hairline.
        if let Some(line) = self.hairline {
            let d_fringe = d_head.max(p.1 - (line + 0.02 * p.0 * p.0));
            v += (self.hair - v) * cov(d_fringe);
        }

        // The facial features all lie in this box of the face frame; outside it every coverage
        // below is exactly 0, so skipping them changes nothing.
        if p.0.abs() < 17.0 && p.1 > -21.0 && p.1 < 22.0 {
            v = self.features(p, v);
        }

        // Lighting across the whole picture.
        v + self.light.0 * (px - SIZE as f64 * 0.5) + self.light.1 * (py - SIZE as f64 * 0.5)
    }
    /// Blends brows, eyes, nose and mouth over `v` at face-frame point `p`.
    fn features(&self, p: P, mut v: f64) -> f64 {
        let s = self.scale;
        let cov = |d: f64| smoothstep_cov(d * s);
        let dark = self.dark;
        // Eyebrows.
        for brow in &self.brows {
            let d = d_polyline(p, brow) - self.brow_w;
            v += (dark - v) * cov(d);
        }
        // Eyes: dark lid outline, lighter sclera, dark iris clipped to the opening.
        for (c, &open) in self.eyes.iter().zip(&self.eye_open) {
            let q = (p.0 - c.0, p.1 - c.1);
            if q.0.abs() > self.eye_hw + 2.5 || q.1.abs() > open.max(0.35) + 2.5 {
                continue;
            }
            let d = sd_ellipse_exact(q, self.eye_hw, open.max(0.35));
            v += (dark * 1.1 - v) * cov(d - 0.45);
            let sclera = (self.skin * 1.12 + 12.0).min(250.0);
            v += (sclera - v) * cov(d + 0.35);
            let di = ((q.0 * q.0 + q.1 * q.1).sqrt() - self.iris).max(d);
            v += (dark * 0.45 - v) * cov(di);
        }
        // Nose: a soft shadow along the side and two nostrils.
        if p.0.abs() < 5.0 && p.1 > -5.0 && p.1 < self.nose_y + 3.0 {
            let nose = d_segment(p, (1.2, -2.5), (2.2, self.nose_y - 1.6)) - 0.35;
            v += (self.skin * 0.8 - v) * 0.6 * cov(nose);
            for sx in [-1.0, 1.0] {
                let d = sd_ellipse((p.0 - sx * 1.9, p.1 - self.nose_y), 1.1, 0.7);
                v += (dark * 0.9 - v) * cov(d);
            }
            if self.wrinkles {
                for sx in [-1.0, 1.0] {
                    let d = d_segment(p, (sx * 0.9, -1.6), (sx * 2.6, 0.4)) - 0.4;
                    v += (dark * 1.1 - v) * 0.8 * cov(d);
                    let d = d_segment(p, (sx * 0.7, 0.6), (sx * 2.4, 2.2)) - 0.4;
                    v += (dark * 1.1 - v) * 0.8 * cov(d);
                }
            }
        }
        // Mouth: lips along the centre line, then the opening (bent ellipse) with teeth on top.
        if p.0.abs() < self.mouth_hw + 3.0 && (p.1 - self.mouth_y).abs() < 14.0 {
            let lips = d_polyline(p, &self.mouth) - 0.9;
            v += (dark - v) * cov(lips);
            if self.open > 0.05 {
                let lift = self.mouth_lift(p.0);
                let q = (p.0, p.1 - self.mouth_y + lift);
                let d = sd_ellipse_exact(q, self.mouth_hw, self.open);
                v += (dark * 0.9 - v) * cov(d - 0.7);
                v += (dark * 0.3 - v) * cov(d);
                if self.teeth {
                    let dt = d.max(q.1 + self.open * 0.25) + 0.3;
                    let tooth = (self.skin * 1.15 + 15.0).min(245.0);
                    v += (tooth - v) * cov(dt);
                }
            }
        }
        v
    }
}

/// Draws one 48x48 face of `class` (0..7, FER order) into `out`, fully determined by `seed`.
pub fn draw_face(class: usize, seed: u64, out: &mut [f32]) {
    assert_eq!(out.len(), SIZE * SIZE, "draw_face: output is not 48x48");
    let face = Face::new(class, seed);
    let mut noise = Rng::new(mix(seed, 0x006e_015e));
    for (i, o) in out.iter_mut().enumerate() {
        let (py, px) = ((i / SIZE) as f64 + 0.5, (i % SIZE) as f64 + 0.5);
        let v = face.shade(px, py) + noise.normal() * NOISE_STD;
        *o = v.clamp(0.0, 255.0) as f32;
    }
}

/// `x * x` (not `powi`, whose lowering is up to the platform).
trait Sq {
    fn sq(self) -> Self;
}

impl Sq for f64 {
    fn sq(self) -> f64 {
        self * self
    }
}
