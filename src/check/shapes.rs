//! The named shapes every kernel is checked on, defined once: `dlsvm check` ([`super::suite`])
//! and the named tests (tests/kernels.rs) both run every kernel and variant on these lists, so a
//! class of shape that one of them covers the other does too. Each shape carries a name that says
//! which edge it probes.

use super::Flags;
use crate::model::{preset, Layer, Net, PRESETS};
use crate::shapes::{Conv2dShape, GemmShape, Pool2dShape, Trans};

/// The batch at which the presets' own layers are checked: large enough that the sliced weight
/// gradients split the batch into several slices and every workgroup grid is many groups wide,
/// small enough for the f64 reference to keep `dlsvm check` under a minute on a CPU device.
pub const PRESET_BATCH: usize = 32;

/// GEMM shapes (m, n, k) with the epilogue each is checked with; every one runs in every
/// transposition and variant.
pub fn gemm_shapes() -> Vec<(String, (usize, usize, usize), Flags)> {
    let mut v: Vec<(String, (usize, usize, usize), Flags)> = vec![
        ("1x1x1".into(), (1, 1, 1), Flags::BIAS_RELU),
        ("smaller than a tile".into(), (7, 5, 3), Flags::BIAS),
        ("exactly one tile".into(), (64, 64, 64), Flags::NONE),
        ("a tile plus one".into(), (65, 65, 65), Flags::BIAS),
        ("irregular".into(), (123, 255, 72), Flags::BIAS_RELU),
        ("vec4: a single vec4".into(), (4, 4, 4), Flags::BIAS_RELU),
        ("vec4: partial tiles both ways".into(), (68, 132, 36), Flags::BIAS),
        ("vec4: K not a multiple of 16".into(), (12, 20, 8), Flags::ALL),
        ("vec4: tall with a long K".into(), (260, 8, 1028), Flags::NONE),
        ("ragged rows and columns, K a multiple of 4".into(), (13, 21, 16), Flags::BIAS),
        ("K = 1 mod 4".into(), (12, 8, 13), Flags::BIAS),
        ("K = 2 mod 4".into(), (36, 40, 66), Flags::ALL),
        ("K = 3 mod 4".into(), (9, 10, 7), Flags::BIAS_RELU),
        ("K much longer than a tile".into(), (5, 6, 1000), Flags::NONE),
        ("tall".into(), (700, 3, 17), Flags::BIAS),
        ("wide".into(), (2, 700, 5), Flags::BIAS),
        ("square 256".into(), (256, 256, 256), Flags::NONE),
        ("split K: two slices, the last short, every epilogue".into(), (70, 33, 600), Flags::ALL),
    ];
    for bias in [false, true] {
        for accumulate in [false, true] {
            for relu in [false, true] {
                let f = Flags { bias, accumulate, relu };
                v.push((format!("epilogue{}", flag_names(f)), (33, 17, 9), f));
            }
        }
    }
    v
}

fn flag_names(f: Flags) -> String {
    let on = [(f.bias, " bias"), (f.accumulate, " accumulate"), (f.relu, " relu")];
    let s: String = on.iter().filter(|(b, _)| *b).map(|(_, n)| *n).collect();
    if s.is_empty() {
        " none".into()
    } else {
        s
    }
}

/// Convolution shapes beyond the presets' layers.
pub fn conv_shapes() -> Vec<(String, Conv2dShape)> {
    let sq = Conv2dShape::square;
    let mut v: Vec<(String, Conv2dShape)> = vec![
        ("1x1 everything".into(), sq(1, 1, 1, 1, 1, 1, 0)),
        ("1x1 kernel".into(), sq(3, 5, 8, 7, 1, 1, 0)),
        ("stride 2: last window past the right and bottom edges".into(), sq(2, 3, 9, 5, 3, 2, 1)),
        ("stride 2, no padding".into(), sq(2, 3, 10, 4, 4, 2, 0)),
        ("no padding".into(), sq(2, 2, 9, 3, 3, 1, 0)),
        ("padding k - 1: the flipped backward data pads 0".into(), sq(2, 3, 8, 5, 3, 1, 2)),
        (
            "stride 1, non-square kernel and padding: the flipped backward data's pads differ".into(),
            Conv2dShape { n: 2, cin: 3, h: 9, w: 11, cout: 5, kh: 3, kw: 4, sy: 1, sx: 1, py: 2, px: 1 },
        ),
        ("padding beyond the kernel's reach".into(), sq(1, 3, 7, 4, 3, 1, 3)),
        ("kernel as large as the input".into(), sq(2, 2, 6, 3, 6, 1, 0)),
        ("the widest kernel the rows gradient is specialized for".into(), sq(1, 2, 9, 3, 8, 1, 2)),
        (
            "kernel 11 wide: the rows gradient falls back".into(),
            Conv2dShape { n: 2, cin: 2, h: 5, w: 14, cout: 3, kh: 2, kw: 11, sy: 1, sx: 1, py: 1, px: 2 },
        ),
        ("batch 1, odd channels".into(), sq(1, 3, 11, 9, 3, 1, 1)),
        ("batch 1, 7 to 13 channels".into(), sq(1, 7, 5, 13, 3, 1, 1)),
        (
            "non-square kernel, stride and padding".into(),
            Conv2dShape { n: 2, cin: 3, h: 11, w: 7, cout: 9, kh: 3, kw: 2, sy: 2, sx: 1, py: 1, px: 0 },
        ),
        (
            "one-row kernel, stride 3 across".into(),
            Conv2dShape { n: 1, cin: 2, h: 6, w: 13, cout: 5, kh: 1, kw: 5, sy: 1, sx: 3, py: 0, px: 2 },
        ),
        (
            "strides 3x2: last window past the right edge, width not a multiple of 4".into(),
            Conv2dShape { n: 2, cin: 3, h: 11, w: 13, cout: 5, kh: 3, kw: 4, sy: 3, sx: 2, py: 1, px: 2 },
        ),
        ("stride larger than the kernel".into(), sq(2, 2, 11, 3, 2, 3, 1)),
        ("17 output channels: one past a 16-channel block".into(), sq(2, 3, 8, 17, 3, 1, 1)),
        ("31 output, 20 input channels: partial channel blocks".into(), sq(2, 20, 7, 31, 3, 1, 1)),
        ("1x1 output planes: many samples per slice".into(), sq(37, 3, 3, 5, 3, 1, 0)),
        ("partial 4x4 blocks of the split gradient".into(), sq(9, 2, 40, 6, 3, 1, 1)),
        ("rows gradient: cin·kh = 64 over 3 slices".into(), sq(8, 16, 20, 8, 4, 1, 1)),
    ];
    v.extend(preset_convs(2).into_iter().map(|(n, s)| (format!("{n}, batch 2"), s)));
    v
}

/// Pooling shapes beyond the presets' layers.
pub fn pool_shapes() -> Vec<(String, Pool2dShape)> {
    let sq = Pool2dShape::square;
    let mut v: Vec<(String, Pool2dShape)> = vec![
        ("2x2 stride 2, even".into(), sq(2, 3, 8, 2, 2, 0)),
        ("2x2 stride 2, odd: a clipped last window".into(), sq(2, 3, 9, 2, 2, 0)),
        ("3x3 stride 1, padding 1".into(), sq(1, 2, 7, 3, 1, 1)),
        ("3x3 stride 2, padding 1, ceil mode".into(), sq(2, 3, 9, 3, 2, 1)),
        ("4x4 stride 3, padding 2".into(), sq(1, 2, 6, 4, 3, 2)),
        (
            "non-square window, stride and padding".into(),
            Pool2dShape { n: 1, c: 5, h: 11, w: 6, kh: 3, kw: 2, sy: 2, sx: 1, py: 1, px: 0 },
        ),
        ("1x1".into(), sq(1, 1, 1, 1, 1, 0)),
        ("window as large as the input".into(), sq(2, 3, 5, 5, 1, 0)),
    ];
    v.extend(preset_pools(2).into_iter().map(|(n, s)| (format!("{n}, batch 2"), s)));
    v
}

/// The width at which the folded-grid cases fold their 1-D grids onto y: prime, so the last row
/// of workgroups is ragged. At the device limit (65,535 or more) only grids of millions of
/// workgroups fold, which no other case reaches (see [`crate::gpu::Gpu::narrow_folds`]).
pub const FOLD_WIDTH: u32 = 7;

/// Convolutions checked with their grids folded [`FOLD_WIDTH`] wide: every kernel's grid is many
/// rows of workgroups, its last row partial.
pub fn folded_convs() -> Vec<(String, Conv2dShape)> {
    let mut v =
        vec![("partial 4x4 blocks of the split gradient".into(), Conv2dShape::square(9, 2, 40, 6, 3, 1, 1))];
    v.extend(preset_convs(2).into_iter().map(|(n, s)| (format!("{n}, batch 2"), s)));
    v
}

/// Pools checked with their grids folded [`FOLD_WIDTH`] wide.
pub fn folded_pools() -> Vec<(String, Pool2dShape)> {
    let mut v =
        vec![("2x2 stride 2, odd: a clipped last window".into(), Pool2dShape::square(4, 8, 25, 2, 2, 0))];
    v.extend(preset_pools(2).into_iter().map(|(n, s)| (format!("{n}, batch 2"), s)));
    v
}

/// Element-wise lengths checked with their grids folded [`FOLD_WIDTH`] wide.
pub const FOLDED_LENGTHS: [usize; 2] = [10_007, 8 * 3072 + 13];

/// (rows, classes) checked with their grids folded [`FOLD_WIDTH`] wide.
pub const FOLDED_ROWS: [(usize, usize); 2] = [(4_000, 7), (2_001, 10)];

/// Lengths of the element-wise kernels: around a workgroup of 256, and the FER fc activation.
pub const ELEMENTWISE_LENGTHS: [usize; 7] = [1, 255, 256, 257, 260, 10_007, 8 * 3072 + 13];

/// (rows, classes) of the losses and the row reductions.
pub const ROW_SHAPES: [(usize, usize); 5] = [(1, 1), (1, 7), (256, 7), (300, 10), (5, 1000)];

/// (slices, elements) of `slice_sum`: one element and one slice, a partial workgroup, the conv2
/// weight gradient's partial sums, many slices of few elements; and both sides of the serial
/// kernel's bounds (2048 elements, 256 slices), one of them with a partial workgroup.
pub const SLICE_SUM_SHAPES: [(usize, usize); 8] =
    [(1, 1), (3, 257), (86, 16_384), (1000, 9), (33, 801), (5, 2049), (256, 2048), (257, 2048)];

/// (outer, channels, inner) of the per-channel sums: trivial, fc bias, conv bias, odd.
/// Past [`crate::kernels::reduce::CHANNEL_CHUNK`] (16384) values a channel is summed in two
/// passes: exactly one chunk (2 x 8192), one past it, a tail (12 x 1764 = 1 chunk + 4784), the fer
/// conv1 bias at batch 64 (7 chunks of 32 channels), and an fc bias of a batch over one chunk
/// (inner 1, more slices than the serial slice sum takes). An fc bias of up to 256 rows and 2048
/// outputs or more is that slice sum (3072 outputs). An inner that is a multiple of 4 is summed as
/// vec4s: of those, a channel of fewer vec4s than a workgroup has lanes (3 a row: the walk steps
/// several rows at once) in one pass, and with one vec4 a row in two.
pub const CHANNEL_SUM_SHAPES: [(usize, usize, usize); 11] = [
    (1, 1, 1),
    (16, 3072, 1),
    (4, 32, 1764),
    (3, 5, 7),
    (2, 3, 8192),
    (1, 2, 16_385),
    (12, 4, 1764),
    (64, 8, 1764),
    (20_000, 3, 1),
    (33, 3, 12),
    (4500, 2, 4),
];

/// The presets' networks resolved for their data (7 FER classes; 10 digits or CIFAR-10 classes).
fn preset_nets() -> Vec<Net> {
    PRESETS
        .iter()
        .filter_map(|name| {
            let config = preset(name)?;
            let classes = if matches!(*name, "mlp" | "mnist-paper" | "cifar") { 10 } else { 7 };
            Net::new(&config, classes).ok()
        })
        .collect()
}

/// `pick` applied to every (index, layer) of every preset's resolved layer list; what it keeps is
/// named `<preset> layer <index> <kind>`.
fn from_presets<S>(pick: impl Fn(usize, &Layer) -> Option<(&'static str, S)>) -> Vec<(String, S)> {
    let mut v = Vec::new();
    for net in preset_nets() {
        for (i, l) in net.layers.iter().enumerate() {
            if let Some((kind, s)) = pick(i, l) {
                v.push((format!("{} layer {i} {kind}", net.config.name), s));
            }
        }
    }
    v
}

/// Every convolution of the presets at batch `n`, named by preset and layer.
pub fn preset_convs(n: usize) -> Vec<(String, Conv2dShape)> {
    from_presets(|_, l| match l {
        Layer::Conv { shape, .. } => Some(("conv", Conv2dShape { n, ..*shape })),
        _ => None,
    })
}

/// Every pooling layer of the presets at batch `n`, named by preset, layer and kind.
pub fn preset_pools(n: usize) -> Vec<(String, Pool2dShape)> {
    from_presets(|_, l| match l {
        Layer::MaxPool { shape } => Some(("max_pool", Pool2dShape { n, ..*shape })),
        Layer::AvgPool { shape } => Some(("avg_pool", Pool2dShape { n, ..*shape })),
        _ => None,
    })
}

/// The three GEMMs of every fc layer of the presets at batch `n`: forward (NT), backward data
/// (NN, not for the first layer, whose input needs no gradient) and weight gradient (TN).
pub fn preset_gemms(n: usize) -> Vec<(String, GemmShape)> {
    let fcs = from_presets(|i, l| match *l {
        Layer::Fc { inp, out, .. } => Some(("fc", (i, inp, out))),
        _ => None,
    });
    let mut v = Vec::new();
    for (name, (i, inp, out)) in fcs {
        let [fwd, data, weight] = fc_gemms(n, inp, out);
        v.push((format!("{name} forward"), fwd));
        if i > 0 {
            v.push((format!("{name} backward data"), data));
        }
        v.push((format!("{name} weight gradient"), weight));
    }
    v
}

/// FC GEMMs of a layer `inp -> out` at batch `n`: forward (NT), backward data (NN), weight (TN).
pub fn fc_gemms(n: usize, inp: usize, out: usize) -> [GemmShape; 3] {
    [
        GemmShape::new(n, out, inp, Trans::NT),
        GemmShape::new(n, inp, out, Trans::NN),
        GemmShape::new(out, inp, n, Trans::TN),
    ]
}

/// The `fer` preset's convolutions at batch `n` (conv1 1->32 5x5 on 42x42, conv2 32->32 4x4 on
/// 21x21, conv3 32->64 5x5 on 10x10).
pub fn fer_convs(n: usize) -> Vec<Conv2dShape> {
    preset_convs(n).into_iter().filter(|(name, _)| name.starts_with("fer layer")).map(|(_, s)| s).collect()
}

/// The `fer` preset's pools at batch `n`: max 42 -> 21, average 20 -> 10, average 10 -> 5.
pub fn fer_pools(n: usize) -> Vec<Pool2dShape> {
    preset_pools(n).into_iter().filter(|(name, _)| name.starts_with("fer layer")).map(|(_, s)| s).collect()
}

/// PCA fits `(n inputs, d values, k components)`: a few inputs of many values (rank below d),
/// k = d, and a mid-size fit.
pub const PCA_SHAPES: [(usize, usize, usize); 4] = [(3, 20, 2), (50, 7, 7), (300, 40, 8), (1000, 100, 30)];
