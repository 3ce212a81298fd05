//! Max and average pooling, forward and backward (ceil-mode windows clipped to the image).

use super::variant::{Decl, FamilyVariant};
use super::{check_len, grid_for, to_u32, wg_spec, WG};
use crate::gpu::{
    DType, Dispatch, Extension, Gpu, GpuError, KernelParams, ParamsDecl, ShaderDef, Spec, Tensor,
};
use crate::shapes::Pool2dShape;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PoolParams {
    pub planes: u32,
    pub h: u32,
    pub w: u32,
    pub oh: u32,
    pub ow: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride_y: u32,
    pub stride_x: u32,
    pub pad_y: u32,
    pub pad_x: u32,
    /// The disjoint-window backwards: the pass index.
    pub phase: u32,
}

impl KernelParams for PoolParams {
    const WGSL: &'static str = "PoolParams";
}

/// Max or average pooling: the shader's MAX constant.
fn spec(max: bool) -> Spec {
    wg_spec().b("MAX", max)
}

pub static SHADER: ShaderDef = ShaderDef {
    name: "pool",
    source: include_str!("../../shaders/pool.wgsl"),
    parts: &[],
    params: ParamsDecl::of::<PoolParams>(),
    entries: &[
        ("pool_fwd", 1, 2),
        ("pool_fwd_rows", 1, 2),
        ("pool_bwd", 2, 1),
        ("pool_bwd_pass", 2, 1),
        ("pool_bwd_rows", 2, 1),
    ],
    specs: || vec![spec(true), spec(false)],
    // Indices are clamped or guarded; the argmax read by max pooling's passes is range-checked.
    unchecked: true,
    extension: Extension::None,
};

fn params(op: &str, s: &Pool2dShape) -> Result<PoolParams, GpuError> {
    s.validate().map_err(|m| GpuError::shape(op, m))?;
    let u = |what: &str, v: usize| to_u32(op, what, v);
    u("input elements", s.x_len())?;
    Ok(PoolParams {
        planes: u("planes", s.planes())?,
        h: u("h", s.h)?,
        w: u("w", s.w)?,
        oh: u("oh", s.oh())?,
        ow: u("ow", s.ow())?,
        kh: u("kh", s.kh)?,
        kw: u("kw", s.kw)?,
        stride_y: u("sy", s.sy)?,
        stride_x: u("sx", s.sx)?,
        pad_y: u("py", s.py)?,
        pad_x: u("px", s.px)?,
        phase: 0,
    })
}

fn check_idx(op: &str, idx: &Tensor, want: usize) -> Result<(), GpuError> {
    check_len(op, "argmax indices", idx, want)?;
    if idx.dtype() != DType::I32 {
        return Err(GpuError::shape(op, "argmax indices must be an i32 tensor"));
    }
    Ok(())
}

/// Pool forward variants (max and average; [`FWD_VARIANTS`] declares them); they compute the same
/// values (the same windows, summed in the same order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolFwdVariant {
    /// One invocation per output (pool_fwd): for GPUs.
    Outputs,
    /// One invocation per output row, walking it (pool_fwd_rows): one division an invocation
    /// instead of three an output, for CPU-like devices.
    Rows,
}

impl PoolFwdVariant {
    pub const DEFAULT: PoolFwdVariant = PoolFwdVariant::Outputs;
}

/// Every pooling forward variant, declared once, the default first.
pub static FWD_VARIANTS: &[Decl<PoolFwdVariant>] =
    &[Decl::tuned("outputs", PoolFwdVariant::Outputs), Decl::tuned("rows", PoolFwdVariant::Rows)];

impl FamilyVariant for PoolFwdVariant {
    fn decls() -> &'static [Decl<PoolFwdVariant>] {
        FWD_VARIANTS
    }
    fn default_variant() -> PoolFwdVariant {
        PoolFwdVariant::DEFAULT
    }
}

/// The forward of max (`idx` receives the argmax) or average pooling (`idx` None).
fn forward(
    gpu: &Gpu,
    op: &str,
    s: &Pool2dShape,
    x: &Tensor,
    y: &Tensor,
    idx: Option<&Tensor>,
    variant: PoolFwdVariant,
) -> Result<Dispatch, GpuError> {
    let p = params(op, s)?;
    check_len(op, "x", x, s.x_len())?;
    check_len(op, "y", y, s.y_len())?;
    if let Some(idx) = idx {
        check_idx(op, idx, s.y_len())?;
    }
    let outputs = [y, idx.unwrap_or(gpu.dummy())];
    let (entry, threads) = match variant {
        PoolFwdVariant::Outputs => ("pool_fwd", s.y_len()),
        PoolFwdVariant::Rows => ("pool_fwd_rows", s.planes() * s.oh()),
    };
    let groups = grid_for(gpu, threads, WG);
    gpu.prepare(op, &SHADER, entry, &spec(idx.is_some()), &[x], &outputs, &p, groups)
}

/// See [`crate::cpu::maxpool_forward`]; `idx` (i32) receives each window's in-plane argmax.
pub fn maxpool_forward(
    gpu: &Gpu,
    s: &Pool2dShape,
    x: &Tensor,
    y: &Tensor,
    idx: &Tensor,
    variant: PoolFwdVariant,
) -> Result<Dispatch, GpuError> {
    forward(gpu, &format!("maxpool_forward {s}"), s, x, y, Some(idx), variant)
}

/// Pool backward variants (max and average; [`BWD_VARIANTS`] declares them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolBwdVariant {
    /// One invocation per input element gathering from the windows that cover it.
    Gather,
    /// Zero dx, then ceil(kh/sy)·ceil(kw/sx) passes over disjoint-window outputs, each adding its
    /// gradient at its argmax (max) or over its window (average).
    Passes,
    /// Zero dx, then ceil(kh/sy) passes over disjoint-window output rows, one invocation walking
    /// each row (pool_bwd_rows): two divisions an invocation instead of a decomposition per
    /// output, and fewer passes; fewer invocations too, so for CPU-like devices.
    Rows,
}

/// The max-pool backward's variants.
pub type MaxPoolBwdVariant = PoolBwdVariant;

impl PoolBwdVariant {
    pub const DEFAULT: PoolBwdVariant = PoolBwdVariant::Passes;
}

/// Every pooling backward variant, declared once: the default first, the gather (the simple
/// fallback, screened last by the tuner) last.
pub static BWD_VARIANTS: &[Decl<PoolBwdVariant>] = &[
    Decl::tuned("passes", PoolBwdVariant::Passes),
    Decl::tuned("rows", PoolBwdVariant::Rows),
    Decl::tuned("gather", PoolBwdVariant::Gather),
];

impl FamilyVariant for PoolBwdVariant {
    fn decls() -> &'static [Decl<PoolBwdVariant>] {
        BWD_VARIANTS
    }
    fn default_variant() -> PoolBwdVariant {
        PoolBwdVariant::DEFAULT
    }
}

/// The backward of max (`idx` the forward's argmax) or average pooling (`idx` None).
fn backward(
    gpu: &Gpu,
    op: &str,
    s: &Pool2dShape,
    dy: &Tensor,
    idx: Option<&Tensor>,
    dx: &Tensor,
    variant: PoolBwdVariant,
) -> Result<Vec<Dispatch>, GpuError> {
    let mut p = params(op, s)?;
    check_len(op, "dy", dy, s.y_len())?;
    check_len(op, "dx", dx, s.x_len())?;
    if let Some(idx) = idx {
        check_idx(op, idx, s.y_len())?;
    }
    let sp = spec(idx.is_some());
    let inputs = [dy, idx.unwrap_or(gpu.dummy())];
    if variant == PoolBwdVariant::Gather {
        let groups = grid_for(gpu, s.x_len(), WG);
        return Ok(vec![gpu.prepare(op, &SHADER, "pool_bwd", &sp, &inputs, &[dx], &p, groups)?]);
    }
    let mut ops = vec![super::fill::fill(gpu, dx, 0.0)?];
    let (ny, nx) = (s.kh.div_ceil(s.sy), s.kw.div_ceil(s.sx));
    if variant == PoolBwdVariant::Rows {
        for ay in 0..ny.min(s.oh()) {
            p.phase = to_u32(op, "pass", ay)?;
            let groups = grid_for(gpu, s.planes() * (s.oh() - ay).div_ceil(ny), WG);
            ops.push(gpu.prepare(op, &SHADER, "pool_bwd_rows", &sp, &inputs, &[dx], &p, groups)?);
        }
        return Ok(ops);
    }
    for ay in 0..ny.min(s.oh()) {
        for ax in 0..nx.min(s.ow()) {
            p.phase = to_u32(op, "pass", ay * nx + ax)?;
            let outputs = s.planes() * (s.oh() - ay).div_ceil(ny) * (s.ow() - ax).div_ceil(nx);
            let groups = grid_for(gpu, outputs, WG);
            ops.push(gpu.prepare(op, &SHADER, "pool_bwd_pass", &sp, &inputs, &[dx], &p, groups)?);
        }
    }
    Ok(ops)
}

/// See [`crate::cpu::maxpool_backward`]. Returns the dispatches to run in order.
pub fn maxpool_backward(
    gpu: &Gpu,
    s: &Pool2dShape,
    dy: &Tensor,
    idx: &Tensor,
    dx: &Tensor,
    variant: MaxPoolBwdVariant,
) -> Result<Vec<Dispatch>, GpuError> {
    backward(gpu, &format!("maxpool_backward {s}"), s, dy, Some(idx), dx, variant)
}

/// See [`crate::cpu::avgpool_forward`].
pub fn avgpool_forward(
    gpu: &Gpu,
    s: &Pool2dShape,
    x: &Tensor,
    y: &Tensor,
    variant: PoolFwdVariant,
) -> Result<Dispatch, GpuError> {
    forward(gpu, &format!("avgpool_forward {s}"), s, x, y, None, variant)
}

/// See [`crate::cpu::avgpool_backward`]. Returns the dispatches to run in order.
pub fn avgpool_backward(
    gpu: &Gpu,
    s: &Pool2dShape,
    dy: &Tensor,
    dx: &Tensor,
    variant: PoolBwdVariant,
) -> Result<Vec<Dispatch>, GpuError> {
    backward(gpu, &format!("avgpool_backward {s}"), s, dy, None, dx, variant)
}
