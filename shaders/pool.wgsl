// Max and average pooling, forward and backward, over planes = n * c independent planes.
// Windows are clipped to the image (padding never contributes); the output size follows the
// ceil-mode rule in src/shapes.rs (42 -> 21 -> 10 -> 5 for 3x3 windows, stride 2).
// Max pooling records the in-plane index (iy * w + ix) of the first maximum; its backward gathers
// from the windows that cover each input, so no atomics are needed. Average pooling divides by
// the number of in-image elements of the window.
// Specialization: WG. Large grids are folded over x and y.

struct Params {
    planes: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sy: u32,
    sx: u32,
    py: u32,
    px: u32,
    // maxpool_bwd_pass: which of the ceil(kh/sy)·ceil(kw/sx) passes this dispatch runs
    phase: u32,
}

fn lin(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid.x;
}

// The in-image extent [lo, hi) of window o along one axis.
fn win_lo(o: u32, s: u32, pad: u32) -> u32 {
    return u32(max(i32(o * s) - i32(pad), 0));
}
fn win_hi(o: u32, s: u32, pad: u32, k: u32, len: u32) -> u32 {
    return u32(clamp(i32(o * s + k) - i32(pad), 0, i32(len)));
}

// The outputs o whose window covers input position i along one axis: [first, last], as i32 so an
// empty range is last < first.
fn cover_first(i: u32, s: u32, pad: u32, k: u32) -> i32 {
    let t = i32(i + pad) - i32(k) + 1;
    if (t <= 0) {
        return 0;
    }
    return (t + i32(s) - 1) / i32(s);
}
fn cover_last(i: u32, s: u32, pad: u32, o: u32) -> i32 {
    return min(i32((i + pad) / s), i32(o) - 1);
}

// The output that invocation t handles in pass q.phase of a disjoint-window backward:
// (plane, oy, ox, 1), or w = 0 when t has none. Pass (ay, ax) covers oy ≡ ay (mod ny),
// ox ≡ ax (mod nx), with ny = ceil(kh/sy), nx = ceil(kw/sx).
fn pass_output(q: Params, t: u32) -> vec4<u32> {
    let ny = (q.kh + q.sy - 1u) / q.sy;
    let nx = (q.kw + q.sx - 1u) / q.sx;
    let ay = q.phase / nx;
    let ax = q.phase % nx;
    if (ay >= q.oh || ax >= q.ow) {
        return vec4<u32>(0u);
    }
    let cy = (q.oh - ay + ny - 1u) / ny;
    let cx = (q.ow - ax + nx - 1u) / nx;
    if (t >= q.planes * cy * cx) {
        return vec4<u32>(0u);
    }
    return vec4<u32>(t / (cx * cy), ay + ((t / cx) % cy) * ny, ax + (t % cx) * nx, 1u);
}

// ---- max forward: inputs x; outputs y, idx
@group(0) @binding(0) var<storage, read> mx: array<f32>;
@group(0) @binding(1) var<storage, read_write> my: array<f32>;
@group(0) @binding(2) var<storage, read_write> midx: array<i32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG, 1, 1)
fn maxpool_fwd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let o = lin(wid, nwg, lid);
    if (o >= p.planes * p.oh * p.ow) {
        return;
    }
    let ox = o % p.ow;
    let oy = (o / p.ow) % p.oh;
    let plane = o / (p.ow * p.oh);
    let base = plane * p.h * p.w;
    var best = 0.0;
    var arg = -1;
    for (var iy = win_lo(oy, p.sy, p.py); iy < win_hi(oy, p.sy, p.py, p.kh, p.h); iy++) {
        for (var ix = win_lo(ox, p.sx, p.px); ix < win_hi(ox, p.sx, p.px, p.kw, p.w); ix++) {
            let v = mx[base + iy * p.w + ix];
            if (arg < 0 || v > best) {
                best = v;
                arg = i32(iy * p.w + ix);
            }
        }
    }
    my[o] = best;
    midx[o] = arg;
}

// ---- max backward: inputs dy, idx; output dx
@group(0) @binding(0) var<storage, read> bdy: array<f32>;
@group(0) @binding(1) var<storage, read> bidx: array<i32>;
@group(0) @binding(2) var<storage, read_write> bdx: array<f32>;
@group(0) @binding(3) var<uniform> pb: Params;

@compute @workgroup_size(WG, 1, 1)
fn maxpool_bwd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = lin(wid, nwg, lid);
    if (i >= pb.planes * pb.h * pb.w) {
        return;
    }
    let ix = i % pb.w;
    let iy = (i / pb.w) % pb.h;
    let plane = i / (pb.w * pb.h);
    let me = i32(iy * pb.w + ix);
    var acc = 0.0;
    for (var oy = cover_first(iy, pb.sy, pb.py, pb.kh); oy <= cover_last(iy, pb.sy, pb.py, pb.oh); oy++) {
        for (var ox = cover_first(ix, pb.sx, pb.px, pb.kw); ox <= cover_last(ix, pb.sx, pb.px, pb.ow); ox++) {
            let o = (plane * pb.oh + u32(oy)) * pb.ow + u32(ox);
            if (bidx[o] == me) {
                acc += bdy[o];
            }
        }
    }
    bdx[i] = acc;
}

// ---- max backward by passes: inputs dy, idx; output dx, zeroed first by pool_zero.
// Outputs whose rows differ by a multiple of ny = ceil(kh/sy) (columns: nx = ceil(kw/sx)) have
// disjoint windows, so pass (ay, ax) lets every output oy ≡ ay (mod ny), ox ≡ ax (mod nx) add its
// gradient to its argmax with no other invocation touching that element: no atomics, a fixed
// order of additions, and one invocation per output instead of a gather over covering windows.
@group(0) @binding(0) var<storage, read_write> zdx: array<f32>;
@group(0) @binding(1) var<uniform> pz: Params;

@compute @workgroup_size(WG, 1, 1)
fn pool_zero(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = lin(wid, nwg, lid);
    if (i < pz.planes * pz.h * pz.w) {
        zdx[i] = 0.0;
    }
}

@compute @workgroup_size(WG, 1, 1)
fn maxpool_bwd_pass(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let at = pass_output(pb, lin(wid, nwg, lid));
    if (at.w == 0u) {
        return;
    }
    let plane = at.x;
    let o = (plane * pb.oh + at.y) * pb.ow + at.z;
    let k = bidx[o];
    if (k >= 0 && u32(k) < pb.h * pb.w) {
        let i = plane * pb.h * pb.w + u32(k);
        bdx[i] += bdy[o];
    }
}

// ---- average forward: inputs x; output y
@group(0) @binding(0) var<storage, read> ax: array<f32>;
@group(0) @binding(1) var<storage, read_write> ay: array<f32>;
@group(0) @binding(2) var<uniform> pa: Params;

@compute @workgroup_size(WG, 1, 1)
fn avgpool_fwd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let o = lin(wid, nwg, lid);
    if (o >= pa.planes * pa.oh * pa.ow) {
        return;
    }
    let ox = o % pa.ow;
    let oy = (o / pa.ow) % pa.oh;
    let plane = o / (pa.ow * pa.oh);
    let base = plane * pa.h * pa.w;
    let y0 = win_lo(oy, pa.sy, pa.py);
    let y1 = win_hi(oy, pa.sy, pa.py, pa.kh, pa.h);
    let x0 = win_lo(ox, pa.sx, pa.px);
    let x1 = win_hi(ox, pa.sx, pa.px, pa.kw, pa.w);
    var acc = 0.0;
    for (var iy = y0; iy < y1; iy++) {
        for (var ix = x0; ix < x1; ix++) {
            acc += ax[base + iy * pa.w + ix];
        }
    }
    ay[o] = acc / f32((y1 - y0) * (x1 - x0));
}

// ---- average backward: inputs dy; output dx
@group(0) @binding(0) var<storage, read> gdy: array<f32>;
@group(0) @binding(1) var<storage, read_write> gdx: array<f32>;
@group(0) @binding(2) var<uniform> pg: Params;

@compute @workgroup_size(WG, 1, 1)
fn avgpool_bwd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = lin(wid, nwg, lid);
    if (i >= pg.planes * pg.h * pg.w) {
        return;
    }
    let ix = i % pg.w;
    let iy = (i / pg.w) % pg.h;
    let plane = i / (pg.w * pg.h);
    var acc = 0.0;
    for (var oy = cover_first(iy, pg.sy, pg.py, pg.kh); oy <= cover_last(iy, pg.sy, pg.py, pg.oh); oy++) {
        let ny = win_hi(u32(oy), pg.sy, pg.py, pg.kh, pg.h) - win_lo(u32(oy), pg.sy, pg.py);
        for (var ox = cover_first(ix, pg.sx, pg.px, pg.kw); ox <= cover_last(ix, pg.sx, pg.px, pg.ow); ox++) {
            let nx = win_hi(u32(ox), pg.sx, pg.px, pg.kw, pg.w) - win_lo(u32(ox), pg.sx, pg.px);
            acc += gdy[(plane * pg.oh + u32(oy)) * pg.ow + u32(ox)] / f32(ny * nx);
        }
    }
    gdx[i] = acc;
}

// Average backward by passes (see maxpool_bwd_pass): dx zeroed first by pool_zero; in pass
// (ay, ax) each output oy ≡ ay (mod ny), ox ≡ ax (mod nx) adds dy / count to its whole window, and
// no two outputs of a pass share an element.
@compute @workgroup_size(WG, 1, 1)
fn avgpool_bwd_pass(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let at = pass_output(pg, lin(wid, nwg, lid));
    if (at.w == 0u) {
        return;
    }
    let plane = at.x;
    let oy = at.y;
    let ox = at.z;
    let y0 = win_lo(oy, pg.sy, pg.py);
    let y1 = win_hi(oy, pg.sy, pg.py, pg.kh, pg.h);
    let x0 = win_lo(ox, pg.sx, pg.px);
    let x1 = win_hi(ox, pg.sx, pg.px, pg.kw, pg.w);
    let g = gdy[(plane * pg.oh + oy) * pg.ow + ox] / f32(max((y1 - y0) * (x1 - x0), 1u));
    let base = plane * pg.h * pg.w;
    for (var iy = y0; iy < y1; iy++) {
        for (var ix = x0; ix < x1; ix++) {
            gdx[base + iy * pg.w + ix] += g;
        }
    }
}
