// Max and average pooling, forward and backward, over planes = n·c independent planes; the
// specialization constant MAX chooses which. Windows are clipped to the image (padding never
// contributes); the output size follows the ceil-mode rule of src/shapes.rs (42 -> 21 -> 10 -> 5
// for 3x3 windows, stride 2). Max pooling records the in-plane index (iy·w + ix) of each window's
// first maximum and routes the gradient there; average pooling divides by the number of in-image
// elements of the window. Average pooling binds a one-element placeholder for the argmax tensor
// and never touches it.
// Specialization: WG, MAX. Large grids are folded over x and y (shaders/common.wgsl).

@group(0) @binding(0) var<uniform> p: PoolParams;

// ---- pool_fwd: input x; outputs y, argmax
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<i32>;

// ---- pool_bwd, pool_bwd_pass: inputs dy, the forward's argmax; output dx
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_argmax: array<i32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// The in-image window of output (oy, ox): rows [x, y), columns [z, w).
fn window(oy: u32, ox: u32) -> vec4<u32> {
    return vec4<u32>(
        win_lo(oy, p.stride_y, p.pad_y),
        win_hi(oy, p.stride_y, p.pad_y, p.kh, p.h),
        win_lo(ox, p.stride_x, p.pad_x),
        win_hi(ox, p.stride_x, p.pad_x, p.kw, p.w),
    );
}

// Elements of a window (at least 1).
fn window_size(r: vec4<u32>) -> f32 {
    return f32(max((r.y - r.x) * (r.w - r.z), 1u));
}

// Output o of window r in the plane at `base`. Max: the first maximum in row-major order wins
// (arg < 0 until the first element; taken by selects, not a branch the lanes may not share), and
// its in-plane index goes to argmax; average: the sum over the window's in-image elements.
fn pool_output(o: u32, base: u32, r: vec4<u32>) {
    var acc = 0.0;
    var arg = -1;
    for (var iy = r.x; iy < r.y; iy++) {
        for (var ix = r.z; ix < r.w; ix++) {
            let v = x[base + iy * p.w + ix];
            if (!MAX) {
                acc += v;
            } else {
                let take = arg < 0 || v > acc;
                acc = select(acc, v, take);
                arg = select(arg, i32(iy * p.w + ix), take);
            }
        }
    }
    if (MAX) {
        y[o] = acc;
        argmax[o] = arg;
    } else {
        y[o] = acc / window_size(r);
    }
}

@compute @workgroup_size(WG, 1, 1)
fn pool_fwd(id: Ids) {
    let at = plane_pos(thread_index(id, WG), p.planes, p.oh, p.ow);
    if (at.w == 0u) {
        return;
    }
    pool_output((at.x * p.oh + at.y) * p.ow + at.z, at.x * p.h * p.w, window(at.y, at.z));
}

// By rows: one invocation per output row (plane, oy), walking ox ascending; each output as
// pool_fwd's, so the same values. One division an invocation instead of plane_pos's three an
// output (lavapipe divides lane by lane).
@compute @workgroup_size(WG, 1, 1)
fn pool_fwd_rows(id: Ids) {
    let t = thread_index(id, WG);
    if (t >= p.planes * p.oh) {
        return;
    }
    let plane = t / p.oh;
    let oy = t - plane * p.oh;
    let y0 = win_lo(oy, p.stride_y, p.pad_y);
    let y1 = win_hi(oy, p.stride_y, p.pad_y, p.kh, p.h);
    let base = plane * p.h * p.w;
    let orow = t * p.ow;
    for (var ox = 0u; ox < p.ow; ox++) {
        let r = vec4<u32>(y0, y1, win_lo(ox, p.stride_x, p.pad_x), win_hi(ox, p.stride_x, p.pad_x, p.kw, p.w));
        pool_output(orow + ox, base, r);
    }
}

// Gather: one invocation per input element, adding the gradients of the windows that cover it
// (max: only those whose argmax it is; average: dy / count). The fallback and oracle.
@compute @workgroup_size(WG, 1, 1)
fn pool_bwd(id: Ids) {
    let at = plane_pos(thread_index(id, WG), p.planes, p.h, p.w);
    if (at.w == 0u) {
        return;
    }
    let me = i32(at.y * p.w + at.z);
    let oy1 = cover_last(at.y, p.stride_y, p.pad_y, p.oh);
    let ox1 = cover_last(at.z, p.stride_x, p.pad_x, p.ow);
    var acc = 0.0;
    for (var oy = cover_first(at.y, p.stride_y, p.pad_y, p.kh); oy <= oy1; oy++) {
        for (var ox = cover_first(at.z, p.stride_x, p.pad_x, p.kw); ox <= ox1; ox++) {
            let o = (at.x * p.oh + u32(oy)) * p.ow + u32(ox);
            if (!MAX) {
                acc += dy[o] / window_size(window(u32(oy), u32(ox)));
            } else if (fwd_argmax[o] == me) {
                acc += dy[o];
            }
        }
    }
    dx[(at.x * p.h + at.y) * p.w + at.z] = acc;
}

// By passes (dx zeroed first by fill.wgsl): outputs whose rows differ by a multiple of
// ny = ceil(kh/sy) (columns: nx = ceil(kw/sx)) have disjoint windows, so in pass (ay, ax) every
// output oy ≡ ay (mod ny), ox ≡ ax (mod nx) adds its gradient (max: at its argmax; average: dy /
// count over its window) with no other invocation touching those elements: no atomics, a fixed
// order of additions, and one invocation per output instead of a gather over covering windows.
@compute @workgroup_size(WG, 1, 1)
fn pool_bwd_pass(id: Ids) {
    let at = pass_output(p, thread_index(id, WG));
    if (at.w == 0u) {
        return;
    }
    let o = (at.x * p.oh + at.y) * p.ow + at.z;
    let base = at.x * p.h * p.w;
    if (MAX) {
        // The index comes from data: range-checked before use.
        let k = fwd_argmax[o];
        if (k >= 0 && u32(k) < p.h * p.w) {
            dx[base + u32(k)] += dy[o];
        }
        return;
    }
    let r = window(at.y, at.z);
    let g = dy[o] / window_size(r);
    for (var iy = r.x; iy < r.y; iy++) {
        for (var ix = r.z; ix < r.w; ix++) {
            dx[base + iy * p.w + ix] += g;
        }
    }
}

// By row passes (dx zeroed first by fill.wgsl): outputs whose rows differ by a multiple of
// ny = ceil(kh/sy) have disjoint windows along y, so in pass ay = phase every output row
// oy ≡ ay (mod ny) is one invocation's, walked ox ascending: the windows that overlap along x add
// in that invocation's order, and no other invocation touches its elements. Two divisions an
// invocation (its plane and row), not a pass_output decomposition per output: lavapipe divides
// lane by lane, and those divisions were most of `pool_bwd_pass`'s work.
@compute @workgroup_size(WG, 1, 1)
fn pool_bwd_rows(id: Ids) {
    let ny = (p.kh + p.stride_y - 1u) / p.stride_y;
    // The host runs passes ay < min(ny, oh) only.
    let cy = (p.oh - p.phase + ny - 1u) / ny;
    let t = thread_index(id, WG);
    if (t >= p.planes * cy) {
        return;
    }
    let plane = t / cy;
    let oy = p.phase + (t - plane * cy) * ny;
    let orow = (plane * p.oh + oy) * p.ow;
    let base = plane * p.h * p.w;
    if (MAX) {
        for (var ox = 0u; ox < p.ow; ox++) {
            // The index comes from data: range-checked before use.
            let k = fwd_argmax[orow + ox];
            if (k >= 0 && u32(k) < p.h * p.w) {
                dx[base + u32(k)] += dy[orow + ox];
            }
        }
        return;
    }
    let y0 = win_lo(oy, p.stride_y, p.pad_y);
    let y1 = win_hi(oy, p.stride_y, p.pad_y, p.kh, p.h);
    for (var ox = 0u; ox < p.ow; ox++) {
        let r = vec4<u32>(y0, y1, win_lo(ox, p.stride_x, p.pad_x), win_hi(ox, p.stride_x, p.pad_x, p.kw, p.w));
        let g = dy[orow + ox] / window_size(r);
        for (var iy = r.x; iy < r.y; iy++) {
            for (var ix = r.z; ix < r.w; ix++) {
                dx[base + iy * p.w + ix] += g;
            }
        }
    }
}
