//! Max and average pooling, forward and backward (ceil-mode windows clipped to the image).

use super::{check_len, grid_for, to_u32, WG};
use crate::gpu::{DType, Dispatch, Gpu, GpuError, ShaderDef, Spec, Tensor};
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
    pub sy: u32,
    pub sx: u32,
    pub py: u32,
    pub px: u32,
    /// `maxpool_bwd_pass`: the pass index.
    pub phase: u32,
}

fn spec() -> Spec {
    Spec::new().u("WG", WG)
}

fn specs() -> Vec<Spec> {
    vec![spec()]
}

pub static SHADER: ShaderDef = ShaderDef {
    name: "pool",
    source: include_str!("../../shaders/pool.wgsl"),
    entries: &[
        ("maxpool_fwd", 1, 2),
        ("maxpool_bwd", 2, 1),
        ("pool_zero", 0, 1),
        ("maxpool_bwd_pass", 2, 1),
        ("avgpool_fwd", 1, 1),
        ("avgpool_bwd", 1, 1),
        ("avgpool_bwd_pass", 1, 1),
    ],
    specs,
    // Indices are clamped or guarded; the argmax read in maxpool_bwd_pass is range-checked.
    unchecked: true,
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
        sy: u("sy", s.sy)?,
        sx: u("sx", s.sx)?,
        py: u("py", s.py)?,
        px: u("px", s.px)?,
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

/// See [`crate::cpu::maxpool_forward`]; `idx` (i32) receives each window's in-plane argmax.
pub fn maxpool_forward(
    gpu: &Gpu,
    s: &Pool2dShape,
    x: &Tensor,
    y: &Tensor,
    idx: &Tensor,
) -> Result<Dispatch, GpuError> {
    let op = format!("maxpool_forward {s}");
    let p = params(&op, s)?;
    check_len(&op, "x", x, s.x_len())?;
    check_len(&op, "y", y, s.y_len())?;
    check_idx(&op, idx, s.y_len())?;
    let groups = grid_for(gpu, s.y_len(), WG);
    gpu.prepare(&op, &SHADER, "maxpool_fwd", &spec(), &[x], &[y, idx], &p, groups)
}

/// Pool backward variants (max and average); both are covered by the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolBwdVariant {
    /// One invocation per input element gathering from the windows that cover it.
    Gather,
    /// Zero dx, then ceil(kh/sy)·ceil(kw/sx) passes over disjoint-window outputs, each adding its
    /// gradient at its argmax (max) or over its window (average).
    Passes,
}

/// The max-pool backward's variants.
pub type MaxPoolBwdVariant = PoolBwdVariant;

impl PoolBwdVariant {
    pub const DEFAULT: PoolBwdVariant = PoolBwdVariant::Passes;
    pub fn all() -> [PoolBwdVariant; 2] {
        [PoolBwdVariant::Gather, PoolBwdVariant::Passes]
    }
    pub fn name(&self) -> &'static str {
        match self {
            PoolBwdVariant::Gather => "gather",
            PoolBwdVariant::Passes => "passes",
        }
    }
}

/// The zeroing of dx and one dispatch of `entry` per pass, for the disjoint-window backwards.
fn passes(
    gpu: &Gpu,
    op: &str,
    s: &Pool2dShape,
    mut p: PoolParams,
    entry: &'static str,
    inputs: &[&Tensor],
    dx: &Tensor,
) -> Result<Vec<Dispatch>, GpuError> {
    let zero = grid_for(gpu, s.x_len(), WG);
    let mut ops = vec![gpu.prepare(op, &SHADER, "pool_zero", &spec(), &[], &[dx], &p, zero)?];
    let (ny, nx) = (s.kh.div_ceil(s.sy), s.kw.div_ceil(s.sx));
    for ay in 0..ny.min(s.oh()) {
        for ax in 0..nx.min(s.ow()) {
            p.phase = to_u32(op, "pass", ay * nx + ax)?;
            let outputs = s.planes() * (s.oh() - ay).div_ceil(ny) * (s.ow() - ax).div_ceil(nx);
            let groups = grid_for(gpu, outputs, WG);
            ops.push(gpu.prepare(op, &SHADER, entry, &spec(), inputs, &[dx], &p, groups)?);
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
    let op = format!("maxpool_backward {s}");
    let p = params(&op, s)?;
    check_len(&op, "dy", dy, s.y_len())?;
    check_idx(&op, idx, s.y_len())?;
    check_len(&op, "dx", dx, s.x_len())?;
    match variant {
        MaxPoolBwdVariant::Gather => {
            let groups = grid_for(gpu, s.x_len(), WG);
            Ok(vec![gpu.prepare(&op, &SHADER, "maxpool_bwd", &spec(), &[dy, idx], &[dx], &p, groups)?])
        }
        MaxPoolBwdVariant::Passes => passes(gpu, &op, s, p, "maxpool_bwd_pass", &[dy, idx], dx),
    }
}

/// See [`crate::cpu::avgpool_forward`].
pub fn avgpool_forward(gpu: &Gpu, s: &Pool2dShape, x: &Tensor, y: &Tensor) -> Result<Dispatch, GpuError> {
    let op = format!("avgpool_forward {s}");
    let p = params(&op, s)?;
    check_len(&op, "x", x, s.x_len())?;
    check_len(&op, "y", y, s.y_len())?;
    let groups = grid_for(gpu, s.y_len(), WG);
    gpu.prepare(&op, &SHADER, "avgpool_fwd", &spec(), &[x], &[y], &p, groups)
}

/// See [`crate::cpu::avgpool_backward`]. Returns the dispatches to run in order.
pub fn avgpool_backward(
    gpu: &Gpu,
    s: &Pool2dShape,
    dy: &Tensor,
    dx: &Tensor,
    variant: PoolBwdVariant,
) -> Result<Vec<Dispatch>, GpuError> {
    let op = format!("avgpool_backward {s}");
    let p = params(&op, s)?;
    check_len(&op, "dy", dy, s.y_len())?;
    check_len(&op, "dx", dx, s.x_len())?;
    match variant {
        PoolBwdVariant::Gather => {
            let groups = grid_for(gpu, s.x_len(), WG);
            Ok(vec![gpu.prepare(&op, &SHADER, "avgpool_bwd", &spec(), &[dy], &[dx], &p, groups)?])
        }
        PoolBwdVariant::Passes => passes(gpu, &op, s, p, "avgpool_bwd_pass", &[dy], dx),
    }
}
