// SGD with momentum and weight decay, in place:
//   v = momentum * v - lr * (g + weight_decay * w);  w = w + v
// Bindings: input g; outputs w, v. Specialization: WG. Large grids are folded over x and y.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    _pad3: u32,
}

@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG, 1, 1)
fn sgd_momentum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid.x;
    if (i >= p.n) {
        return;
    }
    let wi = w[i];
    let vi = p.momentum * v[i] - p.lr * (g[i] + p.weight_decay * wi);
    v[i] = vi;
    w[i] = wi + vi;
}
