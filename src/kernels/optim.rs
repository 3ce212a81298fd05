//! SGD with momentum and weight decay, updating weights and velocity in place.

use super::{check_len, grid_for, to_u32, wg_spec, wg_specs, WG};
use crate::gpu::{Dispatch, Extension, Gpu, GpuError, KernelParams, ParamsDecl, ShaderDef, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SgdParams {
    pub n: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub _pad3: u32,
}

impl SgdParams {
    pub fn new(n: u32, lr: f32, momentum: f32, weight_decay: f32) -> Self {
        SgdParams { n, _pad0: 0, _pad1: 0, _pad2: 0, lr, momentum, weight_decay, _pad3: 0 }
    }
}

impl KernelParams for SgdParams {
    const WGSL: &'static str = "SgdParams";
}

pub static SHADER: ShaderDef = ShaderDef {
    name: "optim",
    source: include_str!("../../shaders/optim.wgsl"),
    parts: &[],
    params: ParamsDecl::of::<SgdParams>(),
    entries: &[("sgd_momentum", 1, 2)],
    specs: wg_specs,
    unchecked: false,
    extension: Extension::None,
};

/// `v = momentum·v − lr·(g + wd·w); w += v`; see [`crate::cpu::sgd_momentum`]. Change the learning
/// rate per step with [`Dispatch::set_params`] and [`SgdParams::new`].
pub fn sgd_momentum(
    gpu: &Gpu,
    w: &Tensor,
    v: &Tensor,
    g: &Tensor,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
) -> Result<Dispatch, GpuError> {
    let op = "sgd_momentum";
    check_len(op, "velocity", v, w.len())?;
    check_len(op, "gradient", g, w.len())?;
    for (what, x) in [("learning rate", lr), ("momentum", momentum), ("weight decay", weight_decay)] {
        if !x.is_finite() {
            return Err(GpuError::shape(op, format!("{what} {x} is not finite")));
        }
    }
    let p = SgdParams::new(to_u32(op, "elements", w.len())?, lr, momentum, weight_decay);
    let groups = grid_for(gpu, w.len(), WG);
    gpu.prepare(op, &SHADER, "sgd_momentum", &wg_spec(), &[g], &[w, v], &p, groups)
}
