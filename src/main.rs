//! The `dlsvm` command line: parse, call the library, print, map errors to exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use dlsvm::check;
use dlsvm::commands::args::{Cli, Command, DataCommand};
use dlsvm::commands::{self, signals, tune_mode, CommandError};
use dlsvm::data::synth;
use dlsvm::eval::{EvalError, Model};
use dlsvm::gpu::{AdapterReport, Gpu, GpuError};
use dlsvm::model::{self, NetConfig};
use dlsvm::train::TrainError;
use dlsvm::tune::{self as tuning, Mode};

/// Exit codes (README, "Exit codes").
const EXIT_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_NO_ADAPTER: u8 = 3;

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
                code: signals::interrupted_code(),
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

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Input(m) => Failure::input(m),
            CommandError::Gpu(g) => g.into(),
            CommandError::Train(t) => t.into(),
            CommandError::Eval(e) => e.into(),
        }
    }
}

/// Stdout, for a command's results.
fn print(text: &str) {
    print!("{text}");
}

/// A library command's result as a command's: exit 0, or its error's code.
fn ran(result: Result<(), CommandError>) -> Result<u8, Failure> {
    result.map(|()| 0).map_err(Failure::from)
}

/// This invocation with `--resume` added, quoted for a POSIX shell.
fn resume_command() -> String {
    let mut args: Vec<String> =
        std::env::args_os().map(|a| dlsvm::slurm::quote(&a.to_string_lossy())).collect();
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    // A directory chosen by default (runs/<name>-2, ...) is named: the resume goes there.
    let named = args.iter().any(|a| a == "--out" || a.starts_with("--out="));
    if let (false, Some(dir)) = (named, commands::RUN_DIR.get()) {
        args.extend(["--out".to_string(), dlsvm::slurm::quote(&dir.to_string_lossy())]);
    }
    args.join(" ")
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
        Command::Train(args) => {
            ran(commands::train::train(adapter, &args, signals::install_interrupt_handler, &mut print))
        }
        Command::Compare(args) => {
            ran(commands::compare::compare(adapter, &args, signals::install_interrupt_handler, &mut print))
        }
        Command::Bench { filter, variants, reps, no_steps, tune, report, json } => {
            signals::quit_on_signal_without_a_crash_record();
            match tune_mode(&tune, Mode::Full) {
                Ok(tune) => {
                    let opts = dlsvm::bench::BenchOptions { filter, variants, reps, no_steps, tune };
                    bench(adapter, opts, report.as_deref(), json)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Eval { models, data, tta, out, tune, json } => {
            let (data, out) = (data.as_deref(), out.as_deref());
            ran(commands::eval::evaluate(adapter, &models, data, tta, out, &tune, json, &mut print))
        }
        Command::Tune { preset, config, batch, classes, json } => {
            signals::quit_on_signal_without_a_crash_record();
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
        print!("{}", check::table(&rows));
        print!("{}", check::summary(&rows, &gpu, wait_limit));
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
    let ops = model::plan::ops(&net, batch);
    tuner.prepare(&gpu, &ops.iter().map(|(_, op)| *op).collect::<Vec<_>>(), &mut |m| {
        if !json {
            eprintln!("dlsvm: {m}")
        }
    });
    for (key, op) in ops {
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
