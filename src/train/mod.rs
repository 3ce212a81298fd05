//! `dlsvm train`: data → normalizer → GPU network → SGD steps → checkpoints, metrics and reports
//! in the run directory. The loop in [`run`] is the step it performs; its pieces live beside it:
//! [`checkpointer`] (checkpoints and snapshots), [`log`] (read-backs, `steps.csv`, `metrics.csv`,
//! divergence), [`folds`] (cross-validation).

pub mod checkpointer;
pub mod folds;
pub mod grid;
pub mod log;
pub mod warm;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use checkpointer::{Checkpointer, KEEP_SNAPSHOTS};
pub use folds::{check_folds, cross_validate, fold_split, CrossValidation};
pub use log::{divergence, TrainLog, EXPLODE_FACTOR};

use crate::data::{self, batch, normalize::Normalizer, DataSource, Dataset};
use crate::eval;
use crate::gpu::{Gpu, GpuError};
use crate::model::checkpoint::{self, Checkpoint, CheckpointError};
use crate::model::net::ShapeError;
use crate::model::{GpuNet, Layer, Net, NetConfig, Plan};
use crate::report;

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

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.display().to_string(), source }
}

/// Set (by the command line's signal handler) to ask the run to stop: it finishes the current
/// step, writes a checkpoint and returns [`TrainError::Interrupted`].
pub static INTERRUPT: AtomicBool = AtomicBool::new(false);

/// Lose the device after this many steps (`Device::destroy`): for tests of the device-lost path only.
pub const LOSE_DEVICE_ENV: &str = "DLSVM_TEST_LOSE_DEVICE_AT_STEP";

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
    /// The kernel variants to train with (the tuner's choice); None: the defaults. A resumed run
    /// keeps the variants its checkpoint recorded instead.
    pub plan: Option<Plan>,
    /// Start from this model's weights ([`warm::warm_start`]) when the run starts fresh (a resumed
    /// run continues its own checkpoint).
    pub init_from: Option<PathBuf>,
    /// The directory whose lock the caller holds ([`crate::rundir::claim`]): a run in `out` locks
    /// `out` itself ([`crate::rundir::RunLock`]) unless it is this one.
    pub locked: Option<PathBuf>,
    /// Called after every checkpoint the run writes (a replaced run is deleted at the first,
    /// [`crate::rundir::Claim::commit`]).
    pub on_checkpoint: Option<CheckpointHook>,
}

/// A function [`RunOptions::on_checkpoint`] calls; shared by the runs of a set (folds, a grid, a
/// comparison).
#[derive(Clone)]
pub struct CheckpointHook(pub std::sync::Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for CheckpointHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointHook")
    }
}

impl RunOptions {
    /// Options for a run into `out` with the defaults: no resume, no progress, the default
    /// variants.
    pub fn new(out: PathBuf) -> RunOptions {
        RunOptions {
            out,
            resume: false,
            progress: false,
            fold: None,
            stop_after: None,
            plan: None,
            init_from: None,
            locked: None,
            on_checkpoint: None,
        }
    }
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
    /// How a resume with another length changed the learning-rate schedule, when it did.
    pub schedule_note: Option<String>,
    /// The kernel variant of every op the run trained with.
    pub variants: Plan,
    /// The model the run started from (`--init-from`), when it did.
    pub init_from: Option<String>,
    /// The data set (its path as given) and, for one fold of a cross-validation, `[fold, folds]`.
    pub data: String,
    pub fold: Option<(usize, usize)>,
}

/// The steps of a run: steps per epoch and the total the schedule spans.
fn plan(config: &NetConfig, train: &Dataset) -> (u64, u64) {
    let t = &config.train;
    let spe = batch::steps_per_epoch(train.len(), t.batch) as u64;
    let total = match t.epochs {
        Some(e) => ((e * spe as f64).ceil() as u64).max(1),
        None => t.steps.max(1),
    };
    (spe, total)
}

/// Everything about `config` and the data that can be refused before the GPU is touched.
fn check_inputs(config: &NetConfig, source: &DataSource, train: &Dataset) -> Result<Net, TrainError> {
    config.train.validate().map_err(|e| TrainError::Input(e.to_string()))?;
    let classes = source.class_names.len();
    let net = Net::new(config, classes)?;
    let path = &source.path;
    if train.is_empty() {
        return Err(TrainError::Input(format!("{path}: the training split is empty")));
    }
    if let Some(bad) = train.labels.iter().find(|&&y| y < 0 || y as usize >= classes) {
        return Err(TrainError::Input(format!(
            "{path}: training label {bad} is outside the {classes} classes"
        )));
    }
    let (b, n) = (config.train.batch, train.len());
    if b > n {
        return Err(TrainError::Input(format!(
            "--batch {b} is larger than the {n} training samples of {path} (use --batch {n} or less)"
        )));
    }
    if train.c != config.channels {
        let (c, name, want) = (train.c, &config.name, config.channels);
        return Err(TrainError::Input(format!(
            "{path}: images have {c} channel(s), the network {name} takes {want}"
        )));
    }
    if train.h != config.image_size || train.w != config.image_size {
        let (h, w, s, name) = (train.h, train.w, config.image_size, &config.name);
        return Err(TrainError::Input(format!(
            "{path}: images are {h}x{w}, the network {name} expects {s}x{s}"
        )));
    }
    Ok(net)
}

/// The checkpoint to resume from, if `opts.resume` and one exists; refused when it belongs to
/// another network or data, or is past the end of this run. Returns it with a note when this
/// run's length changes the learning-rate schedule the checkpoint was trained under.
fn resume_point(
    config: &NetConfig,
    source: &DataSource,
    path: &Path,
    total: u64,
) -> Result<(Checkpoint, Option<String>), TrainError> {
    let ck = checkpoint::load(path)?;
    ck.check_resumable(path, config, Some(&source.class_names)).map_err(TrainError::Input)?;
    if ck.step > total {
        return Err(TrainError::Input(format!(
            "{}: the checkpoint is at step {}, past this run's {total} steps; raise --steps (or --epochs) or use \
             another --out",
            path.display(),
            ck.step
        )));
    }
    let t = &config.train;
    let note = (ck.total_steps != total).then(|| {
        format!(
            "resuming at step {} of a run planned for {} steps with {total} steps: the learning-rate schedule \
             now spans {total} steps (lr at step {}: {:.4e}, was {:.4e})",
            ck.step,
            ck.total_steps,
            ck.step,
            t.lr_at(ck.step, total),
            t.lr_at(ck.step, ck.total_steps)
        )
    });
    Ok((ck, note))
}

/// The PCA stage of a fresh run whose network asks for one: fitted on the centre crops of the
/// normalized training split (`train_x`), as the network sees them at evaluation.
fn fit_pca(
    gpu: &Gpu,
    config: &NetConfig,
    train_x: &[f32],
    train: &Dataset,
    progress: bool,
) -> Result<Option<crate::model::pca::Pca>, TrainError> {
    let Some(k) = config.pca else { return Ok(None) };
    let size = config.input_size;
    let d = train.c * size * size;
    let mut x = Vec::with_capacity(train.len() * d);
    for b in batch::eval_batches(train_x, &train.labels, train.c, train.h, train.w, size, size, 1024) {
        x.extend_from_slice(&b.x);
    }
    let began = Instant::now();
    let (pca, kept) = crate::model::pca::Pca::fit(gpu, &x, train.len(), d, k)?;
    if progress {
        eprintln!(
            "dlsvm: PCA fitted on {} training inputs in {:.1} s: {k} of {} components keep {:.1}% of the variance",
            train.len(),
            began.elapsed().as_secs_f64(),
            d,
            100.0 * kept
        );
    }
    Ok(Some(pca))
}

/// The adapter a run trains on, as checkpoints record it: `name (backend, driver info)`, and how
/// the device was opened where that changes the kernels ([`Gpu::profile`]: `..., subgroups off`),
/// so that resuming with subgroups turned off says it is not bit-exact, as on another adapter.
pub fn adapter_name(gpu: &Gpu) -> String {
    let info = &gpu.info;
    let profile: String = gpu.profile().iter().map(|p| format!(", {p}")).collect();
    format!("{} ({}, {}{profile})", info.name, info.backend, info.driver_info)
}

/// The variants a run trains with: a resumed run keeps its checkpoint's (so it stays bit-exact,
/// whatever a tuner would choose now; on another adapter it says in one line that the result may
/// round differently); a fresh run takes the caller's plan, else the defaults.
fn run_plan(gpu: &Gpu, resumed: Option<&Checkpoint>, opts: &RunOptions) -> Plan {
    let here = adapter_name(gpu);
    if let Some(there) = resumed.and_then(|ck| ck.adapter.as_ref()).filter(|a| **a != here) {
        eprintln!(
            "dlsvm: note: this run trained on {there} and resumes on {here}: kernels may round differently \
             here, so it will not end bit-equal to an uninterrupted run"
        );
    }
    match resumed.and_then(|ck| ck.plan.clone()) {
        Some(plan) => plan,
        None => opts.plan.clone().unwrap_or_default(),
    }
}

/// Reports a lost device: wgpu calls back, the loop asks after every step.
struct DeviceWatch {
    lost: Arc<Mutex<Option<String>>>,
    lose_at: Option<u64>,
}

impl DeviceWatch {
    fn install(gpu: &Gpu) -> DeviceWatch {
        let lost: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&lost);
        gpu.device.set_device_lost_callback(move |reason, message| {
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            let what =
                if message.is_empty() { format!("{reason:?}") } else { format!("{reason:?}: {message}") };
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
        });
        let lose_at = std::env::var(LOSE_DEVICE_ENV).ok().and_then(|v| v.trim().parse().ok());
        DeviceWatch { lost, lose_at }
    }

    /// [`TrainError::DeviceLost`] once the device is lost (losing it first at the test step).
    fn check(&self, gpu: &Gpu, step: u64, ckpt: &Checkpointer) -> Result<(), TrainError> {
        if self.lose_at == Some(step) {
            gpu.device.destroy();
            gpu.wait()?;
        }
        match self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(reason) => Err(TrainError::DeviceLost { step, reason, kept: ckpt.kept() }),
            None => Ok(()),
        }
    }
}

fn progress_bar(show: bool, total: u64, start: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} steps {elapsed_precise} eta {eta} {msg}",
    );
    b.set_style(style.unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
    b.set_position(start);
    b
}

/// The test split's objective and accuracy under the current weights.
fn evaluate(
    gpu: &Gpu,
    net: &GpuNet,
    config: &NetConfig,
    test: Option<(&Dataset, &[f32])>,
) -> Result<Option<eval::Metrics>, TrainError> {
    let Some((d, x)) = test.filter(|(d, _)| !d.is_empty()) else { return Ok(None) };
    let t = &config.train;
    let s = eval::scores(gpu, net, x, d.len(), d.h, d.w, 1, &t.augment, t.seed)?;
    Ok(Some(eval::metrics(&s, &d.labels, net.net.classes)))
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
    let net = check_inputs(config, source, train)?;
    // Refuse a batch the device cannot hold before anything is allocated.
    GpuNet::check_batch_fits(gpu, &net, t.batch).map_err(TrainError::Input)?;
    let out = &opts.out;
    let (spe, total) = plan(config, train);
    let ckpt_path = out.join("model.safetensors");
    let (resumed, schedule_note) = match opts.resume && ckpt_path.exists() {
        true => resume_point(config, source, &ckpt_path, total).map(|(ck, note)| (Some(ck), note))?,
        false => (None, None),
    };
    // A warm start is refused before anything is written.
    let warm = match (&resumed, &opts.init_from) {
        (None, Some(p)) => Some(warm::warm_start(p, &net, &source.class_names, t.seed)?),
        _ => None,
    };
    // One process per run directory, for the run's whole life.
    let _lock = match opts.locked.as_deref() == Some(out.as_path()) {
        true => None,
        false => Some(crate::rundir::RunLock::acquire(out).map_err(TrainError::Input)?),
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    checkpointer::remove_stale_temps(out);
    checkpointer::remove_stale_temps(&out.join("checkpoints"));
    if opts.progress {
        let fold = opts.fold.map(|(i, k)| format!(", fold {i} of {k}")).unwrap_or_default();
        let (n, m) = (train.len(), test.map_or(0, |d| d.len()));
        let (name, backend) = (&gpu.info.name, &gpu.info.backend);
        eprintln!("dlsvm: training on {name} ({backend}), data {}{fold} ({n} train, {m} test samples), run directory {}", source.path, out.display());
        eprint!("{}", net.summary());
    }
    if let Some(note) = &schedule_note {
        eprintln!("dlsvm: note: {note}");
    }
    if let Some(w) = &warm {
        eprintln!("dlsvm: {}", w.report);
    }
    let normalizer = match (&resumed, &warm) {
        (Some(ck), _) => ck.normalizer.clone(),
        (None, Some(w)) => w.normalizer.clone(),
        (None, None) => Normalizer::fit(train, t.per_image_norm, t.norm),
    };
    let train_x = Arc::new(normalizer.apply(train));
    let pca = match (&resumed, &warm) {
        (Some(ck), _) => ck.pca.clone(),
        (None, Some(w)) => w.pca.clone(),
        (None, None) => fit_pca(gpu, config, &train_x, train, opts.progress)?,
    };
    let net = net.with_pca(pca).map_err(TrainError::Input)?;
    let test_x = test.map(|d| normalizer.apply(d));
    let test_set = test.zip(test_x.as_deref());
    let init = match (&resumed, warm) {
        (Some(ck), _) => ck.params.clone(),
        (None, Some(w)) => w.params,
        (None, None) => net.init_params(t.seed),
    };
    let plan = run_plan(gpu, resumed.as_ref(), opts);
    let gnet = GpuNet::with_plan(gpu, &net, t.batch, &init, t.svm_c, t.mask_seed(), &plan)?;
    let start = match &resumed {
        Some(ck) => {
            gnet.upload(gpu, &ck.params, ck.velocity.as_deref().unwrap_or(&[]))?;
            ck.step
        }
        None => {
            let snapshots = out.join("checkpoints");
            if snapshots.exists() {
                std::fs::remove_dir_all(&snapshots).map_err(io(&snapshots))?;
            }
            0
        }
    };
    let end = opts.stop_after.map_or(total, |s| s.clamp(start, total));
    std::fs::write(out.join("config.toml"), config.to_toml()).map_err(io(out))?;
    let mut ckpt = Checkpointer::new(
        &adapter_name(gpu),
        out,
        config,
        &source.class_names,
        &normalizer,
        total,
        resumed.as_ref().map(|c| c.step),
    );
    let mut log = TrainLog::open(out, resumed.as_ref().map(|c| c.step))?;
    let labels = Arc::new(train.labels.clone());
    let spec = config.batch_spec();
    let batches =
        batch::spawn(train_x, labels, train.h, train.w, spec, start, end, t.loader_threads.max(1), 4);
    let bar = progress_bar(opts.progress, total, start);
    let watch = DeviceWatch::install(gpu);
    let began = Instant::now();
    let mut in_flight: Option<wgpu::SubmissionIndex> = None;
    let mut done = start;

    let trained = (|| -> Result<(), TrainError> {
        for step in start..end {
            let b = batches
                .recv()
                .map_err(|_| TrainError::Input("the data loader stopped unexpectedly".into()))?;
            let schedule = (t.lr_at(step, total), t.momentum_at(step));
            let sub = gnet.train_step(gpu, &b.x, &b.y, step, schedule.0, schedule.1)?;
            // At most two steps in flight: the next batch uploads while this one runs.
            if let Some(prev) = in_flight.replace(sub) {
                gpu.wait_for(prev)?;
            }
            done = step + 1;
            watch.check(gpu, done, &ckpt)?;
            log.step_done(t.batch);
            let stopping = INTERRUPT.load(Ordering::Relaxed) && done < end;
            let end_of_epoch = done % spe == 0 || done == total;
            let save = (t.checkpoint_every > 0 && done % t.checkpoint_every == 0) || done == end || stopping;
            // The loss is always read and checked before a checkpoint is written.
            if done % t.log_every == 0 || end_of_epoch || save {
                gpu.wait()?;
                let row = log.interval(gpu, &gnet, done, spe, schedule, &ckpt)?;
                let rate = row.images_per_sec;
                bar.set_message(format!(
                    "loss {:.4} acc {:.1}% {rate:.0} img/s",
                    row.loss,
                    100.0 * row.accuracy
                ));
                bar.set_position(done);
            }
            if end_of_epoch {
                let test =
                    evaluate(gpu, &gnet, config, test_set)?.map(|m| (m.objective(config.top), m.accuracy));
                let row = log.epoch(done, spe, schedule, test)?;
                let test_acc =
                    row.test_acc.map(|a| format!("  test acc {:>5.1}%", 100.0 * a)).unwrap_or_default();
                let (e, l, a) = (row.epoch, row.train_loss, 100.0 * row.train_acc);
                if opts.progress {
                    bar.println(format!(
                        "epoch {e:>6.2}  step {done:>6}  loss {l:.4}  train acc {a:>5.1}%{test_acc}"
                    ));
                }
            }
            if save {
                gpu.wait()?;
                ckpt.save(gpu, &gnet, done, &log.last_loss())?;
                if let Some(hook) = &opts.on_checkpoint {
                    (hook.0)();
                }
            }
            if stopping {
                return Err(TrainError::Interrupted {
                    step: done,
                    total,
                    path: ckpt_path.display().to_string(),
                });
            }
        }
        gpu.wait()?;
        if start >= total {
            // Nothing left to run (a finished run resumed): keep its checkpoint as it is.
            ckpt.save(gpu, &gnet, total, &log.last_loss())?;
            if let Some(hook) = &opts.on_checkpoint {
                (hook.0)();
            }
        }
        Ok(())
    })();
    if let Err(e) = trained {
        bar.abandon();
        // Whatever failed after a loss failed because of it.
        return Err(match e {
            TrainError::DeviceLost { .. } => e,
            e => watch.check(gpu, done, &ckpt).err().unwrap_or(e),
        });
    }
    bar.finish_and_clear();
    let wall = began.elapsed().as_secs_f64();
    let test_metrics = evaluate(gpu, &gnet, config, test_set)?;
    write_reports(gpu, &gnet, config, source, out, test_metrics.as_ref())?;
    let last = log.last_epoch.take();
    let summary = Summary {
        net: config.name.clone(),
        top: config.top.name().to_string(),
        steps: end,
        batch: t.batch,
        train_samples: train.len(),
        test_samples: test.map_or(0, |d| d.len()),
        final_train_loss: last.as_ref().map_or(f64::NAN, |r| r.train_loss),
        final_train_accuracy: last.as_ref().map_or(f64::NAN, |r| r.train_acc),
        test: test_metrics,
        class_names: source.class_names.clone(),
        images_per_sec: (end - start) as f64 * t.batch as f64 / wall.max(1e-9),
        wall_s: wall,
        out: out.display().to_string(),
        schedule_note,
        variants: gnet.plan().clone(),
        init_from: opts.init_from.as_ref().filter(|_| resumed.is_none()).map(|p| p.display().to_string()),
        data: source.path.clone(),
        fold: opts.fold,
    };
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    std::fs::write(out.join("summary.json"), json).map_err(io(out))?;
    Ok(summary)
}

/// The run directory's charts: the learning curve, the first layer's filters, the confusion
/// matrix. A chart that cannot be drawn is skipped: the run's results do not depend on it.
fn write_reports(
    gpu: &Gpu,
    gnet: &GpuNet,
    config: &NetConfig,
    source: &DataSource,
    out: &Path,
    test: Option<&eval::Metrics>,
) -> Result<(), TrainError> {
    let rows = report::read_metrics(&out.join("metrics.csv")).unwrap_or_default();
    let steps = report::read_rows(&out.join("steps.csv")).unwrap_or_default();
    let title = format!("{} ({}) on {}", config.name, config.top.name(), source.path);
    let _ = report::learning_curve_png(&out.join("learning_curve.png"), &rows, &steps, &title);
    let (params, _) = gnet.download(gpu)?;
    if let Some(Layer::Conv { shape, weight, .. }) = gnet.net.layers.first() {
        let s = shape;
        let _ =
            report::filter_grid_png(&out.join("filters.png"), &params[*weight], s.cout, s.cin, s.kh, s.kw);
    }
    if let Some(m) = test {
        let _ = report::confusion_png(&out.join("confusion.png"), &source.class_names, &m.confusion, &title);
    }
    Ok(())
}
