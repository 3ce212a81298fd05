//! ReLU and dropout, forward and backward. Dropout's mask comes from the counter-based hash in
//! [`crate::shapes::hash_u32`], keyed by (seed, step, element).

use super::{check_len, grid_for, to_u32, wg_spec, wg_specs, WG};
use crate::gpu::{Dispatch, Extension, Gpu, GpuError, KernelParams, ParamsDecl, ShaderDef, Tensor};
use crate::shapes::dropout_scale;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ActParams {
    pub n: u32,
    pub seed: u32,
    pub step: u32,
    pub _pad0: u32,
    pub prob: f32,
    pub scale: f32,
    pub _pad1: u32,
    pub _pad2: u32,
}

impl ActParams {
    pub fn new(n: u32, prob: f32, seed: u32, step: u32) -> Self {
        ActParams { n, seed, step, _pad0: 0, prob, scale: dropout_scale(prob), _pad1: 0, _pad2: 0 }
    }
}

impl KernelParams for ActParams {
    const WGSL: &'static str = "ActParams";
}

pub static SHADER: ShaderDef = ShaderDef {
    name: "activation",
    source: include_str!("../../shaders/activation.wgsl"),
    parts: &[],
    params: ParamsDecl::of::<ActParams>(),
    entries: &[("relu_fwd", 1, 1), ("relu_bwd", 2, 1), ("relu_bwd4", 2, 1), ("dropout", 1, 1)],
    specs: wg_specs,
    unchecked: false,
    extension: Extension::None,
};

fn same_len(op: &str, a: &Tensor, b: &Tensor) -> Result<u32, GpuError> {
    check_len(op, "output", b, a.len())?;
    to_u32(op, "elements", a.len())
}

/// `y = max(x, 0)`; see [`crate::cpu::relu_forward`].
pub fn relu_forward(gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch, GpuError> {
    let n = same_len("relu_forward", x, y)?;
    let groups = grid_for(gpu, x.len(), WG);
    gpu.prepare(
        "relu_forward",
        &SHADER,
        "relu_fwd",
        &wg_spec(),
        &[x],
        &[y],
        &ActParams::new(n, 0.0, 0, 0),
        groups,
    )
}

/// `dx = dy where y > 0`; see [`crate::cpu::relu_backward`]. Four elements an invocation where the
/// length is a multiple of 4.
pub fn relu_backward(gpu: &Gpu, y: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<Dispatch, GpuError> {
    let n = same_len("relu_backward", y, dy)?;
    check_len("relu_backward", "dx", dx, y.len())?;
    // A length that is a multiple of 4 as vec4s (relu_bwd4), others one element an invocation.
    let (entry, n) = if y.len().is_multiple_of(4) { ("relu_bwd4", n / 4) } else { ("relu_bwd", n) };
    let groups = grid_for(gpu, n as usize, WG);
    let p = ActParams::new(n, 0.0, 0, 0);
    gpu.prepare("relu_backward", &SHADER, entry, &wg_spec(), &[y, dy], &[dx], &p, groups)
}

fn dropout(
    op: &str,
    gpu: &Gpu,
    src: &Tensor,
    dst: &Tensor,
    p: f32,
    seed: u32,
    step: u32,
) -> Result<Dispatch, GpuError> {
    if !(0.0..1.0).contains(&p) {
        return Err(GpuError::shape(op, format!("dropout probability {p} is not in [0, 1)")));
    }
    let n = same_len(op, src, dst)?;
    let groups = grid_for(gpu, src.len(), WG);
    gpu.prepare(op, &SHADER, "dropout", &wg_spec(), &[src], &[dst], &ActParams::new(n, p, seed, step), groups)
}

/// Kept elements scaled by `1/(1-p)`, dropped ones zeroed; see [`crate::cpu::dropout_forward`].
/// Change `step` per minibatch with [`Dispatch::set_params`] and [`ActParams::new`].
pub fn dropout_forward(
    gpu: &Gpu,
    x: &Tensor,
    y: &Tensor,
    p: f32,
    seed: u32,
    step: u32,
) -> Result<Dispatch, GpuError> {
    dropout("dropout_forward", gpu, x, y, p, seed, step)
}

/// The same mask applied to the gradient; see [`crate::cpu::dropout_backward`].
pub fn dropout_backward(
    gpu: &Gpu,
    dy: &Tensor,
    dx: &Tensor,
    p: f32,
    seed: u32,
    step: u32,
) -> Result<Dispatch, GpuError> {
    dropout("dropout_backward", gpu, dy, dx, p, seed, step)
}
