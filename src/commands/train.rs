//! `dlsvm train`: one run, a cross-validation (`--folds`), a grid of settings (`--grid`), or a
//! SLURM array of them (`--slurm`).

use std::path::PathBuf;

use super::args::TrainArgs;
use super::setup::{check_init_from, net_config, train_data, tuned_plan};
use super::{tune_mode, write_slurm, CommandError, Out};
use crate::gpu::Gpu;
use crate::model;
use crate::train::{self, RunOptions};
use crate::tune::Mode;

/// Trains as `a` asks on the adapter named `adapter` (the fastest without one), the results on
/// `out`. `on_train` is called once the device is open, before the tuning and the runs (main
/// installs its interrupt handler there).
pub fn train(adapter: Option<&str>, a: &TrainArgs, on_train: fn(), out: Out) -> Result<(), CommandError> {
    let (config, origin) = net_config(a)?;
    let axes = a
        .grid
        .iter()
        .map(|g| train::grid::Axis::parse(g))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CommandError::Input)?;
    // Every setting checked before the data load.
    let settings = train::grid::settings(&axes).map_err(CommandError::Input)?;
    for setting in &settings {
        train::grid::apply(&config, setting).map_err(CommandError::Input)?;
    }
    let base = PathBuf::from("runs").join(&config.name);
    if a.slurm.is_some() {
        let dir = a.out.clone().unwrap_or_else(|| crate::rundir::fresh(&base));
        let argv: Vec<String> = std::env::args().collect();
        let tasks = crate::slurm::train_tasks(&argv, &dir, &settings, a.folds, a.fold)
            .map_err(CommandError::Input)?;
        let collect = vec!["collect".into(), dir.display().to_string()];
        return write_slurm(a, &config.name, &dir, &argv, tasks, collect, out);
    }
    let dir = match (&a.out, a.resume) {
        (Some(d), _) => d.clone(),
        (None, true) => crate::rundir::latest(&base),
        (None, false) => crate::rundir::fresh(&base),
    };
    let existing = dir.join("model.safetensors");
    if a.resume && a.folds.is_none() && existing.exists() {
        let ck = model::checkpoint::load(&existing).map_err(|e| CommandError::input(e.to_string()))?;
        ck.check_resumable(&existing, &config, None).map_err(CommandError::Input)?;
    }
    // The directory, as --resume and --overwrite say, locked for this process from here on.
    // A single fold of a cross-validation (`--folds K --fold I`, as a SLURM array's tasks run them
    // side by side) writes only <out>/fold<I>: that is the directory it claims.
    let claimed = match (a.folds, a.fold, a.grid.is_empty()) {
        (Some(_), Some(i), true) => dir.join(format!("fold{i}")),
        _ => dir.clone(),
    };
    let (_claim, on_checkpoint) = super::claim(&claimed, a.resume, a.overwrite)?;
    let source = train_data(a, &config, &origin)?;
    let train_set = source.train().map_err(|e| CommandError::input(e.to_string()))?;
    check_init_from(a.init_from.as_deref(), &config, &source)?;
    let mode = tune_mode(&a.tune, Mode::Full)?;
    let gpu = Gpu::new(adapter)?;
    on_train();
    // A resumed run keeps its checkpoint's variants: nothing to tune.
    let mode = if a.resume && existing.exists() { Mode::Off } else { mode };
    let plan = tuned_plan(&gpu, &config, source.classes(), mode, a.json)?;
    let opts = RunOptions {
        out: dir.clone(),
        resume: a.resume,
        progress: !a.json,
        fold: None,
        stop_after: None,
        plan: Some(plan),
        init_from: a.init_from.clone(),
        locked: Some(claimed),
        on_checkpoint: Some(on_checkpoint),
    };
    if !axes.is_empty() {
        let report = train::grid::run_grid(
            &gpu,
            &config,
            &source,
            &axes,
            a.folds.map(|k| (k, a.fold)),
            &opts,
            |row| {
                if !a.json {
                    let what = if row.std.is_some() { "held-out accuracy" } else { "test accuracy" };
                    let name = train::grid::dir_name(&row.setting);
                    outln!(out, "{name}: {what} {:.2}%", 100.0 * row.accuracy);
                }
            },
        )?;
        if a.json {
            outln!(out, "{}", serde_json::to_string(&report).unwrap_or_default());
        } else {
            out(&train::grid::markdown(&report));
            outln!(
                out,
                "best: {}; table in {}",
                train::grid::dir_name(&report.rows[report.best].setting),
                opts.out.join("grid.md").display()
            );
        }
        return Ok(());
    }
    let Some(k) = a.folds else {
        let s = train::run(&gpu, &config, &source, train_set, source.test(), &opts)?;
        summary(&s, a.json, out);
        return Ok(());
    };
    let cv = train::cross_validate(&gpu, &config, &source, k, a.fold, &opts, |i, s| {
        if !a.json {
            outln!(
                out,
                "fold {i}: held-out accuracy {:.2}%",
                100.0 * s.test.as_ref().map_or(f64::NAN, |m| m.accuracy)
            );
        }
    })?;
    if a.json {
        outln!(out, "{}", serde_json::to_string(&cv).unwrap_or_default());
    } else {
        let (n, m, sd) = (cv.fold_accuracy.len(), 100.0 * cv.mean_accuracy, 100.0 * cv.std_accuracy);
        outln!(out, "cross-validation: {n} folds, held-out accuracy {m:.2}% ± {sd:.2}%");
        let first = opts.out.join("fold0").join("model.safetensors");
        outln!(
            out,
            "average the fold models with: dlsvm eval --model {} --model ... --data PATH",
            first.display()
        );
    }
    Ok(())
}

/// A run's summary: one JSON object, or a few lines.
fn summary(s: &train::Summary, json: bool, out: Out) {
    if json {
        outln!(out, "{}", serde_json::to_string(s).unwrap_or_default());
        return;
    }
    let (loss, acc) = (s.final_train_loss, 100.0 * s.final_train_accuracy);
    outln!(
        out,
        "trained {} ({}) for {} steps of {} in {:.1} s ({:.0} images/s); final train loss {loss:.4}, train accuracy {acc:.2}%",
        s.net, s.top, s.steps, s.batch, s.wall_s, s.images_per_sec
    );
    match &s.test {
        Some(m) => {
            outln!(out, "test accuracy {:.2}% on {} samples", 100.0 * m.accuracy, m.samples);
            let per: Vec<String> = (s.class_names.iter().zip(&m.per_class))
                .map(|(n, a)| format!("{n} {}", a.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v))))
                .collect();
            outln!(out, "per class: {}", per.join(", "));
        }
        None => outln!(out, "no test split in the data: no test accuracy"),
    }
    outln!(out, "run directory: {}", s.out);
}
