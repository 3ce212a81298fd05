//! The `dlsvm` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dlsvm::check::{self, Row};
use dlsvm::data::{self, synth, DataSource};
use dlsvm::gpu::{self, Gpu, GpuError};
use dlsvm::model::{self, checkpoint, GpuNet, LayerSpec, NetConfig, Top};
use dlsvm::train::{self as trainer, RunOptions, TrainError};

/// Largest image side and layer size (filters, kernel, stride, pad, window, fc outputs) of a network.
const MAX_SIZE: usize = 1 << 16;
/// Largest parameter tensor, and largest activation per image, in values (1 GiB of f32).
const MAX_VALUES: usize = 1 << 28;

/// Exit codes (DESIGN.md §5).
const EXIT_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_NO_ADAPTER: u8 = 3;
/// `dlsvm train` stopped by Ctrl-C after writing a checkpoint (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "dlsvm",
    version,
    about = "ConvNets with a linear-SVM top, trained entirely on the GPU (WGSL + wgpu)"
)]
struct Cli {
    /// Use the adapter whose name contains this text (case-insensitive); default: the fastest.
    #[arg(long, global = true, env = "DLSVM_ADAPTER")]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the adapter, backend, driver and the limits that matter.
    Info {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Train a network (default: fer-small on built-in synthetic faces).
    Train(Box<TrainArgs>),
    /// Evaluate one model, or an ensemble of several, on a data set.
    Eval {
        /// A model.safetensors from `dlsvm train`; repeat to average an ensemble.
        #[arg(long = "model", required = true)]
        models: Vec<PathBuf>,
        /// fer2013-style CSV, image-folder root, or IDX folder (default: the built-in synthetic faces).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Average this many jittered copies per image (1: the centre crop only).
        #[arg(long, default_value_t = 1)]
        tta: usize,
        /// Write the confusion-matrix PNGs here (default: next to the first model).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Classify images with a trained model.
    Predict {
        #[arg(long)]
        model: PathBuf,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Data utilities.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Time every kernel against this device's measured FMA and copy ceilings.
    Bench {
        /// Only rows whose kernel name contains this text ("step" for the training steps).
        #[arg(long)]
        filter: Option<String>,
        /// Time every kernel variant side by side.
        #[arg(long)]
        variants: bool,
        /// Timed runs per kernel (at least 10).
        #[arg(long, default_value_t = 10)]
        reps: usize,
        /// Skip the training-step measurements.
        #[arg(long)]
        no_steps: bool,
        #[arg(long)]
        json: bool,
    },
    /// Check every kernel against the CPU reference on this adapter.
    Check {
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Only rows whose kernel name contains this text.
        #[arg(long)]
        filter: Option<String>,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Write the built-in synthetic faces as a fer2013.csv (Training / PrivateTest rows).
    Synth {
        #[arg(long)]
        out: PathBuf,
        /// Number of training faces (a test set of a fifth as many is added).
        #[arg(long, default_value_t = 4000)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Built-in network: fer (the paper's), fer-small, mlp.
    #[arg(long, default_value = "fer-small")]
    preset: String,
    /// A network file (TOML) instead of a preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// fer2013-style CSV, image-folder root, or IDX folder (default: built-in synthetic faces).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The run directory (default: runs/<network name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// l2svm (the paper's) or softmax (the baseline).
    #[arg(long)]
    top: Option<String>,
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<u64>,
    #[arg(long)]
    epochs: Option<f64>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    momentum: Option<f64>,
    /// Weight decay of conv and hidden fc layers.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// The SVM constant C.
    #[arg(long)]
    svm_c: Option<f64>,
    /// Dropout probability of every dropout layer.
    #[arg(long)]
    dropout: Option<f32>,
    #[arg(long)]
    seed: Option<u64>,
    /// K-fold cross-validation on the training split: one model per fold.
    #[arg(long)]
    folds: Option<usize>,
    /// With --folds: train only this fold (0-based), e.g. as one job of a cluster array.
    #[arg(long, requires = "folds")]
    fold: Option<usize>,
    /// Continue from the run directory's checkpoint.
    #[arg(long)]
    resume: bool,
    /// Write a checkpoint (and evaluate on the test split) every N steps; 0: at the end only.
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Read back, check and log the loss every N steps.
    #[arg(long)]
    log_every: Option<u64>,
    /// Number of synthetic training faces when no --data is given.
    #[arg(long, default_value_t = 4000)]
    synth_count: usize,
    /// Print the final summary as one JSON object.
    #[arg(long)]
    json: bool,
}

/// An error for the user: one line, and the exit code it maps to.
struct Failure {
    message: String,
    code: u8,
}

impl From<GpuError> for Failure {
    fn from(e: GpuError) -> Self {
        let code = match e {
            GpuError::NoAdapter | GpuError::AdapterNotFound { .. } | GpuError::AdapterTooSmall { .. } => {
                EXIT_NO_ADAPTER
            }
            GpuError::Device(_) => EXIT_NO_ADAPTER,
            _ => EXIT_FAILED,
        };
        Failure { message: e.to_string(), code }
    }
}

impl Failure {
    fn input(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: EXIT_BAD_INPUT }
    }
}

impl From<TrainError> for Failure {
    fn from(e: TrainError) -> Self {
        match e {
            TrainError::Gpu(g) => g.into(),
            TrainError::Diverged { .. }
            | TrainError::Io { .. }
            | TrainError::CheckpointWrite { .. }
            | TrainError::DeviceLost { .. } => Failure { message: e.to_string(), code: EXIT_FAILED },
            TrainError::Interrupted { .. } => Failure {
                message: format!("{e}; continue with: {}", resume_command()),
                code: EXIT_INTERRUPTED,
            },
            other => Failure::input(other.to_string()),
        }
    }
}

/// This invocation with `--resume` added, quoted for a POSIX shell.
fn resume_command() -> String {
    let quote = |a: String| {
        let plain = !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c));
        if plain {
            a
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    };
    let mut args: Vec<String> =
        std::env::args_os().map(|a| quote(a.to_string_lossy().into_owned())).collect();
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    args.join(" ")
}

/// Ctrl-C during training: the first asks the trainer to stop after the current step with a
/// checkpoint ([`trainer::INTERRUPT`]); a second quits at once (checkpoint writes are atomic, so the
/// one on disk stays whole).
fn install_interrupt_handler() {
    let result = ctrlc::set_handler(|| {
        if trainer::INTERRUPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
        eprintln!("dlsvm: interrupt: stopping after the current step to write a checkpoint (Ctrl-C again quits at once)");
    });
    if let Err(e) = result {
        eprintln!("dlsvm: warning: Ctrl-C will stop training without a checkpoint: {e}");
    }
}

/// The most synthetic faces `train --synth-count` and `data synth --count` make (48x48 each).
const MAX_SYNTH: usize = 200_000;

fn check_synth_count(flag: &str, count: usize) -> Result<(), Failure> {
    if count == 0 || count > MAX_SYNTH {
        return Err(Failure::input(format!("{flag} {count}: expected 1 to {MAX_SYNTH} synthetic faces")));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                let _ = e.print();
                return ExitCode::from(if e.exit_code() == 0 { 0 } else { EXIT_BAD_INPUT });
            }
            // One line, like every other error: clap's first line, without its usage block.
            let text = e.to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            let first = first.trim().strip_prefix("error: ").unwrap_or(first.trim());
            eprintln!("dlsvm: {first} (see dlsvm --help)");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("dlsvm: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Info { json } => info(cli.adapter.as_deref(), json),
        Command::Check { json, filter } => check(cli.adapter.as_deref(), json, filter.as_deref()),
        Command::Train(args) => train(cli.adapter.as_deref(), *args),
        Command::Bench { filter, variants, reps, no_steps, json } => bench(
            cli.adapter.as_deref(),
            dlsvm::bench::BenchOptions { filter, variants, reps, no_steps },
            json,
        ),
        Command::Eval { models, data, tta, out, json } => {
            eval(cli.adapter.as_deref(), &models, data.as_deref(), tta, out.as_deref(), json)
        }
        Command::Predict { model, images, json } => predict(cli.adapter.as_deref(), &model, &images, json),
        Command::Data { command: DataCommand::Synth { out, count, seed } } => synth(&out, count, seed),
    }
}

fn info(adapter: Option<&str>, json: bool) -> Result<u8, Failure> {
    let gpu = Gpu::new(adapter)?;
    let l = &gpu.limits;
    let have = gpu.adapter.limits();
    let features = gpu.adapter.features();
    let all: Vec<gpu::AdapterSummary> = gpu::list_adapters()
        .iter()
        .map(|a| {
            let i = a.get_info();
            gpu::AdapterSummary {
                name: i.name,
                backend: format!("{:?}", i.backend),
                device_type: format!("{:?}", i.device_type),
                driver: i.driver,
                driver_info: i.driver_info,
                vendor: i.vendor,
                device: i.device,
            }
        })
        .collect();
    let limits = [
        ("max_compute_workgroup_size_x", have.max_compute_workgroup_size_x as u64),
        ("max_compute_workgroup_size_y", have.max_compute_workgroup_size_y as u64),
        ("max_compute_workgroup_size_z", have.max_compute_workgroup_size_z as u64),
        ("max_compute_invocations_per_workgroup", have.max_compute_invocations_per_workgroup as u64),
        ("max_compute_workgroup_storage_size", have.max_compute_workgroup_storage_size as u64),
        ("max_compute_workgroups_per_dimension", have.max_compute_workgroups_per_dimension as u64),
        ("max_storage_buffers_per_shader_stage", have.max_storage_buffers_per_shader_stage as u64),
        ("max_storage_buffer_binding_size", l.max_storage_buffer_binding_size),
        ("max_uniform_buffer_binding_size", have.max_uniform_buffer_binding_size),
        ("max_buffer_size", l.max_buffer_size),
    ];
    let feature_names = [
        ("TIMESTAMP_QUERY", wgpu::Features::TIMESTAMP_QUERY),
        ("TIMESTAMP_QUERY_INSIDE_PASSES", wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        ("SHADER_F16", wgpu::Features::SHADER_F16),
        ("SUBGROUP", wgpu::Features::SUBGROUP),
        ("PIPELINE_CACHE", wgpu::Features::PIPELINE_CACHE),
    ];
    let feats: Vec<&str> =
        feature_names.iter().filter(|(_, f)| features.contains(*f)).map(|(n, _)| *n).collect();
    if json {
        let obj = serde_json::json!({
            "adapter": gpu.info,
            "limits": limits.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            "features": feats,
            "timing": if gpu.timestamps { "timestamp queries" } else { "wall clock" },
            "adapters": all,
        });
        println!("{obj}");
        return Ok(0);
    }
    let i = &gpu.info;
    println!("adapter      {}", i.name);
    println!("backend      {}", i.backend);
    println!("device type  {}", i.device_type);
    println!("driver       {} {}", i.driver, i.driver_info);
    println!("vendor/dev   {:#06x}/{:#06x}", i.vendor, i.device);
    println!(
        "timing       {}",
        if gpu.timestamps { "timestamp queries" } else { "wall clock (no timestamp queries)" }
    );
    println!("features     {}", if feats.is_empty() { "-".to_string() } else { feats.join(" ") });
    println!("limits");
    for (k, v) in limits {
        println!("  {k:<40} {v}");
    }
    if all.len() > 1 {
        println!("all adapters (pick one with --adapter NAME or DLSVM_ADAPTER)");
        for a in &all {
            println!("  {} ({}, {})", a.name, a.backend, a.device_type);
        }
    }
    Ok(0)
}

fn check(adapter: Option<&str>, json: bool, filter: Option<&str>) -> Result<u8, Failure> {
    let gpu = Gpu::new(adapter)?;
    if !json {
        eprintln!(
            "checking every kernel against the CPU reference on {} ({})",
            gpu.info.name, gpu.info.backend
        );
    }
    let mut done = 0usize;
    let rows = check::run_suite(&gpu, filter, |_, _| {
        done += 1;
        if !json && done.is_multiple_of(20) {
            eprint!(".");
        }
    });
    if !json {
        eprintln!();
    }
    if rows.is_empty() {
        return Err(Failure {
            message: format!("no kernel matches the filter {:?}", filter.unwrap_or("")),
            code: 2,
        });
    }
    let failed = rows.iter().filter(|r| !r.passed).count();
    if json {
        let obj = serde_json::json!({
            "adapter": gpu.info,
            "rows": rows,
            "passed": failed == 0,
        });
        println!("{obj}");
    } else {
        print_table(&rows);
        if failed == 0 {
            println!("all {} kernels pass on {}", rows.len(), gpu.info.name);
        } else {
            println!("{failed} of {} kernels FAILED on {}", rows.len(), gpu.info.name);
            for r in rows.iter().filter(|r| !r.passed) {
                println!("  {}: {}", r.kernel, r.failure.as_deref().unwrap_or("?"));
            }
        }
    }
    Ok(if failed == 0 { 0 } else { EXIT_FAILED })
}

fn print_table(rows: &[Row]) {
    let w = rows.iter().map(|r| r.kernel.len()).max().unwrap_or(6).max(6);
    println!(
        "{:<w$}  {:>6}  {:>9}  {:>9}  {:>7}  {:<34}  result",
        "kernel", "shapes", "max abs", "max rel", "of tol", "tolerance (|diff| <= ...)"
    );
    for r in rows {
        println!(
            "{:<w$}  {:>6}  {:>9.2e}  {:>9.2e}  {:>7.3}  {:<34}  {}",
            r.kernel,
            r.shapes,
            r.max_abs,
            r.max_rel,
            r.worst_ratio,
            r.tolerance,
            if r.passed { "pass" } else { "FAIL" }
        );
    }
}

/// The data a command works on: `--data PATH`, or the built-in synthetic faces.
fn load_data(path: Option<&Path>, size: usize, synth_count: usize, seed: u64) -> Result<DataSource, Failure> {
    match path {
        Some(p) => {
            let mut warn = |m: String| eprintln!("dlsvm: warning: {m}");
            data::load(p, Some(size), &mut warn).map_err(|e| Failure::input(e.to_string()))
        }
        None => {
            let mut src = synth::source(synth_count, synth_count / 5, seed);
            if size != 48 {
                let warn = |m: String| eprintln!("dlsvm: warning: {m}");
                for (name, ds) in &mut src.splits {
                    warn(format!(
                        "resized {} synthetic images of {name} from {}x{} to {size}x{size}",
                        ds.len(),
                        ds.h,
                        ds.w
                    ));
                    *ds = resize_dataset(ds, size);
                }
            }
            Ok(src)
        }
    }
}

/// Every image of `ds` resized to size x size.
fn resize_dataset(ds: &data::Dataset, size: usize) -> data::Dataset {
    let mut pixels = Vec::with_capacity(ds.len() * size * size);
    for i in 0..ds.len() {
        pixels.extend(data::resize_bilinear(ds.image(i), ds.h, ds.w, size, size));
    }
    data::Dataset { h: size, w: size, pixels, labels: ds.labels.clone() }
}

fn train(adapter: Option<&str>, a: TrainArgs) -> Result<u8, Failure> {
    let mut config = match &a.config {
        Some(p) => NetConfig::from_toml_file(p).map_err(|e| Failure::input(e.to_string()))?,
        None => model::preset(&a.preset).ok_or_else(|| {
            Failure::input(format!(
                "unknown preset {:?}; choose one of {}",
                a.preset,
                model::PRESETS.join(", ")
            ))
        })?,
    };
    // Where the network came from, for messages.
    let origin = match &a.config {
        Some(p) => p.display().to_string(),
        None => format!("--preset {}", a.preset),
    };
    let t = &mut config.train;
    if let Some(top) = &a.top {
        config.top = match top.as_str() {
            "l2svm" | "svm" => Top::L2svm,
            "softmax" => Top::Softmax,
            other => return Err(Failure::input(format!("unknown --top {other:?}; choose l2svm or softmax"))),
        };
    }
    if let Some(s) = a.steps {
        t.steps = s;
        t.epochs = None;
    }
    if a.epochs.is_some() {
        t.epochs = a.epochs;
    }
    if let Some(e) = t.epochs {
        if !(e.is_finite() && e > 0.0) {
            return Err(Failure::input(format!("--epochs {e} must be a positive number")));
        }
    }
    if t.epochs.is_none() && t.steps == 0 {
        return Err(Failure::input("--steps must be at least 1"));
    }
    if let Some(b) = a.batch {
        t.batch = b;
    }
    if t.batch == 0 {
        return Err(Failure::input(match a.batch {
            Some(_) => "--batch must be at least 1".to_string(),
            None => format!("{origin}: [train] batch must be at least 1"),
        }));
    }
    if let Some(lr) = a.lr {
        t.lr = lr;
    }
    if !(t.lr.is_finite() && t.lr > 0.0) {
        return Err(Failure::input(match a.lr {
            Some(_) => format!("--lr {} must be a finite positive number", t.lr),
            None => format!("{origin}: [train] lr = {} must be a finite positive number", t.lr),
        }));
    }
    if let Some(m) = a.momentum {
        if !(0.0..1.0).contains(&m) {
            return Err(Failure::input(format!("--momentum {m} must be in [0, 1)")));
        }
        t.momentum = m;
        t.momentum_start = m;
    }
    if let Some(w) = a.weight_decay {
        if !(w.is_finite() && w >= 0.0) {
            return Err(Failure::input(format!("--weight-decay {w} must be a finite number >= 0")));
        }
        t.weight_decay = w;
    }
    if let Some(c) = a.svm_c {
        if !(c.is_finite() && c > 0.0) {
            return Err(Failure::input(format!("--svm-c {c} must be a finite positive number")));
        }
        t.svm_c = c;
    }
    if let Some(seed) = a.seed {
        t.seed = seed;
    }
    if let Some(n) = a.checkpoint_every {
        t.checkpoint_every = n;
    }
    if let Some(n) = a.log_every {
        if n == 0 {
            return Err(Failure::input("--log-every must be at least 1"));
        }
        t.log_every = n;
    }
    if let Some(p) = a.dropout {
        if !(0.0..1.0).contains(&p) {
            return Err(Failure::input(format!("--dropout {p} must be in [0, 1)")));
        }
        for l in &mut config.layers {
            if let LayerSpec::Dropout { p: q } = l {
                *q = p;
            }
        }
    }
    // The network file's own [train] values get the checks the flags above get (a flag's value passed them).
    let t = &config.train;
    let (finite, aug) = (|v: f64| v.is_finite(), &t.augment);
    let checks = [
        ("momentum", t.momentum, (0.0..1.0).contains(&t.momentum), "in [0, 1)"),
        ("momentum_start", t.momentum_start, (0.0..1.0).contains(&t.momentum_start), "in [0, 1)"),
        (
            "weight_decay",
            t.weight_decay,
            finite(t.weight_decay) && t.weight_decay >= 0.0,
            "a finite number >= 0",
        ),
        (
            "top_weight_decay",
            t.top_weight_decay.unwrap_or(0.0),
            t.top_weight_decay.is_none_or(|w| finite(w) && w >= 0.0),
            "a finite number >= 0",
        ),
        ("svm_c", t.svm_c, finite(t.svm_c) && t.svm_c > 0.0, "a finite positive number"),
        (
            "lr_decay_steps",
            t.lr_decay_steps,
            finite(t.lr_decay_steps) && t.lr_decay_steps >= 0.0,
            "a finite number >= 0",
        ),
        (
            "norm",
            t.norm.into(),
            !t.per_image_norm || (t.norm.is_finite() && t.norm > 0.0),
            "a finite positive number",
        ),
        (
            "augment.max_rotate_deg",
            aug.max_rotate_deg.into(),
            aug.max_rotate_deg.is_finite(),
            "a finite number",
        ),
        ("augment.max_shift", aug.max_shift.into(), aug.max_shift.is_finite(), "a finite number"),
        (
            "augment.scale_min",
            aug.scale_min.into(),
            aug.scale_min.is_finite() && aug.scale_min > 0.0,
            "a finite positive number",
        ),
        (
            "augment.scale_max",
            aug.scale_max.into(),
            aug.scale_max.is_finite() && aug.scale_max > 0.0,
            "a finite positive number",
        ),
        (
            "augment.noise_std",
            aug.noise_std.into(),
            aug.noise_std.is_finite() && aug.noise_std >= 0.0,
            "a finite number >= 0",
        ),
    ];
    if let Some((key, v, _, want)) = checks.iter().find(|c| !c.2) {
        return Err(Failure::input(format!("{origin}: [train] {key} = {v} must be {want}")));
    }
    // Shape errors before the (possibly long) data load; the class count is checked once the data is in.
    let top_out = config.layers.iter().rev().find_map(|l| match l {
        LayerSpec::Fc { out, .. } => Some(*out),
        _ => None,
    });
    match top_out {
        Some(Some(o)) if o < 2 => {}
        Some(Some(o)) => check_net(&config, o, &origin)?,
        _ => check_net(&config, 2, &origin)?,
    }
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&config.name));
    if a.resume && a.folds.is_none() {
        check_resume(&out, &config)?;
    }
    let seed = config.train.seed;
    if a.data.is_none() {
        check_synth_count("--synth-count", a.synth_count)?;
    }
    let source = load_data(a.data.as_deref(), config.image_size, a.synth_count, seed)?;
    check_net(&config, source.classes(), &origin)
        .map_err(|f| Failure::input(format!("{} (data: {})", f.message, source.path)))?;
    let train_set = source.train().map_err(|e| Failure::input(e.to_string()))?;
    let batch = config.train.batch;
    if a.folds.is_none() && batch > train_set.len() {
        return Err(Failure::input(format!(
            "--batch {batch} is larger than the {} training samples of {} (use --batch {} or less)",
            train_set.len(),
            source.path,
            train_set.len()
        )));
    }
    let gpu = Gpu::new(adapter)?;
    install_interrupt_handler();
    let progress = !a.json;
    match a.folds {
        None => {
            let s = trainer::run(
                &gpu,
                &config,
                &source,
                train_set,
                source.test(),
                &RunOptions { out, resume: a.resume, progress, fold: None, stop_after: None },
            )?;
            print_summary(&s, a.json);
        }
        Some(k) => {
            if k < 2 || k > train_set.len() {
                return Err(Failure::input(format!(
                    "--folds {k} must be between 2 and the {} training samples of {}",
                    train_set.len(),
                    source.path
                )));
            }
            if let Some(i) = a.fold {
                if i >= k {
                    return Err(Failure::input(format!("--fold {i} must be below --folds {k}")));
                }
            }
            let which: Vec<usize> = match a.fold {
                Some(i) => vec![i],
                None => (0..k).collect(),
            };
            // Every fold's training part must hold a batch (fold i holds out samples i*n/k .. (i+1)*n/k).
            let n = train_set.len();
            if let Some((i, m)) =
                which.iter().map(|&i| (i, n - ((i + 1) * n / k - i * n / k))).min_by_key(|f| f.1)
            {
                if batch > m {
                    return Err(Failure::input(format!(
                        "--batch {batch} is larger than the {m} training samples of fold {i} of {k} of {} \
                         (use --batch {m} or less)",
                        source.path
                    )));
                }
            }
            let mut accs = Vec::new();
            let mut summaries = Vec::new();
            for i in which {
                let (tr, held) = trainer::fold_split(train_set, k, i, seed);
                if a.resume {
                    check_resume(&out.join(format!("fold{i}")), &config)?;
                }
                if progress {
                    eprintln!(
                        "dlsvm: fold {i} of {k}: {} training, {} held-out samples",
                        tr.len(),
                        held.len()
                    );
                }
                let opts = RunOptions {
                    out: out.join(format!("fold{i}")),
                    resume: a.resume,
                    progress,
                    fold: Some((i, k)),
                    stop_after: None,
                };
                let s = trainer::run(&gpu, &config, &source, &tr, Some(&held), &opts)?;
                if let Some(m) = &s.test {
                    accs.push(m.accuracy);
                }
                if !a.json {
                    println!(
                        "fold {i}: held-out accuracy {:.2}%",
                        100.0 * s.test.as_ref().map_or(f64::NAN, |m| m.accuracy)
                    );
                }
                summaries.push(s);
            }
            let mean = accs.iter().sum::<f64>() / accs.len().max(1) as f64;
            let sd = (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / accs.len().max(1) as f64).sqrt();
            if a.json {
                let obj = serde_json::json!({ "folds": k, "fold_accuracy": accs, "mean_accuracy": mean, "std_accuracy": sd, "runs": summaries });
                println!("{obj}");
            } else {
                println!(
                    "cross-validation: {} folds, held-out accuracy {:.2}% ± {:.2}%",
                    accs.len(),
                    100.0 * mean,
                    100.0 * sd
                );
                println!("average the fold models with: dlsvm eval --model {}/fold0/model.safetensors --model ... --data PATH", out.display());
            }
        }
    }
    Ok(0)
}

/// The network `config` resolved for `classes` classes: every layer's shape checked, one error line that
/// starts with `origin` (the network file or preset).
fn check_net(config: &NetConfig, classes: usize, origin: &str) -> Result<(), Failure> {
    if config.channels != 1 {
        return Err(Failure::input(format!(
            "{origin}: channels = {}, but dlsvm reads grayscale images: expected channels = 1",
            config.channels
        )));
    }
    // Absurd sizes would overflow the shape arithmetic or abort on allocation: refuse them by name.
    let too_big = |what: String, limit: usize| {
        Failure::input(format!("{origin}: network {}: {what}, expected at most {limit}", config.name))
    };
    for (key, v) in [("image_size", config.image_size), ("input_size", config.input_size)] {
        if v > MAX_SIZE {
            return Err(too_big(format!("`{key}` is {v}"), MAX_SIZE));
        }
    }
    for (i, l) in config.layers.iter().enumerate() {
        let sizes: &[(&str, usize)] = match *l {
            LayerSpec::Conv { filters, kernel, stride, pad, .. } => {
                &[("filters", filters), ("kernel", kernel), ("stride", stride), ("pad", pad)]
            }
            LayerSpec::MaxPool { size, stride, pad } | LayerSpec::AvgPool { size, stride, pad } => {
                &[("size", size), ("stride", stride), ("pad", pad)]
            }
            LayerSpec::Fc { out: Some(out), .. } => &[("out", out)],
            _ => &[],
        };
        if let Some((key, v)) = sizes.iter().find(|(_, v)| *v > MAX_SIZE) {
            return Err(too_big(format!("layer {i}: `{key}` is {v}"), MAX_SIZE));
        }
    }
    let net = model::Net::new(config, classes).map_err(|e| Failure::input(format!("{origin}: {e}")))?;
    let count = |dims: &[usize]| dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
    for d in &net.dims {
        let n = count(&[d.c, d.h, d.w]);
        if n > MAX_VALUES {
            return Err(too_big(format!("an activation of {d} holds {n} values per image"), MAX_VALUES));
        }
    }
    for p in &net.params {
        let n = count(&p.shape);
        if n > MAX_VALUES {
            return Err(too_big(format!("{} {:?} holds {n} values", p.name, p.shape), MAX_VALUES));
        }
    }
    Ok(())
}

/// `--resume` from a checkpoint made for another image geometry would misapply its normalizer: refuse it
/// with the checkpoint's name (the trainer checks the layers and classes).
fn check_resume(run_dir: &Path, config: &NetConfig) -> Result<(), Failure> {
    let path = run_dir.join("model.safetensors");
    if !path.exists() {
        return Ok(());
    }
    let ck = checkpoint::load(&path).map_err(|e| Failure::input(e.to_string()))?;
    let (c, r) = (&ck.config, config);
    if (c.image_size, c.input_size, c.channels) != (r.image_size, r.input_size, r.channels) {
        return Err(Failure::input(format!(
            "{}: the checkpoint's network takes {}x{} images cropped to {}x{}, this run's {}x{} cropped to \
             {}x{}; use another --out or drop --resume",
            path.display(),
            c.image_size,
            c.image_size,
            c.input_size,
            c.input_size,
            r.image_size,
            r.image_size,
            r.input_size,
            r.input_size
        )));
    }
    Ok(())
}

fn print_summary(s: &trainer::Summary, json: bool) {
    if json {
        println!("{}", serde_json::to_string(s).unwrap_or_default());
        return;
    }
    println!(
        "trained {} ({}) for {} steps of {} in {:.1} s ({:.0} images/s); final train loss {:.4}, train accuracy {:.2}%",
        s.net,
        s.top,
        s.steps,
        s.batch,
        s.wall_s,
        s.images_per_sec,
        s.final_train_loss,
        100.0 * s.final_train_accuracy
    );
    match &s.test {
        Some(m) => {
            println!("test accuracy {:.2}% on {} samples", 100.0 * m.accuracy, m.samples);
            let per: Vec<String> = s
                .class_names
                .iter()
                .zip(&m.per_class)
                .map(|(n, a)| format!("{n} {}", a.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v))))
                .collect();
            println!("per class: {}", per.join(", "));
        }
        None => println!("no test split in the data: no test accuracy"),
    }
    println!("run directory: {}", s.out);
}

fn load_model(gpu: &Gpu, path: &Path, batch: usize) -> Result<(checkpoint::Checkpoint, GpuNet), Failure> {
    let ck = checkpoint::load(path).map_err(|e| Failure::input(e.to_string()))?;
    check_net(&ck.config, ck.class_names.len(), &path.display().to_string())?;
    let net = ck.net().map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
    // Evaluation's batch does not change its results: take a smaller one where the device needs it.
    let batch = batch.min(GpuNet::max_batch(gpu, &net));
    GpuNet::check_batch_fits(gpu, &net, batch.max(1))
        .map_err(|m| Failure::input(format!("{}: {m}", path.display())))?;
    let g = GpuNet::new(gpu, &net, batch.max(1), &ck.params, ck.config.train.svm_c, 0)?;
    Ok((ck, g))
}

fn eval(
    adapter: Option<&str>,
    models: &[PathBuf],
    data_path: Option<&Path>,
    tta: usize,
    out: Option<&Path>,
    json: bool,
) -> Result<u8, Failure> {
    if tta == 0 {
        return Err(Failure::input("--tta must be at least 1"));
    }
    let gpu = Gpu::new(adapter)?;
    let mut loaded = Vec::new();
    for m in models {
        loaded.push(load_model(&gpu, m, 128)?);
    }
    let first = &loaded[0].0;
    for (m, (ck, _)) in models.iter().zip(&loaded) {
        if ck.class_names != first.class_names || ck.config.image_size != first.config.image_size {
            return Err(Failure::input(format!(
                "{}: its classes or image size differ from {}'s; an ensemble needs the same ones",
                m.display(),
                models[0].display()
            )));
        }
    }
    let source = load_data(data_path, first.config.image_size, 4000, first.config.train.seed)?;
    if source.class_names.len() != first.class_names.len() {
        return Err(Failure::input(format!(
            "{}: the data has {} classes but the model {} has {}; evaluate it on data with the model's classes",
            source.path,
            source.class_names.len(),
            models[0].display(),
            first.class_names.len()
        )));
    }
    let k = first.class_names.len();
    let out_dir = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| models[0].parent().unwrap_or(Path::new(".")).to_path_buf());
    let mut splits = serde_json::Map::new();
    let mut text = String::new();
    for (name, ds) in &source.splits {
        if ds.is_empty() || ds.labels.iter().all(|&y| y < 0) {
            continue;
        }
        let mut total = vec![0.0f32; ds.len() * k];
        for (ck, g) in &loaded {
            let x = ck.normalizer.apply(ds);
            let s = dlsvm::eval::scores(
                &gpu,
                g,
                &x,
                ds.len(),
                ds.h,
                ds.w,
                tta,
                &ck.config.train.augment,
                ck.config.train.seed,
            )?;
            for (t, v) in total.iter_mut().zip(&s) {
                *t += v / loaded.len() as f32;
            }
        }
        let m = dlsvm::eval::metrics(&total, &ds.labels, k);
        let png = out_dir.join(format!("confusion_{name}.png"));
        let title = format!("{} models, {name}, tta {tta}", loaded.len());
        if let Err(e) = dlsvm::report::confusion_png(&png, &first.class_names, &m.confusion, &title) {
            eprintln!("dlsvm: warning: could not write {}: {e}", png.display());
        }
        text.push_str(&format!(
            "{name}: accuracy {:.2}% on {} samples; cross-entropy {:.4}, squared hinge {:.4}\n",
            100.0 * m.accuracy,
            m.samples,
            m.cross_entropy,
            m.squared_hinge
        ));
        text.push_str(&dlsvm::report::confusion_table(&first.class_names, &m.confusion));
        text.push('\n');
        splits.insert(
            name.clone(),
            serde_json::json!({
                "accuracy": m.accuracy,
                "samples": m.samples,
                "per_class": m.per_class,
                "confusion": m.confusion,
                "cross_entropy": m.cross_entropy,
                "squared_hinge": m.squared_hinge,
                "confusion_png": png.display().to_string(),
            }),
        );
    }
    if splits.is_empty() {
        return Err(Failure::input(format!(
            "{}: no labelled samples to evaluate (splits: {}); expected labels: a CSV `emotion` column, class \
             folders or IDX label files",
            source.path,
            source.splits.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    if json {
        let accuracy: serde_json::Map<String, serde_json::Value> =
            splits.iter().map(|(k, v)| (k.clone(), v["accuracy"].clone())).collect();
        let first_split = splits.values().next().cloned().unwrap_or_default();
        let obj = serde_json::json!({
            "models": models.iter().map(|m| m.display().to_string()).collect::<Vec<_>>(),
            "tta": tta,
            "classes": first.class_names,
            "accuracy": accuracy,
            "per_class": first_split["per_class"],
            "confusion": first_split["confusion"],
            "cross_entropy": first_split["cross_entropy"],
            "squared_hinge": first_split["squared_hinge"],
            "splits": splits,
        });
        println!("{obj}");
    } else {
        print!("{text}");
    }
    Ok(0)
}

fn predict(adapter: Option<&str>, model_path: &Path, images: &[PathBuf], json: bool) -> Result<u8, Failure> {
    let gpu = Gpu::new(adapter)?;
    let (ck, g) = load_model(&gpu, model_path, 1)?;
    let size = ck.config.image_size;
    let mut results = Vec::new();
    for path in images {
        let (h, w, img) = data::folder::load_image(path).map_err(|e| Failure::input(e.to_string()))?;
        let raw = if (h, w) == (size, size) { img } else { data::resize_bilinear(&img, h, w, size, size) };
        let ds = data::Dataset { h: size, w: size, pixels: raw, labels: vec![-1] };
        let x = ck.normalizer.apply(&ds);
        let s = dlsvm::eval::scores(&gpu, &g, &x, 1, size, size, 1, &ck.config.train.augment, 0)?;
        let best = (0..s.len()).fold(0, |b, j| if s[j] > s[b] { j } else { b });
        results.push((path.display().to_string(), ck.class_names[best].clone(), s));
    }
    if json {
        let arr: Vec<serde_json::Value> = results
            .iter()
            .map(|(p, c, s)| {
                let scores: serde_json::Map<String, serde_json::Value> =
                    ck.class_names.iter().zip(s).map(|(n, v)| (n.clone(), serde_json::json!(v))).collect();
                serde_json::json!({ "image": p, "class": c, "scores": scores })
            })
            .collect();
        println!("{}", serde_json::Value::Array(arr));
    } else {
        for (p, c, s) in &results {
            let scores: Vec<String> =
                ck.class_names.iter().zip(s).map(|(n, v)| format!("{n} {v:+.3}")).collect();
            println!("{p}: {c}  ({})", scores.join(", "));
        }
    }
    Ok(0)
}

fn synth(out: &Path, count: usize, seed: u64) -> Result<u8, Failure> {
    check_synth_count("--count", count)?;
    let src = synth::source(count, (count / 5).max(1), seed);
    synth::write_fer_csv(out, &src)
        .map_err(|e| Failure { message: format!("{}: {e}", out.display()), code: EXIT_FAILED })?;
    println!(
        "wrote {} synthetic faces ({} train, {} test) to {}",
        count + (count / 5).max(1),
        count,
        (count / 5).max(1),
        out.display()
    );
    Ok(0)
}

fn bench(adapter: Option<&str>, opts: dlsvm::bench::BenchOptions, json: bool) -> Result<u8, Failure> {
    let gpu = Gpu::new(adapter)?;
    if !json {
        eprintln!(
            "dlsvm: benchmarking on {} ({}); each kernel is checked against the CPU reference first",
            gpu.info.name, gpu.info.backend
        );
    }
    let report = dlsvm::bench::run(&gpu, &opts, |line| {
        if !json {
            eprintln!("{line}");
        }
    })?;
    if report.rows.is_empty() && report.steps.is_empty() {
        return Err(Failure::input(format!(
            "no benchmark matches the filter {:?}",
            opts.filter.unwrap_or_default()
        )));
    }
    let failed = report.rows.iter().filter(|r| r.status != "ok").count();
    if json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print!("{}", dlsvm::bench::table(&report));
    }
    Ok(if failed == 0 { 0 } else { EXIT_FAILED })
}
