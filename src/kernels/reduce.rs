//! Reductions: the sum of a vector, sums over slices of partial results (the convolution weight
//! gradients), per-channel sums (the bias gradient of conv and fc layers), per-row argmax and the
//! count of correct predictions.

use super::{check_len, grid_for, to_u32, wg_spec, wg_specs, WG};
use crate::gpu::{
    grid_1d, DType, Dispatch, Extension, Gpu, GpuError, KernelParams, ParamsDecl, ShaderDef, Tensor,
};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReduceParams {
    pub n: u32,
    pub k: u32,
    pub outer: u32,
    pub c: u32,
    pub inner: u32,
    pub flags: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

impl KernelParams for ReduceParams {
    const WGSL: &'static str = "ReduceParams";
}

pub static SHADER: ShaderDef = ShaderDef {
    name: "reduce",
    source: include_str!("../../shaders/reduce.wgsl"),
    parts: &[],
    params: ParamsDecl::of::<ReduceParams>(),
    entries: &[
        ("sum_all", 1, 1),
        ("slice_sum", 1, 1),
        ("slice_sum_serial", 1, 1),
        ("channel_sum", 1, 1),
        ("channel_part", 1, 1),
        ("channel_sum4", 1, 1),
        ("channel_part4", 1, 1),
        ("argmax_rows", 1, 1),
        ("count_correct", 2, 1),
    ],
    specs: wg_specs,
    unchecked: false,
    extension: Extension::None,
};

/// `out[0] (+)= Σ x` (one workgroup); see [`crate::cpu::sum`].
pub fn sum_all(gpu: &Gpu, x: &Tensor, out: &Tensor, accumulate: bool) -> Result<Dispatch, GpuError> {
    let op = "sum_all";
    check_len(op, "out", out, 1)?;
    let p = ReduceParams {
        n: to_u32(op, "elements", x.len())?,
        flags: (accumulate as u32) << 1,
        ..Default::default()
    };
    gpu.prepare(op, &SHADER, "sum_all", &wg_spec(), &[x], &[out], &p, [1, 1, 1])
}

/// Elements a workgroup of `slice_sum` adds up (reduce.wgsl's SLICE_COLS): its [`WG`] invocations
/// are `WG / SLICE_COLS` lanes over the slices.
const SLICE_COLS: u32 = 8;

/// `slice_sum` adds each element's slices in order, one invocation an element, from this many
/// elements ...
pub const SERIAL_MIN_ELEMENTS: usize = 2048;
/// ... and up to this many slices (reduce.wgsl's slice_sum_serial).
pub const SERIAL_MAX_SLICES: usize = 256;

/// Whether [`slice_sum`] of `[slices, n]` adds each element's slices in order in one invocation.
pub fn slice_sum_is_serial(slices: usize, n: usize) -> bool {
    n >= SERIAL_MIN_ELEMENTS && slices <= SERIAL_MAX_SLICES
}

/// `out[e] (+)= Σ_s x[s, e]` for x of shape `[slices, n]`, the slices added in a fixed order that
/// depends on the shape only: in slice order by one invocation an element where
/// [`slice_sum_is_serial`], else lane l of 8 adds slices l, l + 8, ... in order, then the lanes
/// pairwise. The last step of the sliced convolution weight gradients, and the fc bias gradient.
pub fn slice_sum(
    gpu: &Gpu,
    slices: usize,
    n: usize,
    x: &Tensor,
    out: &Tensor,
    accumulate: bool,
) -> Result<Dispatch, GpuError> {
    let op = format!("slice_sum [{slices}, {n}]");
    if slices == 0 || n == 0 {
        return Err(GpuError::shape(&op, "slices and elements must be at least 1"));
    }
    check_len(&op, "x", x, slices * n)?;
    check_len(&op, "out", out, n)?;
    let p = ReduceParams {
        n: to_u32(&op, "elements", n)?,
        k: to_u32(&op, "slices", slices)?,
        flags: (accumulate as u32) << 1,
        ..Default::default()
    };
    if slice_sum_is_serial(slices, n) {
        return gpu.prepare(
            &op,
            &SHADER,
            "slice_sum_serial",
            &wg_spec(),
            &[x],
            &[out],
            &p,
            grid_for(gpu, n, WG),
        );
    }
    gpu.prepare(&op, &SHADER, "slice_sum", &wg_spec(), &[x], &[out], &p, grid_for(gpu, n, SLICE_COLS))
}

/// Positions of one channel a workgroup of [`channel_sum`]'s first pass sums: longer channels
/// (`outer · inner` above this) are split into chunks of this many, summed by a workgroup each and
/// then added chunk by chunk in order. A fixed length, not the adapter's, so the order of the
/// additions (and the rounding) is the same on every device.
pub const CHANNEL_CHUNK: usize = 16384;

/// `out[ch] (+)= Σ_{o,i} x[o, ch, i]` for x of shape `[outer, c, inner]`; see
/// [`crate::cpu::channel_sum`]. One workgroup per channel when a channel holds at most
/// [`CHANNEL_CHUNK`] values; else two passes: chunk sums by `c · chunks` workgroups (a conv bias
/// gradient at batch 256 has 32 channels of 451,584 values: 32 workgroups left an H200 at 29 GB/s),
/// then [`slice_sum`] over the chunks. With `inner` a multiple of 4 (the conv layers') the passes
/// load vec4s (channel_sum4, channel_part4: each vec4's components added last); with `inner` 1
/// (the fc layers'), where [`slice_sum_is_serial`] for `[outer, c]`, it is that [`slice_sum`].
pub fn channel_sum(
    gpu: &Gpu,
    outer: usize,
    c: usize,
    inner: usize,
    x: &Tensor,
    out: &Tensor,
    accumulate: bool,
) -> Result<Vec<Dispatch>, GpuError> {
    let op = format!("channel_sum [{outer}, {c}, {inner}]");
    if outer == 0 || c == 0 || inner == 0 {
        return Err(GpuError::shape(&op, "every dimension must be at least 1"));
    }
    check_len(&op, "x", x, outer * c * inner)?;
    check_len(&op, "out", out, c)?;
    if inner == 1 && slice_sum_is_serial(outer, c) {
        return Ok(vec![slice_sum(gpu, outer, c, x, out, accumulate)?]);
    }
    let vec4 = inner.is_multiple_of(4);
    let mut p = ReduceParams {
        outer: to_u32(&op, "outer", outer)?,
        c: to_u32(&op, "channels", c)?,
        inner: to_u32(&op, "inner", inner)?,
        n: to_u32(&op, "elements", outer * c * inner)?,
        flags: (accumulate as u32) << 1,
        ..Default::default()
    };
    let chunks = channel_sum_scratch(outer, c, inner) / c;
    if chunks == 0 {
        let groups = grid_1d(c, gpu.fold_width());
        let entry = if vec4 { "channel_sum4" } else { "channel_sum" };
        return Ok(vec![gpu.prepare(&op, &SHADER, entry, &wg_spec(), &[x], &[out], &p, groups)?]);
    }
    let partial = gpu.empty(&[chunks, c], DType::F32)?;
    p.n = to_u32(&op, "chunks", chunks)?;
    // The same chunks of the channel's values either way (CHANNEL_CHUNK is a multiple of 4).
    p.k = if vec4 { CHANNEL_CHUNK / 4 } else { CHANNEL_CHUNK } as u32;
    p.flags = 0;
    let groups = grid_1d(chunks * c, gpu.fold_width());
    let entry = if vec4 { "channel_part4" } else { "channel_part" };
    let part = gpu.prepare(&op, &SHADER, entry, &wg_spec(), &[x], &[&partial], &p, groups)?;
    Ok(vec![part, slice_sum(gpu, chunks, c, &partial, out, accumulate)?])
}

/// The values of the partial sums [`channel_sum`] allocates for `[outer, c, inner]` (0 for one pass).
pub fn channel_sum_scratch(outer: usize, c: usize, inner: usize) -> usize {
    let count = outer * inner;
    if count <= CHANNEL_CHUNK {
        0
    } else {
        count.div_ceil(CHANNEL_CHUNK) * c
    }
}

/// Index of the first maximum of each row of `x [n, k]`; see [`crate::cpu::argmax_rows`].
pub fn argmax_rows(gpu: &Gpu, n: usize, k: usize, x: &Tensor, out: &Tensor) -> Result<Dispatch, GpuError> {
    let op = format!("argmax_rows [{n}, {k}]");
    if n == 0 || k == 0 {
        return Err(GpuError::shape(&op, "rows and columns must be at least 1"));
    }
    check_len(&op, "x", x, n * k)?;
    check_len(&op, "out", out, n)?;
    if out.dtype() != DType::I32 {
        return Err(GpuError::shape(&op, "out must be an i32 tensor"));
    }
    let p = ReduceParams { n: to_u32(&op, "rows", n)?, k: to_u32(&op, "columns", k)?, ..Default::default() };
    let groups = grid_for(gpu, n, WG);
    gpu.prepare(&op, &SHADER, "argmax_rows", &wg_spec(), &[x], &[out], &p, groups)
}

/// `out[0] (+)=` rows with `labels >= 0` and `pred == label` (u32); see [`crate::cpu::count_correct`].
pub fn count_correct(
    gpu: &Gpu,
    pred: &Tensor,
    labels: &Tensor,
    out: &Tensor,
    accumulate: bool,
) -> Result<Dispatch, GpuError> {
    let op = "count_correct";
    check_len(op, "labels", labels, pred.len())?;
    check_len(op, "out", out, 1)?;
    if pred.dtype() != DType::I32 || labels.dtype() != DType::I32 || out.dtype() != DType::U32 {
        return Err(GpuError::shape(op, "pred and labels must be i32 tensors and out a u32 tensor"));
    }
    // The kernel sums its counts as f32, exact up to 2^24.
    if pred.len() > 1 << 24 {
        return Err(GpuError::shape(op, format!("{} rows, at most 2^24 are counted exactly", pred.len())));
    }
    let p = ReduceParams {
        n: to_u32(op, "rows", pred.len())?,
        flags: (accumulate as u32) << 1,
        ..Default::default()
    };
    gpu.prepare(op, &SHADER, "count_correct", &wg_spec(), &[pred, labels], &[out], &p, [1, 1, 1])
}
