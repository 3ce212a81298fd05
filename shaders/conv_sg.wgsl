// The register-blocked convolutions of conv.wgsl (forward, backward data) with their weights
// loaded once per subgroup. Needs the adapter's SUBGROUP feature (without it the host runs the
// blocked kernels instead); no `enable subgroups;` directive (naga 30 refuses it).
//
// In conv_fwd_blocked and conv_bwd_data every invocation of a workgroup reads the same COB (CIB)
// weights per reduction step: an address the same for all lanes, but one a compiler need not prove
// uniform (it comes from the workgroup id, loop counters and the params), and lavapipe then
// gathers it lane by lane (BENCHMARKS.md, session 9: with the weight index made a constant, the
// forward ran 2.6-3.9x faster). Here lane l of a subgroup of S lanes loads the block's weights for
// reduction step k0 + l, and each step's weights reach every lane by subgroupShuffle: per S steps
// COB weight loads per lane instead of COB·S.
//
// The reduction walks its index one step at a time ((ci, ky, kx) forward, (ky, co, kx) backward),
// the same in every lane: trip counts and the shuffles stay in uniform control flow, and no lane
// returns early (lanes past the work compute a clamped position and store nothing). A subgroup
// that is not full loads its weights itself, one step a chunk (subgroup.wgsl: subgroup_chunk).
// Inputs outside the image read a clamped address and count as zero.
//
// Specialization: WG (invocations per workgroup, 1-D), COB, CIB (as conv.wgsl), PX (neighbouring
// pixels of a row per invocation: 4 in the `subgroup` variants, 5-8 in `subgroup_wide`). Bindings:
// conv_io.wgsl.

// Forward: PX neighbouring output pixels of a row x COB output channels per invocation, as
// conv_fwd_blocked (PX = 4). Grid: PX-pixel groups folded over x and y, output-channel blocks
// over z.
@compute @workgroup_size(WG, 1, 1)
fn conv_fwd_subgroup(id: Ids, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sg: u32) {
    let groups = (p.ow + PX - 1u) / PX;
    let total = p.n * p.oh * groups;
    let q = thread_index(id, WG);
    let qc = min(q, total - 1u);
    let b = qc / (groups * p.oh);
    let oy = (qc / groups) % p.oh;
    let ox0 = (qc % groups) * PX;
    let co0 = id.group.z * COB;
    let kk = p.kh * p.kw;
    let depth = p.cin * kk;
    var acc: array<f32, COB * PX>;
    var wbase: array<u32, COB>;
    for (var j = 0u; j < COB; j++) {
        wbase[j] = min(co0 + j, p.cout - 1u) * depth;
    }
    let full = subgroup_full(sg);
    let chunk = subgroup_chunk(full, sg);
    let mine = subgroup_mine(full, lane);
    // Reduction step (kx, ky, ci) (counter_next), the same in every lane; the input row of (ci, ky).
    var step = vec3<u32>(0u);
    var xrow = 0u;
    var row_ok = false;
    var xv: array<f32, PX>;
    for (var k0 = 0u; k0 < depth; k0 += chunk) {
        let steps = min(chunk, depth - k0);
        var own: array<f32, COB>;
        let kl = min(k0 + mine, depth - 1u);
        for (var j = 0u; j < COB; j++) {
            own[j] = wt[wbase[j] + kl];
        }
        for (var s = 0u; s < steps; s++) {
            let kx = step.x;
            let ky = step.y;
            let ci = step.z;
            if (kx == 0u) {
                let iy = i32(oy * p.stride_y + ky) - i32(p.pad_y);
                row_ok = iy >= 0 && iy < i32(p.h);
                xrow = ((b * p.cin + ci) * p.h + u32(clamp(iy, 0, i32(p.h) - 1))) * p.w;
            }
            if (p.stride_x == 1u && kx > 0u) {
                // Stride 1: the PX pixels' inputs slide by one per kx; one new load, not PX.
                for (var t = 0u; t + 1u < PX; t++) {
                    xv[t] = xv[t + 1u];
                }
                let ix = i32(ox0 + PX - 1u + kx) - i32(p.pad_x);
                let inside = row_ok && ix >= 0 && ix < i32(p.w);
                xv[PX - 1u] = select(0.0, x[xrow + u32(clamp(ix, 0, i32(p.w) - 1))], inside);
            } else {
                for (var t = 0u; t < PX; t++) {
                    let ix = i32((ox0 + t) * p.stride_x + kx) - i32(p.pad_x);
                    let inside = row_ok && ix >= 0 && ix < i32(p.w);
                    xv[t] = select(0.0, x[xrow + u32(clamp(ix, 0, i32(p.w) - 1))], inside);
                }
            }
            var wv: array<f32, COB>;
            for (var j = 0u; j < COB; j++) {
                wv[j] = select(own[j], subgroupShuffle(own[j], s), full);
            }
            for (var j = 0u; j < COB; j++) {
                for (var t = 0u; t < PX; t++) {
                    acc[j * PX + t] += xv[t] * wv[j];
                }
            }
            step = counter_next(step, p.kw, p.kh);
        }
    }
    if (q < total) {
        for (var j = 0u; j < COB; j++) {
            let co = co0 + j;
            // finish() with the channel's bias read once for its PX pixels.
            let bj = bias[bias_index(min(co, p.cout - 1u), p.flags)];
            for (var t = 0u; t < PX; t++) {
                let ox = ox0 + t;
                if (co < p.cout && ox < p.ow) {
                    y[((b * p.cout + co) * p.oh + oy) * p.ow + ox] = epilogue(acc[j * PX + t], bj, 0.0, p.flags);
                }
            }
        }
    }
}

// Backward data: PX neighbouring input pixels of a row x CIB input channels per invocation, as
// conv_bwd_data (PX = 4), over the reduction steps (ky, co, kx). At stride 1 the PX gradients
// slide by one per kx. Grid: PX-pixel groups folded over x and y, input-channel blocks over z.
@compute @workgroup_size(WG, 1, 1)
fn conv_bwd_data_subgroup(id: Ids, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sg: u32) {
    let groups = (p.w + PX - 1u) / PX;
    let total = p.n * p.h * groups;
    let q = thread_index(id, WG);
    let qc = min(q, total - 1u);
    let b = qc / (groups * p.h);
    let iy = (qc / groups) % p.h;
    let ix0 = (qc % groups) * PX;
    let ci0 = id.group.z * CIB;
    let kk = p.kh * p.kw;
    let depth = p.kh * p.cout * p.kw;
    var acc: array<f32, CIB * PX>;
    // Offsets of the CIB input channels' kernels within an output channel's weights.
    var wci: array<u32, CIB>;
    for (var j = 0u; j < CIB; j++) {
        wci[j] = min(ci0 + j, p.cin - 1u) * kk;
    }
    let plane_out = p.oh * p.ow;
    let gbase = b * p.cout * plane_out;
    let full = subgroup_full(sg);
    let chunk = subgroup_chunk(full, sg);
    let mine = subgroup_mine(full, lane);
    // This lane's step k0 + mine as (kx, co, ky), stepped a chunk at a time by counter_ahead (no
    // division; subgroup.wgsl). The steps' own state likewise divides only on a new kernel row
    // at a stride > 1.
    var lstep = vec3<u32>(mine % p.kw, (mine / p.kw) % p.cout, mine / (p.kw * p.cout));
    // Reduction step (kx, co, ky) (counter_next), the same in every lane; the output row of ky
    // and the gradient row of (ky, co).
    var step = vec3<u32>(0u);
    var oy = 0u;
    var oy_ok = false;
    var grow = 0u;
    var gv: array<f32, PX>;
    for (var k0 = 0u; k0 < depth; k0 += chunk) {
        let steps = min(chunk, depth - k0);
        var own: array<f32, CIB>;
        // Weights wt[co, ci, ky, kx] of the block's channels (lanes past the end read ky's last
        // row; no step uses them).
        let wb = lstep.y * p.cin * kk + min(lstep.z, p.kh - 1u) * p.kw + lstep.x;
        for (var j = 0u; j < CIB; j++) {
            own[j] = wt[wb + wci[j]];
        }
        lstep = counter_ahead(lstep, chunk, p.kw, p.cout);
        for (var s = 0u; s < steps; s++) {
            let kx = step.x;
            let co = step.y;
            let ky = step.z;
            if (kx == 0u) {
                if (co == 0u) {
                    let tyn = i32(iy + p.pad_y) - i32(ky);
                    if (p.stride_y == 1u) {
                        oy = u32(max(tyn, 0));
                        oy_ok = tyn >= 0 && oy < p.oh;
                    } else {
                        oy = u32(max(tyn, 0)) / p.stride_y;
                        oy_ok = tyn >= 0 && u32(tyn) % p.stride_y == 0u && oy < p.oh;
                    }
                }
                grow = gbase + co * plane_out + min(oy, p.oh - 1u) * p.ow;
            }
            if (p.stride_x == 1u) {
                if (kx > 0u) {
                    // Pixel t meets output column ix0 + t + px - kx: one new gradient per kx.
                    for (var t = PX - 1u; t > 0u; t--) {
                        gv[t] = gv[t - 1u];
                    }
                    let ox = i32(ix0 + p.pad_x) - i32(kx);
                    let inside = oy_ok && ox >= 0 && ox < i32(p.ow);
                    gv[0] = select(0.0, dy[grow + u32(clamp(ox, 0, i32(p.ow) - 1))], inside);
                } else {
                    for (var t = 0u; t < PX; t++) {
                        let ox = ix0 + t + p.pad_x;
                        gv[t] = select(0.0, dy[grow + min(ox, p.ow - 1u)], oy_ok && ox < p.ow);
                    }
                }
            } else {
                for (var t = 0u; t < PX; t++) {
                    let txn = i32(ix0 + t + p.pad_x) - i32(kx);
                    let ox = u32(max(txn, 0)) / p.stride_x;
                    let ok = oy_ok && txn >= 0 && u32(txn) % p.stride_x == 0u && ox < p.ow;
                    gv[t] = select(0.0, dy[grow + min(ox, p.ow - 1u)], ok);
                }
            }
            var wv: array<f32, CIB>;
            for (var j = 0u; j < CIB; j++) {
                wv[j] = select(own[j], subgroupShuffle(own[j], s), full);
            }
            for (var j = 0u; j < CIB; j++) {
                for (var t = 0u; t < PX; t++) {
                    acc[j * PX + t] += gv[t] * wv[j];
                }
            }
            step = counter_next(step, p.kw, p.cout);
        }
    }
    if (q < total) {
        for (var j = 0u; j < CIB; j++) {
            let ci = ci0 + j;
            for (var t = 0u; t < PX; t++) {
                let ix = ix0 + t;
                if (ci < p.cin && ix < p.w) {
                    dx[((b * p.cin + ci) * p.h + iy) * p.w + ix] = acc[j * PX + t];
                }
            }
        }
    }
}
