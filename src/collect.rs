//! `dlsvm collect DIR`: the summary of a set of runs from their run directories alone (what a
//! cluster's array jobs leave behind): every run directory below DIR (a folder with a
//! `config.toml`) is finished (`summary.json`), unfinished (a checkpoint short of its steps, or
//! none yet) or failed (neither). Cross-validations (`fold<i>` folders) give per-fold and mean ± std
//! held-out accuracy and, where every fold finished and the data can be read, the accuracy of
//! the fold models averaged as an ensemble on the test split; a grid (`key=value,...` folders)
//! gives its table with the best setting.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::DataSource;
use crate::eval::{self, Model};
use crate::gpu::Gpu;
use crate::model::checkpoint;

/// What a run directory holds.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunState {
    /// `summary.json` was written: the run ended. Its test (held-out) accuracy, when it had test data.
    Finished { accuracy: Option<f64>, steps: u64, data: Option<String> },
    /// A checkpoint short of the planned steps: resumable.
    Unfinished { step: u64, total: u64 },
    /// Neither a summary nor a readable checkpoint (the run failed before its first checkpoint, or
    /// its files are damaged): `why` says which.
    Failed { why: String },
    /// A process is writing there now (it holds the directory's lock, [`crate::rundir`]): `by`
    /// names it (pid and host).
    Running { by: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct RunEntry {
    /// The run directory, relative to the collected folder.
    pub name: String,
    #[serde(flatten)]
    pub state: RunState,
}

/// A cross-validation: the `fold<i>` runs of one folder.
#[derive(Clone, Debug, Serialize)]
pub struct FoldSet {
    pub name: String,
    /// Per fold (in fold order): its held-out accuracy, None while it is not finished.
    pub folds: Vec<(usize, Option<f64>)>,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    /// The fold models averaged on the data's test split, when every fold finished and the data
    /// could be read; else why not.
    pub ensemble: Result<f64, String>,
}

/// One setting of a grid: its folder's runs' accuracy (a fold set's mean, or a single run's).
#[derive(Clone, Debug, Serialize)]
pub struct GridRow {
    pub name: String,
    pub accuracy: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Collected {
    pub dir: String,
    pub runs: Vec<RunEntry>,
    pub fold_sets: Vec<FoldSet>,
    pub grid: Vec<GridRow>,
    /// The grid row with the highest accuracy, when there is a grid.
    pub best: Option<usize>,
    /// Names of the runs that are not finished (unfinished or failed).
    pub incomplete: Vec<String>,
}

fn is_run_dir(p: &Path) -> bool {
    p.join("config.toml").is_file()
}

/// Every run directory at or below `dir` (not inside a run directory's `checkpoints`), in name order.
fn run_dirs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if is_run_dir(dir) {
        out.push(dir.to_path_buf());
    }
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut subs: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.is_dir() && !p.ends_with("checkpoints")).collect();
    subs.sort();
    for s in subs {
        run_dirs(&s, depth - 1, out);
    }
}

fn state_of(dir: &Path) -> RunState {
    if let Some(by) = crate::rundir::holder(dir) {
        return RunState::Running { by };
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("summary.json")) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            return RunState::Finished {
                accuracy: v["test"]["accuracy"].as_f64(),
                steps: v["steps"].as_u64().unwrap_or(0),
                data: v["data"].as_str().map(String::from),
            };
        }
        return RunState::Failed { why: "summary.json is not readable JSON".into() };
    }
    match checkpoint::load(&dir.join("model.safetensors")) {
        Ok(ck) => RunState::Unfinished { step: ck.step, total: ck.total_steps },
        Err(_) if !dir.join("model.safetensors").exists() => RunState::Failed {
            why: "no checkpoint: it stopped before its first one, or has not started".into(),
        },
        Err(e) => RunState::Failed { why: format!("its checkpoint is not readable: {e}") },
    }
}

fn fold_index(p: &Path) -> Option<usize> {
    p.file_name()?.to_str()?.strip_prefix("fold")?.parse().ok()
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    (mean, (v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n).sqrt())
}

/// Collects `dir`. `gpu` and `data` (else each run's recorded data path) serve the ensembles;
/// without a GPU the ensembles say so.
pub fn collect(dir: &Path, gpu: Option<&Gpu>, data: Option<&Path>) -> Result<Collected, String> {
    if !dir.is_dir() {
        return Err(format!("{}: not a folder", dir.display()));
    }
    let mut dirs = Vec::new();
    run_dirs(dir, 4, &mut dirs);
    if dirs.is_empty() {
        return Err(format!("{}: no run directories (folders with a config.toml) below it", dir.display()));
    }
    let rel = |p: &Path| p.strip_prefix(dir).map_or(p.display().to_string(), |r| r.display().to_string());
    let name_of = |p: &Path| {
        let r = rel(p);
        if r.is_empty() {
            ".".to_string()
        } else {
            r
        }
    };
    let runs: Vec<(PathBuf, RunEntry)> =
        dirs.iter().map(|d| (d.clone(), RunEntry { name: name_of(d), state: state_of(d) })).collect();
    // Cross-validations: folders whose run directories are fold<i>.
    let mut parents: Vec<PathBuf> = dirs
        .iter()
        .filter(|d| fold_index(d).is_some())
        .filter_map(|d| d.parent().map(Path::to_path_buf))
        .collect();
    parents.dedup();
    let mut fold_sets = Vec::new();
    for parent in &parents {
        let members: Vec<&(PathBuf, RunEntry)> = runs
            .iter()
            .filter(|(d, _)| d.parent() == Some(parent.as_path()) && fold_index(d).is_some())
            .collect();
        let mut folds: Vec<(usize, Option<f64>)> = members
            .iter()
            .map(|(d, e)| {
                let acc = match &e.state {
                    RunState::Finished { accuracy, .. } => *accuracy,
                    _ => None,
                };
                (fold_index(d).unwrap_or(0), acc)
            })
            .collect();
        folds.sort_by_key(|f| f.0);
        let done: Vec<f64> = folds.iter().filter_map(|f| f.1).collect();
        let (mean, std) = if done.is_empty() {
            (None, None)
        } else {
            let (m, s) = mean_std(&done);
            (Some(m), Some(s))
        };
        let ensemble = if done.len() < folds.len() {
            Err(format!("{} of {} folds finished", done.len(), folds.len()))
        } else {
            ensemble_accuracy(
                gpu,
                data,
                &members.iter().map(|(d, e)| (d.clone(), e.clone())).collect::<Vec<_>>(),
            )
        };
        fold_sets.push(FoldSet { name: name_of(parent), folds, mean, std, ensemble });
    }
    // A grid: the immediate sub-folders of DIR named key=value[,key=value...].
    let mut grid = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut settings: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains('=')))
            .collect();
        settings.sort();
        for s in settings {
            let name = name_of(&s);
            let accuracy = match fold_sets.iter().find(|f| f.name == name) {
                Some(f) => f.mean,
                None => runs.iter().find(|(d, _)| *d == s).and_then(|(_, e)| match &e.state {
                    RunState::Finished { accuracy, .. } => *accuracy,
                    _ => None,
                }),
            };
            grid.push(GridRow { name, accuracy });
        }
    }
    let best = (!grid.is_empty())
        .then(|| {
            (0..grid.len()).filter(|&i| grid[i].accuracy.is_some()).max_by(|&a, &b| {
                grid[a]
                    .accuracy
                    .partial_cmp(&grid[b].accuracy)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(b.cmp(&a))
            })
        })
        .flatten();
    let incomplete = runs
        .iter()
        .filter(|(_, e)| !matches!(e.state, RunState::Finished { .. }))
        .map(|(_, e)| e.name.clone())
        .collect();
    Ok(Collected {
        dir: dir.display().to_string(),
        runs: runs.into_iter().map(|(_, e)| e).collect(),
        fold_sets,
        grid,
        best,
        incomplete,
    })
}

/// The finished fold models of one cross-validation averaged on the test split of `data` (else
/// of the data their runs recorded).
fn ensemble_accuracy(
    gpu: Option<&Gpu>,
    data: Option<&Path>,
    members: &[(PathBuf, RunEntry)],
) -> Result<f64, String> {
    let gpu = gpu.ok_or("no GPU adapter to evaluate the ensemble")?;
    let models = members
        .iter()
        .map(|(d, _)| {
            Model::load(gpu, &d.join("model.safetensors"), 128, crate::tune::Mode::Cached)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let path = match data {
        Some(p) => p.to_path_buf(),
        None => {
            let recorded = members.iter().find_map(|(_, e)| match &e.state {
                RunState::Finished { data: Some(p), .. } => Some(p.clone()),
                _ => None,
            });
            PathBuf::from(recorded.filter(|p| Path::new(p).exists()).ok_or(
                "the runs' data is not at the path they recorded (or was the built-in faces); give --data",
            )?)
        }
    };
    let c = &models[0].checkpoint.config;
    let source: DataSource = crate::data::load_channels(&path, Some(c.image_size), c.channels, &mut |_| {})
        .map_err(|e| e.to_string())?;
    let source = &source;
    if source.test().is_none() {
        return Err(format!("{}: no test split to evaluate the ensemble on", source.path));
    }
    let results = eval::ensemble(gpu, &models, source, 1).map_err(|e| e.to_string())?;
    results
        .iter()
        .find(|r| r.split == "test" || r.split == "private_test")
        .map(|r| r.metrics.accuracy)
        .ok_or_else(|| "no labelled test split".to_string())
}

/// The summary as text: fold sets, the grid with its best row, the runs not finished.
pub fn text(c: &Collected) -> String {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a));
    let mut s = format!(
        "{}: {} run directories, {} finished\n",
        c.dir,
        c.runs.len(),
        c.runs.len() - c.incomplete.len()
    );
    for f in &c.fold_sets {
        let per: Vec<String> = f.folds.iter().map(|(i, a)| format!("fold {i} {}", pct(*a))).collect();
        s += &format!("{}: {}\n", f.name, per.join(", "));
        s += &format!("  held-out accuracy {} ± {}", pct(f.mean), pct(f.std));
        s += &match &f.ensemble {
            Ok(a) => {
                format!("; the {} fold models averaged: test accuracy {:.2}%\n", f.folds.len(), 100.0 * a)
            }
            Err(why) => format!("; no ensemble: {why}\n"),
        };
    }
    if !c.grid.is_empty() {
        s += "grid:\n";
        for (i, g) in c.grid.iter().enumerate() {
            s += &format!(
                "  {:<40} {}{}\n",
                g.name,
                pct(g.accuracy),
                if c.best == Some(i) { "  best" } else { "" }
            );
        }
    }
    for r in &c.runs {
        match &r.state {
            RunState::Unfinished { step, total } => {
                s += &format!("unfinished: {} (step {step} of {total}; resumable)\n", r.name)
            }
            RunState::Failed { why } => s += &format!("failed: {} ({why})\n", r.name),
            RunState::Running { by } => s += &format!("running: {} (by dlsvm, {by})\n", r.name),
            RunState::Finished { .. } => {}
        }
    }
    s
}
