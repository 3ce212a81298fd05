//! Ceiling probes for `dlsvm bench`: an FMA-bound loop and a vec4 copy.

use super::{grid_for, to_u32};
use crate::gpu::{Dispatch, Extension, Gpu, GpuError, KernelParams, ParamsDecl, ShaderDef, Spec, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ProbeParams {
    pub n: u32,
    pub iters: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Workgroup sizes and chain counts the FMA probe tries (the best is the ceiling).
pub const FMA_WGS: [u32; 3] = [64, 128, 256];
pub const FMA_CHAINS: [u32; 4] = [1, 2, 4, 8];

fn spec(wg: u32, chains: u32) -> Spec {
    Spec::new().u("WG", wg).u("CHAINS", chains)
}

fn specs() -> Vec<Spec> {
    FMA_WGS.iter().flat_map(|&w| FMA_CHAINS.iter().map(move |&c| spec(w, c))).collect()
}

impl KernelParams for ProbeParams {
    const WGSL: &'static str = "ProbeParams";
}

pub static SHADER: ShaderDef = ShaderDef {
    name: "probe",
    source: include_str!("../../shaders/probe.wgsl"),
    parts: &[],
    params: ParamsDecl::of::<ProbeParams>(),
    entries: &[("fma_probe", 1, 1), ("copy_probe", 1, 1)],
    specs,
    unchecked: true,
    extension: Extension::None,
};

/// `invocations` invocations each running `iters` x `chains` fused multiply-adds (2 flops each).
pub fn fma_probe(
    gpu: &Gpu,
    seeds: &Tensor,
    sink: &Tensor,
    iters: u32,
    wg: u32,
    chains: u32,
) -> Result<Dispatch, GpuError> {
    let n = to_u32("fma_probe", "invocations", sink.len())?;
    let p = ProbeParams { n, iters, _pad0: 0, _pad1: 0 };
    gpu.prepare(
        "fma_probe",
        &SHADER,
        "fma_probe",
        &spec(wg, chains),
        &[seeds],
        &[sink],
        &p,
        grid_for(gpu, sink.len(), wg),
    )
}

/// Copies `src` to `dst` as vec4s (lengths in f32, a multiple of 4).
pub fn copy_probe(gpu: &Gpu, src: &Tensor, dst: &Tensor) -> Result<Dispatch, GpuError> {
    if src.len() != dst.len() || !src.len().is_multiple_of(4) {
        return Err(GpuError::shape(
            "copy_probe",
            "source and destination must match and hold a multiple of 4 values",
        ));
    }
    let n = to_u32("copy_probe", "vec4 elements", src.len() / 4)?;
    let p = ProbeParams { n, iters: 0, _pad0: 0, _pad1: 0 };
    gpu.prepare(
        "copy_probe",
        &SHADER,
        "copy_probe",
        &spec(256, 1),
        &[src],
        &[dst],
        &p,
        grid_for(gpu, src.len() / 4, 256),
    )
}
