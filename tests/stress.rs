//! Kernels under stress: every kernel family and every variant against the CPU
//! reference on seeded random shapes and values, extreme magnitudes included, time-bounded.
//!
//! Each case reuses a comparison of `dlsvm::check` (random inputs, f64 reference, the documented
//! tolerance of `src/check/tolerance.rs`; inputs of another magnitude use `Tol::scaled`, which
//! keeps the tolerance in units of the terms' size). Case `i` draws everything from a seed derived
//! from the master seed and `i`, so any case reruns alone.
//!
//! Environment:
//! - `DLSVM_STRESS_SEED`: master seed (default [`DEFAULT_SEED`]).
//! - `DLSVM_STRESS_CASES`: cases to run (default 6000 in release, 150 in debug).
//! - `DLSVM_STRESS_MIN_CASES`: cases that run even past the time budget (default
//!   min(1000, cases) in release).
//! - `DLSVM_STRESS_SECONDS`: time budget; once spent (and the minimum met) no new case starts
//!   (default 60).
//! - `DLSVM_STRESS_ONLY`: run only the case with this index (to reproduce a failure).
//! - `DLSVM_STRESS_VERBOSE`: print every case's report.
//!
//! Extreme values (each a share of its family's cases):
//! - GEMM and conv operands scaled by 1e30 x 1e-30, 1e15 x 1e15, 1e-15 x 1e-15, 1e17 x 1e17, and
//!   a subnormal operand (uniform in ±1e-40) times 1e30; pooling, SGD and the reductions by 1e30,
//!   1e-30, 1e15 (max-pool backward and the sums also by 1e-40: sums of subnormals are exact).
//! - ReLU, max pooling and argmax on mixtures of exact ±0, ±1e30, ±1e-30, the smallest normals,
//!   magnitudes up to f32::MAX and subnormals; dropout likewise up to 1e30, with subnormals only at
//!   p = 0 (elsewhere a subnormal times the scale rounds to a subnormal ulp, which the element-wise
//!   tolerance, relative, does not describe).
//! - Softmax on logits of exactly ±80 next to zeros, tiny and subnormal logits; the L2-SVM on scores
//!   up to ±1e15, rows exactly on the margin (t·a = 1) and scores one ulp either side of ±1.
//!
//! Sums whose result would be subnormal (products of two tiny operands, averages or SGD steps of
//! subnormals) are left out: a subnormal result carries an absolute rounding error the relative
//! tolerances do not describe. A device that flushes subnormals (WGSL allows it) skips every
//! subnormal regime, and says so.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use common::gpu;
use dlsvm::check::{self, CaseReport, Flags, Input, Values};
use dlsvm::gpu::{DType, Gpu, GpuError};
use dlsvm::kernels::conv::{ConvBwdDataVariant, ConvBwdWeightVariant, ConvFwdVariant};
use dlsvm::kernels::gemm::{vec4_aligned, GemmVariant};
use dlsvm::kernels::pool::{MaxPoolBwdVariant, PoolFwdVariant};
use dlsvm::kernels::registry::{Caps, FamilyVariant, Op, Variant};
use dlsvm::kernels::{activation, loss};
use dlsvm::model::Top;
use dlsvm::rng::Rng;
use dlsvm::shapes::{Conv2dShape, GemmShape, Pool2dShape, Trans};

const DEFAULT_SEED: u64 = 0x5eed_0006_0003;

// ----------------------------------------------------------------------------------- settings

struct Config {
    seed: u64,
    cases: usize,
    min_cases: usize,
    budget: Duration,
    only: Option<usize>,
    verbose: bool,
}

fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = if let Some(hex) = v.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok().and_then(|x| x.to_string().parse().ok())
    } else {
        v.parse().ok()
    };
    Some(parsed.unwrap_or_else(|| panic!("{name}={v} is not a number")))
}

impl Config {
    fn from_env() -> Config {
        let release = !cfg!(debug_assertions);
        let cases = env_num("DLSVM_STRESS_CASES").unwrap_or(if release { 6000 } else { 150 });
        let min_cases =
            env_num("DLSVM_STRESS_MIN_CASES").unwrap_or(if release { 1000 } else { 100 }).min(cases);
        Config {
            seed: env_num("DLSVM_STRESS_SEED").unwrap_or(DEFAULT_SEED),
            cases,
            min_cases,
            budget: Duration::from_secs_f64(env_num("DLSVM_STRESS_SECONDS").unwrap_or(60.0)),
            only: env_num("DLSVM_STRESS_ONLY"),
            verbose: std::env::var_os("DLSVM_STRESS_VERBOSE").is_some(),
        }
    }
}

/// Written straight to stderr, so the counts show even when the harness captures output.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

// ---------------------------------------------------------------------------------- families

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Gemm,
    ConvFwd,
    ConvBwdData,
    ConvBwdWeight,
    ConvBwdBias,
    MaxpoolFwd,
    MaxpoolBwd,
    AvgpoolFwd,
    AvgpoolBwd,
    ReluFwd,
    ReluBwd,
    DropoutFwd,
    DropoutBwd,
    Softmax,
    L2svm,
    L1svm,
    Sgd,
    Sum,
    ChannelSum,
    Argmax,
    CountCorrect,
}

/// One period of the schedule: each family with its share of the cases.
const SCHEDULE: &[(Family, usize)] = &[
    (Family::Gemm, 12),
    (Family::ConvFwd, 4),
    (Family::ConvBwdData, 2),
    (Family::ConvBwdWeight, 4),
    (Family::ConvBwdBias, 1),
    (Family::MaxpoolFwd, 2),
    (Family::MaxpoolBwd, 2),
    (Family::AvgpoolFwd, 1),
    (Family::AvgpoolBwd, 1),
    (Family::ReluFwd, 1),
    (Family::ReluBwd, 1),
    (Family::DropoutFwd, 1),
    (Family::DropoutBwd, 1),
    (Family::Softmax, 2),
    (Family::L2svm, 2),
    (Family::L1svm, 1),
    (Family::Sgd, 1),
    (Family::Sum, 1),
    (Family::ChannelSum, 1),
    (Family::Argmax, 1),
    (Family::CountCorrect, 1),
];

fn period() -> usize {
    SCHEDULE.iter().map(|&(_, w)| w).sum()
}

/// The family of case `i` and how many cases of that family came before it (its ordinal, which
/// walks the discrete choices such as GEMM transposition x variant in turn).
fn slot(i: usize) -> (Family, usize) {
    let (round, mut pos) = (i / period(), i % period());
    for &(f, w) in SCHEDULE {
        if pos < w {
            return (f, round * w + pos);
        }
        pos -= w;
    }
    unreachable!("position inside one period")
}

/// The seed of case `i`'s own generator.
fn case_seed(master: u64, i: usize) -> u64 {
    Rng::new(master ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).next_u64()
}

// ------------------------------------------------------------------------------ random helpers

fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.below(xs.len())]
}

/// Uniform in [lo, hi].
fn between(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    lo + rng.below(hi - lo + 1)
}

/// Log-uniform in [lo, hi]: as many tiny sizes as large ones.
fn log_size(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    let v = rng.range((lo as f64).ln(), ((hi + 1) as f64).ln()).exp() as usize;
    v.clamp(lo, hi)
}

fn coin(rng: &mut Rng) -> bool {
    rng.below(2) == 1
}

/// The ordinary scale most of the time, otherwise one of `extremes`.
fn scale_or(rng: &mut Rng, extremes: &[f64]) -> f64 {
    if rng.below(5) < 3 {
        1.0
    } else {
        pick(rng, extremes)
    }
}

/// Subnormal inputs: uniform in [-1e-40, 1e-40), every value below f32::MIN_POSITIVE.
const SUBNORMAL: f64 = 1e-40;

/// Which extreme regimes the device can take.
#[derive(Clone, Copy)]
struct Regimes {
    /// The device keeps subnormal f32 values (WGSL lets it flush them to zero).
    subnormals: bool,
}

/// Operand scales for the products (GEMM, conv): every product stays a normal f32, and so do the
/// outputs (|C| <= K·1e34). With subnormals, one operand is subnormal and the other 1e30, so the
/// products are about 1e-10.
fn product_scales(rng: &mut Rng, re: Regimes) -> (f64, f64) {
    if rng.below(5) < 3 {
        return (1.0, 1.0);
    }
    let mut pairs =
        vec![(1e30, 1e-30), (1e-30, 1e30), (1e15, 1e15), (1e-15, 1e-15), (1e17, 1e17), (1e-15, 1e15)];
    if re.subnormals {
        pairs.extend([(SUBNORMAL, 1e30), (1e30, SUBNORMAL)]);
    }
    pick(rng, &pairs)
}

const HUGE: [f64; 3] = [1e30, 1e-30, 1e15];

/// Scales for pure sums (max-pool backward, sum, channel sums): with subnormals too, whose sums
/// are exact while they stay below 2^-125.
fn sum_scale(rng: &mut Rng, re: Regimes) -> f64 {
    if re.subnormals && rng.below(5) == 0 {
        SUBNORMAL
    } else {
        scale_or(rng, &HUGE)
    }
}

/// Mixed magnitudes up to f32::MAX, for ops that only compare or copy.
fn copy_extremes(re: Regimes) -> Values {
    Values::Extreme { limit: f32::MAX as f64, subnormals: re.subnormals }
}

/// Whether the device keeps subnormals: a 1x1x1 naive GEMM of 1e-40 by 1 (exact in f32).
fn keeps_subnormals(g: &Gpu) -> bool {
    let s = GemmShape::new(1, 1, 1, Trans::NN);
    let a = g.upload(&[1e-40], &[1]).unwrap();
    let b = g.upload(&[1.0], &[1]).unwrap();
    let c = g.empty(&[1], DType::F32).unwrap();
    let d = dlsvm::kernels::gemm::gemm(g, &s, &a, &b, &c, &Default::default(), GemmVariant::Naive).unwrap();
    g.run(&d.iter().collect::<Vec<_>>()).unwrap();
    g.download::<f32>(&c).unwrap()[0] == 1e-40
}

// ------------------------------------------------------------------------------------- shapes

fn gemm_dim(rng: &mut Rng) -> usize {
    match rng.below(20) {
        0..=9 => between(rng, 1, 20),
        10..=16 => between(rng, 1, 72),
        _ => between(rng, 60, 140),
    }
}

fn gemm_k(rng: &mut Rng) -> usize {
    match rng.below(20) {
        0..=9 => between(rng, 1, 32),
        10..=16 => between(rng, 1, 128),
        _ => between(rng, 100, 700),
    }
}

/// A GEMM shape that is (or is not) vec4-aligned for its layout: only the dimensions the layout
/// reads as vec4 are rounded, so the others stay ragged.
fn gemm_shape(rng: &mut Rng, t: Trans, aligned: bool) -> GemmShape {
    let mut s = GemmShape::new(gemm_dim(rng), gemm_dim(rng), gemm_k(rng), t);
    let up4 = |v: usize| v.div_ceil(4) * 4;
    if aligned {
        match t {
            Trans::NN => (s.k, s.n) = (up4(s.k), up4(s.n)),
            Trans::NT => s.k = up4(s.k),
            Trans::TN => (s.m, s.n) = (up4(s.m), up4(s.n)),
        }
        assert!(vec4_aligned(&s));
    } else if vec4_aligned(&s) {
        // Break the alignment of one dimension the layout needs.
        let bump = between(rng, 1, 3);
        match t {
            Trans::NN | Trans::NT => s.k += bump,
            Trans::TN => s.m += bump,
        }
        assert!(!vec4_aligned(&s));
    }
    s
}

/// What a conv shape stresses beyond the random mix.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ConvKind {
    /// Small random shapes (about one in eight with a kernel wider than 5, one in eight with more
    /// than 8 input channels).
    Any,
    /// Output planes large enough that the batch-sliced weight gradients use several slices (one
    /// sample per slice once oh·ow > 512), the last one possibly partial.
    Big,
    /// A kernel 9 to 11 wide (past the kw <= 8 specializations).
    Wide,
    /// cin·kh > 64 (more kernel rows than one workgroup of the row-wise weight gradient).
    ManyRows,
}

/// The kind of the `ordinal`-th case of a family that cycles over `variants` discrete choices:
/// rounds 3, 7 and 11 of every 12 rounds of choices are a big, a wide and a many-rows shape, so
/// every choice meets every kind within the first 12 rounds.
fn conv_kind(ordinal: usize, variants: usize) -> ConvKind {
    match (ordinal / variants) % 12 {
        3 => ConvKind::Big,
        7 => ConvKind::Wide,
        11 => ConvKind::ManyRows,
        _ => ConvKind::Any,
    }
}

/// A valid conv shape of `kind`.
fn conv_shape(rng: &mut Rng, kind: ConvKind) -> Conv2dShape {
    loop {
        let kh = if rng.below(6) == 0 { between(rng, 1, 7) } else { between(rng, 1, 5) };
        let kw = match (kind, rng.below(8)) {
            (ConvKind::Wide, _) => between(rng, 9, 11),
            (_, 0..=3) => kh,
            (_, 4) => between(rng, 6, 11),
            _ => between(rng, 1, 5),
        };
        let many_in = kind == ConvKind::Any && rng.below(8) == 0;
        let stride_one = rng.below(5) < 2;
        let (sy, sx) = if stride_one { (1, 1) } else { (between(rng, 1, 3), between(rng, 1, 3)) };
        let (py, px) = (between(rng, 0, kh.min(3)), between(rng, 0, kw.min(3)));
        let s = match kind {
            ConvKind::Big => Conv2dShape {
                n: between(rng, 2, 6),
                cin: between(rng, 1, 3),
                h: between(rng, 24, 40),
                w: between(rng, 24, 40),
                cout: between(rng, 1, 6),
                kh,
                kw,
                sy: 1,
                sx: 1,
                py,
                px,
            },
            ConvKind::ManyRows => {
                let kh = between(rng, 3, 7);
                Conv2dShape {
                    n: between(rng, 1, 3),
                    cin: 64 / kh + between(rng, 1, 8),
                    h: between(rng, kh, 12),
                    w: between(rng, 1, 12),
                    cout: between(rng, 1, 12),
                    kh,
                    kw: kw.min(5),
                    sy,
                    sx,
                    py: py.min(kh),
                    px,
                }
            }
            ConvKind::Any | ConvKind::Wide => Conv2dShape {
                n: between(rng, 1, 4),
                cin: if many_in { between(rng, 9, 24) } else { between(rng, 1, 8) },
                h: between(rng, 1, 16),
                w: if kw > 5 { between(rng, 4, 20) } else { between(rng, 1, 16) },
                cout: if rng.below(5) == 0 { between(rng, 9, 20) } else { between(rng, 1, 12) },
                kh,
                kw,
                sy,
                sx,
                py,
                px,
            },
        };
        if s.validate().is_ok() {
            return s;
        }
    }
}

/// Batch slices of the coarse split weight gradient (mirrors `samples_per_slice` in
/// src/kernels/conv.rs; only used to label the direct kernel's coverage).
fn split_slices(s: &Conv2dShape) -> usize {
    let spp = 1024usize.div_ceil(s.oh() * s.ow()).clamp(1, s.n);
    s.n.div_ceil(spp)
}

/// A valid pool shape: any window up to 5, stride up to 4 (overlapping when below the window,
/// ceil mode when it does not divide the span), padding below the window.
fn pool_shape(rng: &mut Rng) -> Pool2dShape {
    loop {
        let kh = between(rng, 1, 5);
        let kw = if coin(rng) { kh } else { between(rng, 1, 5) };
        let (sy, sx) = if coin(rng) {
            let s = between(rng, 1, 4);
            (s, s)
        } else {
            (between(rng, 1, 4), between(rng, 1, 4))
        };
        let s = Pool2dShape {
            n: between(rng, 1, 3),
            c: between(rng, 1, 4),
            h: between(rng, 1, 20),
            w: between(rng, 1, 20),
            kh,
            kw,
            sy,
            sx,
            py: rng.below(kh),
            px: rng.below(kw),
        };
        if s.validate().is_ok() {
            return s;
        }
    }
}

fn pool_keys(s: &Pool2dShape, keys: &mut Vec<String>, family: &str) {
    if s.sy < s.kh || s.sx < s.kw {
        keys.push(format!("{family} overlapping windows"));
    }
    if !(s.h + 2 * s.py - s.kh).is_multiple_of(s.sy) || !(s.w + 2 * s.px - s.kw).is_multiple_of(s.sx) {
        keys.push(format!("{family} ceil mode"));
    }
    if s.py > 0 || s.px > 0 {
        keys.push(format!("{family} padding"));
    }
}

fn elementwise_len(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0..=4 => between(rng, 1, 600),
        5..=8 => between(rng, 1, 5000),
        _ => between(rng, 5000, 70_000),
    }
}

// --------------------------------------------------------------------------------------- cases

/// What one case ran: coverage labels and the comparison.
struct Outcome {
    keys: Vec<String>,
    result: Result<CaseReport, GpuError>,
}

fn run_case(g: &Gpu, re: Regimes, family: Family, ordinal: usize, rng: &mut Rng) -> Outcome {
    let mut keys = Vec::new();
    let sd = rng.next_u64();
    let result = match family {
        Family::Gemm => {
            let combos: Vec<(Trans, GemmVariant)> = Trans::ALL
                .iter()
                .flat_map(|&t| GemmVariant::checked().into_iter().map(move |v| (t, v)))
                .collect();
            let (t, v) = combos[ordinal % combos.len()];
            let aligned = (ordinal / combos.len()).is_multiple_of(2);
            let mut s = gemm_shape(rng, t, aligned);
            if matches!(v, GemmVariant::Split { .. }) && coin(rng) {
                // Long enough for several splits (at least two of SPLIT_MIN_K), alignment kept.
                let k = 4 * between(rng, 128, 350);
                s.k = if aligned || t == Trans::TN { k } else { k + between(rng, 1, 3) };
                assert_eq!(vec4_aligned(&s), aligned);
            }
            let flags = Flags { bias: coin(rng), accumulate: coin(rng), relu: coin(rng) };
            let (sa, sb) = product_scales(rng, re);
            keys.push(format!(
                "gemm {} {} {}",
                t.name(),
                v.name(),
                if aligned { "vec4-aligned" } else { "unaligned" }
            ));
            keys.push(format!("gemm flags {:?}", (flags.bias, flags.accumulate, flags.relu)));
            // The variants that fall back on some shapes: reached on their own kernel too.
            if own_kernel_key(&v) && Op::Gemm(s).runs_itself(Variant::Gemm(v), &Caps::of(g)) {
                keys.push(format!("gemm {} {} on its own kernel", t.name(), v.name()));
            }
            if (sa, sb) != (1.0, 1.0) {
                keys.push("gemm extreme scales".into());
            }
            if sa == SUBNORMAL || sb == SUBNORMAL {
                keys.push("gemm subnormal operand".into());
            }
            check::gemm_case(g, s, v, flags, Input::scaled(sd, sa, sb))
        }
        Family::ConvFwd => {
            let all = ConvFwdVariant::checked();
            let v = all[ordinal % all.len()];
            let s = conv_shape(rng, conv_kind(ordinal, all.len()));
            let flags = Flags { bias: coin(rng), accumulate: false, relu: coin(rng) };
            let (sx, sw) = product_scales(rng, re);
            keys.push(format!("conv fwd {}", v.name()));
            keys.push(format!("conv fwd {} bias={} relu={}", v.name(), flags.bias, flags.relu));
            if (sx, sw) != (1.0, 1.0) {
                keys.push("conv fwd extreme scales".into());
            }
            if sx == SUBNORMAL || sw == SUBNORMAL {
                keys.push("conv fwd subnormal operand".into());
            }
            check::conv_fwd_case(g, s, v, flags, Input::scaled(sd, sx, sw))
        }
        Family::ConvBwdData => {
            let all = ConvBwdDataVariant::checked();
            let v = all[ordinal % all.len()];
            let s = conv_shape(rng, conv_kind(ordinal, all.len()));
            let (sdy, sw) = product_scales(rng, re);
            keys.push(format!("conv bwd_data {}", v.name()));
            keys.push(format!("conv bwd_data {} stride1={}", v.name(), s.sy == 1 && s.sx == 1));
            if (sdy, sw) != (1.0, 1.0) {
                keys.push("conv bwd_data extreme scales".into());
            }
            check::conv_bwd_data_case(g, s, v, Input::scaled(sd, sdy, sw))
        }
        Family::ConvBwdWeight => {
            let all = ConvBwdWeightVariant::checked();
            let v = all[ordinal % all.len()];
            let accumulate = (ordinal / all.len()) % 2 == 1;
            let s = conv_shape(rng, conv_kind(ordinal, 2 * all.len()));
            let (sx, sdy) = product_scales(rng, re);
            keys.push(format!("conv bwd_weight {} accumulate={accumulate}", v.name()));
            // The variant's own slices (the direct kernel has none: the coarse variants' count).
            let slices = match dlsvm::kernels::conv::weight_grad_scratch(&s, v, usize::MAX) / s.w_len() {
                0 => split_slices(&s),
                n => n,
            };
            if slices > 1 {
                keys.push(format!("conv bwd_weight {} over several batch slices", v.name()));
            }
            if s.kw > 8 {
                keys.push(format!("conv bwd_weight {} kernel wider than 8", v.name()));
            }
            if s.cin * s.kh > 64 {
                keys.push(format!("conv bwd_weight {} cin*kh > 64", v.name()));
            }
            if (sx, sdy) != (1.0, 1.0) {
                keys.push("conv bwd_weight extreme scales".into());
            }
            check::conv_bwd_weight_case(g, s, v, accumulate, Input::scaled(sd, sx, sdy))
        }
        Family::ConvBwdBias => {
            let s = conv_shape(rng, conv_kind(ordinal, 1));
            let accumulate = coin(rng);
            let scale = sum_scale(rng, re);
            keys.push(format!("conv bwd_bias accumulate={accumulate}"));
            check::conv_bwd_bias_case(g, s, accumulate, Input::scaled(sd, scale, 1.0))
        }
        Family::MaxpoolFwd => {
            let all = PoolFwdVariant::checked();
            let v = all[ordinal % all.len()];
            let s = pool_shape(rng);
            let values = match rng.below(4) {
                0 | 1 => Values::Unit,
                2 if re.subnormals && coin(rng) => Values::Scaled(SUBNORMAL),
                2 => Values::Scaled(pick(rng, &HUGE)),
                _ => copy_extremes(re),
            };
            pool_keys(&s, &mut keys, &format!("maxpool fwd {}", v.name()));
            if matches!(values, Values::Extreme { .. }) {
                keys.push("maxpool fwd extreme values with ties".into());
            }
            check::maxpool_fwd_case(g, s, v, Input::values(sd, values))
        }
        Family::MaxpoolBwd => {
            let all = MaxPoolBwdVariant::checked();
            let v = all[ordinal % all.len()];
            let s = pool_shape(rng);
            pool_keys(&s, &mut keys, &format!("maxpool bwd {}", v.name()));
            check::maxpool_bwd_case(
                g,
                s,
                v,
                Input { seed: sd, a: Values::Unit, b: Values::Scaled(sum_scale(rng, re)) },
            )
        }
        Family::AvgpoolFwd => {
            let all = PoolFwdVariant::checked();
            let v = all[ordinal % all.len()];
            let s = pool_shape(rng);
            pool_keys(&s, &mut keys, &format!("avgpool fwd {}", v.name()));
            check::avgpool_fwd_case(g, s, v, Input::scaled(sd, scale_or(rng, &HUGE), 1.0))
        }
        Family::AvgpoolBwd => {
            let all = MaxPoolBwdVariant::checked();
            let v = all[ordinal % all.len()];
            let s = pool_shape(rng);
            pool_keys(&s, &mut keys, &format!("avgpool bwd {}", v.name()));
            check::avgpool_bwd_case(g, s, v, Input::scaled(sd, scale_or(rng, &HUGE), 1.0))
        }
        Family::ReluFwd | Family::ReluBwd => {
            let n = elementwise_len(rng);
            let values = if coin(rng) { copy_extremes(re) } else { Values::Unit };
            let dir = if family == Family::ReluFwd { "fwd" } else { "bwd" };
            keys.push(format!("relu {dir} {}", if values == Values::Unit { "unit" } else { "extreme" }));
            if family == Family::ReluFwd {
                check::relu_fwd_case(g, n, Input::values(sd, values))
            } else {
                check::relu_bwd_case(g, n, Input::values(sd, values))
            }
        }
        Family::DropoutFwd | Family::DropoutBwd => {
            let n = elementwise_len(rng);
            let p = match rng.below(5) {
                0 => 0.0,
                1 => 0.5,
                2 => 0.9,
                _ => rng.range(0.0, 0.95) as f32,
            };
            let values = if coin(rng) {
                Values::Unit
            } else {
                // A subnormal times a scale other than 1 rounds to a subnormal ulp, which the
                // element-wise tolerance (relative, half an ulp) does not describe.
                Values::Extreme { limit: 1e30, subnormals: re.subnormals && p == 0.0 }
            };
            let backward = family == Family::DropoutBwd;
            let dir = if backward { "bwd" } else { "fwd" };
            keys.push(format!("dropout {dir} {}", if values == Values::Unit { "unit" } else { "extreme" }));
            if p == 0.0 {
                keys.push(format!("dropout {dir} p=0"));
            }
            check::dropout_case(
                g,
                n,
                p,
                (rng.next_u64() as u32, rng.next_u64() as u32),
                backward,
                Input::values(sd, values),
            )
        }
        Family::Softmax => {
            let (n, k) = if rng.below(10) == 0 {
                (between(rng, 1, 8), between(rng, 100, 1000))
            } else {
                (log_size(rng, 1, 300), between(rng, 1, 40))
            };
            let values = match rng.below(5) {
                0 => Values::Scaled(1.0),
                1 => Values::Scaled(4.0),
                2 => Values::Scaled(80.0),
                _ => Values::Extreme { limit: 80.0, subnormals: re.subnormals },
            };
            keys.push(format!("softmax logits {values}"));
            check::softmax_case(g, n, k, Input::values(sd, values))
        }
        Family::L2svm | Family::L1svm => {
            let (n, k) = if rng.below(10) == 0 {
                (between(rng, 1, 8), between(rng, 100, 1000))
            } else {
                (log_size(rng, 1, 300), between(rng, 1, 40))
            };
            let c = match rng.below(4) {
                0 => 1.0,
                1 => 0.02 * n as f64,
                _ => rng.range(0.01, 10.0),
            };
            let values = if coin(rng) {
                Values::Scaled(2.0)
            } else {
                Values::Extreme { limit: 1e15, subnormals: re.subnormals }
            };
            if matches!(family, Family::L1svm) {
                keys.push(format!("l1svm scores {values}"));
                check::l1svm_case(g, n, k, c, Input::values(sd, values))
            } else {
                keys.push(format!("l2svm scores {values}"));
                check::l2svm_case(g, n, k, c, Input::values(sd, values))
            }
        }
        Family::Sgd => {
            let n = elementwise_len(rng);
            let r = [rng.range(0.0, 1.0) as f32, rng.range(0.0, 1.0) as f32, rng.range(0.0, 0.1) as f32];
            let lr = pick(rng, &[0.0, 0.001, 0.05, 0.5, r[0]]);
            let momentum = pick(rng, &[0.0, 0.5, 0.9, 0.99, r[1]]);
            let wd = pick(rng, &[0.0, 1e-4, 0.02, r[2]]);
            let scale = scale_or(rng, &HUGE);
            keys.push("sgd_momentum".into());
            if scale != 1.0 {
                keys.push("sgd_momentum extreme scales".into());
            }
            check::sgd_case(g, n, (lr, momentum, wd), Input::scaled(sd, scale, 1.0))
        }
        Family::Sum => {
            let n = log_size(rng, 1, 100_000);
            let accumulate = coin(rng);
            keys.push(format!("sum accumulate={accumulate}"));
            check::sum_case(g, n, accumulate, Input::scaled(sd, sum_scale(rng, re), 1.0))
        }
        Family::ChannelSum => {
            use dlsvm::kernels::reduce::{slice_sum_is_serial, CHANNEL_CHUNK};
            // One case in six an fc bias ([batch, outputs, 1]), up to past the serial slice sum's
            // 2048 outputs; else a conv bias, a quarter of the time with inner a multiple of 4.
            let (outer, c, inner) = if rng.below(6) == 0 {
                (between(rng, 1, 300), log_size(rng, 1, 3100), 1)
            } else {
                let c = if rng.below(5) == 0 { between(rng, 64, 300) } else { between(rng, 1, 64) };
                (between(rng, 1, 16), c, log_size(rng, 1, 4000))
            };
            let accumulate = coin(rng);
            keys.push(format!("channel_sum accumulate={accumulate}"));
            let passes = if outer * inner > CHANNEL_CHUNK { "two" } else { "one" };
            let kernel = if inner == 1 && slice_sum_is_serial(outer, c) {
                "as a serial slice sum".to_string()
            } else if inner % 4 == 0 {
                format!("{passes} pass, vec4")
            } else {
                format!("{passes} pass")
            };
            keys.push(format!("channel_sum {kernel}"));
            check::channel_sum_case(
                g,
                outer,
                c,
                inner,
                accumulate,
                Input::scaled(sd, sum_scale(rng, re), 1.0),
            )
        }
        Family::Argmax => {
            let (n, k) = if rng.below(10) == 0 {
                (between(rng, 1, 8), between(rng, 100, 1000))
            } else {
                (log_size(rng, 1, 300), between(rng, 1, 50))
            };
            let values = if coin(rng) { copy_extremes(re) } else { Values::Unit };
            keys.push(format!("argmax {}", if values == Values::Unit { "unit" } else { "extreme" }));
            check::argmax_case(g, n, k, Input::values(sd, values))
        }
        Family::CountCorrect => {
            let (n, k) = (log_size(rng, 1, 5000), between(rng, 1, 20));
            let accumulate = coin(rng);
            keys.push(format!("count_correct accumulate={accumulate}"));
            check::count_correct_case(g, n, k, accumulate, sd)
        }
    };
    Outcome { keys, result: pollster::block_on(result) }
}

/// Coverage every full run must reach: each family, variant, layout, epilogue and value regime.
/// The variants that fall back on some shapes or devices, whose own kernel the coverage requires.
fn own_kernel_key(v: &GemmVariant) -> bool {
    matches!(
        v,
        GemmVariant::Split { .. }
            | GemmVariant::Dot { .. }
            | GemmVariant::Subgroup { .. }
            | GemmVariant::Subgroup4 { .. }
    )
}

fn required_keys(re: Regimes, dev: &Caps) -> Vec<String> {
    let mut keys = Vec::new();
    if re.subnormals {
        keys.extend(["gemm subnormal operand", "conv fwd subnormal operand"].map(String::from));
    }
    for t in Trans::ALL {
        for v in GemmVariant::checked() {
            for a in ["vec4-aligned", "unaligned"] {
                keys.push(format!("gemm {} {} {a}", t.name(), v.name()));
            }
        }
    }
    for t in Trans::ALL {
        // (Subgroup variants only on a device with subgroups: elsewhere they run the tiled kernel.)
        for v in GemmVariant::checked().into_iter().filter(|v| own_kernel_key(v) && v.subgroups_allow(dev)) {
            keys.push(format!("gemm {} {} on its own kernel", t.name(), v.name()));
        }
    }
    for bias in [false, true] {
        for accumulate in [false, true] {
            for relu in [false, true] {
                keys.push(format!("gemm flags {:?}", (bias, accumulate, relu)));
            }
        }
    }
    keys.push("gemm extreme scales".into());
    for v in ConvFwdVariant::checked() {
        for bias in [false, true] {
            for relu in [false, true] {
                keys.push(format!("conv fwd {} bias={bias} relu={relu}", v.name()));
            }
        }
    }
    keys.push("conv fwd extreme scales".into());
    for v in ConvBwdDataVariant::checked() {
        for stride1 in [true, false] {
            keys.push(format!("conv bwd_data {} stride1={stride1}", v.name()));
        }
    }
    keys.push("conv bwd_data extreme scales".into());
    for v in ConvBwdWeightVariant::checked() {
        for accumulate in [false, true] {
            keys.push(format!("conv bwd_weight {} accumulate={accumulate}", v.name()));
        }
    }
    for v in ConvBwdWeightVariant::checked() {
        for what in ["over several batch slices", "kernel wider than 8", "cin*kh > 64"] {
            keys.push(format!("conv bwd_weight {} {what}", v.name()));
        }
    }
    keys.push("conv bwd_weight extreme scales".into());
    keys.extend(["conv bwd_bias accumulate=false", "conv bwd_bias accumulate=true"].map(String::from));
    let mut pools: Vec<String> = Vec::new();
    pools.extend(PoolFwdVariant::checked().into_iter().map(|v| format!("maxpool fwd {}", v.name())));
    pools.extend(PoolFwdVariant::checked().into_iter().map(|v| format!("avgpool fwd {}", v.name())));
    pools.extend(MaxPoolBwdVariant::checked().into_iter().map(|v| format!("maxpool bwd {}", v.name())));
    pools.extend(MaxPoolBwdVariant::checked().into_iter().map(|v| format!("avgpool bwd {}", v.name())));
    for fam in pools {
        for what in ["overlapping windows", "ceil mode", "padding"] {
            keys.push(format!("{fam} {what}"));
        }
    }
    keys.push("maxpool fwd extreme values with ties".into());
    for dir in ["fwd", "bwd"] {
        for v in ["unit", "extreme"] {
            keys.push(format!("relu {dir} {v}"));
            keys.push(format!("dropout {dir} {v}"));
        }
        keys.push(format!("dropout {dir} p=0"));
    }
    keys.push(format!("softmax logits {}", Values::Extreme { limit: 80.0, subnormals: re.subnormals }));
    keys.push(format!("softmax logits {}", Values::Scaled(80.0)));
    keys.push(format!("l2svm scores {}", Values::Extreme { limit: 1e15, subnormals: re.subnormals }));
    keys.push(format!("l2svm scores {}", Values::Scaled(2.0)));
    keys.push(format!("l1svm scores {}", Values::Extreme { limit: 1e15, subnormals: re.subnormals }));
    keys.push(format!("l1svm scores {}", Values::Scaled(2.0)));
    keys.extend(["sgd_momentum", "sgd_momentum extreme scales"].map(String::from));
    for acc in [false, true] {
        keys.push(format!("sum accumulate={acc}"));
        keys.push(format!("channel_sum accumulate={acc}"));
        keys.push(format!("count_correct accumulate={acc}"));
    }
    keys.extend(
        [
            "channel_sum one pass",
            "channel_sum two pass",
            "channel_sum one pass, vec4",
            "channel_sum two pass, vec4",
            "channel_sum as a serial slice sum",
        ]
        .map(String::from),
    );
    keys.extend(["argmax unit", "argmax extreme"].map(String::from));
    keys
}

// ---------------------------------------------------------------------------------------- main

#[derive(Default)]
struct Tally {
    cases: usize,
    elements: usize,
    worst_ratio: f64,
    time: Duration,
}

#[test]
fn stress_every_kernel_against_the_reference() {
    let cfg = Config::from_env();
    let g = gpu();
    let re = Regimes { subnormals: keeps_subnormals(g) };
    let start = Instant::now();
    let indices: Vec<usize> = match cfg.only {
        Some(i) => vec![i],
        None => (0..cfg.cases).collect(),
    };
    say!(
        "stress: seed {:#x} (DLSVM_STRESS_SEED), up to {} cases (DLSVM_STRESS_CASES), at least {}, \
         budget {:?}, on {}",
        cfg.seed,
        cfg.cases,
        cfg.min_cases,
        cfg.budget,
        g.info.name
    );
    if !re.subnormals {
        say!("stress: this device flushes subnormals to zero (as WGSL allows): subnormal inputs skipped");
    }
    let mut tallies: BTreeMap<Family, Tally> = BTreeMap::new();
    let mut covered: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut ran = 0;
    for &i in &indices {
        if ran >= cfg.min_cases && start.elapsed() > cfg.budget {
            break;
        }
        let (family, ordinal) = slot(i);
        let mut rng = Rng::new(case_seed(cfg.seed, i));
        let t0 = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| run_case(g, re, family, ordinal, &mut rng)));
        let dt = t0.elapsed();
        ran += 1;
        let tally = tallies.entry(family).or_default();
        tally.cases += 1;
        tally.time += dt;
        let repro = format!(
            "reproduce: DLSVM_STRESS_SEED={:#x} DLSVM_STRESS_ONLY={i} cargo test --release --test stress stress_every",
            cfg.seed
        );
        let problem = match outcome {
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Some(format!("panicked: {msg}"))
            }
            Ok(Outcome { keys, result }) => {
                for k in keys {
                    *covered.entry(k).or_default() += 1;
                }
                match result {
                    Err(e) => Some(format!("kernel failed to run: {e}")),
                    Ok(r) => {
                        tally.elements += r.elements;
                        tally.worst_ratio = tally.worst_ratio.max(r.worst_ratio);
                        if cfg.only.is_some() || cfg.verbose {
                            say!("case {i} ({family:?}): {r}");
                        }
                        if !r.passed() {
                            Some(r.to_string())
                        } else if r.elements == 0 {
                            Some(format!("{r}: nothing was compared"))
                        } else {
                            None
                        }
                    }
                }
            }
        };
        if let Some(p) = problem {
            let line = format!("case {i} ({family:?}) FAILED: {p}\n    {repro}");
            say!("{line}");
            failures.push(line);
        }
    }
    let elapsed = start.elapsed();
    say!("stress: {ran} cases in {:.1} s, seed {:#x}", elapsed.as_secs_f64(), cfg.seed);
    for (f, t) in &tallies {
        say!(
            "  {:<14} {:>5} cases {:>10} elements  worst {:.2} of tolerance  {:>7.2} s",
            format!("{f:?}"),
            t.cases,
            t.elements,
            t.worst_ratio,
            t.time.as_secs_f64()
        );
    }
    if cfg.verbose {
        for (k, n) in &covered {
            say!("  {n:>5}  {k}");
        }
    }
    if elapsed > cfg.budget {
        say!("stress: over the {:?} budget to reach the minimum of {} cases", cfg.budget, cfg.min_cases);
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} stress cases failed (seed {:#x}):\n{}",
        failures.len(),
        cfg.seed,
        failures.join("\n")
    );
    if cfg.only.is_none() {
        assert!(ran >= cfg.min_cases, "ran {ran} cases, fewer than the minimum {}", cfg.min_cases);
        if ran >= 1000 {
            let missing: Vec<String> =
                required_keys(re, &Caps::of(g)).into_iter().filter(|k| !covered.contains_key(k)).collect();
            assert!(missing.is_empty(), "{ran} cases left uncovered (seed {:#x}): {missing:?}", cfg.seed);
        }
    }
}

// ------------------------------------------------------------------------ pinned conventions

/// ReLU at exactly zero (either sign): the forward gives 0 and the backward, from the forward's
/// output, gives the subgradient 0 (`dx = dy` only where `y > 0`), on the GPU as in the reference.
#[test]
fn relu_at_exact_zero_uses_the_documented_subgradient() {
    let g = gpu();
    let x = [0.0f32, -0.0, 1e-30, -1e-30, f32::from_bits(1), -f32::from_bits(1), f32::MAX, -f32::MAX];
    let n = x.len();
    let tx = g.upload(&x, &[n]).unwrap();
    let ty = g.empty(&[n], DType::F32).unwrap();
    g.run(&[&activation::relu_forward(g, &tx, &ty).unwrap()]).unwrap();
    let y = g.download::<f32>(&ty).unwrap();
    let mut want = vec![0.0f32; n];
    dlsvm::cpu::relu_forward(&x, &mut want);
    assert_eq!(y, want, "relu forward of {x:?}");
    assert_eq!(&y[..2], &[0.0, 0.0]);
    let dy = vec![3.5f32; n];
    let tdy = g.upload(&dy, &[n]).unwrap();
    let tdx = g.empty(&[n], DType::F32).unwrap();
    g.run(&[&activation::relu_backward(g, &ty, &tdy, &tdx).unwrap()]).unwrap();
    let dx = g.download::<f32>(&tdx).unwrap();
    let mut want_dx = vec![0.0f32; n];
    dlsvm::cpu::relu_backward(&want, &dy, &mut want_dx);
    assert_eq!(dx, want_dx, "relu backward at y = {y:?}");
    assert_eq!(&dx[..2], &[0.0, 0.0], "the subgradient at 0 is 0");
}

/// Scores `[4, 3]` with label 0 for every row: row 0 exactly on the margin (t·a = 1) for every
/// class, row 1 one ulp outside it, row 2 one ulp inside for two classes, row 3 with h = 2, 2, 0.
const MARGIN_SCORES: [f32; 12] = {
    let (up, down) = (1.0 + f32::EPSILON, 1.0 - f32::EPSILON / 2.0);
    [1.0, -1.0, -1.0, up, -up, -up, down, -down, -1.0, -1.0, 1.0, -1.0]
};

/// Runs a loss kernel on one batch and returns (loss rows, gradient) from the GPU.
fn gpu_loss(g: &Gpu, top: Top, n: usize, k: usize, s: &[f32], y: &[i32], scale: f64) -> (Vec<f32>, Vec<f32>) {
    let ts = g.upload(s, &[n, k]).unwrap();
    let ty = g.upload(y, &[n]).unwrap();
    let tl = g.empty(&[n], DType::F32).unwrap();
    let tg = g.empty(&[n, k], DType::F32).unwrap();
    g.poison(&tl);
    g.poison(&tg);
    let d = match top {
        Top::L2svm => loss::l2svm(g, n, k, &ts, &ty, scale, &tl, &tg),
        Top::L1svm => loss::l1svm(g, n, k, &ts, &ty, scale, &tl, &tg),
        Top::Softmax => loss::softmax_xent(g, n, k, &ts, &ty, scale, &tl, &tg),
    };
    g.run(&[&d.unwrap()]).unwrap();
    (g.download::<f32>(&tl).unwrap(), g.download::<f32>(&tg).unwrap())
}

/// Scores exactly on the hinge (t·a = 1 for every class) give zero loss and zero gradient; one
/// ulp outside the margin too; one ulp inside a tiny positive loss, as in the reference.
#[test]
fn l2svm_exactly_on_the_margin() {
    let g = gpu();
    let ((n, k), s, y) = ((4, 3), MARGIN_SCORES, [0, 0, 0, 0]);
    let scale = 0.25;
    let (l, gr) = gpu_loss(g, Top::L2svm, n, k, &s, &y, scale);
    let (mut rl, mut rg) = (vec![0.0f64; n], vec![0.0f64; n * k]);
    dlsvm::cpu::l2svm(n, k, &check::widen(&s), &y, scale, &mut rl, &mut rg);
    assert_eq!(&l[..2], &[0.0, 0.0], "loss on and outside the margin");
    assert!(gr[..6].iter().all(|&v| v == 0.0), "gradient on and outside the margin: {:?}", &gr[..6]);
    for (i, (&a, &b)) in l.iter().zip(&rl).enumerate() {
        assert!(
            (a as f64 - b).abs() <= check::tolerance::L2SVM.allowance(b, k),
            "loss[{i}]: gpu {a:e}, ref {b:e}"
        );
    }
    for (i, (&a, &b)) in gr.iter().zip(&rg).enumerate() {
        assert!(
            (a as f64 - b).abs() <= check::tolerance::L2SVM.allowance(b, 1),
            "grad[{i}]: gpu {a:e}, ref {b:e}"
        );
    }
    assert_eq!(l[3], (scale * 8.0) as f32);
}

/// The hinge's kink: scores exactly on it (t·a = 1) and one ulp outside give zero loss and zero
/// gradient; one ulp inside gives the full gradient −(C/N)·t and a loss of one ulp's size, as in
/// the reference.
#[test]
fn l1svm_exactly_on_the_kink() {
    let g = gpu();
    let ((n, k), s, y) = ((4, 3), MARGIN_SCORES, [0, 0, 0, 0]);
    let scale = 0.25;
    let (l, gr) = gpu_loss(g, Top::L1svm, n, k, &s, &y, scale);
    let (mut rl, mut rg) = (vec![0.0f64; n], vec![0.0f64; n * k]);
    dlsvm::cpu::l1svm(n, k, &check::widen(&s), &y, scale, &mut rl, &mut rg);
    assert_eq!(&l[..2], &[0.0, 0.0], "loss on and outside the kink");
    assert!(gr[..6].iter().all(|&v| v == 0.0), "gradient on and outside the kink: {:?}", &gr[..6]);
    assert_eq!(&gr[6..9], &[-0.25, 0.25, 0.0], "one ulp inside: the full gradient");
    assert_eq!(&gr[9..], &[-0.25, 0.25, 0.0]);
    for (i, (&a, &b)) in l.iter().zip(&rl).enumerate() {
        assert!(
            (a as f64 - b).abs() <= check::tolerance::L1SVM.allowance(b, k),
            "loss[{i}]: gpu {a:e}, ref {b:e}"
        );
    }
    assert!(gr.iter().zip(&rg).all(|(&a, &b)| a as f64 == b), "the gradient is exact: {gr:?} vs {rg:?}");
    assert_eq!(l[3], (scale * 4.0) as f32, "h = 2 + 2 + 0");
}

/// Logits of ±80 (exp(160) overflows f32): the loss stays finite and matches the reference, the
/// gradient is finite and each unmasked row of it sums to ~0.
#[test]
fn softmax_logits_of_80_stay_finite() {
    let g = gpu();
    let (n, k) = (4, 5);
    #[rustfmt::skip]
    let z = [
        80.0, -80.0, 80.0, -80.0, 0.0, // label at -80: loss = 160 + ln 2
        80.0, 80.0, 80.0, 80.0, 80.0, // all equal: loss = ln 5
        -80.0, -80.0, -80.0, -80.0, 80.0, // label at the single +80
        -80.0, -80.0, -80.0, -80.0, -80.0,
    ];
    let y = [1, 2, 4, 0];
    let scale = 1.0 / n as f64;
    let (l, gr) = gpu_loss(g, Top::Softmax, n, k, &z, &y, scale);
    assert!(l.iter().chain(&gr).all(|v| v.is_finite()), "loss {l:?} grad {gr:?}");
    let (mut rl, mut rg) = (vec![0.0f64; n], vec![0.0f64; n * k]);
    dlsvm::cpu::softmax_xent(n, k, &check::widen(&z), &y, scale as f32 as f64, &mut rl, &mut rg);
    let tol = check::tolerance::SOFTMAX.scaled(80.0);
    for (i, (&a, &b)) in l.iter().zip(&rl).enumerate() {
        assert!((a as f64 - b).abs() <= tol.allowance(b, k), "loss[{i}]: gpu {a:e}, ref {b:e}");
    }
    for (i, (&a, &b)) in gr.iter().zip(&rg).enumerate() {
        assert!((a as f64 - b).abs() <= tol.allowance(b, 1), "grad[{i}]: gpu {a:e}, ref {b:e}");
    }
    assert!((rl[0] - scale * (160.0 + 2f64.ln())).abs() < 1e-12);
}
