// Reductions training needs: the sum of a vector (the loss), per-row argmax, the count of correct
// predictions, and per-channel sums (the bias gradient of conv and fc layers).
// Specialization: WG (a power of two). Tree reductions run in workgroup memory.

struct Params {
    // sum_all: n; argmax_rows: rows n, columns k; count_correct: n;
    // channel_sum: outer, channels c, inner (x is [outer, c, inner]), flags bit 1 = accumulate
    n: u32,
    k: u32,
    outer: u32,
    c: u32,
    inner: u32,
    flags: u32,
    _pad0: u32,
    _pad1: u32,
}

var<workgroup> fpart: array<f32, WG>;
var<workgroup> upart: array<u32, WG>;

// ---- sum_all and channel_sum: inputs x; output out
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

fn tree_f32(l: u32) {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (l < s) {
            fpart[l] += fpart[l + s];
        }
        workgroupBarrier();
    }
}

// One workgroup: out[0] = sum of x[0..n) (added to out[0] when flags bit 1 is set).
@compute @workgroup_size(WG, 1, 1)
fn sum_all(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = 0.0;
    for (var i = lid.x; i < p.n; i += WG) {
        acc += x[i];
    }
    fpart[lid.x] = acc;
    tree_f32(lid.x);
    if (lid.x == 0u) {
        var v = fpart[0];
        if ((p.flags & 2u) != 0u) {
            v += out[0];
        }
        out[0] = v;
    }
}

// One workgroup per channel (folded over x and y).
@compute @workgroup_size(WG, 1, 1)
fn channel_sum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let ch = wid.y * nwg.x + wid.x;
    if (ch >= p.c) {
        return;
    }
    let count = p.outer * p.inner;
    var acc = 0.0;
    for (var r = lid.x; r < count; r += WG) {
        let o = r / p.inner;
        let i = r % p.inner;
        acc += x[(o * p.c + ch) * p.inner + i];
    }
    fpart[lid.x] = acc;
    tree_f32(lid.x);
    if (lid.x == 0u) {
        var v = fpart[0];
        if ((p.flags & 2u) != 0u) {
            v += out[ch];
        }
        out[ch] = v;
    }
}

// ---- argmax_rows: inputs scores; output pred (first maximum of each row)
@group(0) @binding(0) var<storage, read> ax: array<f32>;
@group(0) @binding(1) var<storage, read_write> apred: array<i32>;
@group(0) @binding(2) var<uniform> pa: Params;

@compute @workgroup_size(WG, 1, 1)
fn argmax_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = (wid.y * nwg.x + wid.x) * WG + lid.x;
    if (r >= pa.n) {
        return;
    }
    let base = r * pa.k;
    var best = ax[base];
    var arg = 0u;
    for (var j = 1u; j < pa.k; j++) {
        let v = ax[base + j];
        if (v > best) {
            best = v;
            arg = j;
        }
    }
    apred[r] = i32(arg);
}

// ---- count_correct: inputs pred, labels; output count[1] (rows with label >= 0 and pred == label),
// added to count[0] when flags bit 1 is set
@group(0) @binding(0) var<storage, read> cpred: array<i32>;
@group(0) @binding(1) var<storage, read> clabels: array<i32>;
@group(0) @binding(2) var<storage, read_write> ccount: array<u32>;
@group(0) @binding(3) var<uniform> pc: Params;

@compute @workgroup_size(WG, 1, 1)
fn count_correct(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = 0u;
    for (var i = lid.x; i < pc.n; i += WG) {
        let y = clabels[i];
        if (y >= 0 && cpred[i] == y) {
            acc += 1u;
        }
    }
    upart[lid.x] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid.x < s) {
            upart[lid.x] += upart[lid.x + s];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        var c = upart[0];
        if ((pc.flags & 2u) != 0u) {
            c += ccount[0];
        }
        ccount[0] = c;
    }
}
