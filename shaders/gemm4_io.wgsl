// The vec4 GEMM kernels' bindings and stores (gemm4.wgsl, gemm_sg4.wgsl): params; inputs a (as
// vec4), b (gemm4_b.wgsl: a storage buffer; gemm4_btex.wgsl: a texture), bias; output c.

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
