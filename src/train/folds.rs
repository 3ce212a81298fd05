//! K-fold cross-validation on the training split (the paper's FER protocol is 8 folds): one model
//! per fold, each in `<out>/fold<i>`, held-out accuracy per fold and its mean and spread.

use super::{run, RunOptions, Summary, TrainError};
use crate::data::{DataSource, Dataset};
use crate::gpu::Gpu;
use crate::model::NetConfig;
use crate::rng::{mix, Rng};

/// Splits `ds` into (train, held-out) for fold `i` of `k`: a permutation seeded by `seed`, fold i
/// holding out positions `i·n/k .. (i+1)·n/k` of it.
pub fn fold_split(ds: &Dataset, k: usize, i: usize, seed: u64) -> (Dataset, Dataset) {
    let n = ds.len();
    let mut idx: Vec<usize> = (0..n).collect();
    Rng::new(mix(seed, 0xf01d)).shuffle(&mut idx);
    let (lo, hi) = (i * n / k, (i + 1) * n / k);
    let held: Vec<usize> = idx[lo..hi].to_vec();
    let rest: Vec<usize> = idx[..lo].iter().chain(&idx[hi..]).copied().collect();
    (ds.subset(&rest), ds.subset(&held))
}

/// The outcome of a cross-validation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CrossValidation {
    pub folds: usize,
    /// Held-out accuracy of each fold run, in fold order.
    pub fold_accuracy: Vec<f64>,
    pub mean_accuracy: f64,
    /// Population standard deviation over the folds run.
    pub std_accuracy: f64,
    pub runs: Vec<Summary>,
}

/// Refuses fold settings that cannot run: `k` outside 2..=samples, `only` not below `k`, or a batch
/// larger than a fold's training part.
pub fn check_folds(
    train: &Dataset,
    path: &str,
    batch: usize,
    k: usize,
    only: Option<usize>,
) -> Result<(), TrainError> {
    let n = train.len();
    if k < 2 || k > n {
        return Err(TrainError::Input(format!(
            "--folds {k} must be between 2 and the {n} training samples of {path}"
        )));
    }
    if let Some(i) = only.filter(|&i| i >= k) {
        return Err(TrainError::Input(format!("--fold {i} must be below --folds {k}")));
    }
    // Fold i holds out samples i·n/k .. (i+1)·n/k; every fold that runs must keep a batch.
    let which: Vec<usize> = only.map_or((0..k).collect(), |i| vec![i]);
    if let Some((i, m)) = which.iter().map(|&i| (i, n - ((i + 1) * n / k - i * n / k))).min_by_key(|f| f.1) {
        if batch > m {
            return Err(TrainError::Input(format!(
                "--batch {batch} is larger than the {m} training samples of fold {i} of {k} of {path} (use --batch {m} \
                 or less)"
            )));
        }
    }
    Ok(())
}

/// Trains fold `only` of `k`, or every fold, on the training split of `source`; each run lands in
/// `<opts.out>/fold<i>` and is evaluated on its held-out part. `on_fold` hears of each finished run.
pub fn cross_validate(
    gpu: &Gpu,
    config: &NetConfig,
    source: &DataSource,
    k: usize,
    only: Option<usize>,
    opts: &RunOptions,
    mut on_fold: impl FnMut(usize, &Summary),
) -> Result<CrossValidation, TrainError> {
    let train = source.train()?;
    check_folds(train, &source.path, config.train.batch, k, only)?;
    let mut runs = Vec::new();
    let mut accuracy = Vec::new();
    for i in only.map_or((0..k).collect(), |i| vec![i]) {
        let (tr, held) = fold_split(train, k, i, config.train.seed);
        if opts.progress {
            eprintln!("dlsvm: fold {i} of {k}: {} training, {} held-out samples", tr.len(), held.len());
        }
        let fold_opts =
            RunOptions { out: opts.out.join(format!("fold{i}")), fold: Some((i, k)), ..opts.clone() };
        let s = run(gpu, config, source, &tr, Some(&held), &fold_opts)?;
        accuracy.push(s.test.as_ref().map_or(f64::NAN, |m| m.accuracy));
        on_fold(i, &s);
        runs.push(s);
    }
    let n = accuracy.len().max(1) as f64;
    let mean = accuracy.iter().sum::<f64>() / n;
    let std = (accuracy.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n).sqrt();
    Ok(CrossValidation { folds: k, fold_accuracy: accuracy, mean_accuracy: mean, std_accuracy: std, runs })
}
