//! Network and training configuration: a layer list read from TOML, and the built-in presets.

use serde::{Deserialize, Serialize};

use crate::data::augment::Augment;

/// Which loss sits on top of the last fc layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Top {
    /// One-vs-rest linear SVMs trained with the squared hinge (Tang 2013): the default.
    #[default]
    L2svm,
    /// Softmax with cross-entropy: the paper's baseline.
    Softmax,
    /// One-vs-rest linear SVMs trained with the standard hinge `(C/N) Σ max(0, 1 − t·a)`.
    L1svm,
}

impl Top {
    pub fn name(self) -> &'static str {
        match self {
            Top::L2svm => "l2svm",
            Top::Softmax => "softmax",
            Top::L1svm => "l1svm",
        }
    }

    /// Every top, in the order the paper discusses them.
    pub const ALL: [Top; 3] = [Top::L2svm, Top::Softmax, Top::L1svm];

    /// `l2svm` (or `svm`), `softmax` and `l1svm`.
    pub fn parse(s: &str) -> Option<Top> {
        match s {
            "l2svm" | "svm" => Some(Top::L2svm),
            "softmax" => Some(Top::Softmax),
            "l1svm" => Some(Top::L1svm),
            _ => None,
        }
    }

    /// The factor of the summed per-row loss: C/N for the squared hinge (the paper's SVM constant
    /// over the batch; the hinge's too), 1/N for softmax. The kernels receive it as f32.
    pub fn loss_scale(self, svm_c: f64, batch: usize) -> f64 {
        match self {
            Top::L2svm | Top::L1svm => svm_c / batch as f64,
            Top::Softmax => 1.0 / batch as f64,
        }
    }
}

/// One entry of the layer list. Convolutions and fc layers followed directly by `relu` run the
/// ReLU fused into their own kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    Conv {
        filters: usize,
        kernel: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        pad: usize,
        /// Weight decay of this layer's weights (biases have none).
        #[serde(default)]
        weight_decay: Option<f64>,
        /// This layer's learning rate as a multiple of the schedule's (cuda-convnet's per-layer epsW).
        #[serde(default)]
        lr_scale: Option<f64>,
        /// Standard deviation of the initial weights (default sqrt(1/fan_in)).
        #[serde(default)]
        init_std: Option<f64>,
    },
    MaxPool {
        size: usize,
        stride: usize,
        #[serde(default)]
        pad: usize,
    },
    AvgPool {
        size: usize,
        stride: usize,
        #[serde(default)]
        pad: usize,
    },
    Relu,
    Dropout {
        p: f32,
    },
    /// Fully connected; `out` omitted on the last layer means "one output per class".
    Fc {
        #[serde(default)]
        out: Option<usize>,
        #[serde(default)]
        weight_decay: Option<f64>,
        #[serde(default)]
        lr_scale: Option<f64>,
        /// Standard deviation of the initial weights (default sqrt(1/fan_in), the top 10x smaller).
        #[serde(default)]
        init_std: Option<f64>,
    },
}

fn one() -> usize {
    1
}

/// The network: input geometry, layers, top.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub name: String,
    /// Images are stored (and resized) to image_size x image_size.
    pub image_size: usize,
    /// The network sees input_size x input_size crops (random at training, centred at evaluation).
    pub input_size: usize,
    #[serde(default = "one")]
    pub channels: usize,
    /// Project each input (the crop, after normalization) onto its first `pca` principal
    /// components, fitted on the training split, before the first layer (which must be fc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pca: Option<usize>,
    /// The loss on top (default `l2svm`).
    #[serde(default)]
    pub top: Top,
    pub layers: Vec<LayerSpec>,
    #[serde(default)]
    pub train: TrainConfig,
}

/// Optimization, schedule, data handling. Every field can also be set from the command line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub batch: usize,
    /// Number of SGD steps; `epochs` is used instead when set.
    pub steps: u64,
    pub epochs: Option<f64>,
    /// Base learning rate: lr(t) = lr / (1 + t / lr_decay_steps) (no decay when 0).
    pub lr: f64,
    pub lr_decay_steps: f64,
    /// Divide the learning rate by 10 for the last third of training and by 10 again for the last sixth.
    pub lr_drops: bool,
    /// Momentum `momentum_start` for the first `momentum_warmup` steps, then `momentum`.
    pub momentum: f64,
    pub momentum_start: f64,
    pub momentum_warmup: u64,
    /// Default weight decay of conv and hidden fc weights (a layer's own value wins).
    pub weight_decay: f64,
    /// Weight decay of the top layer (defaults: 0.02 for l2svm and l1svm, 0.002 for softmax).
    pub top_weight_decay: Option<f64>,
    /// The SVM constant C of the squared hinge: loss = (C/N) Σ max(0, 1 − t·a)².
    pub svm_c: f64,
    pub seed: u64,
    pub augment: Augment,
    /// Per-image mean removal and L2 norm scaling to `norm` before per-pixel standardization.
    pub per_image_norm: bool,
    pub norm: f32,
    /// Read the loss and accuracy back (and log) every this many steps.
    pub log_every: u64,
    /// Evaluate on the test split and write a checkpoint every this many steps (0: at the end only).
    pub checkpoint_every: u64,
    /// CPU threads preparing minibatches ahead of the GPU.
    pub loader_threads: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch: 256,
            steps: 50_000,
            epochs: None,
            lr: 0.05,
            lr_decay_steps: 20_000.0,
            lr_drops: true,
            momentum: 0.9,
            momentum_start: 0.5,
            momentum_warmup: 5_000,
            weight_decay: 1e-4,
            top_weight_decay: None,
            svm_c: 1.0,
            seed: 1,
            augment: Augment::fer(),
            per_image_norm: true,
            norm: 150.0,
            log_every: 50,
            checkpoint_every: 1000,
            loader_threads: 2,
        }
    }
}

/// A setting outside its range: which key, its value, what it must be.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("[train] {key} = {value} must be {want}")]
pub struct InvalidValue {
    /// The `[train]` key (`augment.noise_std` for a key of `[train.augment]`).
    pub key: &'static str,
    pub value: String,
    pub want: &'static str,
}

impl TrainConfig {
    /// Checks every value against its range: the same rules whether a value came from a network
    /// file, a preset or the command line.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let finite = |v: f64| v.is_finite();
        let (aug, bad) = (&self.augment, |key, value: String, want| Err(InvalidValue { key, value, want }));
        if self.batch == 0 {
            return bad("batch", "0".into(), "at least 1");
        }
        match self.epochs {
            Some(e) if !(e.is_finite() && e > 0.0) => {
                return bad("epochs", e.to_string(), "a positive number")
            }
            None if self.steps == 0 => return bad("steps", "0".into(), "at least 1"),
            _ => {}
        }
        if self.log_every == 0 {
            return bad("log_every", "0".into(), "at least 1");
        }
        let checks: [(&'static str, f64, bool, &'static str); 14] = [
            ("lr", self.lr, finite(self.lr) && self.lr > 0.0, "a finite positive number"),
            ("momentum", self.momentum, (0.0..1.0).contains(&self.momentum), "in [0, 1)"),
            ("momentum_start", self.momentum_start, (0.0..1.0).contains(&self.momentum_start), "in [0, 1)"),
            (
                "weight_decay",
                self.weight_decay,
                finite(self.weight_decay) && self.weight_decay >= 0.0,
                "a finite number >= 0",
            ),
            (
                "top_weight_decay",
                self.top_weight_decay.unwrap_or(0.0),
                self.top_weight_decay.is_none_or(|w| finite(w) && w >= 0.0),
                "a finite number >= 0",
            ),
            ("svm_c", self.svm_c, finite(self.svm_c) && self.svm_c > 0.0, "a finite positive number"),
            (
                "lr_decay_steps",
                self.lr_decay_steps,
                finite(self.lr_decay_steps) && self.lr_decay_steps >= 0.0,
                "a finite number >= 0",
            ),
            (
                "norm",
                self.norm.into(),
                !self.per_image_norm || (self.norm.is_finite() && self.norm > 0.0),
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
            ("loader_threads", self.loader_threads as f64, self.loader_threads >= 1, "at least 1"),
        ];
        match checks.iter().find(|c| !c.2) {
            Some(&(key, v, _, want)) => bad(key, v.to_string(), want),
            None => Ok(()),
        }
    }

    /// Learning rate at step t of `total` (the paper's schedule; docs/DESIGN.md).
    pub fn lr_at(&self, t: u64, total: u64) -> f64 {
        let mut lr = if self.lr_decay_steps > 0.0 {
            self.lr / (1.0 + t as f64 / self.lr_decay_steps)
        } else {
            self.lr
        };
        if self.lr_drops && total > 0 {
            // Integer comparisons so the boundaries do not depend on rounding.
            if 3 * t >= 2 * total {
                lr /= 10.0;
            }
            if 6 * t >= 5 * total {
                lr /= 10.0;
            }
        }
        lr
    }

    /// The 32-bit seed of the dropout masks: the run's seed folded to 32 bits,
    /// `(seed ^ (seed >> 32)) as u32` (the network's `dropout_seed` keys it per layer).
    pub fn mask_seed(&self) -> u32 {
        (self.seed ^ (self.seed >> 32)) as u32
    }

    pub fn momentum_at(&self, t: u64) -> f64 {
        if t < self.momentum_warmup {
            self.momentum_start
        } else {
            self.momentum
        }
    }

    pub fn top_decay(&self, top: Top) -> f64 {
        self.top_weight_decay.unwrap_or(match top {
            Top::L2svm | Top::L1svm => 0.02,
            Top::Softmax => 0.002,
        })
    }
}

/// Values given on the command line, each replacing the network file's or preset's.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub top: Option<Top>,
    pub steps: Option<u64>,
    pub epochs: Option<f64>,
    pub batch: Option<usize>,
    pub lr: Option<f64>,
    /// Sets both momentum values: no warm-up.
    pub momentum: Option<f64>,
    pub weight_decay: Option<f64>,
    pub svm_c: Option<f64>,
    /// The probability of every dropout layer.
    pub dropout: Option<f32>,
    pub seed: Option<u64>,
    pub checkpoint_every: Option<u64>,
    pub log_every: Option<u64>,
    /// Train on centre crops (no mirror, rotation, scale, shift or noise).
    pub no_augment: bool,
    /// Gaussian input noise std (after `no_augment`, so the two together give noise only).
    pub noise_std: Option<f32>,
}

impl Overrides {
    /// Writes every given value into `config`. A dropout probability outside [0, 1) is refused
    /// here (it is not a `[train]` value); the rest is checked by [`NetConfig::validate`].
    pub fn apply(&self, config: &mut NetConfig) -> Result<(), InvalidValue> {
        if let Some(top) = self.top {
            config.top = top;
        }
        let t = &mut config.train;
        if let Some(s) = self.steps {
            t.steps = s;
            t.epochs = None;
        }
        if self.epochs.is_some() {
            t.epochs = self.epochs;
        }
        let set = |slot: &mut f64, v: Option<f64>| *slot = v.unwrap_or(*slot);
        set(&mut t.lr, self.lr);
        set(&mut t.weight_decay, self.weight_decay);
        set(&mut t.svm_c, self.svm_c);
        if let Some(m) = self.momentum {
            t.momentum = m;
            t.momentum_start = m;
        }
        t.batch = self.batch.unwrap_or(t.batch);
        t.seed = self.seed.unwrap_or(t.seed);
        t.checkpoint_every = self.checkpoint_every.unwrap_or(t.checkpoint_every);
        t.log_every = self.log_every.unwrap_or(t.log_every);
        if self.no_augment {
            t.augment = Augment::NONE;
        }
        t.augment.noise_std = self.noise_std.unwrap_or(t.augment.noise_std);
        if let Some(p) = self.dropout {
            if !(0.0..1.0).contains(&p) {
                return Err(InvalidValue { key: "dropout", value: p.to_string(), want: "in [0, 1)" });
            }
            for l in &mut config.layers {
                if let LayerSpec::Dropout { p: q } = l {
                    *q = p;
                }
            }
        }
        Ok(())
    }

    /// The command-line option that set `key` of [`InvalidValue`], if one did (`--lr` for `lr`).
    pub fn flag_for(&self, key: &str) -> Option<&'static str> {
        match key {
            "batch" => self.batch.is_some().then_some("--batch"),
            "steps" => self.steps.is_some().then_some("--steps"),
            "epochs" => self.epochs.is_some().then_some("--epochs"),
            "lr" => self.lr.is_some().then_some("--lr"),
            "momentum" | "momentum_start" => self.momentum.is_some().then_some("--momentum"),
            "weight_decay" => self.weight_decay.is_some().then_some("--weight-decay"),
            "svm_c" => self.svm_c.is_some().then_some("--svm-c"),
            "log_every" => self.log_every.is_some().then_some("--log-every"),
            "augment.noise_std" => self.noise_std.is_some().then_some("--noise-std"),
            "dropout" => self.dropout.is_some().then_some("--dropout"),
            _ => None,
        }
    }
}

/// The names `--preset` accepts.
pub const PRESETS: [&str; 5] = ["fer", "fer-small", "mlp", "mnist-paper", "cifar"];

fn conv(filters: usize, kernel: usize, pad: usize) -> LayerSpec {
    LayerSpec::Conv { filters, kernel, stride: 1, pad, weight_decay: None, lr_scale: None, init_std: None }
}

fn fc(out: Option<usize>) -> LayerSpec {
    LayerSpec::Fc { out, weight_decay: None, lr_scale: None, init_std: None }
}

/// A built-in network by name.
pub fn preset(name: &str) -> Option<NetConfig> {
    use LayerSpec::*;
    let fer_layers = |c1: usize, c2: usize, c3: usize, hidden: usize| {
        vec![
            conv(c1, 5, 2),
            Relu,
            MaxPool { size: 3, stride: 2, pad: 0 },
            conv(c2, 4, 1),
            Relu,
            AvgPool { size: 3, stride: 2, pad: 0 },
            conv(c3, 5, 2),
            Relu,
            AvgPool { size: 3, stride: 2, pad: 0 },
            fc(Some(hidden)),
            Relu,
            Dropout { p: 0.2 },
            fc(None),
        ]
    };
    match name {
        // The paper's FER network exactly (docs/DESIGN.md §7).
        "fer" => Some(NetConfig {
            name: "fer".into(),
            image_size: 48,
            input_size: 42,
            channels: 1,
            pca: None,
            top: Top::L2svm,
            // cuda-convnet-style small initial weights (std 0.01): activations start small, which
            // is what keeps the paper's learning rate of 0.05 stable on these fan-ins.
            layers: fer_layers(32, 32, 64, 3072)
                .into_iter()
                .map(|l| match l {
                    LayerSpec::Conv { filters, kernel, stride, pad, weight_decay, lr_scale, .. } => {
                        LayerSpec::Conv {
                            filters,
                            kernel,
                            stride,
                            pad,
                            weight_decay,
                            lr_scale,
                            init_std: Some(0.01),
                        }
                    }
                    LayerSpec::Fc { out, weight_decay, lr_scale, .. } => {
                        LayerSpec::Fc { out, weight_decay, lr_scale, init_std: Some(0.01) }
                    }
                    other => other,
                })
                .collect(),
            train: TrainConfig::default(),
        }),
        // The same structure, narrow, for tests and quick demos.
        "fer-small" => Some(NetConfig {
            name: "fer-small".into(),
            image_size: 48,
            input_size: 42,
            channels: 1,
            pca: None,
            top: Top::L2svm,
            layers: fer_layers(8, 8, 16, 128),
            // Tuned to learn the synthetic faces in a few minutes on a CPU-emulated GPU: a smaller
            // rate than the paper's (the hinge gradients of a narrow net would kill its ReLUs at
            // 0.05) and no final drops, which would idle the last third of so short a run.
            train: TrainConfig {
                batch: 64,
                steps: 600,
                lr: 0.008,
                lr_decay_steps: 1000.0,
                lr_drops: false,
                momentum_warmup: 50,
                log_every: 25,
                checkpoint_every: 200,
                augment: Augment { max_rotate_deg: 10.0, scale_min: 0.9, scale_max: 1.1, ..Augment::fer() },
                ..TrainConfig::default()
            },
        }),
        // The paper's MNIST network without the PCA: input -> 512 -> 512 -> classes.
        "mlp" => Some(NetConfig {
            name: "mlp".into(),
            image_size: 28,
            input_size: 28,
            channels: 1,
            pca: None,
            top: Top::L2svm,
            layers: vec![fc(Some(512)), Relu, fc(Some(512)), Relu, fc(None)],
            train: TrainConfig {
                batch: 100,
                steps: 1200,
                lr: 0.01,
                lr_decay_steps: 1000.0,
                momentum_warmup: 100,
                weight_decay: 1e-4,
                log_every: 40,
                checkpoint_every: 400,
                augment: Augment::NONE,
                per_image_norm: false,
                ..TrainConfig::default()
            },
        }),
        // The paper's CIFAR-10 network as it describes it: two alternating filtering and pooling
        // layers on colour images, randomly mirrored and jittered, under an L2-SVM top. Where the
        // paper is silent (README, "Reproducing the paper"): 5x5 filters, 32 then 64 of them, max
        // then average pooling 3/2 as in the FER network, fc 3072 with dropout 0.2, 28x28 crops of
        // the 32x32 images shifted by up to 2 px, batch 128, 20k steps, lr 0.01.
        "cifar" => Some(NetConfig {
            name: "cifar".into(),
            image_size: 32,
            input_size: 28,
            channels: 3,
            pca: None,
            top: Top::L2svm,
            layers: vec![
                conv(32, 5, 2),
                Relu,
                MaxPool { size: 3, stride: 2, pad: 0 },
                conv(64, 5, 2),
                Relu,
                AvgPool { size: 3, stride: 2, pad: 0 },
                fc(Some(3072)),
                Relu,
                Dropout { p: 0.2 },
                fc(None),
            ],
            train: TrainConfig {
                batch: 128,
                steps: 20_000,
                lr: 0.01,
                lr_decay_steps: 10_000.0,
                momentum_warmup: 500,
                log_every: 50,
                checkpoint_every: 1000,
                augment: Augment {
                    mirror: true,
                    max_rotate_deg: 0.0,
                    scale_min: 1.0,
                    scale_max: 1.0,
                    max_shift: 2.0,
                    noise_std: 0.0,
                },
                ..TrainConfig::default()
            },
        }),
        // The paper's MNIST setting: PCA to 70 dimensions, 512-512, L2-SVM, Gaussian input
        // noise; the schedule and the noise chosen on a validation split of data/mnist-5k
        // (README, "Reproducing the paper").
        "mnist-paper" => {
            let mut c = preset("mlp")?;
            c.name = "mnist-paper".into();
            c.pca = Some(70);
            c.train.augment.noise_std = MNIST_PAPER_NOISE;
            Some(c)
        }
        _ => None,
    }
}

/// The `mnist-paper` preset's input noise (std per standardized pixel, which the orthonormal PCA
/// projection turns into the same std per component).
const MNIST_PAPER_NOISE: f32 = 1.0;

/// Errors reading a network file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl NetConfig {
    /// Reads a TOML network file; unknown keys and layer types are errors naming them.
    pub fn from_toml_file(path: &std::path::Path) -> Result<NetConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
        Self::from_toml(&text)
            .map_err(|message| ConfigError::Parse { path: path.display().to_string(), message })
    }

    /// Parses a network from TOML. An error is one line: where (line and column, the layer, the key),
    /// what was found and what was expected.
    pub fn from_toml(text: &str) -> Result<NetConfig, String> {
        let config: NetConfig = toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
        if !plain_name(&config.name) {
            return Err(format!(
                "`name` is {:?}: a network's name must be a plain name (letters, digits, -, _ and ., not \
                 starting with ., at most 64 characters): it names the default run directory",
                config.name
            ));
        }
        Ok(config)
    }

    /// How the training batches of this network are cut: its batch size, crops of its input
    /// size, augmented unless the augmentation is the identity (`--no-augment`), seeded by its
    /// seed.
    pub fn batch_spec(&self) -> crate::data::batch::BatchSpec {
        let t = &self.train;
        crate::data::batch::BatchSpec {
            batch: t.batch,
            channels: self.channels,
            out_h: self.input_size,
            out_w: self.input_size,
            augment: (!t.augment.is_identity()).then_some(t.augment),
            seed: t.seed,
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# could not serialize the config: {e}\n"))
    }
}

/// Whether `name` may become part of a path: letters, digits, `-`, `_`, `.`, not starting with `.`,
/// at most 64 characters. A network's name names its default run directory, and a network file is
/// something people share and download: it must not choose where files are written.
pub fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Keys whose value must be a whole number >= 0: of a layer, of the top level, of `[train]`.
const LAYER_WHOLE_KEYS: &[&str] = &["filters", "kernel", "stride", "pad", "size", "out"];
const TOP_WHOLE_KEYS: &[&str] = &["image_size", "input_size", "channels"];
const TRAIN_WHOLE_KEYS: &[&str] =
    &["batch", "steps", "momentum_warmup", "seed", "log_every", "checkpoint_every", "loader_threads"];

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `` `key` is -4, expected a whole number >= 0`` for the first of `keys` in `table` holding a negative
/// or non-integer value (serde reports those without the key).
fn bad_whole_number(table: Option<&toml::Table>, keys: &[&str]) -> Option<String> {
    let t = table?;
    keys.iter().find_map(|&k| match t.get(k)? {
        toml::Value::Integer(v) if *v >= 0 => None,
        v @ (toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::String(_)
        | toml::Value::Boolean(_)) => Some(format!("`{k}` is {v}, expected a whole number >= 0")),
        _ => None,
    })
}

/// One line for a TOML error, without the parser's source excerpt: `line L, column C: message`, or for a
/// layer `line L: layer i (type): message` (serde reports every layer error at the start of the list).
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = one_line(e.message());
    let table: Option<toml::Table> = text.parse().ok();
    let layers = table.as_ref().and_then(|t| t.get("layers")).and_then(|l| l.as_array());
    for (i, spec) in layers.into_iter().flatten().enumerate() {
        if let Err(le) = spec.clone().try_into::<LayerSpec>() {
            let kind = spec.get("type").and_then(|v| v.as_str()).unwrap_or("no type");
            // The line of the i-th `[[layers]]` header, when the layers are written that way.
            let line = text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.trim_start().starts_with("[[layers]]"))
                .nth(i)
                .map(|(n, _)| format!("line {}: ", n + 1))
                .unwrap_or_default();
            let what =
                bad_whole_number(spec.as_table(), LAYER_WHOLE_KEYS).unwrap_or_else(|| one_line(le.message()));
            return format!("{line}layer {i} ({kind}): {what}");
        }
    }
    // A missing key has no place in the file: say which, and what a file must have.
    if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
        return format!(
            "no `{field}`: a network file needs name, image_size, input_size and [[layers]] (the other \
             keys have defaults)"
        );
    }
    let place = match e.span() {
        Some(span) => {
            let before = text.as_bytes().get(..span.start).unwrap_or(text.as_bytes());
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let column =
                String::from_utf8_lossy(before.get(line_start..).unwrap_or_default()).chars().count() + 1;
            format!("line {line}, column {column}: ")
        }
        None => String::new(),
    };
    let train = table.as_ref().and_then(|t| t.get("train"));
    if let Some(Err(te)) = train.map(|t| t.clone().try_into::<TrainConfig>()) {
        let what = bad_whole_number(train.and_then(|t| t.as_table()), TRAIN_WHOLE_KEYS)
            .unwrap_or_else(|| one_line(te.message()));
        return format!("{place}[train]: {what}");
    }
    let what = bad_whole_number(table.as_ref(), TOP_WHOLE_KEYS).unwrap_or(message);
    format!("{place}{what}")
}
