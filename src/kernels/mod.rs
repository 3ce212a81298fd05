//! One host module per shader family: its params struct (mirrored in WGSL), its shader
//! registration, and functions that validate shapes and return a prepared [`Dispatch`].
//! Argument order follows the CPU reference in `crate::cpu`.

pub mod activation;
pub mod conv;
pub mod fill;
pub mod gemm;
pub mod loss;
pub mod optim;
pub mod pool;
pub mod probe;
pub mod reduce;
pub mod registry;
pub mod variant;

use crate::gpu::{grid_1d, Gpu, GpuError, ShaderDef, Spec, Tensor};

/// Every shader of the crate, for validation and for `dlsvm info`.
pub static SHADERS: &[&ShaderDef] = &[
    &gemm::SHADER,
    &gemm::SHADER4,
    &gemm::SHADER_SG,
    &gemm::SHADER_SG4,
    &conv::SHADER,
    &conv::SHADER_SG,
    &conv::WGRAD_SHADER,
    &conv::WGRAD_SHADER_SG,
    &pool::SHADER,
    &fill::SHADER,
    &activation::SHADER,
    &loss::SHADER,
    &reduce::SHADER,
    &optim::SHADER,
    &probe::SHADER,
];

/// The host side of every kernel family (variants, tilings, slicing, grids, fallbacks): with
/// [`SHADERS`], what the tuner's choices depend on besides the adapter and the shape
/// (`crate::tune::kernels_fingerprint`).
pub static HOST_SOURCES: &[&str] = &[
    include_str!("mod.rs"),
    include_str!("activation.rs"),
    include_str!("conv.rs"),
    include_str!("fill.rs"),
    include_str!("gemm.rs"),
    include_str!("loss.rs"),
    include_str!("optim.rs"),
    include_str!("pool.rs"),
    include_str!("probe.rs"),
    include_str!("reduce.rs"),
    include_str!("registry.rs"),
    include_str!("variant.rs"),
];

/// Invocations per workgroup of the 1-D kernels (a power of two).
pub const WG: u32 = 256;

/// The specialization of the shaders whose only constant is the workgroup size [`WG`].
pub(crate) fn wg_spec() -> Spec {
    Spec::new().u("WG", WG)
}

/// [`wg_spec`] as the one specialization such a shader is validated with.
pub(crate) fn wg_specs() -> Vec<Spec> {
    vec![wg_spec()]
}

/// What a producing kernel does to its result before storing it.
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Add `bias[j]` (per output column of a GEMM, per output channel of a conv).
    pub bias: Option<&'a Tensor>,
    /// Add the output's previous contents (gradient accumulation).
    pub accumulate: bool,
    /// Apply ReLU last.
    pub relu: bool,
}

impl Epilogue<'_> {
    pub(crate) fn flags(&self) -> u32 {
        (self.bias.is_some() as u32) | ((self.accumulate as u32) << 1) | ((self.relu as u32) << 2)
    }
}

pub(crate) fn check_len(op: &str, what: &str, t: &Tensor, want: usize) -> Result<(), GpuError> {
    if t.len() != want {
        return Err(GpuError::shape(
            op,
            format!("{what} has {} elements {:?}, expected {want}", t.len(), t.shape()),
        ));
    }
    Ok(())
}

pub(crate) fn to_u32(op: &str, what: &str, v: usize) -> Result<u32, GpuError> {
    u32::try_from(v).map_err(|_| GpuError::shape(op, format!("{what} = {v} does not fit in 32 bits")))
}

/// Grid for `threads` invocations in workgroups of `wg`, folded over x and y.
pub(crate) fn grid_for(gpu: &Gpu, threads: usize, wg: u32) -> [u32; 3] {
    grid_1d(threads.div_ceil(wg as usize), gpu.fold_width())
}
