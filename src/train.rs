//! `dlsvm train`: data → normalizer → GPU network → SGD steps → checkpoints, metrics and reports
//! in the run directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::data::{self, batch, normalize::Normalizer, DataSource, Dataset};
use crate::eval;
use crate::gpu::{Gpu, GpuError};
use crate::model::checkpoint::{self, Checkpoint, CheckpointError};
use crate::model::net::ShapeError;
use crate::model::{GpuNet, Net, NetConfig};
use crate::report::{self, MetricsCsv, MetricsRow};

/// Everything that can stop a run, each with one clear line.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    Input(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The loss or the weights went non-finite, or the loss exploded ([`divergence`]); no checkpoint
    /// is written past the last good one.
    #[error("training diverged at step {step}: {what} (last finite loss: {last_finite}); {kept} (try a smaller --lr)")]
    Diverged { step: u64, what: String, last_finite: String, kept: String },
    /// [`INTERRUPT`] was set: the run stopped after `step` with a checkpoint at `path`.
    #[error("interrupted at step {step} of {total}; checkpoint written to {path}")]
    Interrupted { step: u64, total: u64, path: String },
    /// Writing a checkpoint failed; the previous one is untouched (writes are atomic).
    #[error("could not write the checkpoint of step {step}: {source}; {kept}")]
    CheckpointWrite { step: u64, source: CheckpointError, kept: String },
    /// wgpu reported the device lost: nothing on it can be saved any more.
    #[error("the GPU device was lost at step {step} ({reason}); {kept}")]
    DeviceLost { step: u64, reason: String, kept: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.display().to_string(), source }
}

/// Periodic checkpoints kept in `<run>/checkpoints/` besides `model.safetensors`.
pub const KEEP_SNAPSHOTS: usize = 3;

/// Set (by the command line's Ctrl-C handler) to ask the run to stop: it finishes the current step,
/// writes a checkpoint and returns [`TrainError::Interrupted`].
pub static INTERRUPT: AtomicBool = AtomicBool::new(false);

/// A logged loss more than this many times the first logged one counts as divergence.
pub const EXPLODE_FACTOR: f64 = 1e6;

/// Lose the device after this many steps (`Device::destroy`): for tests of the device-lost path only.
pub const LOSE_DEVICE_ENV: &str = "DLSVM_TEST_LOSE_DEVICE_AT_STEP";

/// Why a logged mean loss means the run has diverged, if it does: it is not finite, or it is more than
/// [`EXPLODE_FACTOR`] times `first`, the first loss the run logged.
pub fn divergence(loss: f64, first: Option<f64>) -> Option<String> {
    if !loss.is_finite() {
        return Some(format!("the loss is {loss}"));
    }
    match first {
        Some(f) if f > 0.0 && loss > EXPLODE_FACTOR * f => Some(format!(
            "the loss is {loss:.4e}, more than {EXPLODE_FACTOR:e} times the first logged loss {f:.4}"
        )),
        _ => None,
    }
}

/// What is left on disk, for error messages: the last checkpoint this run wrote (or resumed from).
fn kept(saved: Option<u64>, path: &Path) -> String {
    match saved {
        Some(s) => format!("the last good checkpoint, step {s}, is kept in {}", path.display()),
        None => "no checkpoint of this run was written yet".into(),
    }
}

/// Removes the temporary files of checkpoint writes that a killed run left in `dir`.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.contains(".safetensors.")
            && name.ends_with(".tmp")
            && e.file_type().is_ok_and(|t| t.is_file())
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// What the caller asked for beyond the config.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub out: PathBuf,
    pub resume: bool,
    /// Show a progress bar and per-epoch lines on stderr.
    pub progress: bool,
    /// Fold `fold` of `folds` as the held-out set (the rest trains), when set.
    pub fold: Option<(usize, usize)>,
    /// Stop (with a checkpoint) once this many steps are done, as an interrupted run would.
    pub stop_after: Option<u64>,
}

/// The outcome of one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    pub net: String,
    pub top: String,
    pub steps: u64,
    pub batch: usize,
    pub train_samples: usize,
    pub test_samples: usize,
    pub final_train_loss: f64,
    pub final_train_accuracy: f64,
    pub test: Option<eval::Metrics>,
    pub class_names: Vec<String>,
    pub images_per_sec: f64,
    pub wall_s: f64,
    pub out: String,
}

/// Splits `ds` into (train, held-out) for fold `i` of `k` with a seeded permutation.
pub fn fold_split(ds: &Dataset, k: usize, i: usize, seed: u64) -> (Dataset, Dataset) {
    let n = ds.len();
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = crate::rng::Rng::new(crate::rng::mix(seed, 0xf01d));
    for j in (1..n).rev() {
        idx.swap(j, rng.below(j + 1));
    }
    let (lo, hi) = (i * n / k, (i + 1) * n / k);
    let held: Vec<usize> = idx[lo..hi].to_vec();
    let rest: Vec<usize> = idx[..lo].iter().chain(&idx[hi..]).copied().collect();
    (ds.subset(&rest), ds.subset(&held))
}

/// Trains one model on `train`, evaluating on `test`; everything lands in `opts.out`.
pub fn run(
    gpu: &Gpu,
    config: &NetConfig,
    source: &DataSource,
    train: &Dataset,
    test: Option<&Dataset>,
    opts: &RunOptions,
) -> Result<Summary, TrainError> {
    let t = &config.train;
    let classes = source.class_names.len();
    let net = Net::new(config, classes)?;
    if train.is_empty() {
        return Err(TrainError::Input(format!("{}: the training split is empty", source.path)));
    }
    if let Some(bad) = train.labels.iter().find(|&&y| y < 0 || y as usize >= classes) {
        return Err(TrainError::Input(format!(
            "{}: training label {bad} is outside the {classes} classes",
            source.path
        )));
    }
    if t.batch == 0 || t.batch > train.len() {
        return Err(TrainError::Input(format!(
            "batch {} is larger than the {} training samples (use --batch {} or less)",
            t.batch,
            train.len(),
            train.len()
        )));
    }
    if !(t.lr.is_finite() && t.lr > 0.0) {
        return Err(TrainError::Input(format!("learning rate {} must be a finite positive number", t.lr)));
    }
    if train.h != config.image_size || train.w != config.image_size {
        return Err(TrainError::Input(format!(
            "{}: images are {}x{}, the network {} expects {}x{}",
            source.path, train.h, train.w, config.name, config.image_size, config.image_size
        )));
    }
    // Refuse a batch the device cannot hold before anything is allocated.
    GpuNet::check_batch_fits(gpu, &net, t.batch).map_err(TrainError::Input)?;
    std::fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    remove_stale_temps(&opts.out);
    remove_stale_temps(&opts.out.join("checkpoints"));
    if opts.progress {
        eprintln!(
            "dlsvm: training on {} ({}), data {}{} ({} train, {} test samples), run directory {}",
            gpu.info.name,
            gpu.info.backend,
            source.path,
            opts.fold.map(|(i, k)| format!(", fold {i} of {k}")).unwrap_or_default(),
            train.len(),
            test.map_or(0, |d| d.len()),
            opts.out.display()
        );
        eprint!("{}", net.summary());
    }
    let spe = batch::steps_per_epoch(train.len(), t.batch) as u64;
    let total = match t.epochs {
        Some(e) => ((e * spe as f64).ceil() as u64).max(1),
        None => t.steps.max(1),
    };

    let ckpt_path = opts.out.join("model.safetensors");
    let mut resumed: Option<Checkpoint> = None;
    if opts.resume && ckpt_path.exists() {
        let ck = checkpoint::load(&ckpt_path)?;
        if ck.config.layers != config.layers
            || ck.config.top != config.top
            || ck.config.image_size != config.image_size
            || ck.config.input_size != config.input_size
            || ck.config.channels != config.channels
            || ck.class_names != source.class_names
        {
            return Err(TrainError::Input(format!(
                "{}: the checkpoint's network, image size or classes differ from this run's; use another --out or drop --resume",
                ckpt_path.display()
            )));
        }
        if ck.velocity.is_none() {
            return Err(TrainError::Input(format!(
                "{}: the checkpoint has no optimizer state to resume from",
                ckpt_path.display()
            )));
        }
        resumed = Some(ck);
    }
    let normalizer = match &resumed {
        Some(ck) => ck.normalizer.clone(),
        None => Normalizer::fit(train, t.per_image_norm, t.norm),
    };
    let train_x = Arc::new(normalizer.apply(train));
    let train_y = Arc::new(train.labels.clone());
    let test_x = test.map(|d| normalizer.apply(d));

    let seed32 = (t.seed ^ (t.seed >> 32)) as u32;
    let init = match &resumed {
        Some(ck) => ck.params.clone(),
        None => net.init_params(t.seed),
    };
    let gnet = GpuNet::new(gpu, &net, t.batch, &init, t.svm_c, seed32)?;
    let start = match &resumed {
        Some(ck) => {
            gnet.upload(gpu, &ck.params, ck.velocity.as_deref().unwrap_or(&[]))?;
            ck.step.min(total)
        }
        None => 0,
    };
    let end = opts.stop_after.map_or(total, |s| s.clamp(start, total));
    std::fs::write(opts.out.join("config.toml"), config.to_toml()).map_err(io(&opts.out))?;
    let metrics_path = opts.out.join("metrics.csv");
    // The divergence test compares with the run's first logged loss, from before a resume too.
    let mut history_first_loss: Option<f64> = None;
    match &resumed {
        // Rows past the checkpoint belong to steps that will run again.
        Some(ck) if metrics_path.exists() => {
            let rows = report::read_metrics(&metrics_path).map_err(TrainError::Input)?;
            let kept: Vec<MetricsRow> = rows.into_iter().filter(|r| r.step <= ck.step).collect();
            history_first_loss = kept.iter().map(|r| r.train_loss).find(|l| l.is_finite());
            report::write_metrics(&metrics_path, &kept).map_err(io(&metrics_path))?;
        }
        Some(_) => {}
        // A fresh run in an existing directory starts its records anew.
        None => {
            if metrics_path.exists() {
                std::fs::remove_file(&metrics_path).map_err(io(&metrics_path))?;
            }
            let snapshots = opts.out.join("checkpoints");
            if snapshots.exists() {
                std::fs::remove_dir_all(&snapshots).map_err(io(&snapshots))?;
            }
        }
    }
    let mut csv = MetricsCsv::open(&metrics_path).map_err(io(&opts.out))?;

    let spec = batch::BatchSpec {
        batch: t.batch,
        out_h: config.input_size,
        out_w: config.input_size,
        augment: (!t.augment.is_identity()).then_some(t.augment),
        seed: t.seed,
    };
    let rx = batch::spawn(
        train_x.clone(),
        train_y.clone(),
        train.h,
        train.w,
        spec,
        start,
        end,
        t.loader_threads.max(1),
        4,
    );
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps {elapsed_precise} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_position(start);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };

    // The step of the checkpoint on disk that belongs to this run (written by it or resumed from).
    let mut saved: Option<u64> = resumed.as_ref().map(|ck| ck.step);
    let mut last_finite = f64::NAN;
    let finite_text = |v: f64| if v.is_finite() { format!("{v:.4}") } else { "none yet".to_string() };
    // Writes `model.safetensors` (atomically) and a snapshot, unless the weights went non-finite: a
    // diverged run never overwrites its last good checkpoint.
    let save =
        |gnet: &GpuNet, step: u64, saved: &mut Option<u64>, last_finite: f64| -> Result<(), TrainError> {
            let (params, velocity) = gnet.download(gpu)?;
            if params.iter().chain(&velocity).flatten().any(|v| !v.is_finite()) {
                return Err(TrainError::Diverged {
                    step,
                    what: "the weights hold NaN or infinite values".into(),
                    last_finite: finite_text(last_finite),
                    kept: kept(*saved, &ckpt_path),
                });
            }
            let ck = Checkpoint {
                config: config.clone(),
                class_names: source.class_names.clone(),
                normalizer: normalizer.clone(),
                step,
                total_steps: total,
                params,
                velocity: Some(velocity),
            };
            checkpoint::save(&ckpt_path, &ck).map_err(|source| TrainError::CheckpointWrite {
                step,
                source,
                kept: kept(*saved, &ckpt_path),
            })?;
            *saved = Some(step);
            // Periodic snapshots beside it, the newest KEEP_SNAPSHOTS kept.
            let dir = opts.out.join("checkpoints");
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            checkpoint::save(&dir.join(format!("step-{step:08}.safetensors")), &ck).map_err(|source| {
                TrainError::CheckpointWrite { step, source, kept: kept(*saved, &ckpt_path) }
            })?;
            let mut old: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(io(&dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("step-") && n.ends_with(".safetensors"))
                })
                .collect();
            old.sort();
            for p in old.iter().rev().skip(KEEP_SNAPSHOTS) {
                let _ = std::fs::remove_file(p);
            }
            Ok(())
        };

    // A lost device is reported by wgpu through this callback; the loop checks it after every step
    // and turns any GPU error that follows a loss into one line saying so.
    let lost: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    {
        let lost = Arc::clone(&lost);
        gpu.device.set_device_lost_callback(move |reason, message| {
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            let what =
                if message.is_empty() { format!("{reason:?}") } else { format!("{reason:?}: {message}") };
            *lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
        });
    }
    let lose_at: Option<u64> = std::env::var(LOSE_DEVICE_ENV).ok().and_then(|v| v.trim().parse().ok());
    let device_lost = |step: u64, saved: Option<u64>| -> Option<TrainError> {
        let reason = lost.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        Some(TrainError::DeviceLost { step, reason, kept: kept(saved, &ckpt_path) })
    };

    let began = Instant::now();
    let mut window_samples = 0u64; // samples since the last metrics read
    let mut epoch = (0.0f64, 0u64, 0u64, 0u64); // loss sum, correct, samples, steps
    let mut first_logged: Option<f64> = history_first_loss;
    let mut prev: Option<wgpu::SubmissionIndex> = None;
    let mut images_done = 0u64;
    let mut last_row: Option<MetricsRow> = None;
    let mut window_start = Instant::now();
    let mut current = start;
    let trained = (|| -> Result<(), TrainError> {
        for step in start..end {
            current = step + 1;
            let b =
                rx.recv().map_err(|_| TrainError::Input("the data loader stopped unexpectedly".into()))?;
            if b.step != step {
                return Err(TrainError::Input(format!(
                    "the data loader delivered step {} for step {step}",
                    b.step
                )));
            }
            let sub = gnet.train_step(gpu, &b.x, &b.y, step, t.lr_at(step, total), t.momentum_at(step))?;
            // At most two steps in flight: the next batch uploads while this one runs.
            if let Some(p) = prev.replace(sub) {
                gpu.wait_for(p)?;
            }
            if lose_at == Some(step + 1) {
                gpu.device.destroy();
                gpu.wait()?;
            }
            if let Some(e) = device_lost(step + 1, saved) {
                return Err(e);
            }
            images_done += t.batch as u64;
            window_samples += t.batch as u64;
            let done = step + 1;
            let end_of_epoch = done % spe == 0;
            let stopping = INTERRUPT.load(Ordering::Relaxed) && done < end;
            let checkpoint_now =
                (t.checkpoint_every > 0 && done % t.checkpoint_every == 0) || done == total || done == end;
            // The loss is always checked before a checkpoint is written.
            if done % t.log_every.max(1) == 0 || end_of_epoch || done == total || checkpoint_now || stopping {
                gpu.wait()?;
                let (loss_sum, correct) = gnet.read_metrics(gpu)?;
                if let Some(e) = device_lost(done, saved) {
                    return Err(e);
                }
                gnet.reset_metrics(gpu);
                let steps_in_window = (window_samples / t.batch as u64).max(1);
                let mean_loss = loss_sum / steps_in_window as f64;
                if let Some(what) = divergence(mean_loss, first_logged) {
                    bar.abandon();
                    return Err(TrainError::Diverged {
                        step: done,
                        what,
                        last_finite: finite_text(last_finite),
                        kept: kept(saved, &ckpt_path),
                    });
                }
                first_logged.get_or_insert(mean_loss);
                last_finite = mean_loss;
                epoch.0 += loss_sum;
                epoch.1 += correct;
                epoch.2 += window_samples;
                epoch.3 += steps_in_window;
                let rate = window_samples as f64 / window_start.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "loss {mean_loss:.4} acc {:.1}% {rate:.0} img/s",
                    100.0 * correct as f64 / window_samples.max(1) as f64
                ));
                bar.set_position(done);
                window_samples = 0;
                window_start = Instant::now();
            }
            if end_of_epoch || done == total {
                let test_acc = match (&test_x, test) {
                    (Some(x), Some(d)) if !d.is_empty() => {
                        let s = eval::scores(gpu, &gnet, x, d.len(), d.h, d.w, 1, &t.augment, t.seed)?;
                        let m = eval::metrics(&s, &d.labels, classes);
                        Some((m.objective(config.top), m.accuracy))
                    }
                    _ => None,
                };
                let row = MetricsRow {
                    epoch: done as f64 / spe as f64,
                    step: done,
                    lr: t.lr_at(step, total),
                    momentum: t.momentum_at(step),
                    train_loss: epoch.0 / epoch.3.max(1) as f64,
                    train_acc: epoch.1 as f64 / epoch.2.max(1) as f64,
                    test_loss: test_acc.map(|t| t.0),
                    test_acc: test_acc.map(|t| t.1),
                    images_per_sec: images_done as f64 / began.elapsed().as_secs_f64().max(1e-9),
                    elapsed_s: began.elapsed().as_secs_f64(),
                };
                csv.append(&row).map_err(io(&opts.out))?;
                if opts.progress {
                    bar.println(format!(
                        "epoch {:>6.2}  step {:>6}  loss {:.4}  train acc {:>5.1}%{}",
                        row.epoch,
                        row.step,
                        row.train_loss,
                        100.0 * row.train_acc,
                        row.test_acc.map(|a| format!("  test acc {:>5.1}%", 100.0 * a)).unwrap_or_default()
                    ));
                }
                last_row = Some(row);
                epoch = (0.0, 0, 0, 0);
            }
            if checkpoint_now || stopping {
                gpu.wait()?;
                save(&gnet, done, &mut saved, last_finite)?;
            }
            if stopping {
                bar.abandon();
                return Err(TrainError::Interrupted {
                    step: done,
                    total,
                    path: ckpt_path.display().to_string(),
                });
            }
        }
        current = end;
        gpu.wait()?;
        if start >= total {
            // Nothing left to run (a finished run resumed): keep its checkpoint as it is.
            save(&gnet, total, &mut saved, last_finite)?;
        }
        Ok(())
    })();
    if let Err(e) = trained {
        bar.abandon();
        return Err(match e {
            TrainError::DeviceLost { .. } => e,
            // Whatever failed after a loss failed because of it.
            e => device_lost(current, saved).unwrap_or(e),
        });
    }
    bar.finish_and_clear();
    let wall = began.elapsed().as_secs_f64();

    // Final evaluation and reports.
    let test_metrics = match (&test_x, test) {
        (Some(x), Some(d)) if !d.is_empty() => {
            let s = eval::scores(gpu, &gnet, x, d.len(), d.h, d.w, 1, &t.augment, t.seed)?;
            Some(eval::metrics(&s, &d.labels, classes))
        }
        _ => None,
    };
    let rows = report::read_metrics(&opts.out.join("metrics.csv")).unwrap_or_default();
    let title = format!("{} ({}) on {}", config.name, config.top.name(), source.path);
    let _ = report::learning_curve_png(&opts.out.join("learning_curve.png"), &rows, &title);
    let (params, _) = gnet.download(gpu)?;
    if let Some(crate::model::Layer::Conv { shape, weight, .. }) = net.layers.first() {
        let _ = report::filter_grid_png(
            &opts.out.join("filters.png"),
            &params[*weight],
            shape.cout,
            shape.cin,
            shape.kh,
            shape.kw,
        );
    }
    if let Some(m) = &test_metrics {
        let _ =
            report::confusion_png(&opts.out.join("confusion.png"), &source.class_names, &m.confusion, &title);
    }
    let last = last_row.unwrap_or(MetricsRow {
        epoch: 0.0,
        step: total,
        lr: 0.0,
        momentum: 0.0,
        train_loss: f64::NAN,
        train_acc: f64::NAN,
        test_loss: None,
        test_acc: None,
        images_per_sec: 0.0,
        elapsed_s: 0.0,
    });
    let summary = Summary {
        net: config.name.clone(),
        top: config.top.name().to_string(),
        steps: end,
        batch: t.batch,
        train_samples: train.len(),
        test_samples: test.map(|d| d.len()).unwrap_or(0),
        final_train_loss: last.train_loss,
        final_train_accuracy: last.train_acc,
        test: test_metrics,
        class_names: source.class_names.clone(),
        images_per_sec: (end - start) as f64 * t.batch as f64 / wall.max(1e-9),
        wall_s: wall,
        out: opts.out.display().to_string(),
    };
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    std::fs::write(opts.out.join("summary.json"), json).map_err(io(&opts.out))?;
    Ok(summary)
}
