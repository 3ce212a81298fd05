//! The commands behind `dlsvm train`, `dlsvm compare` and `dlsvm eval`: each takes its parsed
//! options ([`args`]), checks them, does the work through the rest of the library and writes its
//! results to an [`Out`] (stdout in `dlsvm`). src/main.rs parses the command line, calls one and
//! maps a [`CommandError`] to an exit code. Progress and warnings go to stderr, as everywhere in
//! the library.
//!
//! Top down: the command line (src/main.rs, [`args`]) → these commands → training, comparing,
//! evaluating, tuning, benchmarking, checking → the model → the kernels → the GPU.

/// `println!` into a command's [`Out`].
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {
        ($out)(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub mod args;
pub mod compare;
pub mod eval;
pub mod setup;
pub mod signals;
pub mod train;

use std::path::Path;

use crate::data::{self, DataSource};
use crate::eval::EvalError;
use crate::gpu::GpuError;
use crate::model::Top;
use crate::train::TrainError;
use crate::tune::Mode;

/// Where a command writes its results, a piece of text at a time: stdout in `dlsvm`.
pub type Out<'a> = &'a mut dyn FnMut(&str);

/// Why a command failed; src/main.rs maps each to an exit code (README, "Exit codes").
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad usage or input: an option, a network file, the data, a model (one line for the user).
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Eval(#[from] EvalError),
}

impl CommandError {
    pub fn input(message: impl Into<String>) -> Self {
        CommandError::Input(message.into())
    }
}

/// The data a command works on, warnings on stderr.
/// The directory this invocation's `train` or `compare` writes to, once chosen: what a resume
/// command line names with `--out` when the invocation chose it by default.
pub static RUN_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// A run directory a command writes to, claimed as its options say ([`crate::rundir::claim`]) and
/// locked until this drops; a replaced run comes back if it drops before the first checkpoint.
pub struct Claimed(#[allow(dead_code)] std::sync::Arc<std::sync::Mutex<crate::rundir::Claim>>);

/// Claims `dir` (`--resume`, `--overwrite` or neither), with the hook that commits the claim at
/// the first checkpoint. A refusal is bad input (exit 2).
pub fn claim(
    dir: &Path,
    resume: bool,
    overwrite: bool,
) -> Result<(Claimed, crate::train::CheckpointHook), CommandError> {
    use crate::rundir::Intent;
    let intent = match (resume, overwrite) {
        (true, _) => Intent::Resume,
        (false, true) => Intent::Overwrite,
        (false, false) => Intent::New,
    };
    let claim = crate::rundir::claim(dir, intent).map_err(CommandError::Input)?;
    let _ = RUN_DIR.set(dir.to_path_buf());
    let shared = std::sync::Arc::new(std::sync::Mutex::new(claim));
    let target = shared.clone();
    let hook = crate::train::CheckpointHook(std::sync::Arc::new(move || {
        target.lock().unwrap_or_else(|e| e.into_inner()).commit();
    }));
    Ok((Claimed(shared), hook))
}

pub fn load_data(
    path: Option<&Path>,
    size: usize,
    channels: usize,
    synth_count: usize,
    seed: u64,
) -> Result<DataSource, CommandError> {
    let mut warn = |m: String| eprintln!("dlsvm: warning: {m}");
    data::load_or_synth(path, size, channels, synth_count, seed, &mut warn)
        .map_err(|e| CommandError::input(e.to_string()))
}

/// The tuning mode of `--tune` (else `DLSVM_TUNE`, else `default`).
pub fn tune_mode(flag: &Option<String>, default: Mode) -> Result<Mode, CommandError> {
    Mode::choose(flag.as_deref(), default).map_err(|e| CommandError::input(format!("--tune: {e}")))
}

/// The top named by `--top`.
pub fn parse_top(t: &str) -> Result<Top, CommandError> {
    Top::parse(t)
        .ok_or_else(|| CommandError::input(format!("unknown --top {t:?}; choose l2svm, softmax or l1svm")))
}

/// Writes the `--slurm` batch script of `tasks` (command lines after the binary) and `collect`
/// for the invocation `argv`; creates `<dir>/slurm` for the task logs. One line on `out` says how
/// to submit it.
pub fn write_slurm(
    a: &args::TrainArgs,
    net: &str,
    dir: &Path,
    argv: &[String],
    tasks: Vec<Vec<String>>,
    collect: Vec<String>,
    out: Out,
) -> Result<(), CommandError> {
    let path = a.slurm.as_deref().ok_or_else(|| CommandError::input("--slurm: no file"))?;
    let exe = std::env::current_exe()
        .map_err(|e| CommandError::input(format!("--slurm: cannot find the dlsvm binary: {e}")))?;
    let exe = exe.display().to_string();
    let with_exe = |t: Vec<String>| std::iter::once(exe.clone()).chain(t).collect::<Vec<_>>();
    let tasks: Vec<Vec<String>> = tasks.into_iter().map(with_exe).collect();
    let o = crate::slurm::SlurmOptions {
        job_name: format!("dlsvm-{net}"),
        partition: a.slurm_partition.clone(),
        time: a.slurm_time.clone(),
        gres: a.slurm_gres.clone(),
        extra: a.slurm_extra.clone(),
    };
    let origin: Vec<String> = argv.iter().map(|w| crate::slurm::quote(w)).collect();
    let text = crate::slurm::script(&tasks, &with_exe(collect), dir, &o, &origin.join(" "));
    let logs = dir.join("slurm");
    std::fs::create_dir_all(&logs).map_err(|e| CommandError::input(format!("{}: {e}", logs.display())))?;
    std::fs::write(path, text).map_err(|e| CommandError::input(format!("{}: {e}", path.display())))?;
    outln!(
        out,
        "wrote {}: {} array tasks and a collect job; submit with: sbatch {}",
        path.display(),
        tasks.len(),
        path.display()
    );
    Ok(())
}

/// The options of a command line, parsed as `dlsvm` parses them, for the commands' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::args::{Cli, Command, CompareArgs, TrainArgs};
    use clap::Parser;

    /// `std::env::args()` of `dlsvm <words>`.
    pub fn argv(words: &[&str]) -> Vec<String> {
        std::iter::once("/opt/dlsvm/bin/dlsvm").chain(words.iter().copied()).map(String::from).collect()
    }

    fn command(words: &[&str]) -> Command {
        Cli::try_parse_from(argv(words)).unwrap_or_else(|e| panic!("{words:?}: {e}")).command
    }

    /// The options of `dlsvm train <words>`.
    pub fn train_args(words: &[&str]) -> TrainArgs {
        match command(&[&["train"], words].concat()) {
            Command::Train(a) => *a,
            _ => unreachable!("a train command line"),
        }
    }

    /// The options of `dlsvm compare <words>`.
    pub fn compare_args(words: &[&str]) -> CompareArgs {
        match command(&[&["compare"], words].concat()) {
            Command::Compare(c) => *c,
            _ => unreachable!("a compare command line"),
        }
    }
}
