// SGD with momentum and weight decay, in place:
//   v = momentum · v − lr · (g + weight_decay · w);  w = w + v
// Specialization: WG. Large grids are folded over x and y.
// Bindings: params; input g; outputs w, v.

@group(0) @binding(0) var<uniform> p: SgdParams;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn sgd_momentum(id: Ids) {
    let i = thread_index(id, WG);
    if (i < p.n) {
        let wi = w[i];
        let vi = p.momentum * v[i] - p.lr * (g[i] + p.weight_decay * wi);
        v[i] = vi;
        w[i] = wi + vi;
    }
}
