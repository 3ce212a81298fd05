//! 2-D convolution, NCHW: forward (direct and channel-blocked), backward data, backward weight.
//! The bias gradient is [`super::reduce::channel_sum`]. Shaders: conv.wgsl (forward, backward data),
//! conv_sg.wgsl (their subgroup variants), conv_wgrad.wgsl (weight gradient).

use super::variant::{Caps, Decl, FamilyVariant};
use super::{check_len, grid_for, to_u32, Epilogue};
use crate::gpu::{
    grid_1d, Dispatch, Extension, Gpu, GpuError, KernelParams, ParamsDecl, ShaderDef, Spec, Tensor,
};
use crate::shapes::Conv2dShape;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvParams {
    pub n: u32,
    pub cin: u32,
    pub h: u32,
    pub w: u32,
    pub cout: u32,
    pub kh: u32,
    pub kw: u32,
    pub oh: u32,
    pub ow: u32,
    pub stride_y: u32,
    pub stride_x: u32,
    pub pad_y: u32,
    pub pad_x: u32,
    pub flags: u32,
    /// Backward weight by slices: output rows (of the batch's `n · oh`) per slice and the number
    /// of slices.
    pub rps: u32,
    pub slices: u32,
}

/// Forward variants ([`FWD_VARIANTS`] declares them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvFwdVariant {
    /// Four neighbouring output pixels x 4, 8 or 16 output channels per invocation.
    Blocked,
    /// Implicit GEMM on 64 (positions) x 64 (channels) x 8 workgroup-memory tiles, 4 x 4 per
    /// invocation (conv_fwd_shared): for GPUs. Falls back to `Blocked` when the positions need more
    /// than the grid's 65,535 tiles in one dimension.
    Shared,
    /// The same kernel on 128 (positions) x 32 (channels) x 8 tiles ([`NARROW`]): a layer of 32
    /// output channels wastes half of every 64-wide tile, none of these.
    Narrow,
    /// The same kernel on 64 x 32 x 8 tiles ([`SMALL`]): twice the workgroups of `Narrow`, for
    /// layers with few output positions.
    Small,
    /// `Blocked` with the weights loaded once per subgroup and shuffled to every lane
    /// (conv_sg.wgsl); `Blocked` itself on a device without subgroups.
    Subgroup,
    /// `Subgroup` with wider pixel groups: 5-8 pixels of a row ([`wide_px`]) per invocation, the
    /// same channel block, so each shuffled weight feeds more multiply-adds and no pixels lie past
    /// the row's end where the width allows.
    SubgroupWide,
    /// `Subgroup` on workgroups of [`PARTIAL_WG`] invocations: checked, never tuned.
    SubgroupPartial,
}

/// Every forward variant, declared once: the default first, then the tuned ones in the order the
/// tuner screens them, the direct kernel (an oracle, never tuned) and the test-only twin.
pub static FWD_VARIANTS: &[Decl<ConvFwdVariant>] = &[
    Decl::tuned("blocked", ConvFwdVariant::Blocked),
    Decl::tuned("shared64x64x8", ConvFwdVariant::Shared),
    Decl::tuned("shared128x32x8", ConvFwdVariant::Narrow),
    Decl::tuned("shared64x32x8", ConvFwdVariant::Small),
    Decl::tuned("subgroup", ConvFwdVariant::Subgroup).subgroups(),
    Decl::tuned("subgroup_wide", ConvFwdVariant::SubgroupWide).subgroups(),
    Decl::test_only("subgroup36", ConvFwdVariant::SubgroupPartial).subgroups(),
];

/// Every backward-data variant, declared once (as [`FWD_VARIANTS`]).
pub static DATA_VARIANTS: &[Decl<ConvBwdDataVariant>] = &[
    Decl::tuned("blocked", ConvBwdDataVariant::Blocked),
    Decl::tuned("shared128x32x8", ConvBwdDataVariant::Narrow),
    Decl::tuned("subgroup_wide", ConvBwdDataVariant::SubgroupWide).subgroups(),
    // Its forward is subgroup_wide's kernel where the device has subgroups, blocked's elsewhere:
    // it runs on every device.
    Decl::tuned("flipped", ConvBwdDataVariant::Flipped),
    Decl::test_only("subgroup36", ConvBwdDataVariant::SubgroupPartial).subgroups(),
];

/// Every weight-gradient variant, declared once (as [`FWD_VARIANTS`]).
pub static WEIGHT_VARIANTS: &[Decl<ConvBwdWeightVariant>] = &[
    Decl::tuned("rows", ConvBwdWeightVariant::Rows),
    Decl::tuned("split", ConvBwdWeightVariant::Split),
    Decl::tuned("shared64x64x8", ConvBwdWeightVariant::Shared),
    Decl::tuned("shared32x32x16r4x4", ConvBwdWeightVariant::Tiny),
    Decl::tuned("rows_subgroup", ConvBwdWeightVariant::RowsSubgroup).subgroups(),
    Decl::tuned("rows_subgroup16", ConvBwdWeightVariant::RowsSubgroup16).subgroups(),
    Decl::test_only("rows_subgroup36", ConvBwdWeightVariant::RowsSubgroupPartial).subgroups(),
];

/// The [`FamilyVariant`] impl of a convolution variant type.
macro_rules! family_variant {
    ($t:ty, $table:ident) => {
        impl FamilyVariant for $t {
            fn decls() -> &'static [Decl<$t>] {
                $table
            }
            fn default_variant() -> $t {
                <$t>::DEFAULT
            }
        }
    };
}
family_variant!(ConvFwdVariant, FWD_VARIANTS);
family_variant!(ConvBwdDataVariant, DATA_VARIANTS);
family_variant!(ConvBwdWeightVariant, WEIGHT_VARIANTS);

/// The implicit GEMMs' tiling (shaders/conv_tiles.wgsl), (WX, WY, TM, TN, BK): a 16 x 16
/// workgroup, 4 x 4 outputs per invocation, K-steps of 8: 64 x 64 tiles, 4 KiB of workgroup memory.
const SHARED: (u32, u32, u32, u32, u32) = (16, 16, 4, 4, 8);
/// The narrow tiling: an 8 x 32 workgroup, 4 x 4 per invocation: 128 (positions) x 32 (channels)
/// tiles, 5 KiB of workgroup memory. The FER network's first two layers have 32 channels.
pub const NARROW: (u32, u32, u32, u32, u32) = (8, 32, 4, 4, 8);
/// The small tiling: an 8 x 16 workgroup, 4 x 4 per invocation: 64 x 32 tiles, 3 KiB. (The FER
/// network's third layer has 25,600 positions at batch 256: 200 workgroups of 128 x 32 leave most
/// of a large GPU idle.)
pub const SMALL: (u32, u32, u32, u32, u32) = (8, 16, 4, 4, 8);

/// The WGSL file the implicit-GEMM kernels share.
const TILES: (&str, &str) = ("conv_tiles", include_str!("../../shaders/conv_tiles.wgsl"));
/// The forward and backward-data kernels' bindings, shared by conv.wgsl and conv_sg.wgsl.
const IO: (&str, &str) = ("conv_io", include_str!("../../shaders/conv_io.wgsl"));

impl ConvFwdVariant {
    pub const DEFAULT: ConvFwdVariant = ConvFwdVariant::Blocked;
    /// The workgroup-memory tiling of the implicit-GEMM variants.
    pub fn tiling(&self) -> Option<(u32, u32, u32, u32, u32)> {
        match self {
            ConvFwdVariant::Shared => Some(SHARED),
            ConvFwdVariant::Narrow => Some(NARROW),
            ConvFwdVariant::Small => Some(SMALL),
            _ => None,
        }
    }
}

/// Invocations per workgroup (a power of two: the weight-gradient reduction halves it).
const CONV_WG: u32 = 64;
/// Invocations per workgroup of the checked-only subgroup variants ([`ConvFwdVariant::checked`]
/// and the like): 36 leaves a subgroup of 8, 16 or 32 lanes partly empty, so the kernels' path for
/// a subgroup that is not full runs on the devices of those sizes.
const PARTIAL_WG: u32 = 36;
/// Channel blocks (output channels per invocation in the blocked forward, input channels in the
/// backward data): a block of 16 gives each gathered input 16 multiply-adds per load; fewer
/// channels than that take the smallest block that covers them, so no lanes compute padding.
/// (BENCHMARKS.md: 16 beat 8 by 15-25 % at FER sizes; 32 spilled registers. Blocks of 1 and 2:
/// conv1's backward data has one input channel, and a block of 4 computed it four times.)
const CHANNEL_BLOCKS: [u32; 5] = [1, 2, 4, 8, 16];

fn channel_block(channels: usize) -> u32 {
    CHANNEL_BLOCKS.into_iter().find(|&b| b as usize >= channels).unwrap_or(16)
}

impl KernelParams for ConvParams {
    const WGSL: &'static str = "ConvParams";
}

/// The forward's output-channel block and the backward data's input-channel block.
/// The blocked kernels' channel blocks, with placeholders for conv_fwd_shared's tiling.
fn spec(cob: u32, cib: u32) -> Spec {
    wg_spec(CONV_WG, cob, cib)
}

/// `spec` on workgroups of `wg` invocations (the subgroup kernels and their checked-only twins).
fn wg_spec(wg: u32, cob: u32, cib: u32) -> Spec {
    px_spec(wg, cob, cib, 4)
}

/// `wg_spec` with `px` pixels per invocation (conv_sg.wgsl's PX).
fn px_spec(wg: u32, cob: u32, cib: u32, px: u32) -> Spec {
    tiles(Spec::new().u("WG", wg).u("COB", cob).u("CIB", cib).u("PX", px), (1, 1, 4, 4, 4))
}

/// The pixels of a row per invocation of the `SubgroupWide` variants: of 5 to 8, the one that
/// leaves the fewest pixels past the end of a row of `width`, the widest of those on a tie (21
/// and 42: 7; 10 and 20: 5; 16: 8).
pub fn wide_px(width: usize) -> u32 {
    (5..=8u32).rev().min_by_key(|&px| width.div_ceil(px as usize) * px as usize - width).unwrap_or(4)
}

fn tiled_spec(cob: u32, cib: u32, tiling: (u32, u32, u32, u32, u32)) -> Spec {
    tiles(Spec::new().u("WG", CONV_WG).u("COB", cob).u("CIB", cib), tiling)
}

/// `spec` with conv_tiles.wgsl's tiling constants. The real tilings keep BM dividing the
/// workgroup's invocations and BM x BK a multiple of them (each invocation loads the A tile at one
/// row); the placeholders of the other kernels need not.
fn tiles(spec: Spec, (wx, wy, tm, tn, bk): (u32, u32, u32, u32, u32)) -> Spec {
    spec.u("WX", wx).u("WY", wy).u("TM", tm).u("TN", tn).u("BM", wy * tm).u("BN", wx * tn).u("BK", bk)
}

/// Whether `tiling` meets the A-tile loads' conditions (see [`tiles`]).
const fn tiling_ok((wx, wy, tm, tn, bk): (u32, u32, u32, u32, u32)) -> bool {
    let (threads, bm, bn) = (wx * wy, wy * tm, wx * tn);
    threads.is_multiple_of(bm) && (bm * bk).is_multiple_of(threads) && (bn * bk).is_multiple_of(threads)
}
const _: () = assert!(tiling_ok(SHARED) && tiling_ok(NARROW) && tiling_ok(SMALL));

pub static SHADER: ShaderDef = ShaderDef {
    name: "conv",
    source: include_str!("../../shaders/conv.wgsl"),
    parts: &[TILES, IO],
    params: ParamsDecl::of::<ConvParams>(),
    entries: &[
        ("conv_fwd_blocked", 3, 1),
        ("conv_fwd_shared", 3, 1),
        ("conv_bwd_data", 2, 1),
        ("conv_bwd_data_shared", 2, 1),
        ("conv_flip_weights", 1, 1),
    ],
    specs: || {
        let blocks = CHANNEL_BLOCKS.iter().flat_map(|&a| CHANNEL_BLOCKS.iter().map(move |&b| spec(a, b)));
        let tilings = [SHARED, NARROW, SMALL].map(|t| tiled_spec(16, 16, t));
        blocks.chain(tilings).collect()
    },
    unchecked: true,
    extension: Extension::None,
};

/// The blocked forward and backward data with their weights shuffled within a subgroup.
pub static SHADER_SG: ShaderDef = ShaderDef {
    name: "conv_sg",
    source: include_str!("../../shaders/conv_sg.wgsl"),
    parts: &[IO, super::gemm::SUBGROUP],
    params: ParamsDecl::of::<ConvParams>(),
    entries: &[("conv_fwd_subgroup", 3, 1), ("conv_bwd_data_subgroup", 2, 1)],
    specs: || {
        let blocks = || CHANNEL_BLOCKS.iter().flat_map(|&a| CHANNEL_BLOCKS.iter().map(move |&b| (a, b)));
        let wide = (5..=8).flat_map(move |px| blocks().map(move |(a, b)| px_spec(CONV_WG, a, b, px)));
        [CONV_WG, PARTIAL_WG]
            .iter()
            .flat_map(|&wg| blocks().map(move |(a, b)| wg_spec(wg, a, b)))
            .chain(wide)
            .collect()
    },
    unchecked: true,
    extension: Extension::Subgroups,
};

fn params(op: &str, s: &Conv2dShape, flags: u32) -> Result<ConvParams, GpuError> {
    s.validate().map_err(|m| GpuError::shape(op, m))?;
    let u = |what: &str, v: usize| to_u32(op, what, v);
    // Every index the kernels form must fit in 32 bits.
    u("input elements", s.x_len())?;
    u("output elements", s.y_len())?;
    Ok(ConvParams {
        n: u("n", s.n)?,
        cin: u("cin", s.cin)?,
        h: u("h", s.h)?,
        w: u("w", s.w)?,
        cout: u("cout", s.cout)?,
        kh: u("kh", s.kh)?,
        kw: u("kw", s.kw)?,
        oh: u("oh", s.oh())?,
        ow: u("ow", s.ow())?,
        stride_y: u("sy", s.sy)?,
        stride_x: u("sx", s.sx)?,
        pad_y: u("py", s.py)?,
        pad_x: u("px", s.px)?,
        flags,
        rps: 0,
        slices: 0,
    })
}

/// Position tiles of an implicit GEMM with `tiling` over `positions` rows.
fn position_tiles(positions: usize, (_, wy, tm, _, _): (u32, u32, u32, u32, u32)) -> usize {
    positions.div_ceil((wy * tm) as usize)
}

/// The forward variant whose kernel computes `s` when `v` is asked for on `caps` (the family's one
/// fallback rule, `kernels::registry::Op::resolve`): the subgroup variants need subgroups
/// of sizes they support, the implicit GEMMs their position tiles within the grid's workgroups per
/// dimension; `Blocked` otherwise.
pub fn resolve_fwd(s: &Conv2dShape, v: ConvFwdVariant, caps: &Caps) -> ConvFwdVariant {
    let positions = s.n * s.oh() * s.ow();
    match v.tiling() {
        _ if !v.subgroups_allow(caps) => ConvFwdVariant::Blocked,
        Some(t) if position_tiles(positions, t) > caps.max_groups => ConvFwdVariant::Blocked,
        _ => v,
    }
}

/// The backward-data variant whose kernel computes `s` when `v` is asked for on `caps`: `Flipped`
/// at stride 1 with each padding short of its kernel ([`flipped_shape`]), `SubgroupWide`'s choice
/// elsewhere; the others as [`resolve_fwd`]'s (over the input's positions).
pub fn resolve_data(s: &Conv2dShape, v: ConvBwdDataVariant, caps: &Caps) -> ConvBwdDataVariant {
    let positions = s.n * s.h * s.w;
    match v.tiling() {
        _ if v == ConvBwdDataVariant::Flipped && flipped_shape(s).is_none() => {
            resolve_data(s, ConvBwdDataVariant::SubgroupWide, caps)
        }
        _ if !v.subgroups_allow(caps) => ConvBwdDataVariant::Blocked,
        Some(t) if position_tiles(positions, t) > caps.max_groups => ConvBwdDataVariant::Blocked,
        _ => v,
    }
}

/// The weight-gradient variant whose kernel computes `s` when `v` is asked for on `caps`: the rows
/// kernels are specialized for kernels at most [`WGRAD_MAX_KW`] wide (wider: `Split`), the
/// subgroup ones need subgroups of sizes they support (else `Rows`).
pub fn resolve_weight(s: &Conv2dShape, v: ConvBwdWeightVariant, caps: &Caps) -> ConvBwdWeightVariant {
    use ConvBwdWeightVariant as W;
    let rows = matches!(v, W::Rows | W::RowsSubgroup | W::RowsSubgroup16 | W::RowsSubgroupPartial);
    match v {
        _ if rows && s.kw > WGRAD_MAX_KW => W::Split,
        _ if !v.subgroups_allow(caps) => W::Rows,
        _ => v,
    }
}

/// The grid of an implicit GEMM with `tiling` over `positions` rows and `channels` columns
/// (channel tiles on x, position tiles on y; the resolve functions keep the position tiles within
/// the device's workgroups per dimension).
fn shared_grid(
    op: &str,
    positions: usize,
    channels: usize,
    tiling: (u32, u32, u32, u32, u32),
) -> Result<[u32; 3], GpuError> {
    let (wx, _, _, tn, _) = tiling;
    let channel_tiles = to_u32(op, "channel tiles", channels.div_ceil((wx * tn) as usize))?;
    Ok([channel_tiles, to_u32(op, "position tiles", position_tiles(positions, tiling))?, 1])
}

/// `y = conv(x, w) (+ bias) (then ReLU)`; see [`crate::cpu::conv2d_forward`].
pub fn conv2d_forward(
    gpu: &Gpu,
    s: &Conv2dShape,
    x: &Tensor,
    w: &Tensor,
    y: &Tensor,
    ep: &Epilogue,
    variant: ConvFwdVariant,
) -> Result<Dispatch, GpuError> {
    let op = format!("conv2d_forward {s}");
    if ep.accumulate {
        return Err(GpuError::shape(&op, "the forward convolution does not accumulate"));
    }
    let p = params(&op, s, ep.flags())?;
    check_len(&op, "x", x, s.x_len())?;
    check_len(&op, "weight", w, s.w_len())?;
    check_len(&op, "y", y, s.y_len())?;
    if let Some(b) = ep.bias {
        check_len(&op, "bias", b, s.cout)?;
    }
    let bias = ep.bias.unwrap_or(gpu.dummy());
    let variant = resolve_fwd(s, variant, &Caps::of(gpu));
    if let Some(tiling) = variant.tiling() {
        let groups = shared_grid(&op, s.n * s.oh() * s.ow(), s.cout, tiling)?;
        let sp = tiled_spec(16, 16, tiling);
        return gpu.prepare(&op, &SHADER, "conv_fwd_shared", &sp, &[x, w, bias], &[y], &p, groups);
    }
    let (wg, px) = match variant {
        ConvFwdVariant::Subgroup => (Some(CONV_WG), 4),
        ConvFwdVariant::SubgroupWide => (Some(CONV_WG), wide_px(s.ow())),
        ConvFwdVariant::SubgroupPartial => (Some(PARTIAL_WG), 4),
        _ => (None, 4),
    };
    let cob = channel_block(s.cout);
    let mut groups = grid_for(gpu, s.n * s.oh() * s.ow().div_ceil(px as usize), wg.unwrap_or(CONV_WG));
    groups[2] = to_u32(&op, "channel blocks", s.cout.div_ceil(cob as usize))?;
    match wg {
        Some(wg) => {
            let sp = px_spec(wg, cob, 16, px);
            gpu.prepare(&op, &SHADER_SG, "conv_fwd_subgroup", &sp, &[x, w, bias], &[y], &p, groups)
        }
        None => {
            gpu.prepare(&op, &SHADER, "conv_fwd_blocked", &spec(cob, 16), &[x, w, bias], &[y], &p, groups)
        }
    }
}

/// Backward-data variants ([`DATA_VARIANTS`] declares them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvBwdDataVariant {
    /// Four neighbouring input pixels of a row x 4, 8 or 16 input channels per invocation.
    Blocked,
    /// Implicit GEMM on 128 (positions) x 32 (input channels) x 8 workgroup-memory tiles
    /// ([`NARROW`], conv_bwd_data_shared): for GPUs. Falls back to `Blocked` when the positions
    /// need more than the grid's tiles in one dimension.
    Narrow,
    /// `Blocked` with the weights loaded once per subgroup and shuffled to every lane, 5-8 pixels
    /// of a row per invocation (conv_sg.wgsl, as [`ConvFwdVariant::SubgroupWide`]); `Blocked`
    /// itself on a device without subgroups.
    SubgroupWide,
    /// At stride 1 with each padding short of its kernel: the forward convolution of dy with the
    /// weights flipped ([`flipped_shape`]; conv.wgsl's conv_flip_weights writes them to a buffer
    /// of the weights' size), by the forward's `SubgroupWide` kernel (`Blocked` without
    /// subgroups). Elsewhere `SubgroupWide`. On lavapipe it ran the FER layers' backward data
    /// 11-36 % faster than `SubgroupWide` (paired; BENCHMARKS.md, session 12).
    Flipped,
    /// `Subgroup` on workgroups of [`PARTIAL_WG`] invocations: checked, never tuned.
    SubgroupPartial,
}

/// The forward convolution whose output is the backward data of `s` (stride 1, each padding less
/// than its kernel: `None` otherwise): dy's channels in, x's out, the flipped weights, padding
/// k − 1 − p. Its output has x's height and width.
pub fn flipped_shape(s: &Conv2dShape) -> Option<Conv2dShape> {
    (s.sy == 1 && s.sx == 1 && s.py < s.kh && s.px < s.kw).then(|| Conv2dShape {
        n: s.n,
        cin: s.cout,
        h: s.oh(),
        w: s.ow(),
        cout: s.cin,
        kh: s.kh,
        kw: s.kw,
        sy: 1,
        sx: 1,
        py: s.kh - 1 - s.py,
        px: s.kw - 1 - s.px,
    })
}

impl ConvBwdDataVariant {
    pub const DEFAULT: ConvBwdDataVariant = ConvBwdDataVariant::Blocked;
    /// The workgroup-memory tiling of the implicit-GEMM variants.
    pub fn tiling(&self) -> Option<(u32, u32, u32, u32, u32)> {
        match self {
            ConvBwdDataVariant::Narrow => Some(NARROW),
            _ => None,
        }
    }
}

/// `dx = ∂(Σ y·dy)/∂x`; see [`crate::cpu::conv2d_backward_data`]. Returns the dispatches to run
/// in order (the flipped variant owns a buffer of flipped weights, kept alive by its bindings).
pub fn conv2d_backward_data(
    gpu: &Gpu,
    s: &Conv2dShape,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    variant: ConvBwdDataVariant,
) -> Result<Vec<Dispatch>, GpuError> {
    let op = format!("conv2d_backward_data {s}");
    let p = params(&op, s, 0)?;
    check_len(&op, "dy", dy, s.y_len())?;
    check_len(&op, "weight", w, s.w_len())?;
    check_len(&op, "dx", dx, s.x_len())?;
    let caps = Caps::of(gpu);
    let variant = resolve_data(s, variant, &caps);
    if let (ConvBwdDataVariant::Flipped, Some(fs)) = (variant, flipped_shape(s)) {
        let flip = gpu.empty(&[s.w_len()], crate::gpu::DType::F32)?;
        let groups = grid_for(gpu, s.w_len(), CONV_WG);
        let sp = spec(16, 16);
        let ep = Epilogue { bias: None, accumulate: false, relu: false };
        let fwd = resolve_fwd(&fs, ConvFwdVariant::SubgroupWide, &caps);
        // Both dispatches carry the backward data's name (profiles, errors).
        let mut conv = conv2d_forward(gpu, &fs, dy, &flip, dx, &ep, fwd)?;
        conv.name = op.clone();
        return Ok(vec![
            gpu.prepare(&op, &SHADER, "conv_flip_weights", &sp, &[w], &[&flip], &p, groups)?,
            conv,
        ]);
    }
    if let Some(tiling) = variant.tiling() {
        let groups = shared_grid(&op, s.n * s.h * s.w, s.cin, tiling)?;
        let sp = tiled_spec(16, 16, tiling);
        let d = gpu.prepare(&op, &SHADER, "conv_bwd_data_shared", &sp, &[dy, w], &[dx], &p, groups)?;
        return Ok(vec![d]);
    }
    let (wg, px) = match variant {
        ConvBwdDataVariant::SubgroupWide => (Some(CONV_WG), wide_px(s.w)),
        ConvBwdDataVariant::SubgroupPartial => (Some(PARTIAL_WG), 4),
        _ => (None, 4),
    };
    let cib = channel_block(s.cin);
    let mut groups = grid_for(gpu, s.n * s.h * s.w.div_ceil(px as usize), wg.unwrap_or(CONV_WG));
    groups[2] = to_u32(&op, "channel blocks", s.cin.div_ceil(cib as usize))?;
    let d = match wg {
        Some(wg) => {
            let sp = px_spec(wg, 16, cib, px);
            gpu.prepare(&op, &SHADER_SG, "conv_bwd_data_subgroup", &sp, &[dy, w], &[dx], &p, groups)?
        }
        None => gpu.prepare(&op, &SHADER, "conv_bwd_data", &spec(16, cib), &[dy, w], &[dx], &p, groups)?,
    };
    Ok(vec![d])
}

/// Backward-weight variants ([`WEIGHT_VARIANTS`] declares them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvBwdWeightVariant {
    /// Split-K implicit GEMM: 4x4 blocks per invocation over batch slices, then a fixed-order sum.
    Split,
    /// Split over batch slices, each invocation owning `WGRAD_COB` output channels x one kernel row,
    /// specialized on the kernel width (shaders/conv_wgrad.wgsl); kernels wider than
    /// `WGRAD_MAX_KW` use [`ConvBwdWeightVariant::Split`].
    Rows,
    /// Split-K implicit GEMM on 64 (output channels) x 64 (columns) x 8 workgroup-memory tiles
    /// ([`SHARED`]) over slices sized for about [`TILE_GROUPS`] workgroups
    /// (conv_bwd_weight_shared): for GPUs.
    Shared,
    /// `Shared` on 32 x 32 x 16 tiles of 64 invocations, 4 x 4 each ([`WGRAD_TINY`]): the FER
    /// layers' 32 x 25 and 32 x 512 gradients wasted most of a 64 x 64 tile.
    Tiny,
    /// `Rows` with the gradients loaded once per subgroup and shuffled to every lane
    /// (conv_wgrad_sg.wgsl); `Rows` itself on a device without subgroups.
    RowsSubgroup,
    /// `RowsSubgroup` with 16 output channels per invocation instead of [`WGRAD_COB`]: each
    /// gathered input feeds twice the multiply-adds, for twice the accumulators (16 x KW).
    RowsSubgroup16,
    /// `RowsSubgroup` on workgroups of [`PARTIAL_WG`] invocations: checked, never tuned.
    RowsSubgroupPartial,
}

/// The weight gradient's tilings besides [`SHARED`] (conv_tiles.wgsl's constants; the kernel
/// needs THREADS a multiple of BK and BM·BK, BN·BK multiples of THREADS: [`wgrad_tiling_ok`]).
pub const WGRAD_TINY: (u32, u32, u32, u32, u32) = (8, 8, 4, 4, 16);

const fn wgrad_tiling_ok((wx, wy, tm, tn, bk): (u32, u32, u32, u32, u32)) -> bool {
    let (threads, bm, bn) = (wx * wy, wy * tm, wx * tn);
    threads.is_multiple_of(bk) && (bm * bk).is_multiple_of(threads) && (bn * bk).is_multiple_of(threads)
}
const _: () = assert!(wgrad_tiling_ok(SHARED) && wgrad_tiling_ok(WGRAD_TINY));

/// The workgroups the tiled weight gradients' slices aim for (tiles x slices): a large GPU's
/// multiprocessors a few workgroups each, at the FER layers' sizes.
pub const TILE_GROUPS: usize = 1024;
/// The fewest output positions a slice of the tiled weight gradients holds (K-steps per
/// workgroup, against one partial sum per weight and slice).
const TILE_MIN_POSITIONS: usize = 256;

impl ConvBwdWeightVariant {
    pub const DEFAULT: ConvBwdWeightVariant = ConvBwdWeightVariant::Rows;
    /// The workgroup-memory tiling of the tiled variants.
    pub fn tiling(&self) -> Option<(u32, u32, u32, u32, u32)> {
        match self {
            ConvBwdWeightVariant::Shared => Some(SHARED),
            ConvBwdWeightVariant::Tiny => Some(WGRAD_TINY),
            _ => None,
        }
    }
}

/// Output channels per invocation of `conv_bwd_weight_rows`.
const WGRAD_COB: u32 = 8;
/// The widest kernel `conv_bwd_weight_rows` is specialized for (its accumulators are COB x KW).
pub const WGRAD_MAX_KW: usize = 8;

/// The weight-gradient shader's specialization; only the rows kernel reads KW (the others use
/// KW = 1), only the shared kernel the tiling (placeholders for the others).
fn wgrad_spec(kw: u32) -> Spec {
    wgrad_wg_spec(CONV_WG, kw)
}

/// `wgrad_spec` on workgroups of `wg` invocations (the rows kernels).
fn wgrad_wg_spec(wg: u32, kw: u32) -> Spec {
    wgrad_cob_spec(wg, kw, WGRAD_COB)
}

/// `wgrad_wg_spec` with `cob` output channels per invocation.
fn wgrad_cob_spec(wg: u32, kw: u32, cob: u32) -> Spec {
    tiles(Spec::new().u("WG", wg).u("COB", cob).u("KW", kw), (1, 1, 4, 4, 4))
}

/// The weight-gradient shader's specialization for conv_bwd_weight_shared on `tiling`.
fn wgrad_shared_spec(tiling: (u32, u32, u32, u32, u32)) -> Spec {
    tiles(Spec::new().u("WG", CONV_WG).u("COB", WGRAD_COB).u("KW", 1), tiling)
}

/// The weight-gradient kernels' bindings, shared by conv_wgrad.wgsl and conv_wgrad_sg.wgsl.
const WGRAD_IO: (&str, &str) = ("conv_wgrad_io", include_str!("../../shaders/conv_wgrad_io.wgsl"));

pub static WGRAD_SHADER: ShaderDef = ShaderDef {
    name: "conv_wgrad",
    source: include_str!("../../shaders/conv_wgrad.wgsl"),
    parts: &[TILES, WGRAD_IO],
    params: ParamsDecl::of::<ConvParams>(),
    entries: &[
        ("conv_bwd_weight_split", 2, 1),
        ("conv_bwd_weight_rows", 2, 1),
        ("conv_bwd_weight_shared", 2, 1),
    ],
    specs: || {
        let tilings = [SHARED, WGRAD_TINY].map(wgrad_shared_spec);
        (1..=WGRAD_MAX_KW as u32).map(wgrad_spec).chain(tilings).collect()
    },
    unchecked: true,
    extension: Extension::None,
};

/// The rows weight gradient with its gradients shuffled within a subgroup.
pub static WGRAD_SHADER_SG: ShaderDef = ShaderDef {
    name: "conv_wgrad_sg",
    source: include_str!("../../shaders/conv_wgrad_sg.wgsl"),
    parts: &[WGRAD_IO, super::gemm::SUBGROUP],
    params: ParamsDecl::of::<ConvParams>(),
    entries: &[("conv_bwd_weight_rows_subgroup", 2, 1)],
    specs: || {
        let kws = || 1..=WGRAD_MAX_KW as u32;
        let sixteen = kws().map(|kw| wgrad_cob_spec(CONV_WG, kw, 16));
        [CONV_WG, PARTIAL_WG]
            .iter()
            .flat_map(|&wg| kws().map(move |kw| wgrad_wg_spec(wg, kw)))
            .chain(sixteen)
            .collect()
    },
    unchecked: true,
    extension: Extension::Subgroups,
};

/// Batch samples per slice of the split weight gradient: about 1024 output positions per
/// invocation, so each does enough work while the batch still spreads over many invocations.
fn samples_per_slice(s: &Conv2dShape) -> usize {
    1024usize.div_ceil(s.oh() * s.ow()).clamp(1, s.n)
}

/// The most partial sums the tiled variants allocate (64 MiB), and never more than a binding of
/// the device holds; beyond it they take coarser slices.
const TILE_SCRATCH: usize = 16 << 20;

/// Output rows per slice of a tiled variant whose tiling covers the gradient with `tiles`
/// workgroups: slices for about [`TILE_GROUPS`] workgroups, of at least [`TILE_MIN_POSITIONS`]
/// positions, and no more partial sums than `cap` and [`TILE_SCRATCH`] allow.
fn tile_rows(s: &Conv2dShape, tiles: usize, cap: usize) -> usize {
    let rows = s.n * s.oh();
    let by_groups = rows.div_ceil(TILE_GROUPS.div_ceil(tiles.max(1)));
    let by_positions = TILE_MIN_POSITIONS.div_ceil(s.ow());
    let by_scratch = rows.div_ceil((cap.min(TILE_SCRATCH) / s.w_len().max(1)).max(1));
    by_groups.max(by_positions).max(by_scratch).clamp(1, rows)
}

/// The workgroups of `tiling` that cover the gradient of `s` (output channels x columns).
fn wgrad_tiles(s: &Conv2dShape, (wx, wy, tm, tn, _): (u32, u32, u32, u32, u32)) -> (usize, usize) {
    ((s.cin * s.kh * s.kw).div_ceil((wx * tn) as usize), s.cout.div_ceil((wy * tm) as usize))
}

/// Output rows (b, oy) per slice of `variant`: whole samples for the register-blocked kernels,
/// the tiled variants' within `cap` partial sums.
fn rows_per_slice(s: &Conv2dShape, variant: ConvBwdWeightVariant, cap: usize) -> usize {
    match variant.tiling() {
        Some(tiling) => {
            let (cols, chans) = wgrad_tiles(s, tiling);
            tile_rows(s, cols * chans, cap)
        }
        None => samples_per_slice(s) * s.oh(),
    }
}

/// The values of the scratch buffer of partial sums `variant` allocates for `s` on a device whose
/// bindings hold `cap` values: slices x weights. The register-blocked variants' is what a step's
/// buffer plan counts: theirs does not depend on the device, and the tiled ones stay within the
/// binding limit by taking coarser slices.
pub fn weight_grad_scratch(s: &Conv2dShape, variant: ConvBwdWeightVariant, cap: usize) -> usize {
    (s.n * s.oh()).div_ceil(rows_per_slice(s, variant, cap)) * s.w_len()
}

/// `dw (+)= Σ dy · x`; see [`crate::cpu::conv2d_backward_weight`]. Returns the dispatches to run
/// in order (the split variant owns a scratch buffer of partial sums, kept alive by its bindings).
pub fn conv2d_backward_weight(
    gpu: &Gpu,
    s: &Conv2dShape,
    x: &Tensor,
    dy: &Tensor,
    dw: &Tensor,
    accumulate: bool,
    variant: ConvBwdWeightVariant,
) -> Result<Vec<Dispatch>, GpuError> {
    let op = format!("conv2d_backward_weight {s}");
    let mut p = params(&op, s, (accumulate as u32) << 1)?;
    check_len(&op, "x", x, s.x_len())?;
    check_len(&op, "dy", dy, s.y_len())?;
    check_len(&op, "dw", dw, s.w_len())?;
    let variant = resolve_weight(s, variant, &Caps::of(gpu));
    // Partial sums per slice of output rows, then their fixed-order sum.
    let cap = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size) / 4;
    let rps = rows_per_slice(s, variant, usize::try_from(cap).unwrap_or(usize::MAX));
    let slices = (s.n * s.oh()).div_ceil(rps);
    p.rps = to_u32(&op, "rows per slice", rps)?;
    p.slices = to_u32(&op, "slices", slices)?;
    let partial = gpu.empty(&[slices, s.w_len()], crate::gpu::DType::F32)?;
    let partials = if let Some(tiling) = variant.tiling() {
        let (cols, chans) = wgrad_tiles(s, tiling);
        let groups = [to_u32(&op, "column tiles", cols)?, to_u32(&op, "channel tiles", chans)?, p.slices];
        let sp = wgrad_shared_spec(tiling);
        gpu.prepare(&op, &WGRAD_SHADER, "conv_bwd_weight_shared", &sp, &[x, dy], &[&partial], &p, groups)?
    } else if let Some((wg, shader, entry)) = match variant {
        ConvBwdWeightVariant::Rows => Some((CONV_WG, &WGRAD_SHADER, "conv_bwd_weight_rows")),
        ConvBwdWeightVariant::RowsSubgroup | ConvBwdWeightVariant::RowsSubgroup16 => {
            Some((CONV_WG, &WGRAD_SHADER_SG, "conv_bwd_weight_rows_subgroup"))
        }
        ConvBwdWeightVariant::RowsSubgroupPartial => {
            Some((PARTIAL_WG, &WGRAD_SHADER_SG, "conv_bwd_weight_rows_subgroup"))
        }
        _ => None,
    } {
        let cob = if variant == ConvBwdWeightVariant::RowsSubgroup16 { 16 } else { WGRAD_COB };
        let row_groups = (s.cin * s.kh).div_ceil(wg as usize);
        let mut groups = grid_1d(slices * row_groups, gpu.fold_width());
        groups[2] = to_u32(&op, "channel blocks", s.cout.div_ceil(cob as usize))?;
        let sp = wgrad_cob_spec(wg, p.kw, cob);
        gpu.prepare(&op, shader, entry, &sp, &[x, dy], &[&partial], &p, groups)?
    } else {
        let threads = slices * s.cout.div_ceil(4) * (s.cin * s.kh * s.kw).div_ceil(4);
        let groups = grid_for(gpu, threads, CONV_WG);
        gpu.prepare(
            &op,
            &WGRAD_SHADER,
            "conv_bwd_weight_split",
            &wgrad_spec(1),
            &[x, dy],
            &[&partial],
            &p,
            groups,
        )?
    };
    let reduce = super::reduce::slice_sum(gpu, slices, s.w_len(), &partial, dw, accumulate)?;
    Ok(vec![partials, reduce])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_pixel_groups_leave_the_fewest_pixels_past_a_row() {
        // The FER widths fit exactly; ties go to the widest group.
        for (width, px) in
            [(42, 7), (21, 7), (20, 5), (10, 5), (16, 8), (40, 8), (12, 6), (9, 5), (13, 7), (1, 5)]
        {
            assert_eq!(wide_px(width), px, "width {width}");
        }
        for width in 1..200usize {
            let px = wide_px(width) as usize;
            let waste = width.div_ceil(px) * px - width;
            assert!((5..=8).all(|q| width.div_ceil(q) * q - width >= waste), "width {width}");
        }
    }

    #[test]
    fn tiled_weight_gradient_slices_fill_the_grid_within_the_scratch() {
        let fer = crate::check::shapes::fer_convs(256);
        for (s, cap) in fer.iter().flat_map(|s| [(s, usize::MAX), (s, 1 << 20), (s, s.w_len())]) {
            for v in [ConvBwdWeightVariant::Shared, ConvBwdWeightVariant::Tiny] {
                let rps = rows_per_slice(s, v, cap);
                let slices = (s.n * s.oh()).div_ceil(rps);
                assert!(rps >= 1 && rps <= s.n * s.oh(), "{s} {}: {rps} rows a slice", v.name());
                assert!(
                    slices * s.w_len() <= cap.min(TILE_SCRATCH).max(s.w_len()),
                    "{s} {}: {slices}",
                    v.name()
                );
                assert!(rps * s.ow() >= TILE_MIN_POSITIONS.min(s.n * s.oh() * s.ow()), "{s} {}", v.name());
            }
        }
        // conv1 at batch 256: one 32 x 32 tile, 978 slices of 11 rows (1,024 workgroups' worth).
        let conv1 = &fer[0];
        assert_eq!(rows_per_slice(conv1, ConvBwdWeightVariant::Tiny, usize::MAX), 11);
        assert_eq!(weight_grad_scratch(conv1, ConvBwdWeightVariant::Tiny, usize::MAX), 978 * 800);
    }
}
