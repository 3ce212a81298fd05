// Ceiling probes for `dlsvm bench`: an FMA-bound loop (arithmetic ceiling) and a vec4 copy
// (bandwidth ceiling). Specialization: WG, CHAINS (independent vec4 multiply-add chains per
// invocation).

// Bindings: params; then per kernel below.

@group(0) @binding(0) var<uniform> p: ProbeParams;

// ---- fma_probe: input seed values; output one value per invocation (kept so nothing is elided)
@group(0) @binding(1) var<storage, read> seeds: array<f32>;
@group(0) @binding(2) var<storage, read_write> sink: array<f32>;

// ---- copy_probe: input src; output dst (vec4 elements)
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(WG, 1, 1)
fn fma_probe(id: Ids) {
    let i = thread_index(id, WG);
    if (i >= p.n) {
        return;
    }
    let a = vec4<f32>(seeds[0]);
    let b = vec4<f32>(seeds[1]);
    // CHAINS independent vec4 chains: 4 * CHAINS multiply-adds per iteration.
    var acc: array<vec4<f32>, CHAINS>;
    for (var c = 0u; c < CHAINS; c++) {
        acc[c] = vec4<f32>(f32(i + c), f32(i + 2u * c), f32(c), 1.0) * 1e-6;
    }
    for (var t = 0u; t < p.iters; t++) {
        for (var c = 0u; c < CHAINS; c++) {
            acc[c] = acc[c] * a + b;
        }
    }
    var s = vec4<f32>(0.0);
    for (var c = 0u; c < CHAINS; c++) {
        s += acc[c];
    }
    sink[i] = s.x + s.y + s.z + s.w;
}

@compute @workgroup_size(WG, 1, 1)
fn copy_probe(id: Ids) {
    let i = thread_index(id, WG);
    if (i < p.n) {
        dst[i] = src[i];
    }
}
