// The vec4 GEMM kernels' bindings and stores (gemm4.wgsl, gemm_sg4.wgsl): params; inputs a (as
// vec4), b (gemm4_b.wgsl: a storage buffer), bias; output c.

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// The epilogue (shaders/common.wgsl), same order of operations as the CPU reference.
fn finish(i: u32, j: u32, acc: f32) {
    let idx = i * p.n + j;
    c[idx] = epilogue(acc, bias[bias_index(j, p.flags)], c[idx], p.flags);
}

// Row i's outputs at columns j0 .. j0 + 3 from v, each within C.
fn store4(i: u32, j0: u32, v: vec4<f32>) {
    for (var q = 0u; q < 4u; q++) {
        if (i < p.m && j0 + q < p.n) {
            finish(i, j0 + q, v[q]);
        }
    }
}

// One NN accumulator's four steps of K: c + a.x·b0 + a.y·b1 + a.z·b2 + a.w·b3, added in that
// order (the order of the loop over the four steps it replaces, so the sums are the same). A's
// components are named, not indexed by the step: with the loop `acc[r] += a[r][u] * b[u]`
// lavapipe ran the NN kernels 1.5–2.2x slower than the NT ones on the same shape, with this
// 1.25–1.5x (an array of vec4s indexed twice; a single vec4 indexed by an unrolled loop's step,
// as in the TN branch, costs nothing measurable).
fn nn_step(c: vec4<f32>, a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
    var r = c;
    r += a.x * b0;
    r += a.y * b1;
    r += a.z * b2;
    r += a.w * b3;
    return r;
}

// NN: vec4 step kq of K for every accumulator of the invocation (TM rows x TV vec4 columns cv):
// B's four rows kq·4 .. kq·4 + 3 at those columns first, then each accumulator takes its four
// products in K's order (nn_step). av holds A's vec4 of the step for each of the TM rows.
fn nn_quad(
    acc: ptr<function, array<vec4<f32>, TM * TV>>,
    av: ptr<function, array<vec4<f32>, TM>>,
    cv: ptr<function, array<u32, TV>>,
    kq: u32,
) {
    var bq: array<vec4<f32>, TV * 4u>;
    for (var t = 0u; t < TV; t++) {
        for (var u = 0u; u < 4u; u++) {
            bq[t * 4u + u] = b4(kq * 4u + u, (*cv)[t]);
        }
    }
    for (var r = 0u; r < TM; r++) {
        for (var t = 0u; t < TV; t++) {
            let q = t * 4u;
            (*acc)[r * TV + t] = nn_step((*acc)[r * TV + t], (*av)[r], bq[q], bq[q + 1u], bq[q + 2u], bq[q + 3u]);
        }
    }
}
