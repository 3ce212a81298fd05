//! Evaluation: scores of a data split under one or more models (an ensemble averages them),
//! optional test-time augmentation, the metrics the paper reports, and prediction of single
//! images. In the browser build the async functions and `metrics` exist (a page scores the models
//! it trains in place, and predicts with a model from bytes; loading files, ensembles and the
//! blocking calls are native).
#![cfg_attr(target_arch = "wasm32", allow(unused_imports))]

use std::path::{Path, PathBuf};

use crate::data::augment::Augment;
use crate::data::{self, batch, DataSource, Dataset};
use crate::gpu::{Gpu, GpuError};
use crate::model::checkpoint::{self, Checkpoint};
use crate::model::plan::Plan;
use crate::model::GpuNet;

/// What stops an evaluation: the device, or a model or data that does not fit (one line naming
/// the file).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("{0}")]
    Input(String),
}

/// A trained model ready to score images: its checkpoint and its network on the GPU.
pub struct Model {
    pub path: PathBuf,
    pub checkpoint: Checkpoint,
    pub net: GpuNet,
}

/// A model's answer for one image: the best class and every class's score (in the checkpoint's
/// class order).
pub type Prediction = (String, Vec<f32>);

impl Model {
    /// Puts the network of `ck` (read from `path`) on the GPU to score `batch` images at a time,
    /// or fewer where the device's buffers need it (evaluation's batch does not change its
    /// results), with the kernel variants `plan_for` gives for the network and batch (the page:
    /// the defaults; natively: the tuner's).
    pub fn with_checkpoint(
        gpu: &Gpu,
        path: &Path,
        ck: Checkpoint,
        batch: usize,
        plan_for: impl FnOnce(&crate::model::Net, usize) -> Result<Plan, EvalError>,
    ) -> Result<Model, EvalError> {
        let net = ck.net().map_err(|e| EvalError::Input(format!("{}: {e}", path.display())))?;
        let batch = batch.min(GpuNet::max_batch(gpu, &net)).max(1);
        GpuNet::check_batch_fits(gpu, &net, batch)
            .map_err(|m| EvalError::Input(format!("{}: {m}", path.display())))?;
        let plan = plan_for(&net, batch)?;
        let g = GpuNet::with_plan(gpu, &net, batch, &ck.params, ck.config.train.svm_c, 0, &plan)?;
        Ok(Model { path: path.to_path_buf(), checkpoint: ck, net: g })
    }

    pub fn class_names(&self) -> &[String] {
        &self.checkpoint.class_names
    }

    /// Scores `[n, classes]` of the raw images of `ds` (normalized as in training), with `tta`
    /// jittered copies averaged (1: the centre crop only).
    pub async fn scores_async(&self, gpu: &Gpu, ds: &Dataset, tta: usize) -> Result<Vec<f32>, GpuError> {
        let ck = &self.checkpoint;
        let x = ck.normalizer.apply(ds);
        let (augment, seed) = (&ck.config.train.augment, ck.config.train.seed);
        scores_async(gpu, &self.net, &x, ds.len(), ds.h, ds.w, tta, augment, seed).await
    }

    /// The class and every class's score of an image file's contents `bytes` (PNG or JPEG;
    /// `what` names the file in errors): decoded to the model's channels, resized to its image
    /// size when it differs, normalized as in training, scored on the centre crop. `dlsvm
    /// predict` and the browser page's `predict` both come here.
    pub async fn predict_bytes_async(
        &self,
        gpu: &Gpu,
        what: &Path,
        bytes: &[u8],
    ) -> Result<Prediction, EvalError> {
        let (size, c) = (self.checkpoint.config.image_size, self.checkpoint.config.channels);
        let (h, w, img) =
            data::folder::decode_image(bytes, c, what).map_err(|e| EvalError::Input(e.to_string()))?;
        let pixels = data::resize_planes(&img, c, h, w, size, size);
        let s = self.scores_async(gpu, &Dataset { c, h: size, w: size, pixels, labels: vec![-1] }, 1).await?;
        let best = (0..s.len()).fold(0, |b, j| if s[j] > s[b] { j } else { b });
        Ok((self.class_names()[best].clone(), s))
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Model {
    /// Loads the checkpoint at `path` ([`Model::with_checkpoint`]) with the kernel variants
    /// `tune` gives.
    pub fn load(gpu: &Gpu, path: &Path, batch: usize, tune: crate::tune::Mode) -> Result<Model, EvalError> {
        let ck = checkpoint::load(path).map_err(|e| EvalError::Input(e.to_string()))?;
        Model::with_checkpoint(gpu, path, ck, batch, |net, batch| {
            Ok(crate::tune::plan(gpu, net, batch, tune, &mut |m| eprintln!("dlsvm: {m}"))?.0)
        })
    }

    /// [`Model::scores_async`], blocking.
    pub fn scores(&self, gpu: &Gpu, ds: &Dataset, tta: usize) -> Result<Vec<f32>, GpuError> {
        pollster::block_on(self.scores_async(gpu, ds, tta))
    }

    /// The class and every class's score of the image file at `path`
    /// ([`Model::predict_bytes_async`]).
    pub fn predict(&self, gpu: &Gpu, path: &Path) -> Result<Prediction, EvalError> {
        let bytes =
            std::fs::read(path).map_err(|e| EvalError::Input(data::DataError::io(path, e).to_string()))?;
        pollster::block_on(self.predict_bytes_async(gpu, path, &bytes))
    }
}

/// One labelled split evaluated by an ensemble.
#[derive(Clone, Debug)]
pub struct SplitMetrics {
    pub split: String,
    pub metrics: Metrics,
}

/// Evaluates the average of the models' scores (one model: its own) on every labelled split of
/// `source`. The models must share their classes and image size, and the data must have as many
/// classes.
#[cfg(not(target_arch = "wasm32"))]
pub fn ensemble(
    gpu: &Gpu,
    models: &[Model],
    source: &DataSource,
    tta: usize,
) -> Result<Vec<SplitMetrics>, EvalError> {
    let first = models.first().ok_or_else(|| EvalError::Input("no model to evaluate".into()))?;
    if tta == 0 {
        return Err(EvalError::Input("--tta must be at least 1".into()));
    }
    let (fc, fp) = (&first.checkpoint, first.path.display());
    for m in &models[1..] {
        let c = &m.checkpoint;
        if c.class_names != fc.class_names || c.config.image_size != fc.config.image_size {
            return Err(EvalError::Input(format!(
                "{}: its classes or image size differ from {fp}'s; an ensemble needs the same ones",
                m.path.display()
            )));
        }
    }
    let k = fc.class_names.len();
    if source.class_names.len() != k {
        return Err(EvalError::Input(format!(
            "{}: the data has {} classes but the model {fp} has {k}; evaluate it on data with the model's classes",
            source.path,
            source.class_names.len()
        )));
    }
    let mut out = Vec::new();
    for (name, ds) in &source.splits {
        if ds.is_empty() || ds.labels.iter().all(|&y| y < 0) {
            continue;
        }
        let mut total = vec![0.0f32; ds.len() * k];
        for m in models {
            for (t, v) in total.iter_mut().zip(m.scores(gpu, ds, tta)?) {
                *t += v / models.len() as f32;
            }
        }
        out.push(SplitMetrics { split: name.clone(), metrics: metrics(&total, &ds.labels, k) });
    }
    if out.is_empty() {
        let splits: Vec<&str> = source.splits.iter().map(|(n, _)| n.as_str()).collect();
        return Err(EvalError::Input(format!(
            "{}: no labelled samples to evaluate (splits: {}); expected labels: a CSV `emotion` column, class \
             folders or IDX label files",
            source.path,
            splits.join(", ")
        )));
    }
    Ok(out)
}

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
    /// Mean hinge Σ_k max(0, 1 − t·a) (C = 1).
    pub hinge: f64,
}

impl Metrics {
    /// The objective matching the top: squared hinge for the L2-SVM, hinge for the L1-SVM,
    /// cross-entropy for softmax.
    pub fn objective(&self, top: crate::model::Top) -> f64 {
        match top {
            crate::model::Top::L2svm => self.squared_hinge,
            crate::model::Top::Softmax => self.cross_entropy,
            crate::model::Top::L1svm => self.hinge,
        }
    }
}

/// Metrics of `scores [n, k]` against `labels` (rows with a negative label are skipped).
pub fn metrics(scores: &[f32], labels: &[i32], k: usize) -> Metrics {
    let mut confusion = vec![vec![0u64; k]; k];
    let (mut n, mut correct, mut xent, mut sq_hinge, mut hinge) = (0usize, 0usize, 0.0f64, 0.0f64, 0.0f64);
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
            sq_hinge += h * h;
            hinge += h;
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
        squared_hinge: sq_hinge / d,
        hinge: hinge / d,
    }
}

/// Scores `[n, classes]` of standardized images `[n, h, w]` (centre crops), or with `tta > 1` the
/// mean over `tta` jittered copies (copy 0 is the centre crop).
#[cfg(not(target_arch = "wasm32"))]
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
    pollster::block_on(scores_async(gpu, net, images, n, h, w, tta, augment, seed))
}

/// [`scores`], awaiting each batch's read-back (the one path of both targets).
#[allow(clippy::too_many_arguments)]
pub async fn scores_async(
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
    let (size, c) = (net.net.config.input_size, net.net.config.channels);
    let per = c * size * size;
    let labels = vec![-1; n];
    let mut out = vec![0.0f32; n * k];
    if tta <= 1 {
        for b in batch::eval_batches(images, &labels, c, h, w, size, size, net.batch) {
            let rows = b.y.len();
            let s = net.scores_async(gpu, &b.x, rows).await?;
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
                    c,
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
            let s = net.scores_async(gpu, &x[..rows * per], rows).await?;
            for (o, v) in out[start * k..(start + rows) * k].iter_mut().zip(&s) {
                *o += v / tta as f32;
            }
        }
        start += rows;
    }
    Ok(out)
}
