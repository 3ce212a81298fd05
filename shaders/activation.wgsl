// Element-wise ReLU and dropout, forward and backward.
// Dropout draws its mask from a counter-based hash keyed by (seed, step, element), the same
// function as src/shapes.rs::hash_u32, so a run is reproducible and the backward recomputes the
// mask instead of storing it. Specialization: WG. Large grids are folded over x and y.

struct Params {
    n: u32,
    seed: u32,
    step: u32,
    _pad0: u32,
    // dropout probability and the scale 1 / (1 - p) applied to kept elements
    prob: f32,
    scale: f32,
    _pad1: u32,
    _pad2: u32,
}

fn lin(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid.x;
}

fn mix32(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn keep(i: u32) -> bool {
    let h = mix32(i ^ mix32(q.step ^ mix32(q.seed ^ 0x9e3779b9u)));
    let u = f32(h >> 8u) * (1.0 / 16777216.0);
    return u >= q.prob;
}

// one input, one output: relu_fwd (x -> y), dropout_fwd (x -> y), dropout_bwd (dy -> dx)
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> q: Params;

@compute @workgroup_size(WG, 1, 1)
fn relu_fwd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = lin(wid, nwg, lid);
    if (i >= q.n) {
        return;
    }
    let v = src[i];
    dst[i] = select(0.0, v, v > 0.0);
}

// Forward and backward of dropout are the same map: kept elements scaled, dropped ones zeroed.
@compute @workgroup_size(WG, 1, 1)
fn dropout(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = lin(wid, nwg, lid);
    if (i >= q.n) {
        return;
    }
    dst[i] = select(0.0, src[i] * q.scale, keep(i));
}

// relu_bwd: inputs y (the forward output), dy; output dx
@group(0) @binding(0) var<storage, read> ry: array<f32>;
@group(0) @binding(1) var<storage, read> rdy: array<f32>;
@group(0) @binding(2) var<storage, read_write> rdx: array<f32>;
@group(0) @binding(3) var<uniform> qr: Params;

@compute @workgroup_size(WG, 1, 1)
fn relu_bwd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = lin(wid, nwg, lid);
    if (i >= qr.n) {
        return;
    }
    rdx[i] = select(0.0, rdy[i], ry[i] > 0.0);
}
