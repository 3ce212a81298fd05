//! Sets every element of a tensor to one value.

use super::{grid_for, to_u32, wg_spec, wg_specs, WG};
use crate::gpu::{DType, Dispatch, Extension, Gpu, GpuError, KernelParams, ParamsDecl, ShaderDef, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FillParams {
    pub n: u32,
    pub value: f32,
    pub _pad0: u32,
    pub _pad1: u32,
}

impl KernelParams for FillParams {
    const WGSL: &'static str = "FillParams";
}

pub static SHADER: ShaderDef = ShaderDef {
    name: "fill",
    source: include_str!("../../shaders/fill.wgsl"),
    parts: &[],
    params: ParamsDecl::of::<FillParams>(),
    entries: &[("fill", 0, 1), ("fill4", 0, 1)],
    specs: wg_specs,
    unchecked: false,
    extension: Extension::None,
};

/// Every element of the f32 tensor `out` set to `value` (four an invocation when its length is a
/// multiple of 4).
pub fn fill(gpu: &Gpu, out: &Tensor, value: f32) -> Result<Dispatch, GpuError> {
    if out.dtype() != DType::F32 {
        return Err(GpuError::shape("fill", "the tensor must hold f32 values"));
    }
    // A length that is a multiple of 4 in vec4 stores (fill4), others one element an invocation.
    let (entry, n) = if out.len().is_multiple_of(4) { ("fill4", out.len() / 4) } else { ("fill", out.len()) };
    let p = FillParams { n: to_u32("fill", "elements", n)?, value, _pad0: 0, _pad1: 0 };
    gpu.prepare("fill", &SHADER, entry, &wg_spec(), &[], &[out], &p, grid_for(gpu, n, WG))
}
