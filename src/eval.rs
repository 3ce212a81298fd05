//! Evaluation: scores of a data split under one or more models (an ensemble averages them),
//! optional test-time augmentation, and the metrics the paper reports.

use crate::data::augment::Augment;
use crate::data::batch;
use crate::gpu::{Gpu, GpuError};
use crate::model::GpuNet;

/// Accuracy, per-class accuracy, confusion matrix and both objectives of a set of scores.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Metrics {
    pub samples: usize,
    pub accuracy: f64,
    /// counts[true][pred]
    pub confusion: Vec<Vec<u64>>,
    pub per_class: Vec<Option<f64>>,
    /// Mean cross-entropy of the softmax of the scores.
    pub cross_entropy: f64,
    /// Mean squared hinge Σ_k max(0, 1 − t·a)² (C = 1).
    pub squared_hinge: f64,
}

impl Metrics {
    /// The objective matching the top: squared hinge for the SVM, cross-entropy for softmax.
    pub fn objective(&self, top: crate::model::Top) -> f64 {
        match top {
            crate::model::Top::L2svm => self.squared_hinge,
            crate::model::Top::Softmax => self.cross_entropy,
        }
    }
}

/// Metrics of `scores [n, k]` against `labels` (rows with a negative label are skipped).
pub fn metrics(scores: &[f32], labels: &[i32], k: usize) -> Metrics {
    let mut confusion = vec![vec![0u64; k]; k];
    let (mut n, mut correct, mut xent, mut hinge) = (0usize, 0usize, 0.0f64, 0.0f64);
    for (row, &y) in scores.chunks(k).zip(labels) {
        if y < 0 || y as usize >= k {
            continue;
        }
        let y = y as usize;
        let mut pred = 0;
        for j in 1..k {
            if row[j] > row[pred] {
                pred = j;
            }
        }
        confusion[y][pred] += 1;
        correct += (pred == y) as usize;
        let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        xent += lse - row[y] as f64;
        for (j, &a) in row.iter().enumerate() {
            let t = if j == y { 1.0 } else { -1.0 };
            let h = (1.0 - t * a as f64).max(0.0);
            hinge += h * h;
        }
        n += 1;
    }
    let per_class = confusion
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let total: u64 = r.iter().sum();
            (total > 0).then(|| r[i] as f64 / total as f64)
        })
        .collect();
    let d = n.max(1) as f64;
    Metrics {
        samples: n,
        accuracy: correct as f64 / d,
        confusion,
        per_class,
        cross_entropy: xent / d,
        squared_hinge: hinge / d,
    }
}

/// Scores `[n, classes]` of standardized images `[n, h, w]` (centre crops), or with `tta > 1` the
/// mean over `tta` jittered copies (copy 0 is the centre crop).
#[allow(clippy::too_many_arguments)]
pub fn scores(
    gpu: &Gpu,
    net: &GpuNet,
    images: &[f32],
    n: usize,
    h: usize,
    w: usize,
    tta: usize,
    augment: &Augment,
    seed: u64,
) -> Result<Vec<f32>, GpuError> {
    let k = net.net.classes;
    let size = net.net.config.input_size;
    let per = size * size;
    let labels = vec![-1; n];
    let mut out = vec![0.0f32; n * k];
    if tta <= 1 {
        for b in batch::eval_batches(images, &labels, h, w, size, size, net.batch) {
            let rows = b.y.len();
            let s = net.scores(gpu, &b.x, rows)?;
            let first = b.indices[0];
            out[first * k..(first + rows) * k].copy_from_slice(&s);
        }
        return Ok(out);
    }
    let mut x = vec![0.0f32; net.batch * per];
    let mut start = 0;
    while start < n {
        let rows = (n - start).min(net.batch);
        for copy in 0..tta {
            for r in 0..rows {
                batch::tta_image(
                    images,
                    h,
                    w,
                    start + r,
                    size,
                    size,
                    augment,
                    seed,
                    copy,
                    &mut x[r * per..(r + 1) * per],
                );
            }
            let s = net.scores(gpu, &x[..rows * per], rows)?;
            for (o, v) in out[start * k..(start + rows) * k].iter_mut().zip(&s) {
                *o += v / tta as f32;
            }
        }
        start += rows;
    }
    Ok(out)
}
