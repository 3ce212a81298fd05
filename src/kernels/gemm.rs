//! GEMM: `C[M,N] = op(A) · op(B)` with an optional bias / accumulate / ReLU epilogue.

use super::{check_len, to_u32, Epilogue};
use crate::gpu::{Dispatch, Gpu, GpuError, KernelParams, ParamsDecl, ShaderDef, Spec, Tensor};
use crate::shapes::{GemmShape, Trans};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub flags: u32,
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
}

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
        ]
    }

    pub fn name(&self) -> String {
        match self {
            GemmVariant::Naive => "naive".into(),
            GemmVariant::Tiled { wx, wy, tm, tn } => format!("tiled{wx}x{wy}r{tm}x{tn}"),
            GemmVariant::Vec4 { wx, wy, tm, tv } => format!("vec4_{wx}x{wy}r{tm}x{}", tv * 4),
            GemmVariant::Shared { wx, wy, tm, tn, bk } => {
                format!("shared{}x{}x{bk}r{tm}x{tn}", wy * tm, wx * tn)
            }
        }
    }

    fn spec(&self, trans: Trans) -> Spec {
        // gemm.wgsl's workgroup tiles are declared for every kernel of the file: placeholders of 4
        // where the kernel does not use them.
        let (wx, wy, tm, tn, bm, bn, bk) = match *self {
            GemmVariant::Naive => (16, 16, 1, 1, 4, 4, 4),
            GemmVariant::Tiled { wx, wy, tm, tn } => (wx, wy, tm, tn, 4, 4, 4),
            GemmVariant::Shared { wx, wy, tm, tn, bk } => (wx, wy, tm, tn, wy * tm, wx * tn, bk),
            GemmVariant::Vec4 { wx, wy, tm, tv } => {
                return Spec::new()
                    .b("TRANS_A", trans.a_transposed())
                    .b("TRANS_B", trans.b_transposed())
                    .u("WX", wx)
                    .u("WY", wy)
                    .u("TM", tm)
                    .u("TV", tv);
            }
        };
        Spec::new()
            .b("TRANS_A", trans.a_transposed())
            .b("TRANS_B", trans.b_transposed())
            .u("WX", wx)
            .u("WY", wy)
            .u("TM", tm)
            .u("TN", tn)
            .u("BM", bm)
            .u("BN", bn)
            .u("BK", bk)
    }

    /// Output tile (rows, columns) of one workgroup.
    fn tile(&self) -> (u32, u32) {
        match *self {
            GemmVariant::Naive => (16, 16),
            GemmVariant::Tiled { wx, wy, tm, tn } => (wy * tm, wx * tn),
            GemmVariant::Vec4 { wx, wy, tm, tv } => (wy * tm, wx * tv * 4),
            GemmVariant::Shared { wx, wy, tm, tn, .. } => (wy * tm, wx * tn),
        }
    }

    fn is_vec4(&self) -> bool {
        matches!(self, GemmVariant::Vec4 { .. })
    }
}

fn specs() -> Vec<Spec> {
    Trans::ALL
        .iter()
        .flat_map(|&t| GemmVariant::all().into_iter().filter(|v| !v.is_vec4()).map(move |v| v.spec(t)))
        .collect()
}

fn specs4() -> Vec<Spec> {
    Trans::ALL
        .iter()
        .flat_map(|&t| GemmVariant::all().into_iter().filter(|v| v.is_vec4()).map(move |v| v.spec(t)))
        .collect()
}

impl KernelParams for GemmParams {
    const WGSL: &'static str = "GemmParams";
}

pub static SHADER: ShaderDef = ShaderDef {
    name: "gemm",
    source: include_str!("../../shaders/gemm.wgsl"),
    parts: &[],
    params: ParamsDecl::of::<GemmParams>(),
    entries: &[("gemm_naive", 3, 1), ("gemm_tiled", 3, 1), ("gemm_shared", 3, 1)],
    specs,
    unchecked: true,
};

pub static SHADER4: ShaderDef = ShaderDef {
    name: "gemm4",
    source: include_str!("../../shaders/gemm4.wgsl"),
    parts: &[],
    params: ParamsDecl::of::<GemmParams>(),
    entries: &[("gemm_vec4", 3, 1)],
    specs: specs4,
    unchecked: true,
};

/// `c = op(a) · op(b)` with `ep` applied; see [`crate::cpu::gemm`].
pub fn gemm(
    gpu: &Gpu,
    s: &GemmShape,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    ep: &Epilogue,
    variant: GemmVariant,
) -> Result<Dispatch, GpuError> {
    let op = format!("gemm {s}");
    s.validate().map_err(|m| GpuError::shape(&op, m))?;
    check_len(&op, "A", a, s.a_len())?;
    check_len(&op, "B", b, s.b_len())?;
    check_len(&op, "C", c, s.c_len())?;
    if let Some(bias) = ep.bias {
        check_len(&op, "bias", bias, s.n)?;
    }
    let params = GemmParams {
        m: to_u32(&op, "M", s.m)?,
        n: to_u32(&op, "N", s.n)?,
        k: to_u32(&op, "K", s.k)?,
        flags: ep.flags(),
    };
    let variant = if variant.is_vec4() && !vec4_aligned(s) { GemmVariant::TILED } else { variant };
    let (tr, tc) = variant.tile();
    let groups = [s.n.div_ceil(tc as usize), s.m.div_ceil(tr as usize), 1];
    let groups = [to_u32(&op, "column tiles", groups[0])?, to_u32(&op, "row tiles", groups[1])?, 1];
    let bias = ep.bias.unwrap_or(gpu.dummy());
    let (shader, entry) = match variant {
        GemmVariant::Naive => (&SHADER, "gemm_naive"),
        GemmVariant::Tiled { .. } => (&SHADER, "gemm_tiled"),
        GemmVariant::Shared { .. } => (&SHADER, "gemm_shared"),
        GemmVariant::Vec4 { .. } => (&SHADER4, "gemm_vec4"),
    };
    gpu.prepare(&op, shader, entry, &variant.spec(s.trans), &[a, b, bias], &[c], &params, groups)
}
