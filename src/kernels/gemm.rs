//! GEMM: `C[M,N] = op(A) · op(B)` with an optional bias / accumulate / ReLU epilogue.

use super::{check_len, to_u32, Epilogue};
use crate::gpu::{
    Bound, Dispatch, Extension, Gpu, GpuError, KernelParams, ParamsDecl, ShaderDef, Spec, Tensor,
};
use crate::shapes::{GemmShape, Trans};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub flags: u32,
    /// Split-K: K per split and the number of splits (0 for the other kernels).
    pub kc: u32,
    pub splits: u32,
    pub pad: [u32; 2],
}

/// Kernel variants; every one is covered by the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmVariant {
    /// One output per invocation: the fallback and oracle.
    Naive,
    /// `wx x wy` invocations, each computing `tm x tn` outputs.
    Tiled { wx: u32, wy: u32, tm: u32, tn: u32 },
    /// `wx x wy` invocations, each computing `tm` rows (a multiple of 4) x `tv` vec4 columns,
    /// reading A and B as vec4 (shaders/gemm4.wgsl). Used where the shape is vec4-aligned
    /// ([`vec4_aligned`]); other shapes fall back to [`GemmVariant::TILED`].
    Vec4 { wx: u32, wy: u32, tm: u32, tv: u32 },
    /// Workgroup-memory tiles for GPUs: `wx x wy` invocations compute a `(wy·tm) x (wx·tn)` tile
    /// of C, staging `bk`-deep tiles of A and B in workgroup memory (shaders/gemm.wgsl's
    /// `gemm_shared`). Any shape.
    Shared { wx: u32, wy: u32, tm: u32, tn: u32, bk: u32 },
    /// For skinny products with a long K (the top layer's 256 x 7 x 3072 forward): a workgroup of
    /// `wx` invocations (a power of two, at most 256) computes `tn` outputs of one row, splitting
    /// K among its invocations and adding their sums pairwise in a fixed order (gemm.wgsl's
    /// `gemm_dot`). Products wider than [`DOT_MAX_N`] columns, or with M beyond the device's
    /// workgroups per dimension, fall back to [`GemmVariant::TILED`].
    Dot { wx: u32, tn: u32 },
    /// `Shared`'s tiles with K split into slices of at least [`SPLIT_MIN_K`], as many as bring the
    /// workgroups to about [`SPLIT_GROUPS`] (gemm.wgsl's `gemm_split`), then the slices added in
    /// order with the epilogue (`gemm_split_sum`): for products with few tiles and a long K.
    /// A shape that gets one slice runs `Shared` itself.
    Split { wx: u32, wy: u32, tm: u32, tn: u32, bk: u32 },
    /// Where the device has subgroups: a row of `wx` invocations computes a `tm x (wx·tn)` tile,
    /// A's rows loaded once per subgroup (a lane per K) and shuffled to every lane
    /// (shaders/gemm_sg.wgsl). Any shape; without subgroups, [`GemmVariant::TILED`].
    Subgroup { wx: u32, tm: u32, tn: u32 },
    /// `Subgroup` with vec4 loads: a `tm x (wx·4·tv)` tile, `tm` a multiple of 4
    /// (shaders/gemm_sg4.wgsl). Vec4-aligned shapes ([`vec4_aligned`]); others run `Subgroup` on
    /// the same tile, devices without subgroups [`GemmVariant::TILED`].
    Subgroup4 { wx: u32, tm: u32, tv: u32 },
    /// `Vec4` with B read from an rgba32float texture (`textureLoad`, shaders/gemm4_btex.wgsl),
    /// into which a first dispatch copies it (shaders/tex_pack.wgsl): for GPUs whose texture
    /// path caches better than their buffer path. Shapes that are not vec4-aligned fall back as
    /// `Vec4` does; a B wider or taller (in texels) than the device's 2-D textures runs `Vec4`.
    Texture4 { wx: u32, wy: u32, tm: u32, tv: u32 },
    /// `Subgroup4` with B read from a texture, as `Texture4`; where B does not fit a texture,
    /// `Subgroup4` (and its fallbacks).
    SubgroupTexture4 { wx: u32, tm: u32, tv: u32 },
}

/// What [`resolve`] needs of a device: workgroups per dimension, the values a binding holds, and
/// whether it has subgroups.
#[derive(Clone, Copy, Debug)]
pub struct GemmDevice {
    pub max_groups: usize,
    pub cap: usize,
    pub subgroups: bool,
    /// Texels a side of a 2-D texture.
    pub max_texture: usize,
}

impl GemmDevice {
    /// Every device: 65,535 workgroups per dimension, no binding limit, subgroups, textures of
    /// 8192 texels a side (WebGPU's default).
    pub const ANY: GemmDevice =
        GemmDevice { max_groups: 65_535, cap: usize::MAX, subgroups: true, max_texture: 8192 };

    pub fn of(gpu: &Gpu) -> GemmDevice {
        let cap = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size) / 4;
        GemmDevice {
            max_groups: gpu.max_groups() as usize,
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            subgroups: gpu.subgroups,
            max_texture: gpu.limits.max_texture_dimension_2d as usize,
        }
    }
}

/// The widest product [`GemmVariant::Dot`] computes itself: it is for a top layer's few classes
/// (on lavapipe one run of it on fc1's 3072x1600x256 took 38 s, on an H200 it lost to the tiles
/// 30x at 256x3072x7).
pub const DOT_MAX_N: usize = 32;

/// The workgroups [`GemmVariant::Split`] aims for (tiles x splits), and the fewest K per split.
pub const SPLIT_GROUPS: usize = 1024;
pub const SPLIT_MIN_K: usize = 256;
/// At most this many splits (the partial products are splits x M x N values).
const SPLIT_MAX: usize = 64;

/// Whether `s` can be read as vec4: the dimension A and B are contiguous along is a multiple of 4
/// (NN: K and N; NT: K; TN: M and N).
pub fn vec4_aligned(s: &GemmShape) -> bool {
    match s.trans {
        Trans::NN => s.k.is_multiple_of(4) && s.n.is_multiple_of(4),
        Trans::NT => s.k.is_multiple_of(4),
        Trans::TN => s.m.is_multiple_of(4) && s.n.is_multiple_of(4),
    }
}

impl GemmVariant {
    pub const TILED: GemmVariant = GemmVariant::Tiled { wx: 16, wy: 16, tm: 4, tn: 4 };
    pub const DEFAULT: GemmVariant = GemmVariant::Vec4 { wx: 8, wy: 8, tm: 4, tv: 2 };

    /// Every variant the tests and `dlsvm check` exercise.
    pub fn all() -> Vec<GemmVariant> {
        vec![
            GemmVariant::Naive,
            GemmVariant::TILED,
            GemmVariant::Tiled { wx: 8, wy: 8, tm: 8, tn: 4 },
            GemmVariant::Tiled { wx: 16, wy: 4, tm: 2, tn: 2 },
            GemmVariant::DEFAULT,
            GemmVariant::Vec4 { wx: 8, wy: 8, tm: 8, tv: 1 },
            GemmVariant::Vec4 { wx: 16, wy: 4, tm: 4, tv: 1 },
            // 64x64x8, 128x64x16, 32x32x8 and 32x64x8 tiles: 4, 12, 2 and 3 KiB of workgroup
            // memory; the last with a 16x8 workgroup (rows and columns strided differently).
            GemmVariant::Shared { wx: 16, wy: 16, tm: 4, tn: 4, bk: 8 },
            GemmVariant::Shared { wx: 16, wy: 16, tm: 8, tn: 4, bk: 16 },
            GemmVariant::Shared { wx: 16, wy: 16, tm: 2, tn: 2, bk: 8 },
            GemmVariant::Shared { wx: 16, wy: 8, tm: 4, tn: 4, bk: 8 },
            GemmVariant::Dot { wx: 256, tn: 8 },
            GemmVariant::Dot { wx: 64, tn: 4 },
            GemmVariant::Split { wx: 16, wy: 16, tm: 4, tn: 4, bk: 8 },
            GemmVariant::Subgroup { wx: 64, tm: 8, tn: 4 },
            GemmVariant::Subgroup4 { wx: 64, tm: 8, tv: 1 },
            GemmVariant::Subgroup4 { wx: 64, tm: 16, tv: 1 },
            GemmVariant::Texture4 { wx: 8, wy: 8, tm: 4, tv: 2 },
            GemmVariant::SubgroupTexture4 { wx: 64, tm: 16, tv: 1 },
        ]
    }

    /// [`GemmVariant::all`] and the variants only the checks run: subgroup kernels whose 36
    /// invocations leave a subgroup of 8, 16 or 32 lanes partly empty, so their path for a
    /// subgroup that is not full is checked on the devices of those sizes.
    pub fn checked() -> Vec<GemmVariant> {
        let mut v = GemmVariant::all();
        v.push(GemmVariant::Subgroup { wx: 36, tm: 2, tn: 2 });
        v.push(GemmVariant::Subgroup4 { wx: 36, tm: 4, tv: 1 });
        v
    }

    pub fn name(&self) -> String {
        match self {
            GemmVariant::Naive => "naive".into(),
            GemmVariant::Tiled { wx, wy, tm, tn } => format!("tiled{wx}x{wy}r{tm}x{tn}"),
            GemmVariant::Vec4 { wx, wy, tm, tv } => format!("vec4_{wx}x{wy}r{tm}x{}", tv * 4),
            GemmVariant::Shared { wx, wy, tm, tn, bk } => {
                format!("shared{}x{}x{bk}r{tm}x{tn}", wy * tm, wx * tn)
            }
            GemmVariant::Dot { wx, tn } => format!("dot{wx}r{tn}"),
            GemmVariant::Split { wx, wy, tm, tn, bk } => {
                format!("split{}x{}x{bk}r{tm}x{tn}", wy * tm, wx * tn)
            }
            GemmVariant::Subgroup { wx, tm, tn } => format!("subgroup{wx}r{tm}x{tn}"),
            GemmVariant::Subgroup4 { wx, tm, tv } => format!("subgroup4_{wx}r{tm}x{}", tv * 4),
            GemmVariant::Texture4 { wx, wy, tm, tv } => format!("tex_vec4_{wx}x{wy}r{tm}x{}", tv * 4),
            GemmVariant::SubgroupTexture4 { wx, tm, tv } => format!("tex_subgroup4_{wx}r{tm}x{}", tv * 4),
        }
    }

    fn spec(&self, trans: Trans) -> Spec {
        // Every file takes the layout and its workgroup width; the rest is the file's own.
        let layout = |wx: u32| {
            Spec::new().b("TRANS_A", trans.a_transposed()).b("TRANS_B", trans.b_transposed()).u("WX", wx)
        };
        // gemm.wgsl's workgroup tiles are declared for every kernel of the file: placeholders of 4
        // where the kernel does not use them.
        let (wx, wy, tm, tn, bm, bn, bk) = match *self {
            GemmVariant::Naive => (16, 16, 1, 1, 4, 4, 4),
            GemmVariant::Tiled { wx, wy, tm, tn } => (wx, wy, tm, tn, 4, 4, 4),
            GemmVariant::Shared { wx, wy, tm, tn, bk } | GemmVariant::Split { wx, wy, tm, tn, bk } => {
                (wx, wy, tm, tn, wy * tm, wx * tn, bk)
            }
            GemmVariant::Dot { wx, tn } => (wx, 1, 1, tn, 4, 4, 4),
            GemmVariant::Subgroup { wx, tm, tn } => return layout(wx).u("TM", tm).u("TN", tn),
            GemmVariant::Subgroup4 { wx, tm, tv } | GemmVariant::SubgroupTexture4 { wx, tm, tv } => {
                return layout(wx).u("TM", tm).u("TV", tv)
            }
            GemmVariant::Vec4 { wx, wy, tm, tv } | GemmVariant::Texture4 { wx, wy, tm, tv } => {
                return layout(wx).u("WY", wy).u("TM", tm).u("TV", tv)
            }
        };
        layout(wx).u("WY", wy).u("TM", tm).u("TN", tn).u("BM", bm).u("BN", bn).u("BK", bk)
    }

    /// Output tile (rows, columns) of one workgroup.
    fn tile(&self) -> (u32, u32) {
        match *self {
            GemmVariant::Naive => (16, 16),
            GemmVariant::Tiled { wx, wy, tm, tn } => (wy * tm, wx * tn),
            GemmVariant::Vec4 { wx, wy, tm, tv } | GemmVariant::Texture4 { wx, wy, tm, tv } => {
                (wy * tm, wx * tv * 4)
            }
            GemmVariant::Shared { wx, wy, tm, tn, .. } | GemmVariant::Split { wx, wy, tm, tn, .. } => {
                (wy * tm, wx * tn)
            }
            GemmVariant::Dot { tn, .. } => (1, tn),
            GemmVariant::Subgroup { wx, tm, tn } => (tm, wx * tn),
            GemmVariant::Subgroup4 { wx, tm, tv } | GemmVariant::SubgroupTexture4 { wx, tm, tv } => {
                (tm, wx * tv * 4)
            }
        }
    }

    /// A texture variant's kernel with B in a storage buffer instead; `None` for the others.
    pub fn buffer_twin(&self) -> Option<GemmVariant> {
        match *self {
            GemmVariant::Texture4 { wx, wy, tm, tv } => Some(GemmVariant::Vec4 { wx, wy, tm, tv }),
            GemmVariant::SubgroupTexture4 { wx, tm, tv } => Some(GemmVariant::Subgroup4 { wx, tm, tv }),
            _ => None,
        }
    }
}

/// The specializations of the variants `keep` selects, in every layout.
fn specs_of(keep: fn(&GemmVariant) -> bool) -> Vec<Spec> {
    Trans::ALL
        .iter()
        .flat_map(|&t| GemmVariant::checked().into_iter().filter(keep).map(move |v| v.spec(t)))
        .collect()
}

fn specs() -> Vec<Spec> {
    specs_of(|v| {
        !matches!(
            v,
            GemmVariant::Vec4 { .. }
                | GemmVariant::Subgroup { .. }
                | GemmVariant::Subgroup4 { .. }
                | GemmVariant::Texture4 { .. }
                | GemmVariant::SubgroupTexture4 { .. }
        )
    })
}

fn specs4() -> Vec<Spec> {
    specs_of(|v| matches!(v, GemmVariant::Vec4 { .. }))
}

fn specs4_tex() -> Vec<Spec> {
    specs_of(|v| matches!(v, GemmVariant::Texture4 { .. }))
}

fn specs_sg4_tex() -> Vec<Spec> {
    specs_of(|v| matches!(v, GemmVariant::SubgroupTexture4 { .. }))
}

/// The packing kernel's specialization (only B's layout matters to it).
fn pack_spec(trans: Trans) -> Spec {
    Spec::new().b("TRANS_B", trans.b_transposed())
}

fn pack_specs() -> Vec<Spec> {
    vec![pack_spec(Trans::NN), pack_spec(Trans::NT)]
}

fn specs_sg() -> Vec<Spec> {
    specs_of(|v| matches!(v, GemmVariant::Subgroup { .. }))
}

fn specs_sg4() -> Vec<Spec> {
    specs_of(|v| matches!(v, GemmVariant::Subgroup4 { .. }))
}

impl KernelParams for GemmParams {
    const WGSL: &'static str = "GemmParams";
}

/// The scalar kernels' bindings and element access, shared by gemm.wgsl and gemm_sg.wgsl.
const IO: (&str, &str) = ("gemm_io", include_str!("../../shaders/gemm_io.wgsl"));
/// The vec4 kernels' bindings and stores, shared by gemm4.wgsl and gemm_sg4.wgsl.
const IO4: (&str, &str) = ("gemm4_io", include_str!("../../shaders/gemm4_io.wgsl"));
/// The vec4 kernels' B: a storage buffer, or (the texture variants) an rgba32float texture.
const B4: (&str, &str) = ("gemm4_b", include_str!("../../shaders/gemm4_b.wgsl"));
const B4_TEX: (&str, &str) = ("gemm4_btex", include_str!("../../shaders/gemm4_btex.wgsl"));
/// The subgroup kernels' helpers.
pub(crate) const SUBGROUP: (&str, &str) = ("subgroup", include_str!("../../shaders/subgroup.wgsl"));

pub static SHADER: ShaderDef = ShaderDef {
    name: "gemm",
    source: include_str!("../../shaders/gemm.wgsl"),
    parts: &[IO],
    params: ParamsDecl::of::<GemmParams>(),
    entries: &[
        ("gemm_naive", 3, 1),
        ("gemm_tiled", 3, 1),
        ("gemm_shared", 3, 1),
        ("gemm_dot", 3, 1),
        ("gemm_split", 2, 1),
        ("gemm_split_sum", 2, 1),
    ],
    specs,
    unchecked: true,
    extension: Extension::None,
    textures: &[],
};

pub static SHADER4: ShaderDef = ShaderDef {
    name: "gemm4",
    source: include_str!("../../shaders/gemm4.wgsl"),
    parts: &[IO4, B4],
    params: ParamsDecl::of::<GemmParams>(),
    entries: &[("gemm_vec4", 3, 1)],
    specs: specs4,
    unchecked: true,
    extension: Extension::None,
    textures: &[],
};

/// gemm4.wgsl with B in a texture (binding 2).
pub static SHADER4_TEX: ShaderDef = ShaderDef {
    name: "gemm4+btex",
    source: include_str!("../../shaders/gemm4.wgsl"),
    parts: &[IO4, B4_TEX],
    params: ParamsDecl::of::<GemmParams>(),
    entries: &[("gemm_vec4", 3, 1)],
    specs: specs4_tex,
    unchecked: true,
    extension: Extension::None,
    textures: &[("gemm_vec4", 2)],
};

/// Copies B into the texture variants' texture.
pub static PACK_SHADER: ShaderDef = ShaderDef {
    name: "tex_pack",
    source: include_str!("../../shaders/tex_pack.wgsl"),
    parts: &[],
    params: ParamsDecl::of::<GemmParams>(),
    entries: &[("pack_b", 1, 1)],
    specs: pack_specs,
    unchecked: true,
    extension: Extension::None,
    textures: &[("pack_b", 2)],
};

pub static SHADER_SG: ShaderDef = ShaderDef {
    name: "gemm_sg",
    source: include_str!("../../shaders/gemm_sg.wgsl"),
    parts: &[IO, SUBGROUP],
    params: ParamsDecl::of::<GemmParams>(),
    entries: &[("gemm_subgroup", 3, 1)],
    specs: specs_sg,
    unchecked: true,
    extension: Extension::Subgroups,
    textures: &[],
};

pub static SHADER_SG4: ShaderDef = ShaderDef {
    name: "gemm_sg4",
    source: include_str!("../../shaders/gemm_sg4.wgsl"),
    parts: &[IO4, B4, SUBGROUP],
    params: ParamsDecl::of::<GemmParams>(),
    entries: &[("gemm_subgroup4", 3, 1)],
    specs: specs_sg4,
    unchecked: true,
    extension: Extension::Subgroups,
    textures: &[],
};

/// gemm_sg4.wgsl with B in a texture (binding 2).
pub static SHADER_SG4_TEX: ShaderDef = ShaderDef {
    name: "gemm_sg4+btex",
    source: include_str!("../../shaders/gemm_sg4.wgsl"),
    parts: &[IO4, B4_TEX, SUBGROUP],
    params: ParamsDecl::of::<GemmParams>(),
    entries: &[("gemm_subgroup4", 3, 1)],
    specs: specs_sg4_tex,
    unchecked: true,
    extension: Extension::Subgroups,
    textures: &[("gemm_subgroup4", 2)],
};

/// The variant that computes `s` when `variant` is asked for on `dev`: the vec4 kernels need
/// vec4-aligned shapes, the dot kernel at most [`DOT_MAX_N`] columns and M within the grid, the
/// subgroup kernels subgroups (else the tiled kernel); the vec4 subgroup kernel on a shape that is
/// not vec4-aligned is the scalar one on the same tile; the split-K kernel with a single split is
/// `Shared` on the same tiles; a texture variant runs its own kernel where its buffer twin does and
/// B fits a texture, else what the twin runs.
pub fn resolve(s: &GemmShape, variant: GemmVariant, dev: &GemmDevice) -> GemmVariant {
    if let Some(twin) = variant.buffer_twin() {
        // Its own kernel where the twin runs its own (alignment, subgroups) and B fits a texture.
        let (w, h) = texture_size(s);
        let twin_runs = resolve(s, twin, dev);
        let fits = w <= dev.max_texture && h <= dev.max_texture;
        return if twin_runs == twin && fits { variant } else { twin_runs };
    }
    match variant {
        GemmVariant::Vec4 { .. } if !vec4_aligned(s) => GemmVariant::TILED,
        GemmVariant::Dot { .. } if s.m > dev.max_groups || s.n > DOT_MAX_N => GemmVariant::TILED,
        GemmVariant::Subgroup { .. } | GemmVariant::Subgroup4 { .. } if !dev.subgroups => GemmVariant::TILED,
        GemmVariant::Subgroup4 { wx, tm, tv } if !vec4_aligned(s) => {
            GemmVariant::Subgroup { wx, tm, tn: 4 * tv }
        }
        GemmVariant::Split { wx, wy, tm, tn, bk } => {
            let tiles = s.m.div_ceil((wy * tm) as usize) * s.n.div_ceil((wx * tn) as usize);
            match split_k(s, tiles, bk as usize, dev.cap).1 {
                1 => GemmVariant::Shared { wx, wy, tm, tn, bk },
                _ => variant,
            }
        }
        v => v,
    }
}

/// The texture the texture variants read B from, (width, height) in texels: B as stored, a texel
/// per vec4 of a row.
pub fn texture_size(s: &GemmShape) -> (usize, usize) {
    match s.trans {
        Trans::NT => (s.k.div_ceil(4), s.n),
        Trans::NN | Trans::TN => (s.n.div_ceil(4), s.k),
    }
}

/// Whether `variant` runs its own kernel on `s` on `dev` rather than another variant's
/// ([`resolve`]); with [`GemmDevice::ANY`], on every device that has what the variant needs.
pub fn runs_itself(s: &GemmShape, variant: GemmVariant, dev: &GemmDevice) -> bool {
    resolve(s, variant, dev) == variant
}

/// K per split and the number of splits of [`GemmVariant::Split`] with `tiles` workgroups per
/// split and `bk`-deep K-steps, on a device whose bindings hold `cap` values: depends on the
/// shape (and, for very large products, the cap) only, so the additions' order does too.
pub fn split_k(s: &GemmShape, tiles: usize, bk: usize, cap: usize) -> (usize, usize) {
    let by_groups = SPLIT_GROUPS.div_ceil(tiles.max(1));
    let by_k = (s.k / SPLIT_MIN_K).max(1);
    let by_cap = (cap / (s.m * s.n).max(1)).max(1);
    let want = by_groups.min(by_k).min(by_cap).min(SPLIT_MAX);
    let kc = s.k.div_ceil(want).next_multiple_of(bk);
    (kc, s.k.div_ceil(kc))
}

/// `c = op(a) · op(b)` with `ep` applied; see [`crate::cpu::gemm`]. The dispatches to run in
/// order (two for a split-K product, whose partial products their bindings keep alive).
pub fn gemm(
    gpu: &Gpu,
    s: &GemmShape,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    ep: &Epilogue,
    variant: GemmVariant,
) -> Result<Vec<Dispatch>, GpuError> {
    let op = format!("gemm {s}");
    s.validate().map_err(|m| GpuError::shape(&op, m))?;
    check_len(&op, "A", a, s.a_len())?;
    check_len(&op, "B", b, s.b_len())?;
    check_len(&op, "C", c, s.c_len())?;
    if let Some(bias) = ep.bias {
        check_len(&op, "bias", bias, s.n)?;
    }
    let mut params = GemmParams {
        m: to_u32(&op, "M", s.m)?,
        n: to_u32(&op, "N", s.n)?,
        k: to_u32(&op, "K", s.k)?,
        flags: ep.flags(),
        kc: 0,
        splits: 0,
        pad: [0; 2],
    };
    let dev = GemmDevice::of(gpu);
    let variant = resolve(s, variant, &dev);
    let (tr, tc) = variant.tile();
    let groups = [s.n.div_ceil(tc as usize), s.m.div_ceil(tr as usize), 1];
    let groups = [to_u32(&op, "column tiles", groups[0])?, to_u32(&op, "row tiles", groups[1])?, 1];
    let bias = ep.bias.unwrap_or(gpu.dummy());
    let sp = variant.spec(s.trans);
    if let GemmVariant::Split { bk, .. } = variant {
        // Several splits (resolve runs a single one as Shared), at most SPLIT_MAX: within the grid.
        let (kc, splits) = split_k(s, groups[0] as usize * groups[1] as usize, bk as usize, dev.cap);
        params.kc = to_u32(&op, "K per split", kc)?;
        params.splits = to_u32(&op, "splits", splits)?;
        let partial = gpu.empty(&[splits, s.m, s.n], crate::gpu::DType::F32)?;
        let split_groups = [groups[0], groups[1], params.splits];
        return Ok(vec![
            gpu.prepare(&op, &SHADER, "gemm_split", &sp, &[a, b], &[&partial], &params, split_groups)?,
            gpu.prepare(&op, &SHADER, "gemm_split_sum", &sp, &[&partial, bias], &[c], &params, groups)?,
        ]);
    }
    let (shader, entry) = match variant {
        GemmVariant::Naive => (&SHADER, "gemm_naive"),
        GemmVariant::Tiled { .. } => (&SHADER, "gemm_tiled"),
        // (Split only with several splits, dispatched above.)
        GemmVariant::Shared { .. } | GemmVariant::Split { .. } => (&SHADER, "gemm_shared"),
        GemmVariant::Dot { .. } => (&SHADER, "gemm_dot"),
        GemmVariant::Vec4 { .. } => (&SHADER4, "gemm_vec4"),
        GemmVariant::Subgroup { .. } => (&SHADER_SG, "gemm_subgroup"),
        GemmVariant::Subgroup4 { .. } => (&SHADER_SG4, "gemm_subgroup4"),
        GemmVariant::Texture4 { .. } => (&SHADER4_TEX, "gemm_vec4"),
        GemmVariant::SubgroupTexture4 { .. } => (&SHADER_SG4_TEX, "gemm_subgroup4"),
    };
    if variant.buffer_twin().is_none() {
        return Ok(vec![gpu.prepare(&op, shader, entry, &sp, &[a, b, bias], &[c], &params, groups)?]);
    }
    // A texture variant (resolve keeps one only where B is vec4-aligned and fits a texture): copy
    // B into a texture the dispatches keep alive, then the kernel reads it there.
    let (w, h) = texture_size(s);
    let texture = gpu.texture(&op, w, h)?;
    let pack =
        [to_u32(&op, "texture tiles", w.div_ceil(16))?, to_u32(&op, "texture tiles", h.div_ceil(16))?, 1];
    let packed = [Bound::Buffer(b), Bound::Texture(&texture)];
    let bound = [Bound::Buffer(a), Bound::Texture(&texture), Bound::Buffer(bias), Bound::Buffer(c)];
    Ok(vec![
        gpu.prepare_bound(&op, &PACK_SHADER, "pack_b", &pack_spec(s.trans), &packed, &params, pack)?,
        gpu.prepare_bound(&op, shader, entry, &sp, &bound, &params, groups)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every split holds K-steps, the last one too, within the caps.
    fn holds(s: &GemmShape, tiles: usize, cap: usize) -> (usize, usize) {
        let (kc, splits) = split_k(s, tiles, 8, cap);
        assert!(kc % 8 == 0 && kc > 0, "{s}: K per split {kc}");
        assert!((splits - 1) * kc < s.k && s.k <= splits * kc, "{s}: {splits} splits of {kc}");
        assert!(splits <= SPLIT_MAX && (splits == 1 || splits * s.m * s.n <= cap), "{s}: {splits} splits");
        (kc, splits)
    }

    #[test]
    fn subgroup_variants_fall_back_without_subgroups_or_alignment() {
        let aligned = GemmShape::new(64, 64, 64, Trans::NN);
        let ragged = GemmShape::new(64, 63, 64, Trans::NN);
        let sg = GemmVariant::Subgroup { wx: 64, tm: 8, tn: 4 };
        let sg4 = GemmVariant::Subgroup4 { wx: 64, tm: 8, tv: 1 };
        let none = GemmDevice { subgroups: false, ..GemmDevice::ANY };
        assert_eq!(resolve(&aligned, sg, &GemmDevice::ANY), sg);
        assert_eq!(resolve(&aligned, sg4, &GemmDevice::ANY), sg4);
        assert_eq!(resolve(&ragged, sg4, &GemmDevice::ANY), sg, "the scalar kernel on the same tile");
        for v in [sg, sg4] {
            assert_eq!(resolve(&aligned, v, &none), GemmVariant::TILED);
            assert_eq!(resolve(&ragged, v, &none), GemmVariant::TILED);
        }
        // On a shape that is not aligned the vec4 subgroup kernel would rerun the scalar one.
        assert!(!runs_itself(&ragged, sg4, &GemmDevice::ANY) && runs_itself(&ragged, sg, &GemmDevice::ANY));
    }

    #[test]
    fn texture_variants_fall_back_where_b_does_not_fit_a_texture() {
        let tex = GemmVariant::Texture4 { wx: 8, wy: 8, tm: 4, tv: 2 };
        let sg_tex = GemmVariant::SubgroupTexture4 { wx: 64, tm: 16, tv: 1 };
        let dev = GemmDevice { max_texture: 256, ..GemmDevice::ANY };
        // B [K,N] is N/4 texels wide and K high; [N,K] (NT) K/4 wide and N high.
        assert_eq!(texture_size(&GemmShape::new(8, 1024, 256, Trans::NN)), (256, 256));
        assert_eq!(texture_size(&GemmShape::new(8, 256, 1024, Trans::NT)), (256, 256));
        assert_eq!(texture_size(&GemmShape::new(8, 1024, 256, Trans::TN)), (256, 256));
        for t in Trans::ALL {
            let fits = GemmShape::new(8, 256, 256, t);
            let (wide, tall) = match t {
                Trans::NT => (GemmShape::new(8, 256, 1028, t), GemmShape::new(8, 260, 256, t)),
                _ => (GemmShape::new(8, 1028, 256, t), GemmShape::new(8, 256, 260, t)),
            };
            assert_eq!(resolve(&fits, tex, &dev), tex, "{fits}");
            assert_eq!(resolve(&fits, sg_tex, &dev), sg_tex, "{fits}");
            for s in [wide, tall] {
                assert_eq!(resolve(&s, tex, &dev), tex.buffer_twin().unwrap(), "{s}");
                assert_eq!(resolve(&s, sg_tex, &dev), sg_tex.buffer_twin().unwrap(), "{s}");
            }
            // Without subgroups the subgroup one falls back as Subgroup4 does; unaligned shapes
            // as their buffer twins do.
            let none = GemmDevice { subgroups: false, ..dev };
            assert_eq!(resolve(&fits, sg_tex, &none), GemmVariant::TILED);
            assert_eq!(resolve(&fits, tex, &none), tex);
            let ragged = match t {
                Trans::TN => GemmShape::new(7, 256, 256, t),
                _ => GemmShape::new(8, 256, 255, t),
            };
            assert_eq!(resolve(&ragged, tex, &dev), GemmVariant::TILED, "{ragged}");
            assert_eq!(
                resolve(&ragged, sg_tex, &dev),
                GemmVariant::Subgroup { wx: 64, tm: 16, tn: 4 },
                "{ragged}"
            );
        }
    }

    #[test]
    fn split_k_fills_the_grid_within_its_limits() {
        // The FER network's fc1 backward data: 100 tiles of 64 x 64.
        assert_eq!(holds(&GemmShape::new(256, 1600, 3072, Trans::NN), 100, usize::MAX), (280, 11));
        // Enough tiles already, a short K, a tight binding: one split.
        assert_eq!(holds(&GemmShape::new(4096, 4096, 4096, Trans::NN), 4096, usize::MAX).1, 1);
        assert_eq!(holds(&GemmShape::new(8, 8, 300, Trans::NT), 1, usize::MAX).1, 1);
        assert_eq!(holds(&GemmShape::new(256, 1600, 3072, Trans::NN), 100, 256 * 1600).1, 1);
        // A ragged last split; at most SPLIT_MAX.
        assert_eq!(holds(&GemmShape::new(70, 33, 600, Trans::NN), 2, usize::MAX), (304, 2));
        assert_eq!(holds(&GemmShape::new(1, 1, 1 << 20, Trans::TN), 1, usize::MAX).1, SPLIT_MAX);
    }
}
