// Reductions training needs: the sum of a vector (the loss), sums over the slices of a partial
// result (the convolution weight gradients), per-channel sums (the bias gradients), the argmax of
// each row and the count of correct predictions. Every sum adds in a fixed order, so results do
// not depend on scheduling. The kernels with barriers take the workgroup's place (workgroup_id,
// num_workgroups) and their local id as separate builtins, so that a return on the workgroup's
// index is uniform to every compiler's analysis (common.wgsl, workgroup_index). Specialization: WG
// (a power of two, at most MAX_WG).
// Bindings: params; then per kernel below.

@group(0) @binding(0) var<uniform> p: ReduceParams;

// ---- sum_all, slice_sum, channel_sum: input x; output out (added to with FLAG_ACC)
@group(0) @binding(1) var<storage, read> x: array<f32>;
// channel_sum4, channel_part4: x as vec4s (inner a multiple of 4).
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// ---- argmax_rows: input scores [n, k]; output pred (the first maximum of each row)
@group(0) @binding(1) var<storage, read> scores: array<f32>;
@group(0) @binding(2) var<storage, read_write> pred: array<i32>;

// ---- count_correct: inputs predicted, labels; output count[1]: rows with a label >= 0 equal to
// their prediction (added to count[0] with FLAG_ACC). One workgroup. The per-invocation counts
// are summed as f32, exact for the at most 2^24 rows the host allows.
@group(0) @binding(1) var<storage, read> predicted: array<i32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read_write> count: array<u32>;

// One workgroup: out[0] = sum of x[0..n).
@compute @workgroup_size(WG, 1, 1)
fn sum_all(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = 0.0;
    for (var i = lid.x; i < p.n; i += WG) {
        acc += x[i];
    }
    let total = workgroup_sum(acc, lid.x, WG);
    if (lid.x == 0u) {
        out[0] = epilogue(total, 0.0, out[0], p.flags);
    }
}

// out[e] = Σ over slices s of x[s·n + e], for e < n and k slices, in a fixed order: a workgroup
// sums SLICE_COLS neighbouring elements; its WG / SLICE_COLS lanes each add every lanes-th slice
// in order (lane l: slices l, l + lanes, ...), then the lanes' sums are added pairwise. (One
// chain of k loads per element left an H200 waiting on memory: 0.18 ms for 978 slices of 800.)
const SLICE_COLS: u32 = 8u;

@compute @workgroup_size(WG, 1, 1)
fn slice_sum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let g = workgroup_index(wid, nwg);
    // Uniform across the workgroup, so the barriers below stay in uniform control flow.
    if (g * SLICE_COLS >= p.n) {
        return;
    }
    let lanes = WG / SLICE_COLS;
    let col = lid.x % SLICE_COLS;
    let lane = lid.x / SLICE_COLS;
    let e = g * SLICE_COLS + col;
    let ec = min(e, p.n - 1u);
    var v = 0.0;
    for (var s = lane; s < p.k; s += lanes) {
        v += x[s * p.n + ec];
    }
    wg_sums[lid.x] = v;
    workgroupBarrier();
    for (var half = lanes / 2u; half > 0u; half = half / 2u) {
        if (lane < half) {
            wg_sums[lid.x] += wg_sums[lid.x + half * SLICE_COLS];
        }
        workgroupBarrier();
    }
    if (lane == 0u && e < p.n) {
        out[e] = epilogue(wg_sums[col], 0.0, out[e], p.flags);
    }
}

// slice_sum for many elements and few slices: one invocation per element adds its k values in
// slice order. slice_sum's workgroup per 8 elements, with its barriers, cost lavapipe 36 ms for 24
// slices of 51,200 (a conv weight gradient's partial sums); the host takes this one from
// SERIAL_MIN_ELEMENTS elements and up to SERIAL_MAX_SLICES slices (kernels/reduce.rs), where a
// GPU still has thousands of invocations, each with a short chain of loads.
@compute @workgroup_size(WG, 1, 1)
fn slice_sum_serial(id: Ids) {
    let e = thread_index(id, WG);
    if (e >= p.n) {
        return;
    }
    var v = 0.0;
    for (var s = 0u; s < p.k; s++) {
        v += x[s * p.n + e];
    }
    out[e] = epilogue(v, 0.0, out[e], p.flags);
}

// This invocation's share of channel ch's positions r = o·inner + i in [first, end), every WG-th
// from `first`, summed in that order. Where inner >= WG the walk steps (o, i) by WG with at most
// one carry instead of dividing r (two scalar divisions an element on a SIMD device, most of the
// kernel's time on lavapipe); the sums are the same either way.
fn channel_walk(ch: u32, first: u32, end: u32) -> f32 {
    var acc = 0.0;
    if (p.inner >= WG) {
        var o = first / p.inner;
        var i = first % p.inner;
        for (var r = first; r < end; r += WG) {
            acc += x[(o * p.c + ch) * p.inner + i];
            i += WG;
            if (i >= p.inner) {
                i -= p.inner;
                o += 1u;
            }
        }
    } else {
        for (var r = first; r < end; r += WG) {
            acc += x[((r / p.inner) * p.c + ch) * p.inner + r % p.inner];
        }
    }
    return acc;
}

// channel_walk with inner a multiple of 4 and x as vec4s: positions r4 = o·inner4 + i4 of vec4s
// in [first, end), every WG-th, each vec4 added to a vec4 sum whose components are added last
// (x, y, z, w). A quarter of the loads, each of four floats.
fn channel_walk4(ch: u32, first: u32, end: u32) -> f32 {
    let inner4 = p.inner / 4u;
    var acc = vec4<f32>(0.0);
    var o = first / inner4;
    var i = first % inner4;
    // WG may exceed inner4: the carry then steps o more than once.
    let so = WG / inner4;
    let si = WG % inner4;
    for (var r = first; r < end; r += WG) {
        acc += x4[(o * p.c + ch) * inner4 + i];
        i += si;
        o += so;
        if (i >= inner4) {
            i -= inner4;
            o += 1u;
        }
    }
    return ((acc.x + acc.y) + acc.z) + acc.w;
}

// out[ch] = Σ over (o, i) of x[o, ch, i], x being [outer, c, inner]; one workgroup per channel
// (folded over x and y).
@compute @workgroup_size(WG, 1, 1)
fn channel_sum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let ch = workgroup_index(wid, nwg);
    // Uniform across the workgroup, so the barriers of workgroup_sum stay in uniform control flow.
    if (ch >= p.c) {
        return;
    }
    let acc = channel_walk(ch, lid.x, p.outer * p.inner);
    let total = workgroup_sum(acc, lid.x, WG);
    if (lid.x == 0u) {
        out[ch] = epilogue(total, 0.0, out[ch], p.flags);
    }
}

// The first pass of a channel sum too long for one workgroup per channel: workgroup g sums chunk
// g / c of channel g % c, the (o, i) positions [chunk·k, min(chunk·k + k, outer·inner)), into
// out[g] (partial sums [n chunks, c]; slice_sum then adds the chunks of each channel in order).
@compute @workgroup_size(WG, 1, 1)
fn channel_part(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let g = workgroup_index(wid, nwg);
    // Uniform across the workgroup, as in channel_sum.
    if (g >= p.n * p.c) {
        return;
    }
    let ch = g % p.c;
    let begin = (g / p.c) * p.k;
    let end = min(begin + p.k, p.outer * p.inner);
    let acc = channel_walk(ch, begin + lid.x, end);
    let total = workgroup_sum(acc, lid.x, WG);
    if (lid.x == 0u) {
        out[g] = total;
    }
}

// channel_sum and channel_part over x as vec4s (channel_walk4): p.inner a multiple of 4; p.k, the
// chunk of channel_part4, in vec4s.
@compute @workgroup_size(WG, 1, 1)
fn channel_sum4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let ch = workgroup_index(wid, nwg);
    if (ch >= p.c) {
        return;
    }
    let acc = channel_walk4(ch, lid.x, p.outer * (p.inner / 4u));
    let total = workgroup_sum(acc, lid.x, WG);
    if (lid.x == 0u) {
        out[ch] = epilogue(total, 0.0, out[ch], p.flags);
    }
}

@compute @workgroup_size(WG, 1, 1)
fn channel_part4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let g = workgroup_index(wid, nwg);
    if (g >= p.n * p.c) {
        return;
    }
    let ch = g % p.c;
    let begin = (g / p.c) * p.k;
    let end = min(begin + p.k, p.outer * (p.inner / 4u));
    let acc = channel_walk4(ch, begin + lid.x, end);
    let total = workgroup_sum(acc, lid.x, WG);
    if (lid.x == 0u) {
        out[g] = total;
    }
}

@compute @workgroup_size(WG, 1, 1)
fn argmax_rows(id: Ids) {
    let r = thread_index(id, WG);
    if (r >= p.n) {
        return;
    }
    let base = r * p.k;
    var best = scores[base];
    var arg = 0u;
    for (var j = 1u; j < p.k; j++) {
        let v = scores[base + j];
        if (v > best) {
            best = v;
            arg = j;
        }
    }
    pred[r] = i32(arg);
}

@compute @workgroup_size(WG, 1, 1)
fn count_correct(@builtin(local_invocation_id) lid: vec3<u32>) {
    var hits = 0.0;
    for (var i = lid.x; i < p.n; i += WG) {
        let y = labels[i];
        if (y >= 0 && predicted[i] == y) {
            hits += 1.0;
        }
    }
    let total = u32(workgroup_sum(hits, lid.x, WG));
    if (lid.x == 0u) {
        count[0] = select(total, total + count[0], (p.flags & FLAG_ACC) != 0u);
    }
}
