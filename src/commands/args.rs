//! The command line's grammar: every command and option with its help text (clap). src/main.rs
//! parses with it and hands the options to a command ([`super`]); the rules behind the options
//! live in the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dlsvm",
    version,
    about = "ConvNets with a linear-SVM top, trained entirely on the GPU (WGSL + wgpu)"
)]
pub struct Cli {
    /// Use the adapter whose name contains this text (case-insensitive); default: the fastest.
    #[arg(long, global = true, env = "DLSVM_ADAPTER")]
    pub adapter: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Show the adapter, backend, driver and the limits that matter.
    Info {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Train a network (default: fer-small on built-in synthetic faces).
    #[command(after_help = "Options left unset take the network's own values: the preset's, or the \
[train] table of --config (whose omitted keys take the defaults listed in the README). --resume \
continues the run directory's checkpoint; a different --steps or --epochs is accepted with a note \
saying how the learning-rate schedule moves, fewer steps than the checkpoint has done are refused.")]
    Train(Box<TrainArgs>),
    /// The paper's experiment: train the same network once per top and seed, runs identical but
    /// for the top's loss; test error per top over seeds, paired differences, Table 3.
    #[command(after_help = "Takes every option of `dlsvm train` but --top. Each top of --tops is \
trained with seeds --seed, --seed + 1, ... (--seeds of them); for one seed the runs share their initial \
weights, data order, augmentation and dropout masks. Without --steps or --epochs each run trains 300 \
steps. Every run is a train run in <out>/seed<S>/<top> (with --folds: .../fold<I>); --resume continues \
each. Writes compare.json, compare.md (the tables) and compare.png (test error against steps) in --out \
(default runs/<network>-compare).")]
    #[command(mut_arg("top", |a| a.hide(true)), mut_arg("grid", |a| a.hide(true)))]
    Compare(Box<CompareArgs>),
    /// Evaluate one model, or an ensemble of several, on a data set.
    Eval {
        /// A model.safetensors from `dlsvm train`; repeat to average an ensemble.
        #[arg(long = "model", required = true)]
        models: Vec<PathBuf>,
        /// fer2013-style CSV, image-folder root, IDX folder (MNIST family) or CIFAR-10 binary
        /// batches folder (default: the built-in synthetic faces).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Average this many jittered copies per image (1: the centre crop only).
        #[arg(long, default_value_t = 1)]
        tta: usize,
        /// Write the confusion-matrix PNGs here (default: next to the first model).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Kernel variants: off (the defaults), cached (the tuning cache's choices), full (also
        /// tune what the cache lacks); default: DLSVM_TUNE, else cached.
        #[arg(long)]
        tune: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Classify images with a trained model.
    Predict {
        /// A model.safetensors from `dlsvm train`.
        #[arg(long)]
        model: PathBuf,
        /// Image files (PNG or JPEG; resized to the model's image size).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Print one JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Summarize a set of runs from their run directories: per-fold and mean ± std accuracy, the
    /// fold models as an ensemble, a grid's table and best setting, and the runs not finished.
    #[command(after_help = "Exit 0 when every run below DIR finished, 1 when some are unfinished or \
failed (they are named), 2 when DIR holds no run directories.")]
    Collect {
        /// The folder the runs were written to (a train --folds or --grid --out).
        dir: PathBuf,
        /// Evaluate the ensembles on this data's test split (default: the data the runs recorded).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Print one JSON object instead of text.
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
        /// Only rows whose kernel name, variant or shape contain every word of this text (e.g.
        /// "gemm_nn 1024x"; "step" for both training steps, "fer-small" for that one).
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
        /// Kernel variants: off (the defaults), cached (the tuning cache's choices), full (also
        /// tune what the cache lacks); default: DLSVM_TUNE, else full.
        #[arg(long)]
        tune: Option<String>,
        /// Also write one file for a GPU owner to send: `dlsvm info`, `dlsvm check`, the tuned
        /// choices for this adapter and the bench (JSON).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Tune the kernel variants of a network's training step on this adapter: every variant that
    /// passes its check is timed at the step's shapes and the fastest is cached for later starts.
    Tune {
        /// Built-in network: fer, fer-small, mlp, mnist-paper, cifar.
        #[arg(long, default_value = "fer-small")]
        preset: String,
        /// A network file (TOML) instead of a preset.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Images per step; default: the network's [train] batch.
        #[arg(long)]
        batch: Option<usize>,
        /// Classes of the top layer; default: 10 for mlp, else 7 (the FER classes).
        #[arg(long)]
        classes: Option<usize>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Check every kernel against the CPU reference on this adapter.
    ///
    /// Every input is bound with NaN padding past its end, so a kernel that reads past it fails.
    /// A kernel launch still running after DLSVM_CHECK_TIMEOUT seconds (default 60) fails its row
    /// and stops the check (exit 1): nothing can run on the device after it.
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
pub enum DataCommand {
    /// Write the built-in synthetic faces as a fer2013.csv (Training / PrivateTest rows).
    Synth {
        /// The CSV file to write.
        #[arg(long)]
        out: PathBuf,
        /// Number of training faces (a test set of a fifth as many is added).
        #[arg(long, default_value_t = 4000)]
        count: usize,
        /// Seed of the faces' random draw.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// The options of `dlsvm train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Built-in network: fer (the paper's: batch 256, 50000 steps, lr 0.05; augmentation mirror,
    /// rotation ±45°, scale 0.8-1.2, shift ±3 px), fer-small (batch 64, 600 steps, lr 0.008; mirror,
    /// ±10°, scale 0.9-1.1, shift ±3 px), mlp (28x28 input, 512-512, batch 100, 1200 steps,
    /// lr 0.01; no augmentation), mnist-paper (mlp with PCA to 70 dimensions and input noise) or
    /// cifar (32x32 colour, two conv+pool stages, fc 3072; mirror, shift ±2 px).
    #[arg(long, default_value = "fer-small")]
    pub preset: String,
    /// A network file (TOML) instead of a preset; `config.toml` in a run directory is one.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// fer2013-style CSV, image-folder root, IDX folder (MNIST family) or CIFAR-10 binary batches
    /// folder (default: built-in synthetic faces).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The run directory (default: runs/<network name>, or runs/<network name>-2, -3, ... where
    /// that exists). One that holds a run is refused without --resume or --overwrite.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The top: l2svm (the paper's), softmax (its baseline) or l1svm (the standard hinge);
    /// default: the network's.
    #[arg(long)]
    pub top: Option<String>,
    /// SGD steps to train (the schedule spans them); default: the network's [train] steps.
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<u64>,
    /// Train this many passes over the training split instead of a number of steps.
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Images per SGD step; default: the network's [train] batch.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Base learning rate of the schedule lr/(1 + t/lr_decay_steps); default: the network's.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Momentum for every step (no warm-up); default: the network's momentum_start, then momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay of conv and hidden fc layers; default: the network's (1e-4 in the presets).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// The SVM constant C: the squared hinge is scaled by C/N; default: the network's (1).
    #[arg(long)]
    pub svm_c: Option<f64>,
    /// Dropout probability of every dropout layer; default: each layer's own.
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Train on centre crops: no mirror, rotation, scale, shift or noise.
    #[arg(long)]
    pub no_augment: bool,
    /// Std of Gaussian noise added to each standardized training input (the paper's MNIST runs
    /// use input noise); combines with --no-augment; default: the network's (0).
    #[arg(long)]
    pub noise_std: Option<f32>,
    /// Seed of the initial weights, data order, augmentation and dropout; default: the network's (1).
    #[arg(long)]
    pub seed: Option<u64>,
    /// K-fold cross-validation on the training split: one model per fold.
    #[arg(long)]
    pub folds: Option<usize>,
    /// With --folds: train only this fold (0-based), e.g. as one job of a cluster array.
    #[arg(long, requires = "folds")]
    pub fold: Option<usize>,
    /// Train every combination of these [train] values, each in <out>/<key=value,...>, and
    /// report the best (repeat for more keys), e.g. --grid weight_decay=1e-4,1e-3 --grid svm_c=0.5,1.
    #[arg(long, value_name = "KEY=V1,V2")]
    pub grid: Vec<String>,
    /// Set a [train] value (augment.KEY for [train.augment]), read as TOML; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Write a SLURM batch script to this file instead of training: one array task per run (each
    /// fold, grid setting, or compare seed and top), each with --resume, then a collect job.
    #[arg(long, value_name = "FILE")]
    pub slurm: Option<PathBuf>,
    /// With --slurm: the partition (#SBATCH --partition).
    #[arg(long, requires = "slurm")]
    pub slurm_partition: Option<String>,
    /// With --slurm: each task's time limit (#SBATCH --time), e.g. 04:00:00.
    #[arg(long, requires = "slurm")]
    pub slurm_time: Option<String>,
    /// With --slurm: generic resources per task (#SBATCH --gres), e.g. gpu:1.
    #[arg(long, requires = "slurm")]
    pub slurm_gres: Option<String>,
    /// With --slurm: an extra #SBATCH option, e.g. --slurm-extra=--mem=16G; repeatable.
    #[arg(long, requires = "slurm", allow_hyphen_values = true)]
    pub slurm_extra: Vec<String>,
    /// Continue the run in the run directory from its checkpoint (without --out: the newest of
    /// runs/<network name>, runs/<network name>-2, ...).
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Replace the run that --out holds (it is deleted once the new run writes its first
    /// checkpoint; a start that fails before that leaves it as it was).
    #[arg(long)]
    pub overwrite: bool,
    /// Start from another model's weights (a model.safetensors): every layer whose index and
    /// shape match, with fresh momentum; the top may differ from the model's. A --resume with a
    /// checkpoint continues that instead.
    #[arg(long, value_name = "MODEL")]
    pub init_from: Option<PathBuf>,
    /// Write a checkpoint every N steps (0: at the end only); default: the network's.
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Read back, check and log the loss every N steps (a row of steps.csv); default: the network's.
    #[arg(long)]
    pub log_every: Option<u64>,
    /// Number of synthetic training faces when no --data is given.
    #[arg(long, default_value_t = 4000)]
    pub synth_count: usize,
    /// Kernel variants: off (the defaults), cached (the tuning cache's choices), full (also tune
    /// what the cache lacks, at most 5 minutes per start); default: DLSVM_TUNE, else full. A
    /// resumed run keeps the variants its checkpoint recorded.
    #[arg(long)]
    pub tune: Option<String>,
    /// Print the final summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The options of `dlsvm compare`: those of `train`, and which tops and how many seeds.
#[derive(clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub train: TrainArgs,
    /// The tops to compare, comma-separated: l2svm, softmax, l1svm; the first is the one the
    /// others' paired differences are taken against.
    #[arg(long, default_value = "l2svm,softmax")]
    pub tops: String,
    /// How many seeds per top (--seed, --seed + 1, ...).
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// The paper's warm start: every run continues this model (as --init-from), and compare.png
    /// starts at its test error.
    #[arg(long, value_name = "MODEL", conflicts_with = "init_from")]
    pub warm_start: Option<PathBuf>,
    /// Choose each top's own value of a [train] key per seed, on held-out folds of the training
    /// split (never the test split), before its run: e.g. --select lr=0.003,0.01,0.03; repeat
    /// for more keys (every combination is tried).
    #[arg(long, value_name = "KEY=V1,V2")]
    pub select: Vec<String>,
    /// The folds --select chooses on: each candidate trains on K-1 of them, scored on the other.
    #[arg(long, value_name = "K", default_value_t = crate::select::DEFAULT_FOLDS)]
    pub select_folds: usize,
}
