// Losses on scores [rows, classes] with integer labels [rows]; a label outside [0, classes)
// masks its row (zero loss and gradient). One invocation per row writes the row's loss and its
// gradient row.
//
// softmax_xent: loss = scale · (logsumexp(z) − z_y), grad = scale · (softmax(z) − onehot(y)),
//   computed around the row maximum so logits of any size stay finite.
// l2svm (one-vs-rest squared hinge, Tang 2013): t = +1 for the label's class, −1 otherwise,
//   h = max(0, 1 − t·a), loss = scale · Σ h², grad = −2 · scale · t · h, scale = C / N.
// l1svm (one-vs-rest hinge, the standard SVM loss): loss = scale · Σ h, grad = −scale · t where
//   1 − t·a > 0, else 0 (the kink t·a = 1 takes the zero side), scale = C / N.
// Specialization: WG. Bindings: params; inputs scores, labels; outputs loss_rows, grad.

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> scores: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read_write> loss_rows: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

// The label of row r, or -1 when r is past the last row or its label masks it (a label outside
// [0, classes) can never index out of the row). A masked row's loss and gradient are zeroed here.
fn row_label(r: u32) -> i32 {
    if (r >= p.rows) {
        return -1;
    }
    let y = labels[r];
    if (y >= 0 && y < i32(p.classes)) {
        return y;
    }
    loss_rows[r] = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        grad[r * p.classes + j] = 0.0;
    }
    return -1;
}

@compute @workgroup_size(WG, 1, 1)
fn softmax_xent(id: Ids) {
    let r = thread_index(id, WG);
    let y = row_label(r);
    if (y < 0) {
        return;
    }
    let base = r * p.classes;
    var m = scores[base];
    for (var j = 1u; j < p.classes; j++) {
        m = max(m, scores[base + j]);
    }
    var s = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        s += exp(scores[base + j] - m);
    }
    let inv = 1.0 / s;
    loss_rows[r] = p.scale * (log(s) - (scores[base + u32(y)] - m));
    for (var j = 0u; j < p.classes; j++) {
        let prob = exp(scores[base + j] - m) * inv;
        grad[base + j] = p.scale * (prob - select(0.0, 1.0, j == u32(y)));
    }
}

@compute @workgroup_size(WG, 1, 1)
fn l2svm(id: Ids) {
    let r = thread_index(id, WG);
    let y = row_label(r);
    if (y < 0) {
        return;
    }
    let base = r * p.classes;
    var acc = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        let t = select(-1.0, 1.0, j == u32(y));
        let h = max(0.0, 1.0 - t * scores[base + j]);
        acc += h * h;
        grad[base + j] = -2.0 * p.scale * t * h;
    }
    loss_rows[r] = p.scale * acc;
}

@compute @workgroup_size(WG, 1, 1)
fn l1svm(id: Ids) {
    let r = thread_index(id, WG);
    let y = row_label(r);
    if (y < 0) {
        return;
    }
    let base = r * p.classes;
    var acc = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        let t = select(-1.0, 1.0, j == u32(y));
        let h = 1.0 - t * scores[base + j];
        acc += max(0.0, h);
        grad[base + j] = select(0.0, -p.scale * t, h > 0.0);
    }
    loss_rows[r] = p.scale * acc;
}
