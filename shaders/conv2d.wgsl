// 2-D convolution (cross-correlation), NCHW, any kernel size, stride and padding.
//
// x [n, cin, h, w], wt [cout, cin, kh, kw], bias [cout], y [n, cout, oh, ow].
// Specialization: WG (invocations per workgroup, 1-D; a power of two), COB (output channels per
// invocation in conv_fwd_blocked), CIB (input channels per invocation in conv_bwd_data).
// Large 1-D grids are folded over x and y: workgroup index = wid.y * nwg.x + wid.x.

struct Params {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    oh: u32,
    ow: u32,
    sy: u32,
    sx: u32,
    py: u32,
    px: u32,
    // bit 0: add bias; bit 1: accumulate into the output; bit 2: ReLU
    flags: u32,
    // conv_bwd_weight_split: batch samples per slice and number of slices
    spp: u32,
    slices: u32,
}

const FLAG_BIAS: u32 = 1u;
const FLAG_ACC: u32 = 2u;
const FLAG_RELU: u32 = 4u;

@group(0) @binding(0) var<storage, read> fx: array<f32>;
@group(0) @binding(1) var<storage, read> fwt: array<f32>;
@group(0) @binding(2) var<storage, read> fbias: array<f32>;
@group(0) @binding(3) var<storage, read_write> fy: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

fn linear_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

fn fwd_finish(idx: u32, co: u32, acc: f32) {
    var v = acc;
    if ((p.flags & FLAG_BIAS) != 0u) {
        v += fbias[co];
    }
    if ((p.flags & FLAG_RELU) != 0u) {
        v = max(v, 0.0);
    }
    fy[idx] = v;
}

// The simplest correct kernel: one output element per invocation. Fallback and oracle.
@compute @workgroup_size(WG, 1, 1)
fn conv_fwd_direct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let idx = linear_group(wid, nwg) * WG + lid.x;
    let total = p.n * p.cout * p.oh * p.ow;
    if (idx >= total) {
        return;
    }
    let ox = idx % p.ow;
    let oy = (idx / p.ow) % p.oh;
    let co = (idx / (p.ow * p.oh)) % p.cout;
    let b = idx / (p.ow * p.oh * p.cout);
    var acc = 0.0;
    for (var ci = 0u; ci < p.cin; ci++) {
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = i32(oy * p.sy + ky) - i32(p.py);
            if (iy < 0 || iy >= i32(p.h)) {
                continue;
            }
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = i32(ox * p.sx + kx) - i32(p.px);
                if (ix < 0 || ix >= i32(p.w)) {
                    continue;
                }
                let xv = fx[((b * p.cin + ci) * p.h + u32(iy)) * p.w + u32(ix)];
                acc += xv * fwt[((co * p.cin + ci) * p.kh + ky) * p.kw + kx];
            }
        }
    }
    fwd_finish(idx, co, acc);
}

// Register-blocked: 4 neighbouring output pixels of a row x COB output channels per invocation.
// Each (ci, ky, kx) step loads 4 inputs (1 at stride 1: the window slides) and COB weights (the same for the whole workgroup, so
// broadcast) for 4*COB multiply-adds. Grid: 4-pixel groups folded over x and y, output-channel
// blocks over z.
@compute @workgroup_size(WG, 1, 1)
fn conv_fwd_blocked(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let q = linear_group(wid, nwg) * WG + lid.x;
    let quads = (p.ow + 3u) / 4u;
    if (q >= p.n * p.oh * quads) {
        return;
    }
    let co0 = wid.z * COB;
    let ox0 = (q % quads) * 4u;
    let oy = (q / quads) % p.oh;
    let b = q / (quads * p.oh);
    let kk = p.kh * p.kw;
    var acc: array<f32, COB * 4u>;
    var wbase: array<u32, COB>;
    for (var j = 0u; j < COB; j++) {
        wbase[j] = min(co0 + j, p.cout - 1u) * p.cin * kk;
    }
    for (var i = 0u; i < COB * 4u; i++) {
        acc[i] = 0.0;
    }
    for (var ci = 0u; ci < p.cin; ci++) {
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = i32(oy * p.sy + ky) - i32(p.py);
            if (iy < 0 || iy >= i32(p.h)) {
                continue;
            }
            let xrow = ((b * p.cin + ci) * p.h + u32(iy)) * p.w;
            var xv: array<f32, 4>;
            for (var kx = 0u; kx < p.kw; kx++) {
                if (p.sx == 1u && kx > 0u) {
                    // Stride 1: the 4 pixels' inputs slide by one per kx; one new load, not four.
                    xv[0] = xv[1];
                    xv[1] = xv[2];
                    xv[2] = xv[3];
                    let ix = i32(ox0 + 3u + kx) - i32(p.px);
                    let inside = ix >= 0 && ix < i32(p.w);
                    xv[3] = select(0.0, fx[xrow + u32(clamp(ix, 0, i32(p.w) - 1))], inside);
                } else {
                    for (var t = 0u; t < 4u; t++) {
                        let ix = i32((ox0 + t) * p.sx + kx) - i32(p.px);
                        let inside = ix >= 0 && ix < i32(p.w);
                        xv[t] = select(0.0, fx[xrow + u32(clamp(ix, 0, i32(p.w) - 1))], inside);
                    }
                }
                let woff = (ci * p.kh + ky) * p.kw + kx;
                for (var j = 0u; j < COB; j++) {
                    let wv = fwt[wbase[j] + woff];
                    for (var t = 0u; t < 4u; t++) {
                        acc[j * 4u + t] += xv[t] * wv;
                    }
                }
            }
        }
    }
    for (var j = 0u; j < COB; j++) {
        let co = co0 + j;
        for (var t = 0u; t < 4u; t++) {
            let ox = ox0 + t;
            if (co < p.cout && ox < p.ow) {
                fwd_finish(((b * p.cout + co) * p.oh + oy) * p.ow + ox, co, acc[j * 4u + t]);
            }
        }
    }
}

// Backward data: dx[b, ci, iy, ix] = sum over (co, ky, kx) whose output position lands on the grid.
// Bindings: inputs dy, wt; output dx. Four neighbouring input pixels of a row and CIB input
// channels per invocation: each (ky, kx, co) step loads 4 gradients and CIB weights for 4*CIB
// multiply-adds. Grid: 4-pixel groups folded over x and y, input-channel blocks over z.
@group(0) @binding(0) var<storage, read> ddy: array<f32>;
@group(0) @binding(1) var<storage, read> dwt: array<f32>;
@group(0) @binding(2) var<storage, read_write> ddx: array<f32>;
@group(0) @binding(3) var<uniform> pd: Params;

@compute @workgroup_size(WG, 1, 1)
fn conv_bwd_data(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let q = linear_group(wid, nwg) * WG + lid.x;
    let quads = (pd.w + 3u) / 4u;
    if (q >= pd.n * pd.h * quads) {
        return;
    }
    let ci0 = wid.z * CIB;
    let ix0 = (q % quads) * 4u;
    let iy = (q / quads) % pd.h;
    let b = q / (quads * pd.h);
    let kk = pd.kh * pd.kw;
    var acc: array<f32, CIB * 4u>;
    var wci: array<u32, CIB>;
    for (var j = 0u; j < CIB; j++) {
        wci[j] = min(ci0 + j, pd.cin - 1u) * kk;
    }
    for (var i = 0u; i < CIB * 4u; i++) {
        acc[i] = 0.0;
    }
    let plane_out = pd.oh * pd.ow;
    let gbase = b * pd.cout * plane_out;
    for (var ky = 0u; ky < pd.kh; ky++) {
        let tyn = i32(iy + pd.py) - i32(ky);
        if (tyn < 0 || (u32(tyn) % pd.sy) != 0u) {
            continue;
        }
        let oy = u32(tyn) / pd.sy;
        if (oy >= pd.oh) {
            continue;
        }
        if (pd.sx == 1u) {
            // Stride 1: pixel t meets output column ix0 + t + px - kx, so from one kx to the next
            // the 4 gradients slide by one: 3 + kw loads per (ky, co) instead of 4·kw.
            let grow = gbase + oy * pd.ow;
            for (var co = 0u; co < pd.cout; co++) {
                let gb = grow + co * plane_out;
                let wb = co * pd.cin * kk + ky * pd.kw;
                var gv: array<f32, 4>;
                for (var t = 0u; t < 4u; t++) {
                    let ox = i32(ix0 + t + pd.px);
                    gv[t] = select(0.0, ddy[gb + u32(min(ox, i32(pd.ow) - 1))], ox < i32(pd.ow));
                }
                for (var kx = 0u; kx < pd.kw; kx++) {
                    if (kx > 0u) {
                        gv[3] = gv[2];
                        gv[2] = gv[1];
                        gv[1] = gv[0];
                        let ox = i32(ix0 + pd.px) - i32(kx);
                        let inside = ox >= 0 && ox < i32(pd.ow);
                        gv[0] = select(0.0, ddy[gb + u32(clamp(ox, 0, i32(pd.ow) - 1))], inside);
                    }
                    for (var j = 0u; j < CIB; j++) {
                        let wv = dwt[wb + kx + wci[j]];
                        for (var t = 0u; t < 4u; t++) {
                            acc[j * 4u + t] += gv[t] * wv;
                        }
                    }
                }
            }
            continue;
        }
        for (var kx = 0u; kx < pd.kw; kx++) {
            // Where each of the 4 pixels lands on the output row, and whether it does.
            var goff: array<u32, 4>;
            var ok: array<bool, 4>;
            var any = false;
            for (var t = 0u; t < 4u; t++) {
                let txn = i32(ix0 + t + pd.px) - i32(kx);
                let ox = u32(max(txn, 0)) / pd.sx;
                ok[t] = txn >= 0 && (u32(txn) % pd.sx) == 0u && ox < pd.ow && ix0 + t < pd.w;
                goff[t] = oy * pd.ow + min(ox, pd.ow - 1u);
                any = any || ok[t];
            }
            if (!any) {
                continue;
            }
            let woff = ky * pd.kw + kx;
            for (var co = 0u; co < pd.cout; co++) {
                let gb = gbase + co * plane_out;
                var gv: array<f32, 4>;
                for (var t = 0u; t < 4u; t++) {
                    gv[t] = select(0.0, ddy[gb + goff[t]], ok[t]);
                }
                let wb = co * pd.cin * kk + woff;
                for (var j = 0u; j < CIB; j++) {
                    let wv = dwt[wb + wci[j]];
                    for (var t = 0u; t < 4u; t++) {
                        acc[j * 4u + t] += gv[t] * wv;
                    }
                }
            }
        }
    }
    for (var j = 0u; j < CIB; j++) {
        let ci = ci0 + j;
        for (var t = 0u; t < 4u; t++) {
            let ix = ix0 + t;
            if (ci < pd.cin && ix < pd.w) {
                ddx[((b * pd.cin + ci) * pd.h + iy) * pd.w + ix] = acc[j * 4u + t];
            }
        }
    }
}

// Backward weight: dw[co, ci, ky, kx] = sum over (b, oy, ox) of dy * x. One workgroup per weight;
// its WG invocations split the reduction and combine it in workgroup memory.
// Bindings: inputs x, dy; output dw.
@group(0) @binding(0) var<storage, read> wx: array<f32>;
@group(0) @binding(1) var<storage, read> wdy: array<f32>;
@group(0) @binding(2) var<storage, read_write> wdw: array<f32>;
@group(0) @binding(3) var<uniform> pw: Params;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG, 1, 1)
fn conv_bwd_weight(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let widx = linear_group(wid, nwg);
    let total = pw.cout * pw.cin * pw.kh * pw.kw;
    // Uniform across the workgroup, so the barriers below stay in uniform control flow.
    if (widx >= total) {
        return;
    }
    let kx = widx % pw.kw;
    let ky = (widx / pw.kw) % pw.kh;
    let ci = (widx / (pw.kw * pw.kh)) % pw.cin;
    let co = widx / (pw.kw * pw.kh * pw.cin);
    let plane = pw.oh * pw.ow;
    let count = pw.n * plane;
    var acc = 0.0;
    for (var r = lid.x; r < count; r += WG) {
        let ox = r % pw.ow;
        let oy = (r / pw.ow) % pw.oh;
        let b = r / plane;
        let iy = i32(oy * pw.sy + ky) - i32(pw.py);
        let ix = i32(ox * pw.sx + kx) - i32(pw.px);
        if (iy >= 0 && iy < i32(pw.h) && ix >= 0 && ix < i32(pw.w)) {
            let g = wdy[((b * pw.cout + co) * pw.oh + oy) * pw.ow + ox];
            acc += g * wx[((b * pw.cin + ci) * pw.h + u32(iy)) * pw.w + u32(ix)];
        }
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid.x < s) {
            partial[lid.x] += partial[lid.x + s];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        var v = partial[0];
        if ((pw.flags & FLAG_ACC) != 0u) {
            v += wdw[widx];
        }
        wdw[widx] = v;
    }
}

// Backward weight as a split-K implicit GEMM: dW[co, col] with col = (ci * kh + ky) * kw + kx is
// dY[co, (b, oy, ox)] · X[(b, oy, ox), col]. Each invocation computes a 4 x 4 block (4 output
// channels x 4 columns) over one slice of `spp` batch samples: per output position it loads 4
// gradients and gathers 4 inputs for 16 multiply-adds. Slices write partial sums to `spart`
// [slices, cout, cin*kh*kw]; conv_bwd_weight_reduce adds them up in a fixed order.
// Bindings: inputs x, dy; output partial.
@group(0) @binding(0) var<storage, read> sx: array<f32>;
@group(0) @binding(1) var<storage, read> sdy: array<f32>;
@group(0) @binding(2) var<storage, read_write> spart: array<f32>;
@group(0) @binding(3) var<uniform> ps: Params;

@compute @workgroup_size(WG, 1, 1)
fn conv_bwd_weight_split(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let t = linear_group(wid, nwg) * WG + lid.x;
    let kk = ps.kh * ps.kw;
    let cols = ps.cin * kk;
    let col_blocks = (cols + 3u) / 4u;
    let per_slice = ((ps.cout + 3u) / 4u) * col_blocks;
    if (t >= per_slice * ps.slices) {
        return;
    }
    let slice = t / per_slice;
    let rem = t % per_slice;
    let co0 = (rem / col_blocks) * 4u;
    let col0 = (rem % col_blocks) * 4u;
    let plane_in = ps.h * ps.w;
    let plane_out = ps.oh * ps.ow;
    var xoff: array<u32, 4>;
    var ky: array<i32, 4>;
    var kx: array<i32, 4>;
    var goff: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) {
        let col = min(col0 + j, cols - 1u);
        kx[j] = i32(col % ps.kw) - i32(ps.px);
        ky[j] = i32((col / ps.kw) % ps.kh) - i32(ps.py);
        xoff[j] = (col / kk) * plane_in;
        goff[j] = min(co0 + j, ps.cout - 1u) * plane_out;
    }
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    let b0 = slice * ps.spp;
    let b1 = min(b0 + ps.spp, ps.n);
    for (var b = b0; b < b1; b++) {
        let xb = b * ps.cin * plane_in;
        let gb = b * ps.cout * plane_out;
        for (var oy = 0u; oy < ps.oh; oy++) {
            for (var ox = 0u; ox < ps.ow; ox++) {
                let o = oy * ps.ow + ox;
                var gv: array<f32, 4>;
                var xv: array<f32, 4>;
                for (var j = 0u; j < 4u; j++) {
                    gv[j] = sdy[gb + goff[j] + o];
                    let iy = i32(oy * ps.sy) + ky[j];
                    let ix = i32(ox * ps.sx) + kx[j];
                    let inside = iy >= 0 && iy < i32(ps.h) && ix >= 0 && ix < i32(ps.w);
                    let idx = xb + xoff[j] + u32(clamp(iy, 0, i32(ps.h) - 1)) * ps.w + u32(clamp(ix, 0, i32(ps.w) - 1));
                    xv[j] = select(0.0, sx[idx], inside);
                }
                for (var i = 0u; i < 4u; i++) {
                    for (var j = 0u; j < 4u; j++) {
                        acc[i * 4u + j] += gv[i] * xv[j];
                    }
                }
            }
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let co = co0 + i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + j;
            if (co < ps.cout && col < cols) {
                spart[(slice * ps.cout + co) * cols + col] = acc[i * 4u + j];
            }
        }
    }
}

// dw[e] (+)= sum over slices of partial[slice, e], slices in order. Bindings: input partial; output dw.
@group(0) @binding(0) var<storage, read> rpart: array<f32>;
@group(0) @binding(1) var<storage, read_write> rdw: array<f32>;
@group(0) @binding(2) var<uniform> pr: Params;

@compute @workgroup_size(WG, 1, 1)
fn conv_bwd_weight_reduce(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let e = linear_group(wid, nwg) * WG + lid.x;
    let total = pr.cout * pr.cin * pr.kh * pr.kw;
    if (e >= total) {
        return;
    }
    var v = 0.0;
    for (var s = 0u; s < pr.slices; s++) {
        v += rpart[s * total + e];
    }
    if ((pr.flags & FLAG_ACC) != 0u) {
        v += rdw[e];
    }
    rdw[e] = v;
}
