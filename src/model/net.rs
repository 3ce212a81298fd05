//! A network resolved from its config: every layer's shapes checked, ReLUs fused into the conv or
//! fc layer before them, parameters named and laid out as PyTorch would (conv weight
//! `[out, in, kh, kw]`, fc weight `[out, in]`, bias `[out]`).

use super::config::{InvalidValue, LayerSpec, NetConfig, Top};
use crate::rng::{mix, Rng};
use crate::shapes::{Conv2dShape, Pool2dShape};

/// Per-sample activation geometry: channels x height x width (fc outputs are c x 1 x 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dim {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Dim {
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.h == 1 && self.w == 1 {
            write!(f, "{}", self.c)
        } else {
            write!(f, "{}x{}x{}", self.c, self.h, self.w)
        }
    }
}

/// One executed layer. Shapes are per batch of 1 (`Conv2dShape { n: b, ..shape }` for batch b).
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    Conv {
        shape: Conv2dShape,
        relu: bool,
        weight: usize,
        bias: usize,
    },
    MaxPool {
        shape: Pool2dShape,
    },
    AvgPool {
        shape: Pool2dShape,
    },
    Relu,
    /// `key`: the layer's index in the network file's layer list, which keys its masks
    /// ([`dropout_seed`]): stable whatever fusions the resolved list has.
    Dropout {
        p: f32,
        key: u32,
    },
    Fc {
        inp: usize,
        out: usize,
        relu: bool,
        weight: usize,
        bias: usize,
    },
}

/// A trainable tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// PyTorch-style name, e.g. `layers.0.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    pub weight_decay: f64,
    /// Standard deviation of the initial values (0 for biases).
    pub init_std: f64,
    /// Multiplier of the scheduled learning rate for this tensor.
    pub lr_scale: f64,
}

impl Param {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug)]
pub struct Net {
    pub config: NetConfig,
    pub classes: usize,
    pub layers: Vec<Layer>,
    /// Activation geometry: dims[0] is what the first layer sees (the projected input when the
    /// network has a PCA stage), dims[i + 1] the output of layers[i].
    pub dims: Vec<Dim>,
    pub params: Vec<Param>,
    /// One input sample as it arrives: the crop, before any PCA stage.
    pub input: Dim,
    /// The fitted PCA stage, when the config asks for one ([`Net::with_pca`]); a network whose
    /// config has `pca` cannot run until it is set.
    pub pca: Option<super::pca::Pca>,
}

/// Largest image side and layer size (filters, kernel, stride, pad, window, fc outputs) of a network.
pub const MAX_SIZE: usize = 1 << 16;
/// Largest parameter tensor, and largest activation per image, in values (1 GiB of f32).
pub const MAX_VALUES: usize = 1 << 28;

/// The dropout mask seed of the layer whose index in the network file is `key`, for a run whose
/// 32-bit mask seed is `seed` ([`super::TrainConfig::mask_seed`]): each dropout layer draws its own
/// masks. The mask of element i at step t is then `hash_u32(dropout_seed, t, i) >= p`
/// ([`crate::shapes::hash_u32`]).
pub fn dropout_seed(seed: u32, key: u32) -> u32 {
    seed ^ 0x632b_e5ab_u32.wrapping_mul(key + 1)
}

/// A layer that does not fit: names the layer and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("network {net}: layer {index} ({kind}): {message}")]
pub struct ShapeError {
    pub net: String,
    pub index: usize,
    pub kind: String,
    pub message: String,
}

/// What [`NetConfig::validate`] finds wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    #[error(transparent)]
    Value(InvalidValue),
    #[error(transparent)]
    Shape(ShapeError),
}

impl NetConfig {
    /// Checks the `[train]` values ([`TrainConfig::validate`](super::TrainConfig::validate)) and
    /// that every layer fits, before any data is loaded: the top is resolved for the classes its
    /// `out` names, or for 2. (Here rather than in config.rs: a config is checked by resolving
    /// it, and the network sits above its config.)
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        self.train.validate().map_err(ConfigProblem::Value)?;
        let top_out = self.layers.iter().rev().find_map(|l| match l {
            LayerSpec::Fc { out, .. } => Some(*out),
            _ => None,
        });
        let classes = match top_out {
            Some(Some(o)) if o >= 2 => o,
            _ => 2,
        };
        Net::new(self, classes).map(|_| ()).map_err(ConfigProblem::Shape)
    }
}

fn kind(spec: &LayerSpec) -> &'static str {
    match spec {
        LayerSpec::Conv { .. } => "conv",
        LayerSpec::MaxPool { .. } => "max_pool",
        LayerSpec::AvgPool { .. } => "avg_pool",
        LayerSpec::Relu => "relu",
        LayerSpec::Dropout { .. } => "dropout",
        LayerSpec::Fc { .. } => "fc",
    }
}

/// Appends layer `i`'s weight (shape `[out, ...]`, decayed) and bias (`[out]`, not decayed);
/// returns the weight's index (the bias follows it).
fn push_weight_and_bias(
    params: &mut Vec<Param>,
    i: usize,
    shape: Vec<usize>,
    weight_decay: f64,
    init_std: f64,
    lr_scale: Option<f64>,
) -> usize {
    let lr_scale = lr_scale.unwrap_or(1.0);
    let out = shape[0];
    params.push(Param { name: format!("layers.{i}.weight"), shape, weight_decay, init_std, lr_scale });
    params.push(Param {
        name: format!("layers.{i}.bias"),
        shape: vec![out],
        weight_decay: 0.0,
        init_std: 0.0,
        lr_scale,
    });
    params.len() - 2
}

impl Net {
    /// Resolves `config` for `classes` outputs, checking every shape.
    pub fn new(config: &NetConfig, classes: usize) -> Result<Net, ShapeError> {
        let err = |index: usize, kind: &str, message: String| ShapeError {
            net: config.name.clone(),
            index,
            kind: kind.to_string(),
            message,
        };
        if classes < 2 {
            return Err(err(
                0,
                "top",
                format!("a classifier needs at least 2 classes, the data has {classes}"),
            ));
        }
        if config.input_size == 0 || config.channels == 0 || config.image_size == 0 {
            return Err(err(0, "input", "image_size, input_size and channels must be at least 1".into()));
        }
        if config.channels != 1 && config.channels != 3 {
            let c = config.channels;
            return Err(err(0, "input", format!("channels = {c}: expected 1 (grayscale) or 3 (colour)")));
        }
        // Absurd sizes would overflow the shape arithmetic or abort on allocation: refuse them by name.
        for (key, v) in [("image_size", config.image_size), ("input_size", config.input_size)] {
            if v > MAX_SIZE {
                return Err(err(0, "input", format!("`{key}` is {v}, expected at most {MAX_SIZE}")));
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
                return Err(err(i, kind(l), format!("`{key}` is {v}, expected at most {MAX_SIZE}")));
            }
        }
        if config.input_size > config.image_size {
            return Err(err(
                0,
                "input",
                format!("input_size {} is larger than image_size {}", config.input_size, config.image_size),
            ));
        }
        let t = &config.train;
        let mut dim = Dim { c: config.channels, h: config.input_size, w: config.input_size };
        if dim.len() > MAX_VALUES {
            return Err(err(
                0,
                "input",
                format!(
                    "the input {dim} holds {} values per image, expected at most {MAX_VALUES}",
                    dim.len()
                ),
            ));
        }
        let input = dim;
        if let Some(k) = config.pca {
            let d = dim.len();
            let max = super::pca::MAX_INPUT;
            if k == 0 || k > d || d > max {
                return Err(err(
                    0,
                    "pca",
                    format!("pca = {k} over inputs of {d} values: expected 1 <= pca <= {d}, and at most {max} inputs"),
                ));
            }
            if !matches!(config.layers.first(), Some(LayerSpec::Fc { .. })) {
                return Err(err(
                    0,
                    "pca",
                    "a PCA stage needs an fc first layer (its output has no image shape)".into(),
                ));
            }
            dim = Dim { c: k, h: 1, w: 1 };
        }
        let mut dims = vec![dim];
        let mut layers = Vec::new();
        let mut params = Vec::new();
        let last_fc = config.layers.iter().rposition(|l| matches!(l, LayerSpec::Fc { .. }));
        match config.layers.last() {
            Some(LayerSpec::Fc { .. }) => {}
            _ => {
                return Err(err(
                    config.layers.len(),
                    "top",
                    "the last layer must be fc (the SVM or softmax top)".into(),
                ))
            }
        }
        let mut i = 0;
        while i < config.layers.len() {
            let spec = &config.layers[i];
            let k = kind(spec);
            let fuse_relu = matches!(config.layers.get(i + 1), Some(LayerSpec::Relu))
                && matches!(spec, LayerSpec::Conv { .. } | LayerSpec::Fc { .. });
            let layer = match *spec {
                LayerSpec::Conv { filters, kernel, stride, pad, weight_decay, lr_scale, init_std } => {
                    if dim.h == 1 && dim.w == 1 && layers.iter().any(|l| matches!(l, Layer::Fc { .. })) {
                        return Err(err(i, k, "a convolution cannot follow an fc layer".into()));
                    }
                    if filters == 0 || kernel == 0 || stride == 0 {
                        return Err(err(i, k, "filters, kernel and stride must be at least 1".into()));
                    }
                    let shape = Conv2dShape {
                        n: 1,
                        cin: dim.c,
                        h: dim.h,
                        w: dim.w,
                        cout: filters,
                        kh: kernel,
                        kw: kernel,
                        sy: stride,
                        sx: stride,
                        py: pad,
                        px: pad,
                    };
                    if kernel > dim.h + 2 * pad || kernel > dim.w + 2 * pad {
                        return Err(err(
                            i,
                            k,
                            format!(
                                "kernel {kernel}x{kernel} is larger than its input {dim} padded by {pad}"
                            ),
                        ));
                    }
                    shape.validate().map_err(|m| err(i, k, m))?;
                    let fan_in = dim.c * kernel * kernel;
                    let wd = weight_decay.unwrap_or(t.weight_decay);
                    let std = init_std.unwrap_or((1.0 / fan_in as f64).sqrt());
                    let weight = push_weight_and_bias(
                        &mut params,
                        i,
                        vec![filters, dim.c, kernel, kernel],
                        wd,
                        std,
                        lr_scale,
                    );
                    dim = Dim { c: filters, h: shape.oh(), w: shape.ow() };
                    Layer::Conv { shape, relu: fuse_relu, weight, bias: weight + 1 }
                }
                LayerSpec::MaxPool { size, stride, pad } | LayerSpec::AvgPool { size, stride, pad } => {
                    let shape = Pool2dShape {
                        n: 1,
                        c: dim.c,
                        h: dim.h,
                        w: dim.w,
                        kh: size,
                        kw: size,
                        sy: stride,
                        sx: stride,
                        py: pad,
                        px: pad,
                    };
                    if size > dim.h + 2 * pad || size > dim.w + 2 * pad {
                        return Err(err(
                            i,
                            k,
                            format!("window {size}x{size} is larger than its input {dim} padded by {pad}"),
                        ));
                    }
                    shape.validate().map_err(|m| err(i, k, m))?;
                    dim = Dim { c: dim.c, h: shape.oh(), w: shape.ow() };
                    if matches!(spec, LayerSpec::MaxPool { .. }) {
                        Layer::MaxPool { shape }
                    } else {
                        Layer::AvgPool { shape }
                    }
                }
                LayerSpec::Relu => Layer::Relu,
                LayerSpec::Dropout { p } => {
                    if !(0.0..1.0).contains(&p) {
                        return Err(err(i, k, format!("dropout probability {p} is not in [0, 1)")));
                    }
                    Layer::Dropout { p, key: i as u32 }
                }
                LayerSpec::Fc { out, weight_decay, lr_scale, init_std: std_override } => {
                    let is_top = Some(i) == last_fc;
                    let out = match (out, is_top) {
                        (Some(o), false) => o,
                        (None, true) => classes,
                        (Some(o), true) if o == classes => o,
                        (Some(o), true) => {
                            return Err(err(
                                i,
                                k,
                                format!("the top layer has {o} outputs but the data has {classes} classes"),
                            ))
                        }
                        (None, false) => {
                            return Err(err(i, k, "only the last fc layer may omit `out`".into()))
                        }
                    };
                    if out == 0 {
                        return Err(err(i, k, "out must be at least 1".into()));
                    }
                    let inp = dim.len();
                    let wd =
                        weight_decay.unwrap_or(if is_top { t.top_decay(config.top) } else { t.weight_decay });
                    // Fan-in scaled (variance 1/fan_in); the top 10x smaller so the first scores sit well
                    // inside the margin (|a| << 1).
                    let init_std = std_override.unwrap_or(if is_top {
                        0.1 / (inp as f64).sqrt()
                    } else {
                        (1.0 / inp as f64).sqrt()
                    });
                    let weight = push_weight_and_bias(&mut params, i, vec![out, inp], wd, init_std, lr_scale);
                    dim = Dim { c: out, h: 1, w: 1 };
                    Layer::Fc { inp, out, relu: fuse_relu, weight, bias: weight + 1 }
                }
            };
            if dim.len() > MAX_VALUES {
                return Err(err(
                    i,
                    k,
                    format!(
                        "its output {dim} holds {} values per image, expected at most {MAX_VALUES}",
                        dim.len()
                    ),
                ));
            }
            if let Some(p) = params.iter().rev().find(|p| p.len() > MAX_VALUES) {
                return Err(err(
                    i,
                    k,
                    format!(
                        "{} {:?} holds {} values, expected at most {MAX_VALUES}",
                        p.name,
                        p.shape,
                        p.len()
                    ),
                ));
            }
            layers.push(layer);
            dims.push(dim);
            i += if fuse_relu { 2 } else { 1 };
        }
        if let Some(Layer::Fc { relu: true, .. }) = layers.last() {
            return Err(err(
                config.layers.len() - 1,
                "top",
                "the top fc layer must not be followed by relu".into(),
            ));
        }
        Ok(Net { config: config.clone(), classes, layers, dims, params, input, pca: None })
    }

    pub fn top(&self) -> Top {
        self.config.top
    }

    /// Input elements per sample, as uploaded (before any PCA stage).
    pub fn input_len(&self) -> usize {
        self.input.len()
    }

    /// This network with its fitted PCA stage; refused when the network has none or the
    /// projection's sizes are not the network's.
    pub fn with_pca(mut self, pca: Option<super::pca::Pca>) -> Result<Net, String> {
        match (self.config.pca, &pca) {
            (None, None) => {}
            (Some(k), Some(p)) if p.k == k && p.d == self.input.len() => {}
            (Some(k), Some(p)) => {
                return Err(format!(
                    "the PCA stage projects {} inputs to {}, the network needs {} to {k}",
                    p.d,
                    p.k,
                    self.input.len()
                ))
            }
            (Some(k), None) => return Err(format!("the network's PCA stage (pca = {k}) is not fitted")),
            (None, Some(_)) => return Err("a PCA stage for a network without `pca`".into()),
        }
        self.pca = pca;
        Ok(self)
    }

    /// The largest activation of one sample (the input included) and its size in bytes. Every
    /// per-batch buffer of a [`GpuNet`](super::GpuNet) (an activation, its gradient, a fused ReLU's
    /// pre-activation gradient, max-pool indices) holds batch x one activation's 4-byte values, so
    /// this one decides the largest batch a device can hold.
    pub fn largest_activation(&self) -> (Dim, u64) {
        let d = self.dims.iter().copied().max_by_key(Dim::len).unwrap_or(Dim { c: 0, h: 0, w: 0 });
        (d, d.len() as u64 * 4)
    }

    /// Multiply-adds of one forward pass per sample (for throughput figures).
    pub fn forward_macs(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| match l {
                Layer::Conv { shape, .. } => (shape.y_len() * shape.cin * shape.kh * shape.kw) as u64,
                Layer::Fc { inp, out, .. } => (inp * out) as u64,
                _ => 0,
            })
            .sum()
    }

    /// Total trainable values.
    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| p.len()).sum()
    }

    /// One line per layer: what it is and its output size.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} ({} top, {} classes, {} parameters)\n",
            self.config.name,
            self.top().name(),
            self.classes,
            self.param_count()
        );
        s.push_str(&format!("  input        {}\n", self.input));
        if let Some(k) = self.config.pca {
            s.push_str(&format!("  {:<24} -> {k}\n", "pca (fixed)"));
        }
        for (l, d) in self.layers.iter().zip(&self.dims[1..]) {
            let what = match l {
                Layer::Conv { shape, relu, .. } => format!(
                    "conv {}x{} s{} p{}{}",
                    shape.kh,
                    shape.kw,
                    shape.sy,
                    shape.py,
                    if *relu { " +relu" } else { "" }
                ),
                Layer::MaxPool { shape } => {
                    format!("maxpool {}x{} s{} p{}", shape.kh, shape.kw, shape.sy, shape.py)
                }
                Layer::AvgPool { shape } => {
                    format!("avgpool {}x{} s{} p{}", shape.kh, shape.kw, shape.sy, shape.py)
                }
                Layer::Relu => "relu".into(),
                Layer::Dropout { p, .. } => format!("dropout {p}"),
                Layer::Fc { relu, .. } => format!("fc{}", if *relu { " +relu" } else { "" }),
            };
            s.push_str(&format!("  {what:<24} -> {d}\n"));
        }
        s
    }

    /// Seeded initial parameters: weights N(0, init_std²) from the crate's portable generator,
    /// one stream per parameter keyed by `mix(seed, parameter index)`; biases 0. The same seed
    /// gives the same weights on every platform.
    pub fn init_params(&self, seed: u64) -> Vec<Vec<f32>> {
        self.params
            .iter()
            .enumerate()
            .map(|(pi, p)| {
                let mut rng = Rng::new(mix(seed, pi as u64));
                let std = p.init_std;
                (0..p.len()).map(|_| if std == 0.0 { 0.0 } else { (rng.normal() * std) as f32 }).collect()
            })
            .collect()
    }
}
