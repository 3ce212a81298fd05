//! The paper's preprocessing (docs/DESIGN.md, "Preprocessing"): each image /255, its own mean removed and
//! its L2 norm scaled to `norm` (150); then every pixel standardized with the training set's per-pixel mean
//! and std, the std floored at a tenth of the mean std over all pixels ([`STD_FLOOR_FRACTION`]).

use super::Dataset;

/// A pixel's standard deviation is floored at this fraction of the mean over all pixels of their
/// standard deviations. A pixel nearly constant in training (MNIST's borders) would otherwise turn
/// a small change at test time into a huge input; with the floor, a standardized value is at most
/// `max |v - mean| / (STD_FLOOR_FRACTION · mean std)`, ten times the scale of a typical pixel.
pub const STD_FLOOR_FRACTION: f64 = 0.1;

/// Fitted preprocessing, saved beside a model so evaluation and prediction apply exactly what training did.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalizer {
    /// Planes per image (absent in checkpoints from before colour images: 1).
    #[serde(default = "one")]
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    /// Whether the per-image step (mean removal, L2 norm scaled to `norm`) runs before standardization.
    pub per_image: bool,
    pub norm: f32,
    /// Per-pixel mean of the training set after the per-image step, `channels * h * w` values.
    pub mean: Vec<f32>,
    /// Per-pixel (population) standard deviation of the training set after the per-image step, floored at
    /// `std_floor`.
    pub std: Vec<f32>,
    /// The floor the stds were fitted with ([`STD_FLOOR_FRACTION`] of their mean). `None` in checkpoints
    /// written before the floor existed, whose stds were floored at 1e-6 (constant pixels: 1); the stds
    /// stored in a file are applied as they are, so every checkpoint evaluates as it was trained.
    #[serde(default)]
    pub std_floor: Option<f32>,
}

fn one() -> usize {
    1
}

/// The per-image step into `out` (f64): /255; with `per_image`, the image's mean removed and its L2 norm
/// scaled to `norm` (an all-constant image becomes all zeros).
fn per_image_step(img: &[f32], per_image: bool, norm: f32, out: &mut Vec<f64>) {
    out.clear();
    out.extend(img.iter().map(|&v| f64::from(v) / 255.0));
    if per_image && !out.is_empty() {
        let mean = out.iter().sum::<f64>() / out.len() as f64;
        out.iter_mut().for_each(|v| *v -= mean);
        let l2 = out.iter().map(|v| v * v).sum::<f64>().sqrt();
        // Rounding can leave a constant image with a norm of ~1e-17: treat it as constant.
        let scale = if l2 > 1e-8 { f64::from(norm) / l2 } else { 0.0 };
        out.iter_mut().for_each(|v| *v *= scale);
    }
}

impl Normalizer {
    /// Fits on the training set: `per_image` as in the paper (each image /255, its own mean removed, L2 norm
    /// scaled to `norm`, 150 in the paper; without it, only /255). Then per-pixel mean and population std of
    /// the training set after that step, computed in f64, each std floored at [`STD_FLOOR_FRACTION`] of the
    /// mean std (1 when every pixel is constant). An empty training set gives mean 0 and std 1.
    pub fn fit(train: &Dataset, per_image: bool, norm: f32) -> Normalizer {
        let n_px = train.image_len();
        let n = train.len();
        // Sums of (x - shift) with the first image as the shift: exact zero variance for a constant pixel and
        // no cancellation for large means.
        let mut shift = Vec::with_capacity(n_px);
        let mut sum = vec![0f64; n_px];
        let mut sum_sq = vec![0f64; n_px];
        let mut buf = Vec::with_capacity(n_px);
        for i in 0..n {
            per_image_step(train.image(i), per_image, norm, &mut buf);
            if i == 0 {
                shift.clone_from(&buf);
            }
            for (((s, q), &v), &k) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(&buf).zip(&shift) {
                let d = v - k;
                *s += d;
                *q += d * d;
            }
        }
        shift.resize(n_px, 0.0);
        let nf = n.max(1) as f64;
        let mut mean = Vec::with_capacity(n_px);
        let mut sds = Vec::with_capacity(n_px);
        for ((&s, &q), &k) in sum.iter().zip(&sum_sq).zip(&shift) {
            let d = s / nf;
            mean.push((k + d) as f32);
            sds.push((q / nf - d * d).max(0.0).sqrt());
        }
        let (std, std_floor) = if n == 0 {
            (vec![1.0; n_px], None)
        } else {
            let mean_sd = sds.iter().sum::<f64>() / n_px.max(1) as f64;
            // A set of constant images has nothing to scale by: its pixels are only centred.
            let floor = if mean_sd > 0.0 { STD_FLOOR_FRACTION * mean_sd } else { 1.0 };
            (sds.iter().map(|&sd| sd.max(floor) as f32).collect(), Some(floor as f32))
        };
        Normalizer { channels: train.c, h: train.h, w: train.w, per_image, norm, mean, std, std_floor }
    }

    /// One raw image (`channels * h * w` intensities 0..=255) → standardized. Panics on another length.
    pub fn apply_image(&self, img: &[f32]) -> Vec<f32> {
        let mut buf = Vec::with_capacity(img.len());
        let mut out = Vec::with_capacity(img.len());
        self.apply_into(img, &mut buf, &mut out);
        out
    }

    fn apply_into(&self, img: &[f32], buf: &mut Vec<f64>, out: &mut Vec<f32>) {
        assert_eq!(
            img.len(),
            self.channels * self.h * self.w,
            "Normalizer fitted on {}x{}x{} images was given an image of {} values",
            self.channels,
            self.w,
            self.h,
            img.len()
        );
        per_image_step(img, self.per_image, self.norm, buf);
        out.extend(
            buf.iter()
                .zip(self.mean.iter().zip(&self.std))
                .map(|(&v, (&m, &s))| ((v - f64::from(m)) / f64::from(s)) as f32),
        );
    }

    /// All images of `ds`, standardized: `[n, c, h, w]`. Panics if `ds` has another image size.
    pub fn apply(&self, ds: &Dataset) -> Vec<f32> {
        assert_eq!(
            (ds.c, ds.h, ds.w),
            (self.channels, self.h, self.w),
            "Normalizer fitted on {}x{} images of {} channels was given {}x{} images of {}",
            self.w,
            self.h,
            self.channels,
            ds.w,
            ds.h,
            ds.c
        );
        let mut out = Vec::with_capacity(ds.len() * ds.image_len());
        let mut buf = Vec::with_capacity(ds.image_len());
        for i in 0..ds.len() {
            self.apply_into(ds.image(i), &mut buf, &mut out);
        }
        out
    }
}
