// Copies the vec4 GEMM kernels' B operand into the rgba32float texture their texture variants
// read (gemm4_btex.wgsl): texel (x, y) = the vec4 at row y, vec4 column x of B as stored, [K,N]
// (N/4 texels wide, K high) or [N,K] when TRANS_B (K/4 wide, N high). The host packs only
// vec4-aligned operands (N, or K when TRANS_B, a multiple of 4).
// Specialization: TRANS_B. Bindings: params; input b (as vec4); output the texture.

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var b_out: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(16, 16, 1)
fn pack_b(@builtin(global_invocation_id) gid: vec3<u32>) {
    var width = p.n / 4u;
    var height = p.k;
    if (TRANS_B) {
        width = p.k / 4u;
        height = p.n;
    }
    if (gid.x < width && gid.y < height) {
        textureStore(b_out, vec2<u32>(gid.x, gid.y), b[gid.y * width + gid.x]);
    }
}
