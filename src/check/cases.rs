//! One function per kernel and direction: seeded inputs, the GPU run, the f64 CPU reference on the
//! same inputs, and the element-by-element comparison against the kernel's written tolerance.
//! Every case takes an [`Input`]: its seed and how it draws its operands (the unit range the
//! tolerances are written for, another scale, or extreme values for the stress test).

use super::tolerance as tol;
use super::{widen, CaseFuture, Comparison};
use crate::cpu;
use crate::gpu::{DType, Dispatch, Element, Gpu, GpuError, Tensor};
use crate::kernels::conv::{ConvBwdDataVariant, ConvBwdWeightVariant, ConvFwdVariant};
use crate::kernels::registry::FamilyVariant;
use crate::kernels::{self, gemm::GemmVariant, Epilogue};
use crate::kernels::{
    pool::{PoolBwdVariant, PoolFwdVariant},
    reduce,
};
use crate::model::Top;
use crate::rng::Rng;
use crate::shapes::{dropout_scale, Conv2dShape, GemmShape, Pool2dShape};
use std::fmt;

fn up<T: Element>(gpu: &Gpu, v: &[T]) -> Result<Tensor, GpuError> {
    gpu.upload(v, &[v.len()])
}

/// An output tensor filled with NaN, so unwritten elements cannot pass.
fn poisoned(gpu: &Gpu, len: usize, dtype: DType) -> Result<Tensor, GpuError> {
    let t = gpu.empty(&[len], dtype)?;
    gpu.poison(&t);
    Ok(t)
}

/// The output tensor of a kernel that may add to it: `prior` with `accumulate`, else poisoned.
fn output(gpu: &Gpu, prior: &[f32], accumulate: bool) -> Result<Tensor, GpuError> {
    if accumulate {
        up(gpu, prior)
    } else {
        poisoned(gpu, prior.len(), DType::F32)
    }
}

/// Labels in [0, k) with about one row in eight masked (-1); row 0 is never masked.
fn labels(rng: &mut Rng, n: usize, k: usize) -> Vec<i32> {
    (0..n).map(|i| if i > 0 && rng.below(8) == 0 { -1 } else { rng.below(k) as i32 }).collect()
}

/// How a case draws its random float inputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Values {
    /// Uniform in [-1, 1): what the tolerances are written for.
    Unit,
    /// Uniform in [-s, s). Cases that sum or combine several inputs compare with
    /// [`super::Tol::scaled`] by the output's scale.
    Scaled(f64),
    /// Uniform over the five levels -1, -1/2, 0, 1/2, 1: every window, row or plane holds ties.
    Ties,
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
            Values::Ties => (0..len).map(|_| rng.below(5) as f32 * 0.5 - 1.0).collect(),
            Values::Extreme { limit, subnormals } => {
                (0..len).map(|_| extreme(rng, limit, subnormals)).collect()
            }
        }
    }

    /// The size of the largest values drawn (1 for [`Values::Unit`]).
    pub fn magnitude(&self) -> f64 {
        match *self {
            Values::Unit | Values::Ties => 1.0,
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
            Values::Ties => write!(f, "ties"),
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

/// A case's inputs: the seed of its generator and the distributions of its first operand (A, x,
/// dy, scores, ...) and of its second (B, the weights, ...; cases with one operand ignore it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Input {
    pub seed: u64,
    pub a: Values,
    pub b: Values,
}

impl Input {
    /// Unit-range operands: what the tolerances are written for.
    pub const fn unit(seed: u64) -> Input {
        Input { seed, a: Values::Unit, b: Values::Unit }
    }
    /// Operands uniform in [-sa, sa) and [-sb, sb).
    pub const fn scaled(seed: u64, sa: f64, sb: f64) -> Input {
        Input { seed, a: Values::Scaled(sa), b: Values::Scaled(sb) }
    }
    /// Every operand drawn from `v`.
    pub const fn values(seed: u64, v: Values) -> Input {
        Input { seed, a: v, b: v }
    }
    /// The scale of a product of the two operands.
    fn product(&self) -> f64 {
        self.a.magnitude() * self.b.magnitude()
    }
    /// ` x1e30/1e-30` or ` extreme<=...` for a shape description; empty for unit inputs, so those
    /// reports read plainly.
    fn note(&self, operands: usize) -> String {
        let vals = if operands == 1 { vec![self.a] } else { vec![self.a, self.b] };
        if vals.iter().all(|v| *v == Values::Unit || *v == Values::Scaled(1.0)) {
            return String::new();
        }
        if vals.iter().all(|v| matches!(v, Values::Scaled(_) | Values::Unit)) {
            let s: Vec<String> = vals.iter().map(|v| format!("{:e}", v.magnitude())).collect();
            return format!(" x{}", s.join("/"));
        }
        let s: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
        format!(" {}", s.join("/"))
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

/// Moves the largest element of every third row (starting with row 1) to the row's last column,
/// so the maximum sits in the last place a row loop visits.
fn max_last(x: &mut [f32], n: usize, k: usize) {
    for r in (1..n).step_by(3) {
        let row = &mut x[r * k..(r + 1) * k];
        let m = (0..k).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        row.swap(m, k - 1);
    }
}

// ------------------------------------------------------------------------------------------ GEMM

/// `gemm_<trans>` with `variant` on shape `s`: A from `input.a`, B from `input.b`, the bias and
/// the accumulated C at their product's scale.
pub fn gemm_case(
    gpu: &Gpu,
    s: GemmShape,
    variant: GemmVariant,
    flags: Flags,
    input: Input,
) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let scale_c = input.product();
        let a = input.a.draw(&mut rng, s.a_len());
        let b = input.b.draw(&mut rng, s.b_len());
        let bias = rng.vec_scaled(s.n, scale_c);
        let c0 = rng.vec_scaled(s.c_len(), scale_c);
        let (ta, tb, tbias) = (up(gpu, &a)?, up(gpu, &b)?, up(gpu, &bias)?);
        let tc = output(gpu, &c0, flags.accumulate)?;
        let ep =
            Epilogue { bias: flags.bias.then_some(&tbias), accumulate: flags.accumulate, relu: flags.relu };
        let d = kernels::gemm::gemm(gpu, &s, &ta, &tb, &tc, &ep, variant)?;
        gpu.run(&d.iter().collect::<Vec<_>>())?;
        let got = gpu.download_async::<f32>(&tc).await?;
        let mut want = widen(&c0);
        let bias64 = widen(&bias);
        let bias_ref = flags.bias.then_some(&bias64[..]);
        cpu::gemm(&s, &widen(&a), &widen(&b), bias_ref, &mut want, flags.accumulate, flags.relu);
        let kernel = format!("gemm_{} {}", s.trans.name(), variant.name());
        let shape = format!("{s}{}{}", flags.suffix(), input.note(2));
        Ok(Comparison::new(&kernel, shape, tol::GEMM.scaled(scale_c)).floats("C", &got, &want, s.k).finish())
    })
}

// ------------------------------------------------------------------------------------------ conv

/// Conv forward with `variant` (x from `input.a`, the weights from `input.b`, the bias at their
/// product's scale); `flags.accumulate` is not supported by the forward.
pub fn conv_fwd_case(
    gpu: &Gpu,
    s: Conv2dShape,
    variant: ConvFwdVariant,
    flags: Flags,
    input: Input,
) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let x = input.a.draw(&mut rng, s.x_len());
        let w = input.b.draw(&mut rng, s.w_len());
        let bias = rng.vec_scaled(s.cout, input.product());
        let (tx, tw, tbias) = (up(gpu, &x)?, up(gpu, &w)?, up(gpu, &bias)?);
        let ty = poisoned(gpu, s.y_len(), DType::F32)?;
        let ep = Epilogue { bias: flags.bias.then_some(&tbias), accumulate: false, relu: flags.relu };
        let d = kernels::conv::conv2d_forward(gpu, &s, &tx, &tw, &ty, &ep, variant)?;
        gpu.run(&[&d])?;
        let got = gpu.download_async::<f32>(&ty).await?;
        let mut want = vec![0.0; s.y_len()];
        let bias64 = widen(&bias);
        cpu::conv2d_forward(
            &s,
            &widen(&x),
            &widen(&w),
            flags.bias.then_some(&bias64[..]),
            &mut want,
            flags.relu,
        );
        let kernel = format!("conv2d fwd {}", variant.name());
        let shape = format!("{s}{}{}", flags.suffix(), input.note(2));
        Ok(Comparison::new(&kernel, shape, tol::CONV.scaled(input.product()))
            .floats("y", &got, &want, s.cin * s.kh * s.kw)
            .finish())
    })
}

/// Conv backward data: dy from `input.a`, the weights from `input.b`.
pub fn conv_bwd_data_case(
    gpu: &Gpu,
    s: Conv2dShape,
    variant: ConvBwdDataVariant,
    input: Input,
) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let dy = input.a.draw(&mut rng, s.y_len());
        let w = input.b.draw(&mut rng, s.w_len());
        let (tdy, tw) = (up(gpu, &dy)?, up(gpu, &w)?);
        let tdx = poisoned(gpu, s.x_len(), DType::F32)?;
        let ops = kernels::conv::conv2d_backward_data(gpu, &s, &tdy, &tw, &tdx, variant)?;
        gpu.run(&ops.iter().collect::<Vec<_>>())?;
        let got = gpu.download_async::<f32>(&tdx).await?;
        let mut want = vec![0.0; s.x_len()];
        cpu::conv2d_backward_data(&s, &widen(&dy), &widen(&w), &mut want);
        let shape = format!("{s}{}", input.note(2));
        Ok(Comparison::new("conv2d bwd_data", shape, tol::CONV.scaled(input.product()))
            .floats("dx", &got, &want, s.cout * s.kh * s.kw)
            .finish())
    })
}

/// Conv backward weight with `variant`: x from `input.a`, dy from `input.b`, the accumulated dw
/// at their product's scale.
pub fn conv_bwd_weight_case(
    gpu: &Gpu,
    s: Conv2dShape,
    variant: ConvBwdWeightVariant,
    accumulate: bool,
    input: Input,
) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let x = input.a.draw(&mut rng, s.x_len());
        let dy = input.b.draw(&mut rng, s.y_len());
        let dw0 = rng.vec_scaled(s.w_len(), input.product());
        let (tx, tdy) = (up(gpu, &x)?, up(gpu, &dy)?);
        let tdw = output(gpu, &dw0, accumulate)?;
        let ops = kernels::conv::conv2d_backward_weight(gpu, &s, &tx, &tdy, &tdw, accumulate, variant)?;
        gpu.run(&ops.iter().collect::<Vec<_>>())?;
        let got = gpu.download_async::<f32>(&tdw).await?;
        let mut want = widen(&dw0);
        cpu::conv2d_backward_weight(&s, &widen(&x), &widen(&dy), &mut want, accumulate);
        let flags = Flags { accumulate, ..Flags::NONE };
        let shape = format!("{s}{}{}", flags.suffix(), input.note(2));
        Ok(Comparison::new(
            &format!("conv2d bwd_weight {}", variant.name()),
            shape,
            tol::CONV.scaled(input.product()),
        )
        .floats("dw", &got, &want, s.n * s.oh() * s.ow())
        .finish())
    })
}

/// The conv bias gradient: `channel_sum` over dy `[n, cout, oh*ow]` from `input.a`.
pub fn conv_bwd_bias_case(gpu: &Gpu, s: Conv2dShape, accumulate: bool, input: Input) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut r = channel_sum_case(gpu, s.n, s.cout, s.oh() * s.ow(), accumulate, input).await?;
        r.kernel = "conv2d bwd_bias".into();
        let flags = Flags { accumulate, ..Flags::NONE };
        r.shape = format!("{s}{}{}", flags.suffix(), input.note(1));
        Ok(r)
    })
}

// ------------------------------------------------------------------------------------------ pool

/// Distinct values (no ties) so the argmax is unambiguous: a random permutation of a grid in
/// [-1, 1).
fn distinct(rng: &mut Rng, len: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..len).map(|i| (i as f32 + 0.5) / len as f32 * 2.0 - 1.0).collect();
    rng.shuffle(&mut v);
    v
}

/// Max-pool inputs: [`Values::Unit`] and [`Values::Scaled`] give the tie-free grid (times the
/// scale); [`Values::Ties`] and [`Values::Extreme`] are drawn as they come, ties included (the
/// first maximum must win).
fn pool_input(rng: &mut Rng, len: usize, values: Values) -> Vec<f32> {
    match values {
        Values::Unit => distinct(rng, len),
        Values::Scaled(f) => distinct(rng, len).iter().map(|&v| (v as f64 * f) as f32).collect(),
        Values::Ties | Values::Extreme { .. } => values.draw(rng, len),
    }
}

/// Max-pool forward on x from `input.a` (see [`pool_input`]): the values and the argmax indices.
pub fn maxpool_fwd_case(gpu: &Gpu, s: Pool2dShape, variant: PoolFwdVariant, input: Input) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let x = pool_input(&mut rng, s.x_len(), input.a);
        let tx = up(gpu, &x)?;
        let ty = poisoned(gpu, s.y_len(), DType::F32)?;
        let tidx = poisoned(gpu, s.y_len(), DType::I32)?;
        let d = kernels::pool::maxpool_forward(gpu, &s, &tx, &ty, &tidx, variant)?;
        gpu.run(&[&d])?;
        let (got, got_idx) = (gpu.download_async::<f32>(&ty).await?, gpu.download_async::<i32>(&tidx).await?);
        let mut want = vec![0.0; s.y_len()];
        let mut want_idx = vec![0; s.y_len()];
        cpu::maxpool_forward(&s, &widen(&x), &mut want, &mut want_idx);
        let kernel = format!("maxpool fwd {}", variant.name());
        Ok(Comparison::new(&kernel, format!("{s}{}", input.note(1)), tol::MAXPOOL)
            .floats("y", &got, &want, 1)
            .ints("argmax", &got_idx, &want_idx)
            .finish())
    })
}

/// Max-pool backward of `variant`: the argmax indices come from the reference forward on x drawn
/// like [`maxpool_fwd_case`]'s from `input.a` (ties included with [`Values::Ties`]), dy from
/// `input.b`.
pub fn maxpool_bwd_case(gpu: &Gpu, s: Pool2dShape, variant: PoolBwdVariant, input: Input) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let x = pool_input(&mut rng, s.x_len(), input.a);
        let dy = input.b.draw(&mut rng, s.y_len());
        let mut y = vec![0.0f32; s.y_len()];
        let mut idx = vec![0; s.y_len()];
        cpu::maxpool_forward(&s, &x, &mut y, &mut idx);
        let (tdy, tidx) = (up(gpu, &dy)?, up(gpu, &idx)?);
        let tdx = poisoned(gpu, s.x_len(), DType::F32)?;
        let ops = kernels::pool::maxpool_backward(gpu, &s, &tdy, &tidx, &tdx, variant)?;
        gpu.run(&ops.iter().collect::<Vec<_>>())?;
        let got = gpu.download_async::<f32>(&tdx).await?;
        let mut want = vec![0.0; s.x_len()];
        cpu::maxpool_backward(&s, &widen(&dy), &idx, &mut want);
        let overlap = s.kh.div_ceil(s.sy) * s.kw.div_ceil(s.sx);
        let shape = format!("{s}{}", input.note(2));
        let tol = tol::MAXPOOL.scaled(input.b.magnitude());
        Ok(Comparison::new(&format!("maxpool bwd {}", variant.name()), shape, tol)
            .floats("dx", &got, &want, overlap)
            .finish())
    })
}

/// Average-pool forward on x from `input.a`.
pub fn avgpool_fwd_case(gpu: &Gpu, s: Pool2dShape, variant: PoolFwdVariant, input: Input) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let x = input.a.draw(&mut rng, s.x_len());
        let tx = up(gpu, &x)?;
        let ty = poisoned(gpu, s.y_len(), DType::F32)?;
        let d = kernels::pool::avgpool_forward(gpu, &s, &tx, &ty, variant)?;
        gpu.run(&[&d])?;
        let got = gpu.download_async::<f32>(&ty).await?;
        let mut want = vec![0.0; s.y_len()];
        cpu::avgpool_forward(&s, &widen(&x), &mut want);
        let shape = format!("{s}{}", input.note(1));
        let kernel = format!("avgpool fwd {}", variant.name());
        Ok(Comparison::new(&kernel, shape, tol::AVGPOOL.scaled(input.a.magnitude()))
            .floats("y", &got, &want, s.kh * s.kw)
            .finish())
    })
}

/// Average-pool backward of `variant` on dy from `input.a`.
pub fn avgpool_bwd_case(gpu: &Gpu, s: Pool2dShape, variant: PoolBwdVariant, input: Input) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let dy = input.a.draw(&mut rng, s.y_len());
        let tdy = up(gpu, &dy)?;
        let tdx = poisoned(gpu, s.x_len(), DType::F32)?;
        let ops = kernels::pool::avgpool_backward(gpu, &s, &tdy, &tdx, variant)?;
        gpu.run(&ops.iter().collect::<Vec<_>>())?;
        let got = gpu.download_async::<f32>(&tdx).await?;
        let mut want = vec![0.0; s.x_len()];
        cpu::avgpool_backward(&s, &widen(&dy), &mut want);
        let overlap = s.kh.div_ceil(s.sy) * s.kw.div_ceil(s.sx);
        let shape = format!("{s}{}", input.note(1));
        let tol = tol::AVGPOOL.scaled(input.a.magnitude());
        Ok(Comparison::new(&format!("avgpool bwd {}", variant.name()), shape, tol)
            .floats("dx", &got, &want, overlap)
            .finish())
    })
}

// ------------------------------------------------------------------------------------ activation

/// Values from `values` with every seventh one an exact zero (the ReLU's kink).
fn with_zeros(rng: &mut Rng, n: usize, values: Values) -> Vec<f32> {
    let mut v = values.draw(rng, n);
    for x in v.iter_mut().step_by(7) {
        *x = 0.0;
    }
    v
}

/// ReLU forward on x from `input.a` (every seventh an exact zero).
pub fn relu_fwd_case(gpu: &Gpu, n: usize, input: Input) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let x = with_zeros(&mut rng, n, input.a);
        let tx = up(gpu, &x)?;
        let ty = poisoned(gpu, n, DType::F32)?;
        let d = kernels::activation::relu_forward(gpu, &tx, &ty)?;
        gpu.run(&[&d])?;
        let got = gpu.download_async::<f32>(&ty).await?;
        let mut want = vec![0.0; n];
        cpu::relu_forward(&widen(&x), &mut want);
        Ok(Comparison::new("relu fwd", format!("n{n}{}", input.note(1)), tol::ELEMENTWISE)
            .floats("y", &got, &want, 1)
            .finish())
    })
}

/// ReLU backward: the forward input and dy both from `input.a`.
pub fn relu_bwd_case(gpu: &Gpu, n: usize, input: Input) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let x = with_zeros(&mut rng, n, input.a);
        let y: Vec<f32> = x.iter().map(|&v| v.max(0.0)).collect();
        let dy = input.a.draw(&mut rng, n);
        let (ty, tdy) = (up(gpu, &y)?, up(gpu, &dy)?);
        let tdx = poisoned(gpu, n, DType::F32)?;
        let d = kernels::activation::relu_backward(gpu, &ty, &tdy, &tdx)?;
        gpu.run(&[&d])?;
        let got = gpu.download_async::<f32>(&tdx).await?;
        let mut want = vec![0.0; n];
        cpu::relu_backward(&widen(&y), &widen(&dy), &mut want);
        Ok(Comparison::new("relu bwd", format!("n{n}{}", input.note(1)), tol::ELEMENTWISE)
            .floats("dx", &got, &want, 1)
            .finish())
    })
}

/// Dropout forward (or, with `backward`, the same mask applied to a gradient) with probability
/// `p` and the mask key `(seed, step)`, on values from `input.a`.
pub fn dropout_case(
    gpu: &Gpu,
    n: usize,
    p: f32,
    (seed, step): (u32, u32),
    backward: bool,
    input: Input,
) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let x = input.a.draw(&mut rng, n);
        let tx = up(gpu, &x)?;
        let ty = poisoned(gpu, n, DType::F32)?;
        let d = if backward {
            kernels::activation::dropout_backward(gpu, &tx, &ty, p, seed, step)?
        } else {
            kernels::activation::dropout_forward(gpu, &tx, &ty, p, seed, step)?
        };
        gpu.run(&[&d])?;
        let got = gpu.download_async::<f32>(&ty).await?;
        let mut want = vec![0.0; n];
        if backward {
            cpu::dropout_backward(&widen(&x), &mut want, p, seed, step);
        } else {
            cpu::dropout_forward(&widen(&x), &mut want, p, seed, step);
        }
        let kernel = if backward { "dropout bwd" } else { "dropout fwd" };
        let shape = format!("n{n} p{p} seed{seed} step{step} scale{}{}", dropout_scale(p), input.note(1));
        Ok(Comparison::new(kernel, shape, tol::ELEMENTWISE).floats("y", &got, &want, 1).finish())
    })
}

// ------------------------------------------------------------------------------------------ loss

/// Softmax cross-entropy (scale 1/n) on logits from `input.a` (`Scaled(80.0)` probes overflow,
/// `Extreme { limit: 80.0, .. }` puts exact ±80 next to zeros and tiny logits); every third row
/// (from row 1) has its largest logit last, every third (from row 2) a last logit of +magnitude
/// far above the rest (at -magnitude/2 and below): a kernel that leaves the last logit out of the
/// row maximum overflows there. The allowance's absolute term grows with the logits' magnitude.
pub fn softmax_case(gpu: &Gpu, n: usize, k: usize, input: Input) -> CaseFuture<'_> {
    Box::pin(async move {
        let scale = input.a.magnitude();
        let mut rng = Rng::new(input.seed);
        let mut z = input.a.draw(&mut rng, n * k);
        max_last(&mut z, n, k);
        for r in (2..n).step_by(3).filter(|_| k > 1) {
            for j in 0..k - 1 {
                z[r * k + j] = -(scale * rng.range(0.5, 1.0)) as f32;
            }
            z[r * k + k - 1] = scale as f32;
        }
        let y = labels(&mut rng, n, k);
        let (tz, ty) = (up(gpu, &z)?, up(gpu, &y)?);
        let tloss = poisoned(gpu, n, DType::F32)?;
        let tgrad = poisoned(gpu, n * k, DType::F32)?;
        let inv_n = 1.0 / n as f64;
        let d = kernels::loss::softmax_xent(gpu, n, k, &tz, &ty, inv_n, &tloss, &tgrad)?;
        gpu.run(&[&d])?;
        let (got_loss, got_grad) =
            (gpu.download_async::<f32>(&tloss).await?, gpu.download_async::<f32>(&tgrad).await?);
        let mut loss = vec![0.0; n];
        let mut grad = vec![0.0; n * k];
        // The kernel receives the scale as f32; the reference uses the same value.
        cpu::softmax_xent(n, k, &widen(&z), &y, inv_n as f32 as f64, &mut loss, &mut grad);
        // The row loss is ~scale·|logits| in size: its allowance grows with the logits' magnitude.
        let tol = tol::SOFTMAX.scaled(scale.max(1.0));
        let shape = match input.a {
            Values::Scaled(_) => format!("n{n} k{k} logits±{scale}"),
            v => format!("n{n} k{k} logits {v}"),
        };
        Ok(Comparison::new("softmax_xent fwd+bwd", shape, tol)
            .floats("loss", &got_loss, &loss, k)
            .floats("grad", &got_grad, &grad, 1)
            .finish())
    })
}

/// The squared hinge with SVM constant `c` (scale C/N) on scores from `input.a` (the loss sums
/// non-negative terms, so its relative tolerance holds at any magnitude whose square stays finite
/// in f32: |score| <= 1e15 or so). Every fifth score sits exactly on ±1, every eleventh one ulp
/// either side of ±1, every fourth row exactly on the margin for every class (t·a = 1: zero loss
/// and gradient), and every third row has its largest score last.
pub fn l2svm_case(gpu: &Gpu, n: usize, k: usize, c: f64, input: Input) -> CaseFuture<'_> {
    Box::pin(async move { hinge_case(gpu, Top::L2svm, n, k, c, input).await })
}

/// The hinge (L1-SVM) on the inputs of [`l2svm_case`]: scores on the kink t·a = 1 (gradient 0)
/// and one ulp either side of it (gradient ±C/N or 0) test the kink's side exactly.
pub fn l1svm_case(gpu: &Gpu, n: usize, k: usize, c: f64, input: Input) -> CaseFuture<'_> {
    Box::pin(async move { hinge_case(gpu, Top::L1svm, n, k, c, input).await })
}

fn hinge_case(gpu: &Gpu, top: Top, n: usize, k: usize, c: f64, input: Input) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let mut a = input.a.draw(&mut rng, n * k);
        max_last(&mut a, n, k);
        for v in a.iter_mut().step_by(5) {
            *v = if rng.below(2) == 0 { 1.0 } else { -1.0 };
        }
        let y = labels(&mut rng, n, k);
        let near = [1.0 + f32::EPSILON, 1.0 - f32::EPSILON / 2.0];
        for v in a.iter_mut().skip(2).step_by(11) {
            *v = near[rng.below(2)] * if rng.below(2) == 0 { 1.0 } else { -1.0 };
        }
        for r in (0..n).step_by(4) {
            for j in 0..k {
                a[r * k + j] = if y[r] == j as i32 { 1.0 } else { -1.0 };
            }
        }
        let (ta, ty) = (up(gpu, &a)?, up(gpu, &y)?);
        let tloss = poisoned(gpu, n, DType::F32)?;
        let tgrad = poisoned(gpu, n * k, DType::F32)?;
        let scale = c / n as f64;
        let (kernel, reference, name, tol): (KernelLoss, CpuLoss, _, _) = match top {
            Top::L1svm => (kernels::loss::l1svm, cpu::l1svm, "l1svm fwd+bwd", tol::L1SVM),
            _ => (kernels::loss::l2svm, cpu::l2svm, "l2svm fwd+bwd", tol::L2SVM),
        };
        let d = kernel(gpu, n, k, &ta, &ty, scale, &tloss, &tgrad)?;
        gpu.run(&[&d])?;
        let (got_loss, got_grad) =
            (gpu.download_async::<f32>(&tloss).await?, gpu.download_async::<f32>(&tgrad).await?);
        let mut loss = vec![0.0; n];
        let mut grad = vec![0.0; n * k];
        reference(n, k, &widen(&a), &y, scale as f32 as f64, &mut loss, &mut grad);
        let shape = format!("n{n} k{k} C{c} scores {}", input.a);
        Ok(Comparison::new(name, shape, tol)
            .floats("loss", &got_loss, &loss, k)
            .floats("grad", &got_grad, &grad, 1)
            .finish())
    })
}

/// A loss kernel's signature, and its CPU reference's.
type KernelLoss =
    fn(&Gpu, usize, usize, &Tensor, &Tensor, f64, &Tensor, &Tensor) -> Result<Dispatch, GpuError>;
type CpuLoss = fn(usize, usize, &[f64], &[i32], f64, &mut [f64], &mut [f64]);

// ------------------------------------------------------------------------------------------- pca

/// The PCA input stage: a fit of `k` components to `n` inputs of `d` values (coordinate j drawn
/// with spread 1 + j, so the variances are distinct, then mixed by a fixed rotation of pairs),
/// checked four ways against the CPU: the GPU covariance against the f64 one; the components
/// orthonormal (W·Wᵀ = I); each an eigenvector of the f64 covariance (C·v = (vᵀCv)·v, both
/// divided by the largest variance) whose variance vᵀCv is the next largest eigenvalue of the f64
/// covariance; and the projection of fresh inputs by the stage's GEMM
/// (as the network runs it) against the f64 projection.
pub fn pca_case(gpu: &Gpu, n: usize, d: usize, k: usize, seed: u64) -> CaseFuture<'_> {
    Box::pin(async move {
        use crate::model::pca::{self, Pca};
        let mut rng = Rng::new(seed);
        let mut draw = |rows: usize| -> Vec<f32> {
            let mut x: Vec<f32> =
                (0..rows * d).map(|i| ((1 + i % d) as f64 * rng.range(-1.0, 1.0)) as f32).collect();
            for row in x.chunks_mut(d) {
                for j in (0..d.saturating_sub(1)).step_by(2) {
                    let (a, b) = (row[j], row[j + 1]);
                    row[j] = 0.8 * a - 0.6 * b;
                    row[j + 1] = 0.6 * a + 0.8 * b;
                }
            }
            x
        };
        let x = draw(n);
        let (stage, _) = Pca::fit_async(gpu, &x, n, d, k).await?;
        // The reference covariance, in f64 from the same f32 inputs.
        let mean: Vec<f64> =
            (0..d).map(|j| x.iter().skip(j).step_by(d).map(|&v| v as f64).sum::<f64>() / n as f64).collect();
        let mut cov = vec![0.0f64; d * d];
        for row in x.chunks(d) {
            for i in 0..d {
                let a = row[i] as f64 - mean[i];
                for j in 0..d {
                    cov[i * d + j] += a * (row[j] as f64 - mean[j]);
                }
            }
        }
        cov.iter_mut().for_each(|c| *c /= (n - 1) as f64);
        let mut centred = x.clone();
        for row in centred.chunks_mut(d) {
            for (v, m) in row.iter_mut().zip(&stage.mean) {
                *v -= m;
            }
        }
        let got_cov: Vec<f32> =
            pca::covariance_async(gpu, &centred, n, d).await?.iter().map(|&v| v as f32).collect();
        let w = &stage.components;
        let (mut wwt, mut eye) = (Vec::new(), Vec::new());
        for a in 0..k {
            for b in 0..k {
                let dot: f64 = (0..d).map(|i| w[a * d + i] as f64 * w[b * d + i] as f64).sum();
                wwt.push(dot as f32);
                eye.push(if a == b { 1.0 } else { 0.0 });
            }
        }
        let top = (0..d).map(|i| cov[i * d + i]).fold(0.0f64, f64::max).max(1e-30);
        let (mut cv, mut lv, mut lambdas) = (Vec::new(), Vec::new(), Vec::new());
        for a in 0..k {
            let v: Vec<f64> = w[a * d..(a + 1) * d].iter().map(|&x| x as f64).collect();
            let c_v: Vec<f64> = (0..d).map(|i| (0..d).map(|j| cov[i * d + j] * v[j]).sum()).collect();
            let lambda: f64 = v.iter().zip(&c_v).map(|(a, b)| a * b).sum();
            cv.extend(c_v.iter().map(|&c| (c / top) as f32));
            lv.extend(v.iter().map(|&x| lambda * x / top));
            lambdas.push((lambda / top) as f32);
        }
        // The components must be the leading ones: their variances are the k largest eigenvalues of
        // the f64 covariance, in order.
        // (The solver is called here directly, not through the stage's code that picks and orders.)
        let mut values: Vec<f64> =
            nalgebra::SymmetricEigen::new(nalgebra::DMatrix::from_row_slice(d, d, &cov))
                .eigenvalues
                .iter()
                .copied()
                .collect();
        values.sort_by(|a, b| b.total_cmp(a));
        let leading: Vec<f64> = values[..k].iter().map(|v| v / top).collect();
        let rows = 5;
        let fresh = draw(rows);
        let (tx, tw, tb) = (up(gpu, &fresh)?, gpu.upload(w, &[k, d])?, up(gpu, &stage.bias())?);
        let ty = poisoned(gpu, rows * k, DType::F32)?;
        let s = GemmShape::new(rows, k, d, crate::shapes::Trans::NT);
        let ep = Epilogue { bias: Some(&tb), accumulate: false, relu: false };
        let ops = kernels::gemm::gemm(gpu, &s, &tx, &tw, &ty, &ep, GemmVariant::DEFAULT)?;
        gpu.run(&ops.iter().collect::<Vec<_>>())?;
        // In units of the largest input spread, as the covariance is compared in units of the largest
        // variance: the inputs' coordinates reach ±d, so an f32 dot product of d of them carries an
        // absolute error d times that of unit inputs (a projection of 7e-3 from terms near 100 came
        // out 3.4e-6 off, the f32 rounding of those terms).
        let spread = top.sqrt();
        let projected: Vec<f32> =
            gpu.download_async::<f32>(&ty).await?.iter().map(|&v| (v as f64 / spread) as f32).collect();
        let want: Vec<f64> =
            stage.project_reference(&widen(&fresh), rows).iter().map(|v| v / spread).collect();
        let unit_cov: Vec<f64> = cov.iter().map(|c| c / top).collect();
        let got_unit: Vec<f32> = got_cov.iter().map(|&c| (c as f64 / top) as f32).collect();
        Ok(Comparison::new("pca fit+project", format!("n{n} d{d} k{k}"), tol::PCA)
            .floats("covariance / largest", &got_unit, &unit_cov, n)
            .floats("W·Wᵀ", &wwt, &eye, d)
            .floats("C·v / largest", &cv, &lv, d)
            .floats("variances / largest", &lambdas, &leading, d)
            .floats("projection / largest spread", &projected, &want, d)
            .finish())
    })
}

// ----------------------------------------------------------------------------------------- optim

/// One SGD step: weights and gradients from `input.a`, velocities a tenth of that scale.
pub fn sgd_case(gpu: &Gpu, n: usize, (lr, momentum, wd): (f32, f32, f32), input: Input) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let scale = input.a.magnitude();
        let (w, v, g) =
            (input.a.draw(&mut rng, n), rng.vec_scaled(n, 0.1 * scale), input.a.draw(&mut rng, n));
        let (tw, tv, tg) = (up(gpu, &w)?, up(gpu, &v)?, up(gpu, &g)?);
        let d = kernels::optim::sgd_momentum(gpu, &tw, &tv, &tg, lr, momentum, wd)?;
        gpu.run(&[&d])?;
        let (got_w, got_v) = (gpu.download_async::<f32>(&tw).await?, gpu.download_async::<f32>(&tv).await?);
        let (mut want_w, mut want_v) = (widen(&w), widen(&v));
        cpu::sgd_momentum(&mut want_w, &mut want_v, &widen(&g), lr as f64, momentum as f64, wd as f64);
        let shape = format!("n{n} lr{lr} mom{momentum} wd{wd}{}", input.note(1));
        Ok(Comparison::new("sgd_momentum update", shape, tol::SGD.scaled(scale))
            .floats("w", &got_w, &want_w, 1)
            .floats("v", &got_v, &want_v, 1)
            .finish())
    })
}

/// The fill kernel: every element set to `value` (exact).
pub fn fill_case(gpu: &Gpu, n: usize, value: f32) -> CaseFuture<'_> {
    Box::pin(async move {
        let t = poisoned(gpu, n, DType::F32)?;
        gpu.run(&[&kernels::fill::fill(gpu, &t, value)?])?;
        let got = gpu.download_async::<f32>(&t).await?;
        Ok(Comparison::new("fill", format!("n{n} value{value}"), tol::ELEMENTWISE)
            .floats("out", &got, &vec![value as f64; n], 1)
            .finish())
    })
}

// ---------------------------------------------------------------------------------------- reduce

/// The sum of x from `input.a` (added to a prior of that scale with `accumulate`).
pub fn sum_case(gpu: &Gpu, n: usize, accumulate: bool, input: Input) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let x = input.a.draw(&mut rng, n);
        let prior = input.a.draw(&mut rng, 1);
        let tx = up(gpu, &x)?;
        let tout = output(gpu, &prior, accumulate)?;
        let d = kernels::reduce::sum_all(gpu, &tx, &tout, accumulate)?;
        gpu.run(&[&d])?;
        let got = gpu.download_async::<f32>(&tout).await?;
        let want = [cpu::sum(&widen(&x)) + if accumulate { prior[0] as f64 } else { 0.0 }];
        let flags = Flags { accumulate, ..Flags::NONE };
        let shape = format!("n{n}{}{}", flags.suffix(), input.note(1));
        Ok(Comparison::new("sum", shape, tol::REDUCE.scaled(input.a.magnitude()))
            .floats("sum", &got, &want, n)
            .finish())
    })
}

/// Sums over the slices of x `[slices, n]` from `input.a`, slices in order (the last step of the
/// sliced weight gradients).
pub fn slice_sum_case(gpu: &Gpu, slices: usize, n: usize, accumulate: bool, input: Input) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let x = input.a.draw(&mut rng, slices * n);
        let prior = input.a.draw(&mut rng, n);
        let tx = up(gpu, &x)?;
        let tout = output(gpu, &prior, accumulate)?;
        gpu.run(&[&reduce::slice_sum(gpu, slices, n, &tx, &tout, accumulate)?])?;
        let got = gpu.download_async::<f32>(&tout).await?;
        // The slices are the "outer" dimension of a per-channel sum with one channel per element.
        let mut want = widen(&prior);
        cpu::channel_sum(slices, n, 1, &widen(&x), &mut want, accumulate);
        let flags = Flags { accumulate, ..Flags::NONE };
        let shape = format!("[{slices}, {n}]{}{}", flags.suffix(), input.note(1));
        Ok(Comparison::new("slice_sum", shape, tol::REDUCE.scaled(input.a.magnitude()))
            .floats("out", &got, &want, slices)
            .finish())
    })
}

/// Per-channel sums of x `[outer, c, inner]` from `input.a` (added to a prior with `accumulate`).
pub fn channel_sum_case(
    gpu: &Gpu,
    outer: usize,
    c: usize,
    inner: usize,
    accumulate: bool,
    input: Input,
) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let x = input.a.draw(&mut rng, outer * c * inner);
        let out0 = input.a.draw(&mut rng, c);
        let tx = up(gpu, &x)?;
        let tout = output(gpu, &out0, accumulate)?;
        let d = kernels::reduce::channel_sum(gpu, outer, c, inner, &tx, &tout, accumulate)?;
        gpu.run(&d.iter().collect::<Vec<_>>())?;
        let got = gpu.download_async::<f32>(&tout).await?;
        let mut want = widen(&out0);
        cpu::channel_sum(outer, c, inner, &widen(&x), &mut want, accumulate);
        let flags = Flags { accumulate, ..Flags::NONE };
        let shape = format!("[{outer}, {c}, {inner}]{}{}", flags.suffix(), input.note(1));
        Ok(Comparison::new("channel_sum", shape, tol::REDUCE.scaled(input.a.magnitude()))
            .floats("out", &got, &want, outer * inner)
            .finish())
    })
}

/// The first maximum of each row of scores from `input.a`: every third row (from row 0) ties its
/// last element with the row's maximum (the first must win), every third (from row 1) has its
/// maximum last.
pub fn argmax_case(gpu: &Gpu, n: usize, k: usize, input: Input) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(input.seed);
        let mut x = input.a.draw(&mut rng, n * k);
        max_last(&mut x, n, k);
        for r in (0..n).step_by(3) {
            let row = &mut x[r * k..(r + 1) * k];
            row[k - 1] = row.iter().cloned().fold(f32::MIN, f32::max);
        }
        let tx = up(gpu, &x)?;
        let tout = poisoned(gpu, n, DType::I32)?;
        let d = kernels::reduce::argmax_rows(gpu, n, k, &tx, &tout)?;
        gpu.run(&[&d])?;
        let got = gpu.download_async::<i32>(&tout).await?;
        let mut want = vec![0; n];
        cpu::argmax_rows(n, k, &x, &mut want);
        Ok(Comparison::new("argmax_rows", format!("n{n} k{k}{}", input.note(1)), tol::REDUCE)
            .ints("argmax", &got, &want)
            .finish())
    })
}

/// Correct predictions among `n` rows of `k` classes (predictions right about half the time,
/// about one label in eight masked), added to a prior count with `accumulate`.
pub fn count_correct_case(gpu: &Gpu, n: usize, k: usize, accumulate: bool, seed: u64) -> CaseFuture<'_> {
    Box::pin(async move {
        let mut rng = Rng::new(seed);
        let y = labels(&mut rng, n, k);
        let pred: Vec<i32> =
            y.iter().map(|&l| if l >= 0 && rng.below(2) == 0 { l } else { rng.below(k) as i32 }).collect();
        let (tp, ty) = (up(gpu, &pred)?, up(gpu, &y)?);
        let prior = 1000u32;
        let tout = if accumulate { up(gpu, &[prior])? } else { poisoned(gpu, 1, DType::U32)? };
        let d = kernels::reduce::count_correct(gpu, &tp, &ty, &tout, accumulate)?;
        gpu.run(&[&d])?;
        let got = gpu.download_async::<u32>(&tout).await?;
        let want = cpu::count_correct(&pred, &y) + if accumulate { prior } else { 0 };
        let flags = Flags { accumulate, ..Flags::NONE };
        Ok(Comparison::new("count_correct", format!("n{n} k{k}{}", flags.suffix()), tol::REDUCE)
            .ints("count", &[got[0] as i32], &[want as i32])
            .finish())
    })
}
