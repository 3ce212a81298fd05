// Convolution weight gradient by kernel rows, NCHW, specialized on the kernel width KW.
//
// dW[co, ci, ky, kx] = Σ over (b, oy, ox) of dY[b, co, oy, ox] · X[b, ci, oy·sy + ky - py, ox·sx + kx - px].
// One invocation owns COB output channels x one kernel row (ci, ky) x all KW columns, over one
// slice of `spp` batch samples, and writes its partial sums to part[slice, co, ci, ky, kx];
// conv_bwd_weight_reduce (conv2d.wgsl) adds the slices in a fixed order.
// The output-channel block comes from the workgroup (z) and the slice from the workgroup (x/y), so
// every gradient load is the same for the whole workgroup (a broadcast); the invocations of a
// workgroup differ only in their kernel row, i.e. in the input row they read. Per output position:
// COB broadcast gradient loads, KW input loads (1 at stride 1: the window slides along the row)
// and COB·KW multiply-adds. No branch depends on the invocation: rows and columns outside the
// input read a clamped address multiplied by zero.
// Specialization: WG (invocations per workgroup), COB, KW.
// Bindings: inputs x, dy; output part; params.

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
    flags: u32,
    // batch samples per slice and number of slices
    spp: u32,
    slices: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// Grid: x/y fold (row group, slice) with the row groups fastest; z: output-channel blocks.
@compute @workgroup_size(WG, 1, 1)
fn conv_bwd_weight_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let rows = p.cin * p.kh;
    let row_groups = (rows + WG - 1u) / WG;
    let g = wid.y * nwg.x + wid.x;
    let slice = g / row_groups;
    if (slice >= p.slices) {
        return;
    }
    let row = (g % row_groups) * WG + lid.x;
    if (row >= rows) {
        return;
    }
    let ci = row / p.kh;
    let ky = row % p.kh;
    let co0 = wid.z * COB;
    let plane_in = p.h * p.w;
    let plane_out = p.oh * p.ow;
    var acc: array<f32, COB * KW>;
    for (var i = 0u; i < COB * KW; i++) {
        acc[i] = 0.0;
    }
    let b0 = slice * p.spp;
    let b1 = min(b0 + p.spp, p.n);
    for (var b = b0; b < b1; b++) {
        let xplane = (b * p.cin + ci) * plane_in;
        let gb = b * p.cout * plane_out;
        for (var oy = 0u; oy < p.oh; oy++) {
            let iy = i32(oy * p.sy + ky) - i32(p.py);
            let row_ok = iy >= 0 && iy < i32(p.h);
            let xrow = xplane + u32(clamp(iy, 0, i32(p.h) - 1)) * p.w;
            var xv: array<f32, KW>;
            for (var ox = 0u; ox < p.ow; ox++) {
                let ix0 = i32(ox * p.sx) - i32(p.px);
                if (p.sx == 1u && ox > 0u) {
                    for (var kx = 0u; kx + 1u < KW; kx++) {
                        xv[kx] = xv[kx + 1u];
                    }
                    let ix = ix0 + i32(KW) - 1;
                    let v = x[xrow + u32(clamp(ix, 0, i32(p.w) - 1))];
                    xv[KW - 1u] = select(0.0, v, row_ok && ix >= 0 && ix < i32(p.w));
                } else {
                    for (var kx = 0u; kx < KW; kx++) {
                        let ix = ix0 + i32(kx);
                        let v = x[xrow + u32(clamp(ix, 0, i32(p.w) - 1))];
                        xv[kx] = select(0.0, v, row_ok && ix >= 0 && ix < i32(p.w));
                    }
                }
                let o = gb + oy * p.ow + ox;
                for (var j = 0u; j < COB; j++) {
                    let gv = dy[o + min(co0 + j, p.cout - 1u) * plane_out];
                    for (var kx = 0u; kx < KW; kx++) {
                        acc[j * KW + kx] += gv * xv[kx];
                    }
                }
            }
        }
    }
    let cols = p.cin * p.kh * KW;
    for (var j = 0u; j < COB; j++) {
        let co = co0 + j;
        if (co < p.cout) {
            let base = (slice * p.cout + co) * cols + row * KW;
            for (var kx = 0u; kx < KW; kx++) {
                part[base + kx] = acc[j * KW + kx];
            }
        }
    }
}
