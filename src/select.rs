//! `dlsvm compare --select KEY=V1,V2,...`: each top's own hyperparameters, chosen the way a careful
//! paper chooses them, on held-out folds of the training split, never on the test split. For one
//! top and seed every combination of the `--select` values is trained on K−1 folds and scored on
//! the held-out one, for each of the K folds; the combination with the lowest mean held-out error
//! is chosen (ties: the first in the order given), and the comparison's run of that top and seed
//! trains with it on the whole training split. The folds are cut by one seed (the comparison's
//! first), the same for every top and seed, so the choice is paired as the runs are.
//!
//! Only the training split reaches this module: [`select`] takes it as its one dataset. Each
//! selection run is an ordinary `dlsvm train` run directory,
//! `<out>/select/seed<S>/<top>/<key=value,...>/fold<I>`, resumed by `compare --resume`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::{DataSource, Dataset};
use crate::gpu::Gpu;
use crate::model::{NetConfig, Top};
use crate::train::grid::{self, Axis, Setting};
use crate::train::{self, RunOptions, TrainError};

/// Why `--select` is refused with compare's `--folds` (said by the command line before the data
/// is read, and by [`crate::compare::compare`] for other callers).
pub const NOT_WITH_FOLDS: &str =
    "--select chooses on folds of the training split and --folds replaces the test split \
     by folds: use one of them (--select needs data with a test split)";

/// The default of `--select-folds`.
pub const DEFAULT_FOLDS: usize = 3;

/// What to choose from, and on how many folds.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectSpec {
    /// The `--select` axes, as `--grid` takes them.
    pub axes: Vec<Axis>,
    /// K: each candidate is trained K times, on K−1 folds, scored on the held-out one.
    pub folds: usize,
    /// The seed the folds are cut with (the same for every top and seed).
    pub fold_seed: u64,
}

impl SelectSpec {
    /// Checks the axes (known `[train]` keys, values of the right type, plain names) against
    /// `config` and the fold count, before any data is read.
    pub fn check(&self, config: &NetConfig) -> Result<(), String> {
        if self.folds < 2 {
            return Err(format!("--select-folds {}: needs at least 2 folds", self.folds));
        }
        let settings = grid::settings(&self.axes).map_err(|m| m.replace("--grid", "--select"))?;
        for setting in &settings {
            grid::apply(config, setting).map_err(|m| m.replace("--grid", "--select"))?;
        }
        Ok(())
    }
}

/// One candidate setting and how it did.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Candidate {
    /// `{key: value}` in the `--select` order.
    pub setting: serde_json::Map<String, serde_json::Value>,
    /// The mean over the K folds of the held-out error, a fraction.
    pub validation_error: f64,
    /// The held-out error of each fold, in fold order (up to a fold whose run diverged).
    pub fold_errors: Vec<f64>,
    /// Why the candidate is out, when a run of it diverged (its error then counts as 1: it is
    /// never chosen while another candidate trains).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diverged: Option<String>,
}

/// The choice for one top and seed.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Selection {
    pub top: String,
    pub seed: u64,
    /// The chosen `{key: value}`: what the comparison's run of this top and seed trained with.
    pub chosen: serde_json::Map<String, serde_json::Value>,
    /// The chosen candidate's mean held-out error.
    pub validation_error: f64,
    pub candidates: Vec<Candidate>,
}

/// A setting as `{key: value}`, each value as the TOML it was written as (a number stays one).
fn as_map(setting: &Setting) -> serde_json::Map<String, serde_json::Value> {
    setting
        .iter()
        .map(|(k, v)| {
            let parsed = format!("v = {v}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|t| t.get("v").cloned())
                .and_then(|t| serde_json::to_value(t).ok())
                .unwrap_or_else(|| serde_json::Value::String(v.clone()));
            (k.clone(), parsed)
        })
        .collect()
}

/// The directory of one selection run.
pub fn run_dir(out: &Path, top: Top, seed: u64, setting: &Setting, fold: usize) -> PathBuf {
    out.join("select")
        .join(format!("seed{seed}"))
        .join(top.name())
        .join(grid::dir_name(setting))
        .join(format!("fold{fold}"))
}

/// What [`select`] tells its caller after each selection run: the setting, the fold, its
/// held-out error, and the run's directory.
pub struct Step<'a> {
    pub setting: &'a Setting,
    pub fold: usize,
    pub folds: usize,
    pub error: f64,
    pub dir: &'a Path,
}

/// Chooses the setting of `config` (the run of `top` with `seed`, as the comparison would train
/// it) from `spec` on folds of `train_set` (the training split: the only data it sees). Returns
/// the selection and the config with the chosen setting applied.
#[allow(clippy::too_many_arguments)]
pub fn select(
    gpu: &Gpu,
    config: &NetConfig,
    source: &DataSource,
    train_set: &Dataset,
    spec: &SelectSpec,
    (top, seed): (Top, u64),
    opts: &RunOptions,
    mut step: impl FnMut(Step),
) -> Result<(Selection, NetConfig), TrainError> {
    let settings = grid::settings(&spec.axes).map_err(TrainError::Input)?;
    let mut candidates = Vec::with_capacity(settings.len());
    for setting in &settings {
        let cfg = grid::apply(config, setting).map_err(TrainError::Input)?;
        let mut fold_errors = Vec::with_capacity(spec.folds);
        let mut diverged = None;
        for i in 0..spec.folds {
            let (tr, held) = train::fold_split(train_set, spec.folds, i, spec.fold_seed);
            let dir = run_dir(&opts.out, top, seed, setting, i);
            let ropts =
                RunOptions { out: dir.clone(), progress: false, fold: Some((i, spec.folds)), ..opts.clone() };
            let (error, why) = match train::run(gpu, &cfg, source, &tr, Some(&held), &ropts) {
                Ok(s) => (s.test.as_ref().map_or(1.0, |m| 1.0 - m.accuracy), None),
                // A setting that diverges is a bad candidate, not a failed comparison.
                Err(e @ TrainError::Diverged { .. }) => (1.0, Some(format!("fold {i}: {e}"))),
                Err(e) => return Err(e),
            };
            step(Step { setting, fold: i, folds: spec.folds, error, dir: &dir });
            fold_errors.push(error);
            if why.is_some() {
                diverged = why;
                break;
            }
        }
        let validation_error = match diverged {
            Some(_) => 1.0,
            None => fold_errors.iter().sum::<f64>() / fold_errors.len() as f64,
        };
        candidates.push(Candidate { setting: as_map(setting), validation_error, fold_errors, diverged });
    }
    if candidates.iter().all(|c| c.diverged.is_some()) {
        return Err(TrainError::Input(format!(
            "--select: every candidate diverged for {} with seed {seed} (the first: {}); try smaller values",
            top.name(),
            candidates[0].diverged.as_deref().unwrap_or("?")
        )));
    }
    // The lowest mean held-out error; the first of equals (a NaN never wins).
    let out = |c: &Candidate| c.diverged.is_some() || c.validation_error.is_nan();
    let best = (0..candidates.len()).fold(0, |b, i| {
        let (c, cb) = (&candidates[i], &candidates[b]);
        if (out(cb) && !out(c)) || (!out(c) && c.validation_error < cb.validation_error) {
            i
        } else {
            b
        }
    });
    let chosen = grid::apply(config, &settings[best]).map_err(TrainError::Input)?;
    let selection = Selection {
        top: top.name().to_string(),
        seed,
        chosen: candidates[best].setting.clone(),
        validation_error: candidates[best].validation_error,
        candidates,
    };
    Ok((selection, chosen))
}

/// compare.md's "Selection" section: per top and seed, the chosen values and every candidate's
/// held-out error.
pub fn markdown(selections: &[Selection], folds: usize) -> String {
    if selections.is_empty() {
        return String::new();
    }
    let setting = |m: &serde_json::Map<String, serde_json::Value>| {
        m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    };
    let pct = |v: f64| format!("{:.2} %", 100.0 * v);
    let mut s = format!(
        "\n## Selection\n\nEach top's setting chosen per seed by the lowest mean held-out error of \
         {folds}-fold cross-validation on the training split (the same folds for every top and \
         seed; the test split is not read); the runs above trained with the chosen setting on the \
         whole training split.\n\n| top | seed | chosen | held-out error | every candidate |\n|---|---|---|---|---|\n"
    );
    for sel in selections {
        let all: Vec<String> = sel
            .candidates
            .iter()
            .map(|c| match c.diverged {
                Some(_) => format!("{}: diverged", setting(&c.setting)),
                None => format!("{}: {}", setting(&c.setting), pct(c.validation_error)),
            })
            .collect();
        s += &format!(
            "| {} | {} | {} | {} | {} |\n",
            sel.top,
            sel.seed,
            setting(&sel.chosen),
            pct(sel.validation_error),
            all.join("; ")
        );
    }
    s
}
