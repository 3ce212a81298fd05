// The convolutions as implicit GEMMs on workgroup-memory tiles (conv.wgsl's conv_fwd_shared and
// conv_bwd_data_shared, conv_wgrad.wgsl's conv_bwd_weight_shared), for GPUs: C[BM x BN] of a
// WX x WY workgroup accumulates A[BM x BK] · B[BK x BN] per K-step, each operand gathered from the
// tensors straight into workgroup memory (no im2col buffer); each invocation owns a TM x TN
// register tile, rows lid.y + r·WY and columns lid.x + t·WX (BM = WY·TM, BN = WX·TN).
// The including file declares `p: ConvParams` and `x`, the convolution's input.

// An invocation loads A_LOADS elements of the A tile per K-step, e = li + j·THREADS: all in row
// li % BM (the host's tilings keep BM dividing THREADS), at K offsets li / BM + j·K_STRIDE. So
// each kernel decomposes its row's position once, outside the K loop. (The other kernels of the
// including file compile with placeholder tilings, for which these values mean nothing.)
const THREADS: u32 = WX * WY;
const A_LOADS: u32 = BM * BK / THREADS;
const K_STRIDE: u32 = THREADS / BM;

// The column of the A tile invocation `li` loads at its j-th load of the K-step at k0, as
// (k, c, ky, kx): its index k (its offset in the tile is k − k0) and the decomposition of
// min(k, depth − 1) over kernels of kk = kh·kw positions (c an input channel forward, an output
// channel backward).
fn a_column(k0: u32, li: u32, j: u32, depth: u32, kk: u32) -> vec4<u32> {
    let k = k0 + li / BM + j * K_STRIDE;
    let kc = min(k, depth - 1u);
    let c = kc / kk;
    let ky = (kc - c * kk) / p.kw;
    return vec4<u32>(k, c, ky, kc - c * kk - ky * p.kw);
}

var<workgroup> a_tile: array<f32, BK * BM>;
var<workgroup> b_tile: array<f32, BK * BN>;

// One K-step of the staged tiles (a_tile[kk·BM + row], b_tile[kk·BN + column]) into `acc`.
fn tile_step(acc: ptr<function, array<f32, TM * TN>>, lid: vec3<u32>) {
    var av: array<f32, TM>;
    var bv: array<f32, TN>;
    for (var kk = 0u; kk < BK; kk++) {
        for (var r = 0u; r < TM; r++) {
            av[r] = a_tile[kk * BM + lid.y + r * WY];
        }
        for (var t = 0u; t < TN; t++) {
            bv[t] = b_tile[kk * BN + lid.x + t * WX];
        }
        for (var r = 0u; r < TM; r++) {
            for (var t = 0u; t < TN; t++) {
                (*acc)[r * TN + t] += av[r] * bv[t];
            }
        }
    }
}

// Element (m, k) of the implicit im2col matrix of x: m = (b, oy, ox) an output position,
// k = (ci, ky, kx) a weight's column; zero outside the image.
fn im2col(m: u32, k: u32) -> f32 {
    let ox = m % p.ow;
    let oy = (m / p.ow) % p.oh;
    let b = m / (p.ow * p.oh);
    let kx = k % p.kw;
    let ky = (k / p.kw) % p.kh;
    let ci = k / (p.kw * p.kh);
    let iy = i32(oy * p.stride_y + ky) - i32(p.pad_y);
    let ix = i32(ox * p.stride_x + kx) - i32(p.pad_x);
    let inside = iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
    let at = ((b * p.cin + ci) * p.h + u32(clamp(iy, 0, i32(p.h) - 1))) * p.w + u32(clamp(ix, 0, i32(p.w) - 1));
    return select(0.0, x[at], inside);
}
