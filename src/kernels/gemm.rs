//! GEMM: `C[M,N] = op(A) · op(B)` with an optional bias / accumulate / ReLU epilogue.

use super::variant::{Caps, Decl, FamilyVariant};
use super::{check_len, to_u32, Epilogue};
use crate::gpu::{Dispatch, Extension, Gpu, GpuError, KernelParams, ParamsDecl, ShaderDef, Spec, Tensor};
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

/// Kernel variants ([`VARIANTS`] declares them).
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
}

/// Every GEMM variant, declared once: the default ([`GemmVariant::DEFAULT`]) and the tuned ones in
/// the order the tuner screens them (the naive kernel last), then the test-only ones: subgroup
/// kernels whose 36 invocations leave a subgroup of 8, 16 or 32 lanes partly empty, so their path
/// for a subgroup that is not full is checked on the devices of those sizes, and the scalar
/// subgroup kernels the vec4 ones fall back to on unaligned shapes (every variant [`resolve`] can
/// return is declared). docs/DESIGN.md's
/// variant table says what each is for and where it won.
pub static VARIANTS: &[Decl<GemmVariant>] = &[
    Decl::tuned("vec4_8x8r4x8", GemmVariant::DEFAULT),
    Decl::tuned("tiled16x16r4x4", GemmVariant::TILED),
    Decl::tuned("tiled8x8r8x4", GemmVariant::Tiled { wx: 8, wy: 8, tm: 8, tn: 4 }),
    Decl::tuned("tiled16x4r2x2", GemmVariant::Tiled { wx: 16, wy: 4, tm: 2, tn: 2 }),
    Decl::tuned("vec4_8x8r8x4", GemmVariant::Vec4 { wx: 8, wy: 8, tm: 8, tv: 1 }),
    Decl::tuned("vec4_16x4r4x4", GemmVariant::Vec4 { wx: 16, wy: 4, tm: 4, tv: 1 }),
    // 64x64x8, 128x64x16 and 32x32x8 tiles: 4, 12 and 2 KiB of workgroup memory.
    Decl::tuned("shared64x64x8r4x4", GemmVariant::Shared { wx: 16, wy: 16, tm: 4, tn: 4, bk: 8 }),
    Decl::tuned("shared128x64x16r8x4", GemmVariant::Shared { wx: 16, wy: 16, tm: 8, tn: 4, bk: 16 }),
    Decl::tuned("shared32x32x8r2x2", GemmVariant::Shared { wx: 16, wy: 16, tm: 2, tn: 2, bk: 8 }),
    Decl::tuned("dot64r4", GemmVariant::Dot { wx: 64, tn: 4 }),
    Decl::tuned("split64x64x8r4x4", GemmVariant::Split { wx: 16, wy: 16, tm: 4, tn: 4, bk: 8 }),
    Decl::tuned("subgroup64r8x4", GemmVariant::Subgroup { wx: 64, tm: 8, tn: 4 }).subgroups(),
    Decl::tuned("subgroup4_64r8x4", GemmVariant::Subgroup4 { wx: 64, tm: 8, tv: 1 }).subgroups(),
    Decl::tuned("subgroup4_64r16x4", GemmVariant::Subgroup4 { wx: 64, tm: 16, tv: 1 }).subgroups(),
    Decl::tuned("subgroup4_32r16x4", GemmVariant::Subgroup4 { wx: 32, tm: 16, tv: 1 }).subgroups(),
    Decl::tuned("naive", GemmVariant::Naive),
    Decl::test_only("subgroup36r2x2", GemmVariant::Subgroup { wx: 36, tm: 2, tn: 2 }).subgroups(),
    Decl::test_only("subgroup4_36r4x4", GemmVariant::Subgroup4 { wx: 36, tm: 4, tv: 1 }).subgroups(),
    // What the vec4 subgroup variants run on shapes that are not vec4-aligned ([`resolve`]).
    Decl::test_only("subgroup64r16x4", GemmVariant::Subgroup { wx: 64, tm: 16, tn: 4 }).subgroups(),
    Decl::test_only("subgroup36r4x4", GemmVariant::Subgroup { wx: 36, tm: 4, tn: 4 }).subgroups(),
    Decl::test_only("subgroup32r16x4", GemmVariant::Subgroup { wx: 32, tm: 16, tn: 4 }).subgroups(),
];

impl FamilyVariant for GemmVariant {
    fn decls() -> &'static [Decl<GemmVariant>] {
        VARIANTS
    }
    fn default_variant() -> GemmVariant {
        GemmVariant::DEFAULT
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
            GemmVariant::Subgroup4 { wx, tm, tv } => return layout(wx).u("TM", tm).u("TV", tv),
            GemmVariant::Vec4 { wx, wy, tm, tv } => return layout(wx).u("WY", wy).u("TM", tm).u("TV", tv),
        };
        layout(wx).u("WY", wy).u("TM", tm).u("TN", tn).u("BM", bm).u("BN", bn).u("BK", bk)
    }

    /// Output tile (rows, columns) of one workgroup.
    fn tile(&self) -> (u32, u32) {
        match *self {
            GemmVariant::Naive => (16, 16),
            GemmVariant::Tiled { wx, wy, tm, tn } => (wy * tm, wx * tn),
            GemmVariant::Vec4 { wx, wy, tm, tv } => (wy * tm, wx * tv * 4),
            GemmVariant::Shared { wx, wy, tm, tn, .. } | GemmVariant::Split { wx, wy, tm, tn, .. } => {
                (wy * tm, wx * tn)
            }
            GemmVariant::Dot { tn, .. } => (1, tn),
            GemmVariant::Subgroup { wx, tm, tn } => (tm, wx * tn),
            GemmVariant::Subgroup4 { wx, tm, tv } => (tm, wx * tv * 4),
        }
    }
}

/// The specializations of the variants `keep` selects, in every layout.
fn specs_of(keep: fn(&GemmVariant) -> bool) -> Vec<Spec> {
    Trans::ALL
        .iter()
        .flat_map(|&t| VARIANTS.iter().map(|d| d.variant).filter(keep).map(move |v| v.spec(t)))
        .collect()
}

fn specs() -> Vec<Spec> {
    specs_of(|v| {
        !matches!(v, GemmVariant::Vec4 { .. } | GemmVariant::Subgroup { .. } | GemmVariant::Subgroup4 { .. })
    })
}

fn specs4() -> Vec<Spec> {
    specs_of(|v| matches!(v, GemmVariant::Vec4 { .. }))
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
/// The vec4 kernels' B operand (its binding and loads).
const B4: (&str, &str) = ("gemm4_b", include_str!("../../shaders/gemm4_b.wgsl"));
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
};

/// The variant that computes `s` when `variant` is asked for on `caps` (the family's one fallback
/// rule, `kernels::registry::Op::resolve`): the vec4 kernels need vec4-aligned shapes, the
/// dot kernel at most [`DOT_MAX_N`] columns and M within the grid, the subgroup kernels subgroups
/// of sizes they support (else the tiled kernel); the vec4 subgroup kernel on a shape that is not
/// vec4-aligned is the scalar one on the same tile; the split-K kernel with a single split is
/// `Shared` on the same tiles.
pub fn resolve(s: &GemmShape, variant: GemmVariant, caps: &Caps) -> GemmVariant {
    match variant {
        GemmVariant::Subgroup { .. } | GemmVariant::Subgroup4 { .. } if !variant.subgroups_allow(caps) => {
            GemmVariant::TILED
        }
        GemmVariant::Vec4 { .. } if !vec4_aligned(s) => GemmVariant::TILED,
        GemmVariant::Dot { .. } if s.m > caps.max_groups || s.n > DOT_MAX_N => GemmVariant::TILED,
        GemmVariant::Subgroup4 { wx, tm, tv } if !vec4_aligned(s) => {
            GemmVariant::Subgroup { wx, tm, tn: 4 * tv }
        }
        GemmVariant::Split { wx, wy, tm, tn, bk } => {
            let tiles = s.m.div_ceil((wy * tm) as usize) * s.n.div_ceil((wx * tn) as usize);
            match split_k(s, tiles, bk as usize, caps.cap).1 {
                1 => GemmVariant::Shared { wx, wy, tm, tn, bk },
                _ => variant,
            }
        }
        v => v,
    }
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
    let caps = Caps::of(gpu);
    let variant = resolve(s, variant, &caps);
    let (tr, tc) = variant.tile();
    let groups = [s.n.div_ceil(tc as usize), s.m.div_ceil(tr as usize), 1];
    let groups = [to_u32(&op, "column tiles", groups[0])?, to_u32(&op, "row tiles", groups[1])?, 1];
    let bias = ep.bias.unwrap_or(gpu.dummy());
    let sp = variant.spec(s.trans);
    if let GemmVariant::Split { bk, .. } = variant {
        // Several splits (resolve runs a single one as Shared), at most SPLIT_MAX: within the grid.
        let (kc, splits) = split_k(s, groups[0] as usize * groups[1] as usize, bk as usize, caps.cap);
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
    };
    Ok(vec![gpu.prepare(&op, shader, entry, &sp, &[a, b, bias], &[c], &params, groups)?])
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
        let (any, none) = (Caps::ANY, Caps::NO_SUBGROUPS);
        assert_eq!(resolve(&aligned, sg, &any), sg);
        assert_eq!(resolve(&aligned, sg4, &any), sg4);
        assert_eq!(resolve(&ragged, sg4, &any), sg, "the scalar kernel on the same tile");
        for v in [sg, sg4] {
            assert_eq!(resolve(&aligned, v, &none), GemmVariant::TILED);
            assert_eq!(resolve(&ragged, v, &none), GemmVariant::TILED);
        }
    }

    /// A GEMM variant's name spells its tiling: the declaration table writes each name out once,
    /// and this says it is the right one.
    #[test]
    fn gemm_names_spell_their_tilings() {
        for d in VARIANTS {
            let want = match d.variant {
                GemmVariant::Naive => "naive".to_string(),
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
            };
            assert_eq!(d.name, want);
            let sg = matches!(d.variant, GemmVariant::Subgroup { .. } | GemmVariant::Subgroup4 { .. });
            assert_eq!(d.subgroups.is_some(), sg, "{}", d.name);
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
