// The scalar GEMM kernels' bindings and element access (gemm.wgsl, gemm_sg.wgsl): params; inputs
// a, b, bias; output c. A is [M,K] (or [K,M] when TRANS_A), B is [K,N] (or [N,K] when TRANS_B),
// row-major.

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

fn a_at(i: u32, kk: u32) -> f32 {
    if (TRANS_A) {
        return a[kk * p.m + i];
    }
    return a[i * p.k + kk];
}

fn b_at(kk: u32, j: u32) -> f32 {
    if (TRANS_B) {
        return b[j * p.k + kk];
    }
    return b[kk * p.n + j];
}

// The epilogue (shaders/common.wgsl), same order of operations as the CPU reference.
fn finish(i: u32, j: u32, acc: f32) {
    let idx = i * p.n + j;
    c[idx] = epilogue(acc, bias[bias_index(j, p.flags)], c[idx], p.flags);
}
