// Losses on scores [n, k] with integer labels [n]; a negative label masks its row (zero loss and
// gradient). One invocation per row writes the row's loss and its gradient row.
//
// softmax_xent: loss = scale * (logsumexp(z) - z_y), grad = scale * (softmax(z) - onehot(y)),
//   computed around the row maximum so logits of any size stay finite.
// l2svm (one-vs-rest squared hinge, Tang 2013): t = +1 for the label's class, -1 otherwise,
//   h = max(0, 1 - t * a), loss = scale * sum h^2, grad = -2 * scale * t * h, scale = C / N.
// Bindings: inputs scores, labels; outputs loss_rows, grad. Specialization: WG.

struct Params {
    n: u32,
    k: u32,
    _pad0: u32,
    _pad1: u32,
    scale: f32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<storage, read> scores: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read_write> loss_rows: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

fn row_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid.x;
}

// Labels outside [0, k) are treated as masked so a bad label can never index out of the row.
fn masked(y: i32) -> bool {
    return y < 0 || y >= i32(p.k);
}

@compute @workgroup_size(WG, 1, 1)
fn softmax_xent(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = row_index(wid, nwg, lid);
    if (r >= p.n) {
        return;
    }
    let base = r * p.k;
    let y = labels[r];
    if (masked(y)) {
        loss_rows[r] = 0.0;
        for (var j = 0u; j < p.k; j++) {
            grad[base + j] = 0.0;
        }
        return;
    }
    var m = scores[base];
    for (var j = 1u; j < p.k; j++) {
        m = max(m, scores[base + j]);
    }
    var s = 0.0;
    for (var j = 0u; j < p.k; j++) {
        s += exp(scores[base + j] - m);
    }
    let inv = 1.0 / s;
    loss_rows[r] = p.scale * (log(s) - (scores[base + u32(y)] - m));
    for (var j = 0u; j < p.k; j++) {
        let prob = exp(scores[base + j] - m) * inv;
        grad[base + j] = p.scale * (prob - select(0.0, 1.0, j == u32(y)));
    }
}

@compute @workgroup_size(WG, 1, 1)
fn l2svm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = row_index(wid, nwg, lid);
    if (r >= p.n) {
        return;
    }
    let base = r * p.k;
    let y = labels[r];
    if (masked(y)) {
        loss_rows[r] = 0.0;
        for (var j = 0u; j < p.k; j++) {
            grad[base + j] = 0.0;
        }
        return;
    }
    var acc = 0.0;
    for (var j = 0u; j < p.k; j++) {
        let t = select(-1.0, 1.0, j == u32(y));
        let h = max(0.0, 1.0 - t * scores[base + j]);
        acc += h * h;
        grad[base + j] = -2.0 * p.scale * t * h;
    }
    loss_rows[r] = p.scale * acc;
}
