//! The `dlsvm` command line: parse, call the library, print, map errors to exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod args;

use args::{Cli, Command, CompareArgs, DataCommand, TrainArgs};
use clap::Parser;
use dlsvm::check::{self, Row};
use dlsvm::data::{self, synth, DataSource};
use dlsvm::eval::{self, EvalError, Model};
use dlsvm::gpu::{AdapterReport, Gpu, GpuError};
use dlsvm::model::config::{ConfigProblem, InvalidValue, Overrides};
use dlsvm::model::{self, NetConfig, Top};
use dlsvm::train::{self, RunOptions, TrainError};
use dlsvm::tune::{self as tuning, Mode};

/// Exit codes (README, "Exit codes").
const EXIT_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_NO_ADAPTER: u8 = 3;
/// `dlsvm train` stopped by Ctrl-C after writing a checkpoint (128 + SIGINT, as shells report it);
/// other signals give 128 + their number ([`interrupted_code`]).
const EXIT_INTERRUPTED: u8 = 130;

/// An error for the user: one line, and the exit code it maps to.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn input(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: EXIT_BAD_INPUT }
    }
}

impl From<GpuError> for Failure {
    fn from(e: GpuError) -> Self {
        let code = match e {
            GpuError::NoAdapter
            | GpuError::AdapterNotFound { .. }
            | GpuError::AdapterTooSmall { .. }
            | GpuError::Device(_) => EXIT_NO_ADAPTER,
            _ => EXIT_FAILED,
        };
        Failure { message: e.to_string(), code }
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
                code: interrupted_code(),
            },
            other => Failure::input(other.to_string()),
        }
    }
}

impl From<EvalError> for Failure {
    fn from(e: EvalError) -> Self {
        match e {
            EvalError::Gpu(g) => g.into(),
            EvalError::Input(m) => Failure::input(m),
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

/// The signal that stopped a run (its number; 0 when none came): the exit code is 128 + it.
static SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The exit code of a run stopped by a signal: 128 + its number, as shells report it (130 for
/// Ctrl-C, 143 SIGTERM, 129 SIGHUP, 138 SIGUSR1).
fn interrupted_code() -> u8 {
    match SIGNAL.load(std::sync::atomic::Ordering::SeqCst) {
        0 => EXIT_INTERRUPTED,
        sig => (128 + sig).clamp(0, 255) as u8,
    }
}

/// Ctrl-C (SIGINT) during training, and what a scheduler sends (SIGTERM on preemption or
/// `scancel`, SIGHUP, SIGUSR1 as the warning before a time limit): the first asks the trainer to
/// stop after the current step with a checkpoint ([`train::INTERRUPT`]); a second quits at once
/// (checkpoint writes are atomic, so the one on disk stays whole).
#[cfg(unix)]
fn install_interrupt_handler() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dlsvm: warning: signals will stop training without a checkpoint: {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new().name("dlsvm-signals".into()).spawn(move || {
        for sig in signals.forever() {
            let name = match sig {
                SIGINT => "interrupt (SIGINT)",
                SIGTERM => "SIGTERM",
                SIGHUP => "SIGHUP",
                _ => "SIGUSR1",
            };
            if train::INTERRUPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(128 + sig);
            }
            SIGNAL.store(sig, std::sync::atomic::Ordering::SeqCst);
            eprintln!(
                "dlsvm: {name}: stopping after the current step to write a checkpoint (a second signal quits at once)"
            );
        }
    });
    if let Err(e) = spawned {
        eprintln!("dlsvm: warning: signals will stop training without a checkpoint: {e}");
    }
}

/// Ctrl-C during training (where there are no Unix signals): as on Unix, the first stops after
/// the current step with a checkpoint, a second quits at once.
#[cfg(not(unix))]
fn install_interrupt_handler() {
    let result = ctrlc::set_handler(|| {
        if train::INTERRUPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
        eprintln!("dlsvm: interrupt: stopping after the current step to write a checkpoint (Ctrl-C again quits at once)");
    });
    if let Err(e) = result {
        eprintln!("dlsvm: warning: Ctrl-C will stop training without a checkpoint: {e}");
    }
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
    let adapter = cli.adapter.as_deref();
    let result = match cli.command {
        Command::Info { json } => info(adapter, json),
        Command::Check { json, filter } => check(adapter, json, filter.as_deref()),
        Command::Train(args) => train(adapter, *args),
        Command::Compare(args) => compare(adapter, *args),
        Command::Bench { filter, variants, reps, no_steps, tune, report, json } => {
            match tune_mode(&tune, Mode::Full) {
                Ok(tune) => {
                    let opts = dlsvm::bench::BenchOptions { filter, variants, reps, no_steps, tune };
                    bench(adapter, opts, report.as_deref(), json)
                }
                Err(f) => Err(f),
            }
        }
        Command::Eval { models, data, tta, out, tune, json } => {
            evaluate(adapter, &models, data.as_deref(), tta, out.as_deref(), &tune, json)
        }
        Command::Tune { preset, config, batch, classes, json } => {
            tune(adapter, &preset, config.as_deref(), batch, classes, json)
        }
        Command::Predict { model, images, json } => predict(adapter, &model, &images, json),
        Command::Collect { dir, data, json } => collect(adapter, &dir, data.as_deref(), json),
        Command::Data { command: DataCommand::Synth { out, count, seed } } => synth(&out, count, seed),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("dlsvm: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn info(adapter: Option<&str>, json: bool) -> Result<u8, Failure> {
    let report = AdapterReport::new(&Gpu::new(adapter)?);
    if json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print!("{report}");
    }
    Ok(0)
}

fn check(adapter: Option<&str>, json: bool, filter: Option<&str>) -> Result<u8, Failure> {
    let wait_limit = check::wait_limit().map_err(Failure::input)?;
    let mut gpu = Gpu::new(adapter)?;
    gpu.enable_checks(wait_limit);
    gpu.on_hang(check_blocked);
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
        return Err(Failure::input(format!("no kernel matches the filter {:?}", filter.unwrap_or(""))));
    }
    let failed = rows.iter().filter(|r| !r.passed).count();
    if json {
        let json = serde_json::json!({
            "adapter": gpu.info,
            "subgroups": gpu.subgroups,
            "rows": rows,
            "passed": failed == 0,
            "stuck": gpu.stuck(),
        });
        println!("{json}");
    } else {
        print_rows(&rows);
        match failed {
            0 => println!("all {} kernels pass on {}", rows.len(), gpu.info.name),
            _ => println!("{failed} of {} kernels FAILED on {}", rows.len(), gpu.info.name),
        }
        for r in rows.iter().filter(|r| !r.passed) {
            println!("  {}: {}", r.kernel, r.failure.as_deref().unwrap_or("?"));
        }
        if gpu.stuck().is_some() {
            println!(
                "the check stopped there: a kernel never finished ({} set the limit to {} s) and the \
                 device cannot run anything more; the cases after it were not run",
                check::WAIT_LIMIT_ENV,
                wait_limit.as_secs_f64()
            );
        }
        if !gpu.subgroups && rows.iter().any(|r| r.kernel.contains("subgroup")) {
            println!(
                "note: the device has no subgroups here: the subgroup variants' rows checked the kernels \
                 that run in their place (the tiled GEMM, the blocked and rows convolutions; no subgroup kernel \
                 was checked)"
            );
        }
    }
    Ok(if failed == 0 { 0 } else { EXIT_FAILED })
}

/// The watchdog's way out of `dlsvm check` when a call into the driver stays blocked behind a
/// kernel that never finished (the bounded wait normally fails the case first, and the check
/// prints its table): name the kernel and exit 1.
fn check_blocked(e: &dlsvm::gpu::GpuError) {
    eprintln!("dlsvm: check: {e}; stopping (the driver is blocked behind it)");
    std::process::exit(EXIT_FAILED.into());
}

fn print_rows(rows: &[Row]) {
    let w = rows.iter().map(|r| r.kernel.len()).max().unwrap_or(6).max(6);
    let head = ("kernel", "shapes", "max abs", "max rel", "of tol", "tolerance (|diff| <= ...)");
    println!(
        "{:<w$}  {:>6}  {:>9}  {:>9}  {:>7}  {:<34}  result",
        head.0, head.1, head.2, head.3, head.4, head.5
    );
    for r in rows {
        let result = if r.passed { "pass" } else { "FAIL" };
        let (k, n, a, m, o, t) = (&r.kernel, r.shapes, r.max_abs, r.max_rel, r.worst_ratio, &r.tolerance);
        println!("{k:<w$}  {n:>6}  {a:>9.2e}  {m:>9.2e}  {o:>7.3}  {t:<34}  {result}");
    }
}

/// The data a command works on, warnings on stderr.
fn load_data(
    path: Option<&Path>,
    size: usize,
    channels: usize,
    synth_count: usize,
    seed: u64,
) -> Result<DataSource, Failure> {
    let mut warn = |m: String| eprintln!("dlsvm: warning: {m}");
    data::load_or_synth(path, size, channels, synth_count, seed, &mut warn)
        .map_err(|e| Failure::input(e.to_string()))
}

/// The tuning mode of `--tune` (else `DLSVM_TUNE`, else `default`).
fn tune_mode(flag: &Option<String>, default: Mode) -> Result<Mode, Failure> {
    Mode::choose(flag.as_deref(), default).map_err(|e| Failure::input(format!("--tune: {e}")))
}

/// One line for a value out of range: named by the option that set it, else by the file's key.
fn invalid(e: &InvalidValue, overrides: &Overrides, origin: &str) -> Failure {
    match overrides.flag_for(e.key) {
        Some(flag) => Failure::input(format!("{flag} {} must be {}", e.value, e.want)),
        None => Failure::input(format!("{origin}: {e}")),
    }
}

/// The network of `train` and `compare`: the preset or file with the flags applied, every value
/// and layer checked; with the name of where it came from.
fn net_config(a: &TrainArgs) -> Result<(NetConfig, String), Failure> {
    let (mut config, origin) = match &a.config {
        Some(p) => (
            NetConfig::from_toml_file(p).map_err(|e| Failure::input(e.to_string()))?,
            p.display().to_string(),
        ),
        None => {
            let choices = model::PRESETS.join(", ");
            let unknown =
                || Failure::input(format!("unknown preset {:?}; choose one of {choices}", a.preset));
            (model::preset(&a.preset).ok_or_else(unknown)?, format!("--preset {}", a.preset))
        }
    };
    let top = a.top.as_deref().map(parse_top).transpose()?;
    let overrides = Overrides {
        top,
        steps: a.steps,
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        svm_c: a.svm_c,
        dropout: a.dropout,
        seed: a.seed,
        checkpoint_every: a.checkpoint_every,
        log_every: a.log_every,
        no_augment: a.no_augment,
        noise_std: a.noise_std,
    };
    overrides.apply(&mut config).map_err(|e| invalid(&e, &overrides, &origin))?;
    // --set KEY=VALUE: any [train] value, as a one-valued grid setting.
    let sets = a
        .set
        .iter()
        .map(|kv| {
            let axis = train::grid::Axis::parse(kv).map_err(|m| m.replace("--grid", "--set"))?;
            match axis.values.as_slice() {
                [v] => Ok((axis.key, v.clone())),
                _ => Err(format!("--set {kv}: expected KEY=VALUE (one value; --grid takes several)")),
            }
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(Failure::input)?;
    if !sets.is_empty() {
        config =
            train::grid::apply(&config, &sets).map_err(|m| Failure::input(m.replace("--grid", "--set")))?;
    }
    // Every value and layer checked before the (possibly long) data load.
    match config.validate() {
        Err(ConfigProblem::Value(e)) => return Err(invalid(&e, &overrides, &origin)),
        Err(ConfigProblem::Shape(e)) => return Err(Failure::input(format!("{origin}: {e}"))),
        Ok(()) => {}
    }
    Ok((config, origin))
}

fn parse_top(t: &str) -> Result<Top, Failure> {
    Top::parse(t)
        .ok_or_else(|| Failure::input(format!("unknown --top {t:?}; choose l2svm, softmax or l1svm")))
}

/// The data of `train` and `compare`, checked against the network and the fold options.
fn train_data(a: &TrainArgs, config: &NetConfig, origin: &str) -> Result<DataSource, Failure> {
    if a.data.is_none() {
        synth::check_count(a.synth_count).map_err(|e| Failure::input(format!("--synth-count {e}")))?;
    }
    let source =
        load_data(a.data.as_deref(), config.image_size, config.channels, a.synth_count, config.train.seed)?;
    model::Net::new(config, source.classes())
        .map_err(|e| Failure::input(format!("{origin}: {e} (data: {})", source.path)))?;
    let train_set = source.train().map_err(|e| Failure::input(e.to_string()))?;
    if let Some(k) = a.folds {
        train::check_folds(train_set, &source.path, config.train.batch, k, a.fold)?;
    }
    Ok(source)
}

/// Refuses an `--init-from` (or `--warm-start`) model that cannot start this network, before
/// the device is touched; the run repeats the check where it starts.
fn check_init_from(path: Option<&Path>, config: &NetConfig, source: &DataSource) -> Result<(), Failure> {
    let Some(p) = path else { return Ok(()) };
    let net = model::Net::new(config, source.classes()).map_err(|e| Failure::input(e.to_string()))?;
    train::warm::warm_start(p, &net, &source.class_names, config.train.seed)?;
    Ok(())
}

/// The kernel variants for `config` on `gpu` (`mode` of tuning), with a line on what was tuned.
fn tuned_plan(
    gpu: &Gpu,
    config: &NetConfig,
    classes: usize,
    mode: Mode,
    quiet: bool,
) -> Result<model::Plan, Failure> {
    let net = model::Net::new(config, classes).map_err(|e| Failure::input(e.to_string()))?;
    let (plan, rep) = tuning::plan(gpu, &net, config.train.batch, mode, &mut |m| {
        if !quiet {
            eprintln!("dlsvm: {m}")
        }
    })?;
    if !quiet && rep.tuned > 0 {
        eprintln!("dlsvm: tuned {} ops in {:.1} s ({} from the cache)", rep.tuned, rep.seconds, rep.cached);
    }
    Ok(plan)
}

fn train(adapter: Option<&str>, a: TrainArgs) -> Result<u8, Failure> {
    let (config, origin) = net_config(&a)?;
    let axes = a
        .grid
        .iter()
        .map(|g| train::grid::Axis::parse(g))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::input)?;
    // Every setting checked before the data load.
    for setting in train::grid::settings(&axes).map_err(Failure::input)? {
        train::grid::apply(&config, &setting).map_err(Failure::input)?;
    }
    if a.slurm.is_some() {
        let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&config.name));
        let base = args_without(&[
            ("--grid", true),
            ("--folds", true),
            ("--fold", true),
            ("--resume", false),
            ("--json", false),
            ("--out", true),
        ]);
        let folds: Vec<Option<usize>> = match a.folds {
            Some(k) if k >= 2 => a.fold.map_or((0..k).map(Some).collect(), |i| vec![Some(i)]),
            Some(k) => return Err(Failure::input(format!("--folds {k} must be at least 2"))),
            None => vec![None],
        };
        let mut tasks = Vec::new();
        for setting in train::grid::settings(&axes).map_err(Failure::input)? {
            let dir = if axes.is_empty() { out.clone() } else { out.join(train::grid::dir_name(&setting)) };
            for fold in &folds {
                let mut t: Vec<String> =
                    std::iter::once("train".to_string()).chain(base.iter().cloned()).collect();
                for (k, v) in &setting {
                    t.extend(["--set".to_string(), format!("{k}={v}")]);
                }
                if let (Some(k), Some(i)) = (a.folds, fold) {
                    t.extend(["--folds".to_string(), k.to_string(), "--fold".to_string(), i.to_string()]);
                }
                t.extend(["--resume".to_string(), "--out".to_string(), dir.display().to_string()]);
                tasks.push(t);
            }
        }
        return write_slurm(&a, &config.name, &out, tasks, vec!["collect".into(), out.display().to_string()]);
    }
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&config.name));
    let existing = out.join("model.safetensors");
    if a.resume && a.folds.is_none() && existing.exists() {
        let ck = model::checkpoint::load(&existing).map_err(|e| Failure::input(e.to_string()))?;
        ck.check_resumable(&existing, &config, None).map_err(Failure::input)?;
    }
    let source = train_data(&a, &config, &origin)?;
    let train_set = source.train().map_err(|e| Failure::input(e.to_string()))?;
    check_init_from(a.init_from.as_deref(), &config, &source)?;
    let mode = tune_mode(&a.tune, Mode::Full)?;
    let gpu = Gpu::new(adapter)?;
    install_interrupt_handler();
    // A resumed run keeps its checkpoint's variants: nothing to tune.
    let mode = if a.resume && existing.exists() { Mode::Off } else { mode };
    let plan = tuned_plan(&gpu, &config, source.classes(), mode, a.json)?;
    let opts = RunOptions {
        out,
        resume: a.resume,
        progress: !a.json,
        fold: None,
        stop_after: None,
        plan: Some(plan),
        init_from: a.init_from.clone(),
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
                    println!("{}: {what} {:.2}%", train::grid::dir_name(&row.setting), 100.0 * row.accuracy);
                }
            },
        )?;
        if a.json {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
        } else {
            print!("{}", train::grid::markdown(&report));
            println!(
                "best: {}; table in {}",
                train::grid::dir_name(&report.rows[report.best].setting),
                opts.out.join("grid.md").display()
            );
        }
        return Ok(0);
    }
    let Some(k) = a.folds else {
        let s = train::run(&gpu, &config, &source, train_set, source.test(), &opts)?;
        print_summary(&s, a.json);
        return Ok(0);
    };
    let cv = train::cross_validate(&gpu, &config, &source, k, a.fold, &opts, |i, s| {
        if !a.json {
            println!(
                "fold {i}: held-out accuracy {:.2}%",
                100.0 * s.test.as_ref().map_or(f64::NAN, |m| m.accuracy)
            );
        }
    })?;
    if a.json {
        println!("{}", serde_json::to_string(&cv).unwrap_or_default());
    } else {
        let (n, m, sd) = (cv.fold_accuracy.len(), 100.0 * cv.mean_accuracy, 100.0 * cv.std_accuracy);
        println!("cross-validation: {n} folds, held-out accuracy {m:.2}% ± {sd:.2}%");
        let first = opts.out.join("fold0").join("model.safetensors");
        println!(
            "average the fold models with: dlsvm eval --model {} --model ... --data PATH",
            first.display()
        );
    }
    Ok(0)
}

fn compare(adapter: Option<&str>, c: CompareArgs) -> Result<u8, Failure> {
    let a = &c.train;
    if a.top.is_some() {
        return Err(Failure::input(
            "--top does not apply to compare: it trains each top of --tops (e.g. --tops l2svm,softmax)",
        ));
    }
    if !a.grid.is_empty() {
        return Err(Failure::input("--grid does not apply to compare; use it with dlsvm train"));
    }
    let mut tops = Vec::new();
    for t in c.tops.split(',').map(str::trim) {
        let top = parse_top(t).map_err(|_| {
            Failure::input(format!(
                "--tops: unknown top {t:?}; choose from l2svm, softmax, l1svm (comma-separated)"
            ))
        })?;
        if tops.contains(&top) {
            return Err(Failure::input(format!("--tops names {t} twice")));
        }
        tops.push(top);
    }
    if c.seeds == 0 {
        return Err(Failure::input("--seeds 0 must be at least 1"));
    }
    let (mut config, origin) = net_config(a)?;
    if a.steps.is_none() && a.epochs.is_none() {
        config.train.steps = dlsvm::compare::DEFAULT_STEPS;
    }
    let first = config.train.seed;
    let seeds: Vec<u64> = (0..c.seeds as u64).map(|i| first.wrapping_add(i)).collect();
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-compare", config.name)));
    if a.slurm.is_some() {
        let base = args_without(&[
            ("--seeds", true),
            ("--tops", true),
            ("--seed", true),
            ("--warm-start", true),
            ("--init-from", true),
            ("--folds", true),
            ("--fold", true),
            ("--resume", false),
            ("--json", false),
            ("--out", true),
        ]);
        let warm = c.warm_start.clone().or_else(|| a.init_from.clone());
        let mut tasks = Vec::new();
        for &seed in &seeds {
            for top in &tops {
                let folds: Vec<Option<usize>> = match a.folds {
                    Some(k) => a.fold.map_or((0..k).map(Some).collect(), |i| vec![Some(i)]),
                    None => vec![None],
                };
                for fold in folds {
                    let mut t: Vec<String> =
                        std::iter::once("train".to_string()).chain(base.iter().cloned()).collect();
                    t.extend(["--top".into(), top.name().into(), "--seed".into(), seed.to_string()]);
                    if a.steps.is_none() && a.epochs.is_none() {
                        t.extend(["--steps".into(), dlsvm::compare::DEFAULT_STEPS.to_string()]);
                    }
                    if let Some(w) = &warm {
                        t.extend(["--init-from".into(), w.display().to_string()]);
                    }
                    if let (Some(k), Some(i)) = (a.folds, fold) {
                        t.extend(["--folds".into(), k.to_string(), "--fold".into(), i.to_string()]);
                    }
                    let dir = dlsvm::compare::run_dir(&out, *top, seed);
                    t.extend(["--resume".into(), "--out".into(), dir.display().to_string()]);
                    tasks.push(t);
                }
            }
        }
        // The collect job: the same comparison, resumed: every run is done, so it only evaluates.
        let mut collect: Vec<String> = std::iter::once("compare".to_string())
            .chain(args_without(&[("--resume", false), ("--json", false), ("--out", true)]))
            .collect();
        collect.extend(["--resume".into(), "--out".into(), out.display().to_string()]);
        return write_slurm(a, &config.name, &out, tasks, collect);
    }
    let source = train_data(a, &config, &origin)?;
    check_init_from(c.warm_start.as_deref().or(a.init_from.as_deref()), &config, &source)?;
    let mode = tune_mode(&a.tune, Mode::Full)?;
    let eval_tune = tune_mode(&None, Mode::Cached)?;
    let gpu = Gpu::new(adapter)?;
    install_interrupt_handler();
    let plan = tuned_plan(&gpu, &config, source.classes(), mode, a.json)?;
    let opts = dlsvm::compare::CompareOptions {
        tops,
        seeds,
        folds: a.folds.map(|k| (k, a.fold)),
        run: RunOptions {
            out: out.clone(),
            resume: a.resume,
            progress: false,
            fold: None,
            stop_after: None,
            plan: Some(plan),
            init_from: c.warm_start.clone().or_else(|| a.init_from.clone()),
        },
        eval_tune,
    };
    if !a.json {
        eprintln!(
            "dlsvm: comparing {} on {} ({}) with {} seeds: {} runs in {}",
            opts.tops.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
            source.path,
            gpu.info.name,
            opts.seeds.len(),
            opts.tops.len() * opts.seeds.len(),
            out.display()
        );
    }
    let report = dlsvm::compare::compare(&gpu, &config, &source, &opts, |p| match p {
        dlsvm::compare::Progress::Starting { index, total, top, seed, dir } => {
            eprintln!("dlsvm: run {index} of {total}: {}, seed {seed}, in {}", top.name(), dir.display())
        }
        dlsvm::compare::Progress::Finished { index, total, result: r } => {
            let fold = r.fold.map(|f| format!(", fold {f}")).unwrap_or_default();
            eprintln!(
                "dlsvm: run {index} of {total}: {}, seed {}{fold}: test error {:.2}% ({:.1} s)",
                r.top,
                r.seed,
                100.0 * r.test_error,
                r.wall_s
            )
        }
    })?;
    dlsvm::compare::write(&report, &out)?;
    if a.json {
        let files = ["compare.json", "compare.md", "compare.png"].map(|f| out.join(f).display().to_string());
        let v = serde_json::json!({
            "net": report.net, "data": report.data, "tops": report.tops, "seeds": report.seeds,
            "folds": report.folds, "steps": report.steps, "errors": report.errors, "paired": report.paired,
            "table3": report.table3, "out": report.out, "files": files,
        });
        println!("{v}");
    } else {
        print!("{}", dlsvm::compare::markdown(&report, false));
        println!(
            "\nwritten: {}/compare.md, compare.json, compare.png (each run in its own directory there)",
            out.display()
        );
    }
    Ok(0)
}

fn collect(adapter: Option<&str>, dir: &Path, data: Option<&Path>, json: bool) -> Result<u8, Failure> {
    // The ensembles need a GPU; without one they say so and the rest is still collected.
    let gpu = Gpu::new(adapter).ok();
    let c = dlsvm::collect::collect(dir, gpu.as_ref(), data).map_err(Failure::input)?;
    if json {
        println!("{}", serde_json::to_string(&c).unwrap_or_default());
    } else {
        print!("{}", dlsvm::collect::text(&c));
    }
    Ok(if c.incomplete.is_empty() { 0 } else { EXIT_FAILED })
}

/// The options a task of a `--slurm` array does not take from the command that wrote it.
const SLURM_OPTIONS: [(&str, bool); 5] = [
    ("--slurm", true),
    ("--slurm-partition", true),
    ("--slurm-time", true),
    ("--slurm-gres", true),
    ("--slurm-extra", true),
];

/// Writes the `--slurm` batch script of `tasks` (command lines after the binary) and `collect`;
/// creates `<out>/slurm` for the task logs. One line on stdout says how to submit it.
fn write_slurm(
    a: &TrainArgs,
    net: &str,
    out: &Path,
    tasks: Vec<Vec<String>>,
    collect: Vec<String>,
) -> Result<u8, Failure> {
    let path = a.slurm.as_deref().ok_or_else(|| Failure::input("--slurm: no file"))?;
    let exe = std::env::current_exe()
        .map_err(|e| Failure::input(format!("--slurm: cannot find the dlsvm binary: {e}")))?;
    let exe = exe.display().to_string();
    let with_exe = |t: Vec<String>| std::iter::once(exe.clone()).chain(t).collect::<Vec<_>>();
    let tasks: Vec<Vec<String>> = tasks.into_iter().map(with_exe).collect();
    let o = dlsvm::slurm::SlurmOptions {
        job_name: format!("dlsvm-{net}"),
        partition: a.slurm_partition.clone(),
        time: a.slurm_time.clone(),
        gres: a.slurm_gres.clone(),
        extra: a.slurm_extra.clone(),
    };
    let origin: Vec<String> = std::env::args().map(|w| dlsvm::slurm::quote(&w)).collect();
    let text = dlsvm::slurm::script(&tasks, &with_exe(collect), out, &o, &origin.join(" "));
    let logs = out.join("slurm");
    std::fs::create_dir_all(&logs).map_err(|e| Failure::input(format!("{}: {e}", logs.display())))?;
    std::fs::write(path, text).map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
    println!(
        "wrote {}: {} array tasks and a collect job; submit with: sbatch {}",
        path.display(),
        tasks.len(),
        path.display()
    );
    Ok(0)
}

/// This invocation's arguments after the command name, without `drop`.
fn args_without(drop: &[(&str, bool)]) -> Vec<String> {
    let args: Vec<String> = std::env::args().skip(2).collect();
    dlsvm::slurm::without(&dlsvm::slurm::without(&args, &SLURM_OPTIONS), drop)
}

fn print_summary(s: &train::Summary, json: bool) {
    if json {
        println!("{}", serde_json::to_string(s).unwrap_or_default());
        return;
    }
    let (loss, acc) = (s.final_train_loss, 100.0 * s.final_train_accuracy);
    println!(
        "trained {} ({}) for {} steps of {} in {:.1} s ({:.0} images/s); final train loss {loss:.4}, train accuracy {acc:.2}%",
        s.net, s.top, s.steps, s.batch, s.wall_s, s.images_per_sec
    );
    match &s.test {
        Some(m) => {
            println!("test accuracy {:.2}% on {} samples", 100.0 * m.accuracy, m.samples);
            let per: Vec<String> = (s.class_names.iter().zip(&m.per_class))
                .map(|(n, a)| format!("{n} {}", a.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v))))
                .collect();
            println!("per class: {}", per.join(", "));
        }
        None => println!("no test split in the data: no test accuracy"),
    }
    println!("run directory: {}", s.out);
}

fn evaluate(
    adapter: Option<&str>,
    paths: &[PathBuf],
    data_path: Option<&Path>,
    tta: usize,
    out: Option<&Path>,
    tune: &Option<String>,
    json: bool,
) -> Result<u8, Failure> {
    let mode = tune_mode(tune, Mode::Cached)?;
    let gpu = Gpu::new(adapter)?;
    let models = paths.iter().map(|p| Model::load(&gpu, p, 128, mode)).collect::<Result<Vec<_>, _>>()?;
    let first = &models[0].checkpoint;
    let c = &first.config;
    let source = load_data(data_path, c.image_size, c.channels, 4000, c.train.seed)?;
    let results = eval::ensemble(&gpu, &models, &source, tta)?;
    let out_dir = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| paths[0].parent().unwrap_or(Path::new(".")).to_path_buf());
    let classes = &first.class_names;
    let mut splits = serde_json::Map::new();
    for r in &results {
        let (name, m) = (&r.split, &r.metrics);
        let png = out_dir.join(format!("confusion_{name}.png"));
        let title = format!("{} models, {name}, tta {tta}", models.len());
        if let Err(e) = dlsvm::report::confusion_png(&png, classes, &m.confusion, &title) {
            eprintln!("dlsvm: warning: could not write {}: {e}", png.display());
        }
        if !json {
            let (a, n, x, h) = (100.0 * m.accuracy, m.samples, m.cross_entropy, m.squared_hinge);
            println!("{name}: accuracy {a:.2}% on {n} samples; cross-entropy {x:.4}, squared hinge {h:.4}");
            println!("{}", dlsvm::report::confusion_table(classes, &m.confusion));
        }
        let mut v = serde_json::to_value(m).unwrap_or_default();
        v["confusion_png"] = png.display().to_string().into();
        splits.insert(name.clone(), v);
    }
    if json {
        let accuracy: serde_json::Map<_, _> =
            splits.iter().map(|(k, v)| (k.clone(), v["accuracy"].clone())).collect();
        let first_split = splits.values().next().cloned().unwrap_or_default();
        let mut obj = serde_json::json!({
            "models": paths.iter().map(|m| m.display().to_string()).collect::<Vec<_>>(),
            "tta": tta,
            "classes": classes,
            "accuracy": accuracy,
            "splits": splits,
        });
        for key in ["per_class", "confusion", "cross_entropy", "squared_hinge"] {
            obj[key] = first_split[key].clone();
        }
        println!("{obj}");
    }
    Ok(0)
}

fn predict(adapter: Option<&str>, model_path: &Path, images: &[PathBuf], json: bool) -> Result<u8, Failure> {
    let gpu = Gpu::new(adapter)?;
    let model = Model::load(&gpu, model_path, 1, tune_mode(&None, Mode::Cached)?)?;
    let names = model.class_names();
    let mut results = Vec::new();
    for path in images {
        let (class, scores) = model.predict(&gpu, path)?;
        if !json {
            let s: Vec<String> = names.iter().zip(&scores).map(|(n, v)| format!("{n} {v:+.3}")).collect();
            println!("{}: {class}  ({})", path.display(), s.join(", "));
        }
        let scores: serde_json::Map<_, _> =
            names.iter().zip(&scores).map(|(n, v)| (n.clone(), serde_json::json!(v))).collect();
        results.push(
            serde_json::json!({ "image": path.display().to_string(), "class": class, "scores": scores }),
        );
    }
    if json {
        println!("{}", serde_json::Value::Array(results));
    }
    Ok(0)
}

fn synth(out: &Path, count: usize, seed: u64) -> Result<u8, Failure> {
    synth::check_count(count).map_err(|e| Failure::input(format!("--count {e}")))?;
    let test = (count / 5).max(1);
    let src = synth::source(count, test, seed);
    synth::write_fer_csv(out, &src)
        .map_err(|e| Failure { message: format!("{}: {e}", out.display()), code: EXIT_FAILED })?;
    println!("wrote {} synthetic faces ({count} train, {test} test) to {}", count + test, out.display());
    Ok(0)
}

fn bench(
    adapter: Option<&str>,
    opts: dlsvm::bench::BenchOptions,
    report_path: Option<&Path>,
    json: bool,
) -> Result<u8, Failure> {
    let gpu = Gpu::new(adapter)?;
    if !json {
        let (name, backend) = (&gpu.info.name, &gpu.info.backend);
        eprintln!("dlsvm: benchmarking on {name} ({backend}); each kernel is checked against the CPU reference first");
    }
    // With --json only the warnings reach stderr (progress would be noise beside one object).
    let report = dlsvm::bench::run(&gpu, &opts, |line| {
        if !json || line.starts_with("warning:") {
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
    if let Some(path) = report_path {
        write_report(&gpu, &report, path, json)?;
    }
    Ok(if failed == 0 { 0 } else { EXIT_FAILED })
}

/// `bench --report`: info, check, this adapter's tuned choices and the bench in one JSON file.
fn write_report(
    gpu: &Gpu,
    report: &dlsvm::bench::BenchReport,
    path: &Path,
    json: bool,
) -> Result<(), Failure> {
    if !json {
        eprintln!("dlsvm: checking every kernel for the report");
    }
    let check = check::run_suite(gpu, None, |_, _| {});
    let i = &gpu.info;
    let here = format!("{} | {} | {} {} |", i.name, i.backend, i.driver, i.driver_info);
    let cache = tuning::Cache::load(&tuning::cache_path(), &mut |m| eprintln!("dlsvm: warning: {m}"));
    let tuned: serde_json::Map<String, serde_json::Value> = (cache.entries.into_iter())
        .filter(|(k, _)| k.starts_with(&here))
        .map(|(k, e)| (k, serde_json::to_value(e).unwrap_or_default()))
        .collect();
    let all = serde_json::json!({
        "dlsvm": env!("CARGO_PKG_VERSION"),
        "info": AdapterReport::new(gpu),
        "check": { "passed": check.iter().all(|r| r.passed), "rows": check },
        "tuned": tuned,
        "bench": report,
        "table": dlsvm::bench::table(report),
    });
    let text = serde_json::to_string_pretty(&all).unwrap_or_default();
    dlsvm::model::checkpoint::write_atomic(path, text.as_bytes())
        .map_err(|e| Failure { message: format!("{}: {e}", path.display()), code: EXIT_FAILED })?;
    if !json {
        println!("report written to {} (info, check, tuned choices, bench): please send it", path.display());
    }
    Ok(())
}

fn tune(
    adapter: Option<&str>,
    preset: &str,
    config: Option<&Path>,
    batch: Option<usize>,
    classes: Option<usize>,
    json: bool,
) -> Result<u8, Failure> {
    let config = match config {
        Some(p) => NetConfig::from_toml_file(p).map_err(|e| Failure::input(e.to_string()))?,
        None => model::preset(preset).ok_or_else(|| {
            Failure::input(format!("unknown preset {preset:?}; choose one of {}", model::PRESETS.join(", ")))
        })?,
    };
    let classes = classes.unwrap_or(if config.name == "mlp" { 10 } else { 7 });
    let net = model::Net::new(&config, classes).map_err(|e| Failure::input(e.to_string()))?;
    let batch = batch.unwrap_or(config.train.batch);
    if batch == 0 {
        return Err(Failure::input("--batch 0 must be at least 1"));
    }
    let gpu = Gpu::new(adapter)?;
    let mut tuner = tuning::Tuner::new(Mode::Full, &mut |m| eprintln!("dlsvm: warning: {m}"));
    let mut rows = Vec::new();
    for (key, op) in model::plan::ops(&net, batch) {
        let entry = tuner.entry(&gpu, &op, &mut |m| {
            if !json {
                eprintln!("dlsvm: {m}")
            }
        })?;
        let default = op.default_variant();
        rows.push(
            serde_json::json!({ "op": key, "shape": op.signature(), "default": default, "tuned": entry }),
        );
    }
    let rep = tuner.finish(&mut |m| eprintln!("dlsvm: warning: {m}"));
    let cache = tuning::cache_path();
    if json {
        println!(
            "{}",
            serde_json::json!({ "adapter": gpu.info, "cache": cache, "ops": rows, "report": rep })
        );
        return Ok(0);
    }
    println!("{:<16} {:<46} {:<22} {:>10}  runner-up", "op", "shape", "choice", "ms");
    for r in &rows {
        let t = &r["tuned"];
        let choice = t["choice"].as_str().unwrap_or("(default)");
        let ms = t["ms"][choice].as_f64().map_or("-".to_string(), |m| format!("{m:.3}"));
        let runner = match t["runner_up"].as_str() {
            Some(n) => format!("{n} {:.3} ms", t["ms"][n].as_f64().unwrap_or(f64::NAN)),
            None => "-".into(),
        };
        let (op, shape) = (r["op"].as_str().unwrap_or(""), r["shape"].as_str().unwrap_or(""));
        println!("{op:<16} {shape:<46} {choice:<22} {ms:>10}  {runner}");
    }
    let (n, tuned, cached, secs) = (rows.len(), rep.tuned, rep.cached, rep.seconds);
    println!("{n} ops: {tuned} tuned now, {cached} from the cache ({}), {secs:.1} s", cache.display());
    Ok(0)
}
