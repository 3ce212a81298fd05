// Element-wise ReLU and dropout, forward and backward.
// Dropout draws its mask from a counter-based hash keyed by (seed, step, element), the same
// function as src/shapes.rs::hash_u32, so a run is reproducible and the backward recomputes the
// mask instead of storing it. Specialization: WG. Large grids are folded over x and y.
// Bindings: params; then per kernel below.

@group(0) @binding(0) var<uniform> p: ActParams;

// ---- relu_fwd (x -> y), dropout (x -> y forward; dy -> dx backward, the same map)
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// ---- relu_bwd: inputs the forward's output, dy; output dx (relu_bwd4: as vec4s, p.n counting
// vec4s)
@group(0) @binding(1) var<storage, read> relu_out: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read> relu_out4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx4: array<vec4<f32>>;

fn mix32(v: u32) -> u32 {
    var h = v;
    h ^= h >> 16u;
    h *= 0x7feb352du;
    h ^= h >> 15u;
    h *= 0x846ca68bu;
    h ^= h >> 16u;
    return h;
}

fn keep(i: u32) -> bool {
    let h = mix32(i ^ mix32(p.step ^ mix32(p.seed ^ 0x9e3779b9u)));
    let u = f32(h >> 8u) * (1.0 / 16777216.0);
    return u >= p.prob;
}

@compute @workgroup_size(WG, 1, 1)
fn relu_fwd(id: Ids) {
    let i = thread_index(id, WG);
    if (i < p.n) {
        let v = x[i];
        y[i] = select(0.0, v, v > 0.0);
    }
}

// Kept elements scaled by 1 / (1 - p), dropped ones zeroed.
@compute @workgroup_size(WG, 1, 1)
fn dropout(id: Ids) {
    let i = thread_index(id, WG);
    if (i < p.n) {
        y[i] = select(0.0, x[i] * p.scale, keep(i));
    }
}

@compute @workgroup_size(WG, 1, 1)
fn relu_bwd(id: Ids) {
    let i = thread_index(id, WG);
    if (i < p.n) {
        dx[i] = select(0.0, dy[i], relu_out[i] > 0.0);
    }
}

// relu_bwd four elements an invocation, for a length that is a multiple of 4: a quarter of the
// loads and stores, each of a vec4 (lavapipe gathers and scatters lane by lane).
@compute @workgroup_size(WG, 1, 1)
fn relu_bwd4(id: Ids) {
    let i = thread_index(id, WG);
    if (i < p.n) {
        dx4[i] = select(vec4<f32>(0.0), dy4[i], relu_out4[i] > vec4<f32>(0.0));
    }
}
