//! One function per kernel and direction: random inputs, GPU run, f64 CPU reference, comparison.

use super::tolerance as tol;
use super::{widen, CaseReport, Comparison, Rng};
use crate::cpu;
use crate::gpu::{DType, Gpu, GpuError, Tensor};
use crate::kernels::{self, conv::ConvBwdWeightVariant, conv::ConvFwdVariant, gemm::GemmVariant, Epilogue};
use crate::shapes::{dropout_scale, Conv2dShape, GemmShape, Pool2dShape};
use std::fmt;

fn up(gpu: &Gpu, v: &[f32]) -> Result<Tensor, GpuError> {
    gpu.upload(v, &[v.len()])
}

fn up_i32(gpu: &Gpu, v: &[i32]) -> Result<Tensor, GpuError> {
    gpu.upload(v, &[v.len()])
}

/// An output tensor filled with NaN, so unwritten elements cannot pass.
fn poisoned(gpu: &Gpu, len: usize, dtype: DType) -> Result<Tensor, GpuError> {
    let t = gpu.empty(&[len], dtype)?;
    gpu.poison(&t);
    Ok(t)
}

/// Labels in [0, k) with about one row in eight masked (-1); row 0 is never masked.
fn labels(rng: &mut Rng, n: usize, k: usize) -> Vec<i32> {
    (0..n).map(|i| if i > 0 && rng.below(8) == 0 { -1 } else { rng.below(k) as i32 }).collect()
}

/// How a case draws its random float inputs. The `*_case` functions use the unit range the
/// tolerances are written for; the `*_with` and `*_scaled` variants take another distribution to
/// probe extreme magnitudes (the stress test, `tests/stress.rs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Values {
    /// Uniform in [-1, 1): what the tolerances are written for.
    Unit,
    /// Uniform in [-s, s). Cases that sum or combine several inputs take only this kind (through
    /// their `*_scaled` variant) and compare with [`super::Tol::scaled`] by the output's scale.
    Scaled(f64),
    /// For element-wise ops (whose tolerance is relative): each value is, with equal odds, an
    /// ordinary one in [-1, 1), an exact zero of either sign, about ±1e30, about ±1e-30, one of
    /// the smallest normals (about ±1.2e-38), one of the largest allowed magnitudes (in
    /// [limit/2, limit]), or, with `subnormals`, a subnormal (otherwise ±1e-20). Magnitudes never
    /// exceed `limit`.
    Extreme { limit: f64, subnormals: bool },
}

impl Values {
    /// `len` values of this distribution.
    pub fn draw(&self, rng: &mut Rng, len: usize) -> Vec<f32> {
        match *self {
            Values::Unit => rng.vec(len),
            Values::Scaled(s) => rng.vec_scaled(len, s),
            Values::Extreme { limit, subnormals } => {
                (0..len).map(|_| extreme(rng, limit, subnormals)).collect()
            }
        }
    }

    /// The size of the largest values drawn (1 for [`Values::Unit`]).
    pub fn magnitude(&self) -> f64 {
        match *self {
            Values::Unit => 1.0,
            Values::Scaled(s) => s,
            Values::Extreme { limit, .. } => limit,
        }
    }
}

impl fmt::Display for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Values::Unit => write!(f, "unit"),
            Values::Scaled(s) => write!(f, "x{s:e}"),
            Values::Extreme { limit, subnormals } => {
                let sub = if subnormals { "+subnormal" } else { "" };
                if limit == f32::MAX as f64 {
                    write!(f, "extreme<=f32::MAX{sub}")
                } else {
                    write!(f, "extreme<={limit:e}{sub}")
                }
            }
        }
    }
}

/// One value of [`Values::Extreme`].
fn extreme(rng: &mut Rng, limit: f64, subnormals: bool) -> f32 {
    let sign = if rng.below(2) == 0 { 1.0 } else { -1.0 };
    let u = rng.range(1.0, 10.0);
    let mag = match rng.below(7) {
        0 => rng.range(0.0, 1.0),
        1 => 0.0,
        2 => u * 1e30,
        3 => u * 1e-30,
        4 => f32::MIN_POSITIVE as f64 * u,
        5 => limit * rng.range(0.5, 1.0),
        _ if subnormals => f32::from_bits(1 + rng.below(0x7f_ffff) as u32) as f64,
        _ => u * 1e-20,
    };
    (sign * mag.min(limit)) as f32
}

/// ` ×scale` for a shape description, empty at scale 1 (so unit-scale reports read as before).
fn scale_note(scales: &[f64]) -> String {
    if scales.iter().all(|&s| s == 1.0) {
        return String::new();
    }
    let s: Vec<String> = scales.iter().map(|s| format!("{s:e}")).collect();
    format!(" x{}", s.join("/"))
}

fn values_note(v: Values) -> String {
    if v == Values::Unit {
        String::new()
    } else {
        format!(" {v}")
    }
}

/// Which parts of a producing kernel's epilogue a case exercises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub bias: bool,
    pub accumulate: bool,
    pub relu: bool,
}

impl Flags {
    pub const NONE: Flags = Flags { bias: false, accumulate: false, relu: false };
    pub const BIAS: Flags = Flags { bias: true, accumulate: false, relu: false };
    pub const BIAS_RELU: Flags = Flags { bias: true, accumulate: false, relu: true };
    pub const ACC: Flags = Flags { bias: false, accumulate: true, relu: false };
    pub const ALL: Flags = Flags { bias: true, accumulate: true, relu: true };

    fn suffix(&self) -> String {
        let mut s = String::new();
        for (on, name) in [(self.bias, " +bias"), (self.accumulate, " +acc"), (self.relu, " +relu")] {
            if on {
                s.push_str(name);
            }
        }
        s
    }
}

// ------------------------------------------------------------------------------------------ GEMM

/// `gemm_<trans>` with `variant` on shape `s`.
pub fn gemm_case(
    gpu: &Gpu,
    s: GemmShape,
    variant: GemmVariant,
    flags: Flags,
    seed: u64,
) -> Result<CaseReport, GpuError> {
    gemm_case_scaled(gpu, s, variant, flags, seed, 1.0, 1.0)
}

/// [`gemm_case`] with A uniform in [-scale_a, scale_a), B in [-scale_b, scale_b), and the bias and
/// the accumulated C at their product's scale.
pub fn gemm_case_scaled(
    gpu: &Gpu,
    s: GemmShape,
    variant: GemmVariant,
    flags: Flags,
    seed: u64,
    scale_a: f64,
    scale_b: f64,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let scale_c = scale_a * scale_b;
    let a = rng.vec_scaled(s.a_len(), scale_a);
    let b = rng.vec_scaled(s.b_len(), scale_b);
    let bias = rng.vec_scaled(s.n, scale_c);
    let c0 = rng.vec_scaled(s.c_len(), scale_c);
    let (ta, tb, tbias) = (up(gpu, &a)?, up(gpu, &b)?, up(gpu, &bias)?);
    let tc = if flags.accumulate { up(gpu, &c0)? } else { poisoned(gpu, s.c_len(), DType::F32)? };
    let ep = Epilogue { bias: flags.bias.then_some(&tbias), accumulate: flags.accumulate, relu: flags.relu };
    let d = kernels::gemm::gemm(gpu, &s, &ta, &tb, &tc, &ep, variant)?;
    gpu.run(&[&d])?;
    let got = gpu.download::<f32>(&tc)?;
    let mut want = widen(&c0);
    let bias64 = widen(&bias);
    cpu::gemm(
        &s,
        &widen(&a),
        &widen(&b),
        flags.bias.then_some(&bias64[..]),
        &mut want,
        flags.accumulate,
        flags.relu,
    );
    let kernel = format!("gemm_{} {}", s.trans.name(), variant.name());
    let shape = format!("{s}{}{}", flags.suffix(), scale_note(&[scale_a, scale_b]));
    Ok(Comparison::new(&kernel, shape, tol::GEMM.scaled(scale_c)).floats("C", &got, &want, s.k).finish())
}

// ------------------------------------------------------------------------------------------ conv

/// Conv forward with `variant`; `flags.accumulate` is not supported by the forward.
pub fn conv_fwd_case(
    gpu: &Gpu,
    s: Conv2dShape,
    variant: ConvFwdVariant,
    flags: Flags,
    seed: u64,
) -> Result<CaseReport, GpuError> {
    conv_fwd_case_scaled(gpu, s, variant, flags, seed, 1.0, 1.0)
}

/// [`conv_fwd_case`] with x uniform in [-scale_x, scale_x), the weights in [-scale_w, scale_w)
/// and the bias at their product's scale.
pub fn conv_fwd_case_scaled(
    gpu: &Gpu,
    s: Conv2dShape,
    variant: ConvFwdVariant,
    flags: Flags,
    seed: u64,
    scale_x: f64,
    scale_w: f64,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let x = rng.vec_scaled(s.x_len(), scale_x);
    let w = rng.vec_scaled(s.w_len(), scale_w);
    let bias = rng.vec_scaled(s.cout, scale_x * scale_w);
    let (tx, tw, tbias) = (up(gpu, &x)?, up(gpu, &w)?, up(gpu, &bias)?);
    let ty = poisoned(gpu, s.y_len(), DType::F32)?;
    let ep = Epilogue { bias: flags.bias.then_some(&tbias), accumulate: false, relu: flags.relu };
    let d = kernels::conv::conv2d_forward(gpu, &s, &tx, &tw, &ty, &ep, variant)?;
    gpu.run(&[&d])?;
    let got = gpu.download::<f32>(&ty)?;
    let mut want = vec![0.0; s.y_len()];
    let bias64 = widen(&bias);
    cpu::conv2d_forward(&s, &widen(&x), &widen(&w), flags.bias.then_some(&bias64[..]), &mut want, flags.relu);
    let kernel = format!("conv2d fwd {}", variant.name());
    let shape = format!("{s}{}{}", flags.suffix(), scale_note(&[scale_x, scale_w]));
    Ok(Comparison::new(&kernel, shape, tol::CONV.scaled(scale_x * scale_w))
        .floats("y", &got, &want, s.cin * s.kh * s.kw)
        .finish())
}

pub fn conv_bwd_data_case(gpu: &Gpu, s: Conv2dShape, seed: u64) -> Result<CaseReport, GpuError> {
    conv_bwd_data_case_scaled(gpu, s, seed, 1.0, 1.0)
}

/// [`conv_bwd_data_case`] with dy uniform in [-scale_dy, scale_dy), the weights in
/// [-scale_w, scale_w).
pub fn conv_bwd_data_case_scaled(
    gpu: &Gpu,
    s: Conv2dShape,
    seed: u64,
    scale_dy: f64,
    scale_w: f64,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let dy = rng.vec_scaled(s.y_len(), scale_dy);
    let w = rng.vec_scaled(s.w_len(), scale_w);
    let (tdy, tw) = (up(gpu, &dy)?, up(gpu, &w)?);
    let tdx = poisoned(gpu, s.x_len(), DType::F32)?;
    let d = kernels::conv::conv2d_backward_data(gpu, &s, &tdy, &tw, &tdx)?;
    gpu.run(&[&d])?;
    let got = gpu.download::<f32>(&tdx)?;
    let mut want = vec![0.0; s.x_len()];
    cpu::conv2d_backward_data(&s, &widen(&dy), &widen(&w), &mut want);
    let shape = format!("{s}{}", scale_note(&[scale_dy, scale_w]));
    Ok(Comparison::new("conv2d bwd_data", shape, tol::CONV.scaled(scale_dy * scale_w))
        .floats("dx", &got, &want, s.cout * s.kh * s.kw)
        .finish())
}

pub fn conv_bwd_weight_case(
    gpu: &Gpu,
    s: Conv2dShape,
    variant: ConvBwdWeightVariant,
    accumulate: bool,
    seed: u64,
) -> Result<CaseReport, GpuError> {
    conv_bwd_weight_case_scaled(gpu, s, variant, accumulate, seed, 1.0, 1.0)
}

/// [`conv_bwd_weight_case`] with x uniform in [-scale_x, scale_x), dy in [-scale_dy, scale_dy) and
/// the accumulated dw at their product's scale.
pub fn conv_bwd_weight_case_scaled(
    gpu: &Gpu,
    s: Conv2dShape,
    variant: ConvBwdWeightVariant,
    accumulate: bool,
    seed: u64,
    scale_x: f64,
    scale_dy: f64,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let x = rng.vec_scaled(s.x_len(), scale_x);
    let dy = rng.vec_scaled(s.y_len(), scale_dy);
    let dw0 = rng.vec_scaled(s.w_len(), scale_x * scale_dy);
    let (tx, tdy) = (up(gpu, &x)?, up(gpu, &dy)?);
    let tdw = if accumulate { up(gpu, &dw0)? } else { poisoned(gpu, s.w_len(), DType::F32)? };
    let ops = kernels::conv::conv2d_backward_weight(gpu, &s, &tx, &tdy, &tdw, accumulate, variant)?;
    gpu.run(&ops.iter().collect::<Vec<_>>())?;
    let got = gpu.download::<f32>(&tdw)?;
    let mut want = widen(&dw0);
    cpu::conv2d_backward_weight(&s, &widen(&x), &widen(&dy), &mut want, accumulate);
    let flags = Flags { accumulate, ..Flags::NONE };
    Ok(Comparison::new(
        &format!("conv2d bwd_weight {}", variant.name()),
        format!("{s}{}{}", flags.suffix(), scale_note(&[scale_x, scale_dy])),
        tol::CONV.scaled(scale_x * scale_dy),
    )
    .floats("dw", &got, &want, s.n * s.oh() * s.ow())
    .finish())
}

/// The conv bias gradient: `channel_sum` over `[n, cout, oh*ow]`.
pub fn conv_bwd_bias_case(gpu: &Gpu, s: Conv2dShape, seed: u64) -> Result<CaseReport, GpuError> {
    conv_bwd_bias_case_scaled(gpu, s, false, seed, 1.0)
}

/// [`conv_bwd_bias_case`] with dy uniform in [-scale, scale), optionally accumulating.
pub fn conv_bwd_bias_case_scaled(
    gpu: &Gpu,
    s: Conv2dShape,
    accumulate: bool,
    seed: u64,
    scale: f64,
) -> Result<CaseReport, GpuError> {
    let plane = s.oh() * s.ow();
    let mut r = channel_sum_case_scaled(gpu, s.n, s.cout, plane, accumulate, seed, scale)?;
    r.kernel = "conv2d bwd_bias".into();
    let flags = Flags { accumulate, ..Flags::NONE };
    r.shape = format!("{s}{}{}", flags.suffix(), scale_note(&[scale]));
    Ok(r)
}

// ------------------------------------------------------------------------------------------ pool

/// Distinct values (no ties) so the argmax is unambiguous: a random permutation of a grid.
fn distinct(rng: &mut Rng, len: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..len).map(|i| (i as f32 + 0.5) / len as f32 * 2.0 - 1.0).collect();
    for i in (1..len).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}

pub fn maxpool_fwd_case(gpu: &Gpu, s: Pool2dShape, seed: u64) -> Result<CaseReport, GpuError> {
    maxpool_fwd_case_with(gpu, s, seed, Values::Unit)
}

/// [`maxpool_fwd_case`] on other inputs: `Unit` and `Scaled` keep the tie-free grid (times the
/// scale); `Extreme` draws its values as they come, ties included (the first maximum must win).
pub fn maxpool_fwd_case_with(
    gpu: &Gpu,
    s: Pool2dShape,
    seed: u64,
    values: Values,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let x = match values {
        Values::Unit => distinct(&mut rng, s.x_len()),
        Values::Scaled(f) => distinct(&mut rng, s.x_len()).iter().map(|&v| (v as f64 * f) as f32).collect(),
        Values::Extreme { .. } => values.draw(&mut rng, s.x_len()),
    };
    let tx = up(gpu, &x)?;
    let ty = poisoned(gpu, s.y_len(), DType::F32)?;
    let tidx = poisoned(gpu, s.y_len(), DType::I32)?;
    let d = kernels::pool::maxpool_forward(gpu, &s, &tx, &ty, &tidx)?;
    gpu.run(&[&d])?;
    let (got, got_idx) = (gpu.download::<f32>(&ty)?, gpu.download::<i32>(&tidx)?);
    let mut want = vec![0.0; s.y_len()];
    let mut want_idx = vec![0; s.y_len()];
    cpu::maxpool_forward(&s, &widen(&x), &mut want, &mut want_idx);
    Ok(Comparison::new("maxpool fwd", format!("{s}{}", values_note(values)), tol::MAXPOOL)
        .floats("y", &got, &want, 1)
        .ints("argmax", &got_idx, &want_idx)
        .finish())
}

/// Max-pool backward of one kernel variant; the argmax indices come from the reference forward on
/// tie-free inputs.
pub fn maxpool_bwd_case_variant(
    gpu: &Gpu,
    s: Pool2dShape,
    variant: kernels::pool::MaxPoolBwdVariant,
    seed: u64,
) -> Result<CaseReport, GpuError> {
    maxpool_bwd_case_full(gpu, s, seed, 1.0, variant)
}

/// [`maxpool_bwd_case_variant`] with dy uniform in [-scale, scale).
pub fn maxpool_bwd_case_full(
    gpu: &Gpu,
    s: Pool2dShape,
    seed: u64,
    scale: f64,
    variant: kernels::pool::MaxPoolBwdVariant,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let x = distinct(&mut rng, s.x_len());
    let dy = rng.vec_scaled(s.y_len(), scale);
    let mut y = vec![0.0f32; s.y_len()];
    let mut idx = vec![0; s.y_len()];
    cpu::maxpool_forward(&s, &x, &mut y, &mut idx);
    let (tdy, tidx) = (up(gpu, &dy)?, up_i32(gpu, &idx)?);
    let tdx = poisoned(gpu, s.x_len(), DType::F32)?;
    let ops = kernels::pool::maxpool_backward(gpu, &s, &tdy, &tidx, &tdx, variant)?;
    gpu.run(&ops.iter().collect::<Vec<_>>())?;
    let got = gpu.download::<f32>(&tdx)?;
    let mut want = vec![0.0; s.x_len()];
    cpu::maxpool_backward(&s, &widen(&dy), &idx, &mut want);
    let overlap = s.kh.div_ceil(s.sy) * s.kw.div_ceil(s.sx);
    let shape = format!("{s}{}", scale_note(&[scale]));
    Ok(Comparison::new(&format!("maxpool bwd {}", variant.name()), shape, tol::MAXPOOL.scaled(scale))
        .floats("dx", &got, &want, overlap)
        .finish())
}

pub fn avgpool_fwd_case(gpu: &Gpu, s: Pool2dShape, seed: u64) -> Result<CaseReport, GpuError> {
    avgpool_fwd_case_scaled(gpu, s, seed, 1.0)
}

/// [`avgpool_fwd_case`] with x uniform in [-scale, scale).
pub fn avgpool_fwd_case_scaled(
    gpu: &Gpu,
    s: Pool2dShape,
    seed: u64,
    scale: f64,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let x = rng.vec_scaled(s.x_len(), scale);
    let tx = up(gpu, &x)?;
    let ty = poisoned(gpu, s.y_len(), DType::F32)?;
    let d = kernels::pool::avgpool_forward(gpu, &s, &tx, &ty)?;
    gpu.run(&[&d])?;
    let got = gpu.download::<f32>(&ty)?;
    let mut want = vec![0.0; s.y_len()];
    cpu::avgpool_forward(&s, &widen(&x), &mut want);
    let shape = format!("{s}{}", scale_note(&[scale]));
    Ok(Comparison::new("avgpool fwd", shape, tol::AVGPOOL.scaled(scale))
        .floats("y", &got, &want, s.kh * s.kw)
        .finish())
}

/// Average-pool backward of one kernel variant.
pub fn avgpool_bwd_case_variant(
    gpu: &Gpu,
    s: Pool2dShape,
    variant: kernels::pool::PoolBwdVariant,
    seed: u64,
) -> Result<CaseReport, GpuError> {
    avgpool_bwd_case_full(gpu, s, seed, 1.0, variant)
}

/// [`avgpool_bwd_case_variant`] with dy uniform in [-scale, scale).
pub fn avgpool_bwd_case_full(
    gpu: &Gpu,
    s: Pool2dShape,
    seed: u64,
    scale: f64,
    variant: kernels::pool::PoolBwdVariant,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let dy = rng.vec_scaled(s.y_len(), scale);
    let tdy = up(gpu, &dy)?;
    let tdx = poisoned(gpu, s.x_len(), DType::F32)?;
    let ops = kernels::pool::avgpool_backward(gpu, &s, &tdy, &tdx, variant)?;
    gpu.run(&ops.iter().collect::<Vec<_>>())?;
    let got = gpu.download::<f32>(&tdx)?;
    let mut want = vec![0.0; s.x_len()];
    cpu::avgpool_backward(&s, &widen(&dy), &mut want);
    let overlap = s.kh.div_ceil(s.sy) * s.kw.div_ceil(s.sx);
    let shape = format!("{s}{}", scale_note(&[scale]));
    Ok(Comparison::new(&format!("avgpool bwd {}", variant.name()), shape, tol::AVGPOOL.scaled(scale))
        .floats("dx", &got, &want, overlap)
        .finish())
}

// ------------------------------------------------------------------------------------ activation

/// Random values with every seventh one an exact zero (the ReLU's kink).
fn with_zeros(rng: &mut Rng, n: usize, values: Values) -> Vec<f32> {
    let mut v = values.draw(rng, n);
    for x in v.iter_mut().step_by(7) {
        *x = 0.0;
    }
    v
}

pub fn relu_fwd_case(gpu: &Gpu, n: usize, seed: u64) -> Result<CaseReport, GpuError> {
    relu_fwd_case_with(gpu, n, seed, Values::Unit)
}

/// [`relu_fwd_case`] on `values` (every seventh still an exact zero).
pub fn relu_fwd_case_with(gpu: &Gpu, n: usize, seed: u64, values: Values) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let x = with_zeros(&mut rng, n, values);
    let tx = up(gpu, &x)?;
    let ty = poisoned(gpu, n, DType::F32)?;
    let d = kernels::activation::relu_forward(gpu, &tx, &ty)?;
    gpu.run(&[&d])?;
    let got = gpu.download::<f32>(&ty)?;
    let mut want = vec![0.0; n];
    cpu::relu_forward(&widen(&x), &mut want);
    Ok(Comparison::new("relu fwd", format!("n{n}{}", values_note(values)), tol::ELEMENTWISE)
        .floats("y", &got, &want, 1)
        .finish())
}

pub fn relu_bwd_case(gpu: &Gpu, n: usize, seed: u64) -> Result<CaseReport, GpuError> {
    relu_bwd_case_with(gpu, n, seed, Values::Unit)
}

/// [`relu_bwd_case`] with the forward input and dy drawn from `values`.
pub fn relu_bwd_case_with(gpu: &Gpu, n: usize, seed: u64, values: Values) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let x = with_zeros(&mut rng, n, values);
    let y: Vec<f32> = x.iter().map(|&v| v.max(0.0)).collect();
    let dy = values.draw(&mut rng, n);
    let (ty, tdy) = (up(gpu, &y)?, up(gpu, &dy)?);
    let tdx = poisoned(gpu, n, DType::F32)?;
    let d = kernels::activation::relu_backward(gpu, &ty, &tdy, &tdx)?;
    gpu.run(&[&d])?;
    let got = gpu.download::<f32>(&tdx)?;
    let mut want = vec![0.0; n];
    cpu::relu_backward(&widen(&y), &widen(&dy), &mut want);
    Ok(Comparison::new("relu bwd", format!("n{n}{}", values_note(values)), tol::ELEMENTWISE)
        .floats("dx", &got, &want, 1)
        .finish())
}

/// Dropout forward (or, with `backward`, the same mask applied to a gradient).
pub fn dropout_case(
    gpu: &Gpu,
    n: usize,
    p: f32,
    seed: u32,
    step: u32,
    backward: bool,
) -> Result<CaseReport, GpuError> {
    dropout_case_with(gpu, n, p, seed, step, backward, Values::Unit)
}

/// [`dropout_case`] on `values`.
pub fn dropout_case_with(
    gpu: &Gpu,
    n: usize,
    p: f32,
    seed: u32,
    step: u32,
    backward: bool,
    values: Values,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed as u64 ^ ((step as u64) << 32));
    let x = values.draw(&mut rng, n);
    let tx = up(gpu, &x)?;
    let ty = poisoned(gpu, n, DType::F32)?;
    let d = if backward {
        kernels::activation::dropout_backward(gpu, &tx, &ty, p, seed, step)?
    } else {
        kernels::activation::dropout_forward(gpu, &tx, &ty, p, seed, step)?
    };
    gpu.run(&[&d])?;
    let got = gpu.download::<f32>(&ty)?;
    let mut want = vec![0.0; n];
    if backward {
        cpu::dropout_backward(&widen(&x), &mut want, p, seed, step);
    } else {
        cpu::dropout_forward(&widen(&x), &mut want, p, seed, step);
    }
    let kernel = if backward { "dropout bwd" } else { "dropout fwd" };
    let shape = format!("n{n} p{p} seed{seed} step{step} scale{}{}", dropout_scale(p), values_note(values));
    Ok(Comparison::new(kernel, shape, tol::ELEMENTWISE).floats("y", &got, &want, 1).finish())
}

// ------------------------------------------------------------------------------------------ loss

/// Softmax cross-entropy on logits uniform in [-scale, scale) (scale 80 probes overflow).
pub fn softmax_case(gpu: &Gpu, n: usize, k: usize, scale: f64, seed: u64) -> Result<CaseReport, GpuError> {
    softmax_case_with(gpu, n, k, Values::Scaled(scale), seed)
}

/// Softmax cross-entropy on logits drawn from `values` (`Extreme { limit: 80.0, .. }` puts exact
/// ±80 next to zeros and tiny logits); the allowance's absolute term grows with their magnitude.
pub fn softmax_case_with(
    gpu: &Gpu,
    n: usize,
    k: usize,
    values: Values,
    seed: u64,
) -> Result<CaseReport, GpuError> {
    let scale = values.magnitude();
    let mut rng = Rng::new(seed);
    let z = values.draw(&mut rng, n * k);
    let y = labels(&mut rng, n, k);
    let (tz, ty) = (up(gpu, &z)?, up_i32(gpu, &y)?);
    let tloss = poisoned(gpu, n, DType::F32)?;
    let tgrad = poisoned(gpu, n * k, DType::F32)?;
    let inv_n = 1.0 / n as f64;
    let d = kernels::loss::softmax_xent(gpu, n, k, &tz, &ty, inv_n, &tloss, &tgrad)?;
    gpu.run(&[&d])?;
    let (got_loss, got_grad) = (gpu.download::<f32>(&tloss)?, gpu.download::<f32>(&tgrad)?);
    let mut loss = vec![0.0; n];
    let mut grad = vec![0.0; n * k];
    // The kernel receives the scale as f32; the reference uses the same value.
    cpu::softmax_xent(n, k, &widen(&z), &y, inv_n as f32 as f64, &mut loss, &mut grad);
    // The row loss is ~scale·|logits| in size: its allowance grows with the logits' magnitude.
    let tol = tol::SOFTMAX.scaled(scale.max(1.0));
    let shape = match values {
        Values::Scaled(_) => format!("n{n} k{k} logits±{scale}"),
        _ => format!("n{n} k{k} logits {values}"),
    };
    Ok(Comparison::new("softmax_xent fwd+bwd", shape, tol)
        .floats("loss", &got_loss, &loss, k)
        .floats("grad", &got_grad, &grad, 1)
        .finish())
}

/// The squared hinge with SVM constant `c` (scale C/N).
pub fn l2svm_case(gpu: &Gpu, n: usize, k: usize, c: f64, seed: u64) -> Result<CaseReport, GpuError> {
    l2svm_case_with(gpu, n, k, c, seed, Values::Scaled(2.0))
}

/// [`l2svm_case`] on scores drawn from `values` (the loss sums non-negative terms, so its relative
/// tolerance holds at any magnitude whose square stays finite in f32: |score| <= 1e15 or so).
/// Beyond the default's scores on the margin, any other distribution also puts every fourth row
/// exactly on it (t·a = 1 for every class: zero loss and gradient) and scatters scores one ulp
/// either side of ±1.
pub fn l2svm_case_with(
    gpu: &Gpu,
    n: usize,
    k: usize,
    c: f64,
    seed: u64,
    values: Values,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let mut a = values.draw(&mut rng, n * k);
    // Put some scores exactly on the margin (1 - t·a = 0) to pin the kink's behaviour.
    for v in a.iter_mut().step_by(5) {
        *v = if rng.below(2) == 0 { 1.0 } else { -1.0 };
    }
    let y = labels(&mut rng, n, k);
    if values != Values::Scaled(2.0) {
        let near = [1.0 + f32::EPSILON, 1.0 - f32::EPSILON / 2.0];
        for v in a.iter_mut().skip(2).step_by(11) {
            *v = near[rng.below(2)] * if rng.below(2) == 0 { 1.0 } else { -1.0 };
        }
        for r in (0..n).step_by(4) {
            for j in 0..k {
                a[r * k + j] = if y[r] == j as i32 { 1.0 } else { -1.0 };
            }
        }
    }
    let (ta, ty) = (up(gpu, &a)?, up_i32(gpu, &y)?);
    let tloss = poisoned(gpu, n, DType::F32)?;
    let tgrad = poisoned(gpu, n * k, DType::F32)?;
    let scale = c / n as f64;
    let d = kernels::loss::l2svm(gpu, n, k, &ta, &ty, scale, &tloss, &tgrad)?;
    gpu.run(&[&d])?;
    let (got_loss, got_grad) = (gpu.download::<f32>(&tloss)?, gpu.download::<f32>(&tgrad)?);
    let mut loss = vec![0.0; n];
    let mut grad = vec![0.0; n * k];
    cpu::l2svm(n, k, &widen(&a), &y, scale as f32 as f64, &mut loss, &mut grad);
    let shape = match values {
        Values::Scaled(2.0) => format!("n{n} k{k} C{c}"),
        _ => format!("n{n} k{k} C{c} scores {values}"),
    };
    Ok(Comparison::new("l2svm fwd+bwd", shape, tol::L2SVM)
        .floats("loss", &got_loss, &loss, k)
        .floats("grad", &got_grad, &grad, 1)
        .finish())
}

// ----------------------------------------------------------------------------------------- optim

pub fn sgd_case(
    gpu: &Gpu,
    n: usize,
    lr: f32,
    momentum: f32,
    wd: f32,
    seed: u64,
) -> Result<CaseReport, GpuError> {
    sgd_case_scaled(gpu, n, lr, momentum, wd, seed, 1.0)
}

/// [`sgd_case`] with weights and gradients uniform in [-scale, scale) (velocities a tenth of that).
#[allow(clippy::too_many_arguments)]
pub fn sgd_case_scaled(
    gpu: &Gpu,
    n: usize,
    lr: f32,
    momentum: f32,
    wd: f32,
    seed: u64,
    scale: f64,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let (w, v, g) = (rng.vec_scaled(n, scale), rng.vec_scaled(n, 0.1 * scale), rng.vec_scaled(n, scale));
    let (tw, tv, tg) = (up(gpu, &w)?, up(gpu, &v)?, up(gpu, &g)?);
    let d = kernels::optim::sgd_momentum(gpu, &tw, &tv, &tg, lr, momentum, wd)?;
    gpu.run(&[&d])?;
    let (got_w, got_v) = (gpu.download::<f32>(&tw)?, gpu.download::<f32>(&tv)?);
    let (mut want_w, mut want_v) = (widen(&w), widen(&v));
    cpu::sgd_momentum(&mut want_w, &mut want_v, &widen(&g), lr as f64, momentum as f64, wd as f64);
    let shape = format!("n{n} lr{lr} mom{momentum} wd{wd}{}", scale_note(&[scale]));
    Ok(Comparison::new("sgd_momentum update", shape, tol::SGD.scaled(scale))
        .floats("w", &got_w, &want_w, 1)
        .floats("v", &got_v, &want_v, 1)
        .finish())
}

// ---------------------------------------------------------------------------------------- reduce

pub fn sum_case(gpu: &Gpu, n: usize, accumulate: bool, seed: u64) -> Result<CaseReport, GpuError> {
    sum_case_scaled(gpu, n, accumulate, seed, 1.0)
}

/// [`sum_case`] with x (and the accumulated prior) uniform in [-scale, scale).
pub fn sum_case_scaled(
    gpu: &Gpu,
    n: usize,
    accumulate: bool,
    seed: u64,
    scale: f64,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let x = rng.vec_scaled(n, scale);
    let prior = rng.vec_scaled(1, scale);
    let tx = up(gpu, &x)?;
    let tout = if accumulate { up(gpu, &prior)? } else { poisoned(gpu, 1, DType::F32)? };
    let d = kernels::reduce::sum_all(gpu, &tx, &tout, accumulate)?;
    gpu.run(&[&d])?;
    let got = gpu.download::<f32>(&tout)?;
    let want = [cpu::sum(&widen(&x)) + if accumulate { prior[0] as f64 } else { 0.0 }];
    let flags = Flags { accumulate, ..Flags::NONE };
    Ok(Comparison::new(
        "sum",
        format!("n{n}{}{}", flags.suffix(), scale_note(&[scale])),
        tol::REDUCE.scaled(scale),
    )
    .floats("sum", &got, &want, n)
    .finish())
}

pub fn channel_sum_case(
    gpu: &Gpu,
    outer: usize,
    c: usize,
    inner: usize,
    accumulate: bool,
    seed: u64,
) -> Result<CaseReport, GpuError> {
    channel_sum_case_scaled(gpu, outer, c, inner, accumulate, seed, 1.0)
}

/// [`channel_sum_case`] with x (and the accumulated prior) uniform in [-scale, scale).
pub fn channel_sum_case_scaled(
    gpu: &Gpu,
    outer: usize,
    c: usize,
    inner: usize,
    accumulate: bool,
    seed: u64,
    scale: f64,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let x = rng.vec_scaled(outer * c * inner, scale);
    let out0 = rng.vec_scaled(c, scale);
    let tx = up(gpu, &x)?;
    let tout = if accumulate { up(gpu, &out0)? } else { poisoned(gpu, c, DType::F32)? };
    let d = kernels::reduce::channel_sum(gpu, outer, c, inner, &tx, &tout, accumulate)?;
    gpu.run(&[&d])?;
    let got = gpu.download::<f32>(&tout)?;
    let mut want = widen(&out0);
    cpu::channel_sum(outer, c, inner, &widen(&x), &mut want, accumulate);
    let flags = Flags { accumulate, ..Flags::NONE };
    let shape = format!("[{outer}, {c}, {inner}]{}{}", flags.suffix(), scale_note(&[scale]));
    Ok(Comparison::new("channel_sum", shape, tol::REDUCE.scaled(scale))
        .floats("out", &got, &want, outer * inner)
        .finish())
}

/// Scores with ties in some rows (the first maximum must win).
fn scores_with_ties(rng: &mut Rng, n: usize, k: usize, values: Values) -> Vec<f32> {
    let mut x = values.draw(rng, n * k);
    for r in (0..n).step_by(3) {
        let row = &mut x[r * k..(r + 1) * k];
        let m = row.iter().cloned().fold(f32::MIN, f32::max);
        let last = k - 1;
        row[last] = m;
    }
    x
}

pub fn argmax_case(gpu: &Gpu, n: usize, k: usize, seed: u64) -> Result<CaseReport, GpuError> {
    argmax_case_with(gpu, n, k, seed, Values::Unit)
}

/// [`argmax_case`] on scores drawn from `values` (ties still in every third row).
pub fn argmax_case_with(
    gpu: &Gpu,
    n: usize,
    k: usize,
    seed: u64,
    values: Values,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let x = scores_with_ties(&mut rng, n, k, values);
    let tx = up(gpu, &x)?;
    let tout = poisoned(gpu, n, DType::I32)?;
    let d = kernels::reduce::argmax_rows(gpu, n, k, &tx, &tout)?;
    gpu.run(&[&d])?;
    let got = gpu.download::<i32>(&tout)?;
    let mut want = vec![0; n];
    cpu::argmax_rows(n, k, &x, &mut want);
    Ok(Comparison::new("argmax_rows", format!("n{n} k{k}{}", values_note(values)), tol::REDUCE)
        .ints("argmax", &got, &want)
        .finish())
}

pub fn count_correct_case(
    gpu: &Gpu,
    n: usize,
    k: usize,
    accumulate: bool,
    seed: u64,
) -> Result<CaseReport, GpuError> {
    let mut rng = Rng::new(seed);
    let y = labels(&mut rng, n, k);
    // Predictions right about half the time.
    let pred: Vec<i32> =
        y.iter().map(|&l| if l >= 0 && rng.below(2) == 0 { l } else { rng.below(k) as i32 }).collect();
    let (tp, ty) = (up_i32(gpu, &pred)?, up_i32(gpu, &y)?);
    let prior = 1000u32;
    let tout = if accumulate { gpu.upload(&[prior], &[1])? } else { poisoned(gpu, 1, DType::U32)? };
    let d = kernels::reduce::count_correct(gpu, &tp, &ty, &tout, accumulate)?;
    gpu.run(&[&d])?;
    let got = gpu.download::<u32>(&tout)?;
    let want = cpu::count_correct(&pred, &y) + if accumulate { prior } else { 0 };
    let flags = Flags { accumulate, ..Flags::NONE };
    Ok(Comparison::new("count_correct", format!("n{n} k{k}{}", flags.suffix()), tol::REDUCE)
        .ints("count", &[got[0] as i32], &[want as i32])
        .finish())
}
