// The convolutions as implicit GEMMs on workgroup-memory tiles (conv.wgsl's conv_fwd_shared and
// conv_bwd_data_shared, conv_wgrad.wgsl's conv_bwd_weight_shared), for GPUs: C[BM x BN] of a
// WX x WY workgroup accumulates A[BM x BK] · B[BK x BN] per K-step, each operand gathered from the
// tensors straight into workgroup memory (no im2col buffer); each invocation owns a TM x TN
// register tile, rows lid.y + r·WY and columns lid.x + t·WX (BM = WY·TM, BN = WX·TN).
// The including file declares `p: ConvParams`.

// An invocation loads A_LOADS elements of the A tile per K-step, e = li + j·THREADS: all in row
// li % BM (the host's tilings keep BM dividing THREADS), at K offsets a_offset(li, j) = li / BM +
// j·K_STRIDE. So each kernel decomposes its row's position once, outside the K loop. Its columns
// it decomposes at each load (a_column: the forward), or once before the loop and then moves on
// by BK columns a step without dividing (a_first, a_advance: the backward data). On an H200 the
// stepping cost the forward 5-25 % (conv2 0.286 -> 0.331 ms); the backward data was measured
// with it (conv3 0.531 -> 0.398 ms together with the stride-1 path). (The other kernels of the
// including file compile with placeholder tilings, for which these values mean nothing.)
const THREADS: u32 = WX * WY;
const A_LOADS: u32 = BM * BK / THREADS;
const K_STRIDE: u32 = THREADS / BM;

fn a_offset(li: u32, j: u32) -> u32 {
    return li / BM + j * K_STRIDE;
}

// The column of the A tile invocation `li` loads at its j-th load of the K-step at k0, as
// (c, ky, kx): the decomposition of min(k, depth − 1), k = k0 + a_offset(li, j), over kernels of
// kk = kh·kw positions (c an input channel forward, an output channel backward).
fn a_column(k0: u32, li: u32, j: u32, depth: u32, kk: u32) -> vec3<u32> {
    let kc = min(k0 + a_offset(li, j), depth - 1u);
    let c = kc / kk;
    let ky = (kc - c * kk) / p.kw;
    return vec3<u32>(c, ky, kc - c * kk - ky * p.kw);
}

// The column of invocation li's j-th A load at the first K-step, decomposed over kernels of
// kk = kh·kw positions as (c, ky, kx) (c an input channel forward, an output channel backward).
fn a_first(li: u32, j: u32, kk: u32) -> vec3<u32> {
    let k = a_offset(li, j);
    let c = k / kk;
    let ky = (k - c * kk) / p.kw;
    return vec3<u32>(c, ky, k - c * kk - ky * p.kw);
}

// The column BK further on. (Past the last column, c runs past the channels: the kernels clamp
// it and store zero.)
fn a_advance(col: vec3<u32>) -> vec3<u32> {
    var c = col.x;
    var ky = col.y;
    var kx = col.z + BK;
    while (kx >= p.kw) {
        kx -= p.kw;
        ky += 1u;
    }
    while (ky >= p.kh) {
        ky -= p.kh;
        c += 1u;
    }
    return vec3<u32>(c, ky, kx);
}

// The staged tiles, a_tile[kk·A_PITCH + row] and b_tile[kk·B_PITCH + column]. A row of one more
// than the tile keeps the kernels that stage along K (the weight gradient both operands, the
// forward and backward data their weights: neighbouring invocations at neighbouring kk) from
// storing to one workgroup-memory bank: a pitch of BM = 32 put 16 stores on one bank.
const A_PITCH: u32 = BM + 1u;
const B_PITCH: u32 = BN + 1u;
var<workgroup> a_tile: array<f32, BK * A_PITCH>;
var<workgroup> b_tile: array<f32, BK * B_PITCH>;

// One K-step of the staged tiles into `acc`.
fn tile_step(acc: ptr<function, array<f32, TM * TN>>, lid: vec3<u32>) {
    var av: array<f32, TM>;
    var bv: array<f32, TN>;
    for (var kk = 0u; kk < BK; kk++) {
        for (var r = 0u; r < TM; r++) {
            av[r] = a_tile[kk * A_PITCH + lid.y + r * WY];
        }
        for (var t = 0u; t < TN; t++) {
            bv[t] = b_tile[kk * B_PITCH + lid.x + t * WX];
        }
        for (var r = 0u; r < TM; r++) {
            for (var t = 0u; t < TN; t++) {
                (*acc)[r * TN + t] += av[r] * bv[t];
            }
        }
    }
}
