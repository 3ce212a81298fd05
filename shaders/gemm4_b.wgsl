// B of the vec4 GEMM kernels (gemm4.wgsl, gemm_sg4.wgsl) as a storage buffer of vec4s: [K,N], or
// [N,K] when TRANS_B, row-major.

@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;

// The vec4 at row `row`, vec4 column `col4` of B as stored (rows of N/4 vec4s, K/4 when TRANS_B).
fn b4(row: u32, col4: u32) -> vec4<f32> {
    if (TRANS_B) {
        return b[row * (p.k / 4u) + col4];
    }
    return b[row * ((p.n + 3u) / 4u) + col4];
}
