// B of the vec4 GEMM kernels (gemm4.wgsl, gemm_sg4.wgsl) as an rgba32float texture, for their
// texture variants: texel (x, y) is the vec4 at row y, vec4 column x of B as stored ([K,N]: N/4
// texels wide and K high; [N,K] when TRANS_B: K/4 wide and N high), copied there by
// tex_pack.wgsl's pack_b. On GPUs whose texture path has its own cache (or a better one for 2-D
// neighbourhoods than the buffer path), each invocation's B loads go through it.

@group(0) @binding(2) var b_tex: texture_2d<f32>;

// The vec4 at row `row`, vec4 column `col4` of B as stored.
fn b4(row: u32, col4: u32) -> vec4<f32> {
    return textureLoad(b_tex, vec2<u32>(col4, row), 0);
}
