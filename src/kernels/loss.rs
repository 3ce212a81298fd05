//! The tops: softmax with cross-entropy, the one-vs-rest L2-SVM squared hinge (Tang 2013) and the
//! L1-SVM hinge (the baseline the paper's predecessors used).

use super::{check_len, grid_for, to_u32};
use crate::gpu::{
    DType, Dispatch, Extension, Gpu, GpuError, KernelParams, ParamsDecl, ShaderDef, Spec, Tensor,
};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LossParams {
    pub rows: u32,
    pub classes: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub scale: f32,
    pub _pad2: u32,
    pub _pad3: u32,
    pub _pad4: u32,
}

/// One invocation per row; rows are few (a minibatch), so small workgroups spread them wider.
const LOSS_WG: u32 = 64;

fn spec() -> Spec {
    Spec::new().u("WG", LOSS_WG)
}

fn specs() -> Vec<Spec> {
    vec![spec()]
}

impl KernelParams for LossParams {
    const WGSL: &'static str = "LossParams";
}

pub static SHADER: ShaderDef = ShaderDef {
    name: "loss",
    source: include_str!("../../shaders/loss.wgsl"),
    parts: &[],
    params: ParamsDecl::of::<LossParams>(),
    entries: &[("softmax_xent", 2, 2), ("l2svm", 2, 2), ("l1svm", 2, 2)],
    specs,
    unchecked: false,
    extension: Extension::None,
};

#[allow(clippy::too_many_arguments)]
fn loss(
    op: &str,
    entry: &'static str,
    gpu: &Gpu,
    n: usize,
    k: usize,
    scores: &Tensor,
    labels: &Tensor,
    scale: f64,
    loss_rows: &Tensor,
    grad: &Tensor,
) -> Result<Dispatch, GpuError> {
    if n == 0 || k == 0 {
        return Err(GpuError::shape(op, format!("{n} rows of {k} classes: both must be at least 1")));
    }
    check_len(op, "scores", scores, n * k)?;
    check_len(op, "labels", labels, n)?;
    if labels.dtype() != DType::I32 {
        return Err(GpuError::shape(op, "labels must be an i32 tensor"));
    }
    check_len(op, "loss rows", loss_rows, n)?;
    check_len(op, "gradient", grad, n * k)?;
    let p = LossParams {
        rows: to_u32(op, "rows", n)?,
        classes: to_u32(op, "classes", k)?,
        _pad0: 0,
        _pad1: 0,
        scale: scale as f32,
        _pad2: 0,
        _pad3: 0,
        _pad4: 0,
    };
    let groups = grid_for(gpu, n, LOSS_WG);
    gpu.prepare(op, &SHADER, entry, &spec(), &[scores, labels], &[loss_rows, grad], &p, groups)
}

/// Per-row `scale·(logsumexp − z_y)` and its gradient; see [`crate::cpu::softmax_xent`].
#[allow(clippy::too_many_arguments)]
pub fn softmax_xent(
    gpu: &Gpu,
    n: usize,
    k: usize,
    logits: &Tensor,
    labels: &Tensor,
    scale: f64,
    loss_rows: &Tensor,
    grad: &Tensor,
) -> Result<Dispatch, GpuError> {
    loss("softmax_xent", "softmax_xent", gpu, n, k, logits, labels, scale, loss_rows, grad)
}

/// Per-row `scale·Σ max(0, 1 − t·a)²` and its gradient, `scale = C/N`; see [`crate::cpu::l2svm`].
#[allow(clippy::too_many_arguments)]
pub fn l2svm(
    gpu: &Gpu,
    n: usize,
    k: usize,
    scores: &Tensor,
    labels: &Tensor,
    scale: f64,
    loss_rows: &Tensor,
    grad: &Tensor,
) -> Result<Dispatch, GpuError> {
    loss("l2svm", "l2svm", gpu, n, k, scores, labels, scale, loss_rows, grad)
}

/// Per-row `scale·Σ max(0, 1 − t·a)` and its gradient `−scale·t·[1 − t·a > 0]`, `scale = C/N`; see
/// [`crate::cpu::l1svm`].
#[allow(clippy::too_many_arguments)]
pub fn l1svm(
    gpu: &Gpu,
    n: usize,
    k: usize,
    scores: &Tensor,
    labels: &Tensor,
    scale: f64,
    loss_rows: &Tensor,
    grad: &Tensor,
) -> Result<Dispatch, GpuError> {
    loss("l1svm", "l1svm", gpu, n, k, scores, labels, scale, loss_rows, grad)
}
