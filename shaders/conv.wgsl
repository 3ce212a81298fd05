// 2-D convolution (cross-correlation), NCHW, any kernel size, stride and padding, and its
// transpose, the backward pass to the input:
//   y[b, co, oy, ox] = Σ over (ci, ky, kx) of x[b, ci, oy·sy + ky − py, ox·sx + kx − px] · wt[co, ci, ky, kx]
//                      (+ bias[co]) (then ReLU), inputs outside the image counting as zero;
//   dx[b, ci, iy, ix] = Σ over (co, ky, kx) whose output position oy = (iy + py − ky) / sy,
//                       ox = (ix + px − kx) / sx lands on the output grid, of dy[b, co, oy, ox] · wt[co, ci, ky, kx].
// The weight gradient is conv_wgrad.wgsl.
//
// x [n, cin, h, w], wt [cout, cin, kh, kw], bias [cout], y and dy [n, cout, oh, ow].
// Specialization: WG (invocations per workgroup, 1-D), COB (output channels per invocation of
// conv_fwd_blocked), CIB (input channels per invocation of conv_bwd_data); WX, WY, TM, TN, BM, BN,
// BK for the implicit GEMMs of conv_tiles.wgsl (placeholders of 1 and 4 for the other kernels). Large 1-D grids are
// folded over x and y (shaders/common.wgsl).

// (Bindings and `finish`: conv_io.wgsl.)

// Register-blocked: 4 neighbouring output pixels of a row x COB output channels per invocation.
// Each (ci, ky, kx) step loads 4 inputs (1 at stride 1: the window slides) and COB weights (the
// same for the whole workgroup, so broadcast) for 4·COB multiply-adds. Grid: 4-pixel groups folded
// over x and y, output-channel blocks over z.
@compute @workgroup_size(WG, 1, 1)
fn conv_fwd_blocked(id: Ids) {
    let at = row_quad(thread_index(id, WG), p.n, p.oh, p.ow);
    if (at.w == 0u) {
        return;
    }
    let b = at.x;
    let oy = at.y;
    let ox0 = at.z;
    let co0 = id.group.z * COB;
    // Accumulators start at zero (WGSL zero-initializes function variables).
    var acc: array<f32, COB * 4u>;
    var wbase: array<u32, COB>;
    for (var j = 0u; j < COB; j++) {
        wbase[j] = min(co0 + j, p.cout - 1u) * p.cin * p.kh * p.kw;
    }
    for (var ci = 0u; ci < p.cin; ci++) {
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = i32(oy * p.stride_y + ky) - i32(p.pad_y);
            if (iy < 0 || iy >= i32(p.h)) {
                continue;
            }
            let xrow = ((b * p.cin + ci) * p.h + u32(iy)) * p.w;
            var xv: array<f32, 4>;
            for (var kx = 0u; kx < p.kw; kx++) {
                if (p.stride_x == 1u && kx > 0u) {
                    // Stride 1: the 4 pixels' inputs slide by one per kx; one new load, not four.
                    xv[0] = xv[1];
                    xv[1] = xv[2];
                    xv[2] = xv[3];
                    let ix = i32(ox0 + 3u + kx) - i32(p.pad_x);
                    let inside = ix >= 0 && ix < i32(p.w);
                    xv[3] = select(0.0, x[xrow + u32(clamp(ix, 0, i32(p.w) - 1))], inside);
                } else {
                    for (var t = 0u; t < 4u; t++) {
                        let ix = i32((ox0 + t) * p.stride_x + kx) - i32(p.pad_x);
                        let inside = ix >= 0 && ix < i32(p.w);
                        xv[t] = select(0.0, x[xrow + u32(clamp(ix, 0, i32(p.w) - 1))], inside);
                    }
                }
                let woff = (ci * p.kh + ky) * p.kw + kx;
                for (var j = 0u; j < COB; j++) {
                    let wv = wt[wbase[j] + woff];
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
                finish(((b * p.cout + co) * p.oh + oy) * p.ow + ox, co, acc[j * 4u + t]);
            }
        }
    }
}

// Forward as an implicit GEMM (conv_tiles.wgsl): C[m, co] with m = (b, oy, ox) the output
// positions and k = (ci, ky, kx) the reduction is im2col(x)[m, k] · wtᵀ[k, co]. A tiles are
// staged along m (neighbouring invocations: neighbouring x along a row), weight tiles along k
// (contiguous). Grid: x over channel tiles, y over position tiles (the host falls back to
// conv_fwd_blocked when there are too many).
@compute @workgroup_size(WX, WY, 1)
fn conv_fwd_shared(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let rows = p.n * p.oh * p.ow;
    let kk = p.kh * p.kw;
    let depth = p.cin * kk;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    // This invocation's A row: output position m = (b, oy, ox), whose window starts at (iy0, ix0).
    let m = row0 + li % BM;
    let mc = min(m, rows - 1u);
    let ox = mc % p.ow;
    let oy = (mc / p.ow) % p.oh;
    let xb = (mc / (p.ow * p.oh)) * p.cin * p.h * p.w;
    let iy0 = i32(oy * p.stride_y) - i32(p.pad_y);
    let ix0 = i32(ox * p.stride_x) - i32(p.pad_x);
    var acc: array<f32, TM * TN>;
    for (var k0 = 0u; k0 < depth; k0 += BK) {
        for (var j = 0u; j < A_LOADS; j++) {
            // Column k = (ci, ky, kx) of the implicit im2col matrix; zero outside the image.
            let col = a_column(k0, li, j, depth, kk);
            let kr = a_offset(li, j);
            let iy = iy0 + i32(col.y);
            let ix = ix0 + i32(col.z);
            let inside = m < rows && k0 + kr < depth && iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
            let at = xb + (col.x * p.h + u32(clamp(iy, 0, i32(p.h) - 1))) * p.w + u32(clamp(ix, 0, i32(p.w) - 1));
            a_tile[kr * A_PITCH + li % BM] = select(0.0, x[at], inside);
        }
        for (var e = li; e < BK * BN; e += WX * WY) {
            let kk = e % BK;
            let c = e / BK;
            let co = col0 + c;
            let k = k0 + kk;
            let v = wt[min(co, p.cout - 1u) * depth + min(k, depth - 1u)];
            b_tile[kk * B_PITCH + c] = select(0.0, v, co < p.cout && k < depth);
        }
        workgroupBarrier();
        tile_step(&acc, lid);
        workgroupBarrier();
    }
    let plane = p.oh * p.ow;
    for (var r = 0u; r < TM; r++) {
        let m = row0 + lid.y + r * WY;
        for (var t = 0u; t < TN; t++) {
            let co = col0 + lid.x + t * WX;
            if (m < rows && co < p.cout) {
                finish(((m / plane) * p.cout + co) * plane + m % plane, co, acc[r * TN + t]);
            }
        }
    }
}

// Backward data at stride 1 as a forward convolution (the host's `flipped` variant): dx is the
// convolution of dy with the weights transposed over their channels and turned by 180° in the
// kernel window, padded k − 1 − p:
//   dx[b, ci, iy, ix] = Σ over (co, ky', kx') of dy[b, co, iy + ky' − (kh − 1 − py), …] · wflip[ci, co, ky', kx'],
//   wflip[ci, co, ky', kx'] = wt[co, ci, kh − 1 − ky', kw − 1 − kx'].
// This kernel writes wflip, one element per invocation, reading the params of the backward data's
// own shape (x: its weights wt, here at binding 1).
@group(0) @binding(2) var<storage, read_write> wflip: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn conv_flip_weights(id: Ids) {
    let idx = thread_index(id, WG);
    if (idx >= p.cout * p.cin * p.kh * p.kw) {
        return;
    }
    let kx = idx % p.kw;
    let ky = (idx / p.kw) % p.kh;
    let co = (idx / (p.kw * p.kh)) % p.cout;
    let ci = idx / (p.kw * p.kh * p.cout);
    wflip[idx] = x[((co * p.cin + ci) * p.kh + (p.kh - 1u - ky)) * p.kw + (p.kw - 1u - kx)];
}

// Backward data, register-blocked: four neighbouring input pixels of a row and CIB input
// channels per invocation; each (ky, kx, co) step loads 4 gradients and CIB weights for 4·CIB
// multiply-adds. Grid: 4-pixel groups folded over x and y, input-channel blocks over z.
@compute @workgroup_size(WG, 1, 1)
fn conv_bwd_data(id: Ids) {
    let at = row_quad(thread_index(id, WG), p.n, p.h, p.w);
    if (at.w == 0u) {
        return;
    }
    let b = at.x;
    let iy = at.y;
    let ix0 = at.z;
    let ci0 = id.group.z * CIB;
    let kk = p.kh * p.kw;
    var acc: array<f32, CIB * 4u>;
    // Offsets of the CIB input channels' kernels within an output channel's weights.
    var wci: array<u32, CIB>;
    for (var j = 0u; j < CIB; j++) {
        wci[j] = min(ci0 + j, p.cin - 1u) * kk;
    }
    let plane_out = p.oh * p.ow;
    let gbase = b * p.cout * plane_out;
    for (var ky = 0u; ky < p.kh; ky++) {
        let tyn = i32(iy + p.pad_y) - i32(ky);
        if (tyn < 0 || (u32(tyn) % p.stride_y) != 0u) {
            continue;
        }
        let oy = u32(tyn) / p.stride_y;
        if (oy >= p.oh) {
            continue;
        }
        if (p.stride_x == 1u) {
            // Stride 1: pixel t meets output column ix0 + t + px - kx, so from one kx to the next
            // the 4 gradients slide by one: 3 + kw loads per (ky, co) instead of 4·kw.
            let grow = gbase + oy * p.ow;
            for (var co = 0u; co < p.cout; co++) {
                let gb = grow + co * plane_out;
                let wb = co * p.cin * kk + ky * p.kw;
                var gv: array<f32, 4>;
                for (var t = 0u; t < 4u; t++) {
                    let ox = i32(ix0 + t + p.pad_x);
                    gv[t] = select(0.0, dy[gb + u32(min(ox, i32(p.ow) - 1))], ox < i32(p.ow));
                }
                for (var kx = 0u; kx < p.kw; kx++) {
                    if (kx > 0u) {
                        gv[3] = gv[2];
                        gv[2] = gv[1];
                        gv[1] = gv[0];
                        let ox = i32(ix0 + p.pad_x) - i32(kx);
                        let inside = ox >= 0 && ox < i32(p.ow);
                        gv[0] = select(0.0, dy[gb + u32(clamp(ox, 0, i32(p.ow) - 1))], inside);
                    }
                    for (var j = 0u; j < CIB; j++) {
                        let wv = wt[wb + kx + wci[j]];
                        for (var t = 0u; t < 4u; t++) {
                            acc[j * 4u + t] += gv[t] * wv;
                        }
                    }
                }
            }
            continue;
        }
        for (var kx = 0u; kx < p.kw; kx++) {
            // Where each of the 4 pixels lands on the output row, and whether it does.
            var goff: array<u32, 4>;
            var ok: array<bool, 4>;
            var any = false;
            for (var t = 0u; t < 4u; t++) {
                let txn = i32(ix0 + t + p.pad_x) - i32(kx);
                let ox = u32(max(txn, 0)) / p.stride_x;
                ok[t] = txn >= 0 && (u32(txn) % p.stride_x) == 0u && ox < p.ow && ix0 + t < p.w;
                goff[t] = oy * p.ow + min(ox, p.ow - 1u);
                any = any || ok[t];
            }
            if (!any) {
                continue;
            }
            let woff = ky * p.kw + kx;
            for (var co = 0u; co < p.cout; co++) {
                let gb = gbase + co * plane_out;
                var gv: array<f32, 4>;
                for (var t = 0u; t < 4u; t++) {
                    gv[t] = select(0.0, dy[gb + goff[t]], ok[t]);
                }
                let wb = co * p.cin * kk + woff;
                for (var j = 0u; j < CIB; j++) {
                    let wv = wt[wb + wci[j]];
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
            if (ci < p.cin && ix < p.w) {
                dx[((b * p.cin + ci) * p.h + iy) * p.w + ix] = acc[j * 4u + t];
            }
        }
    }
}

// Backward data as an implicit GEMM (conv_tiles.wgsl): dX[m, ci] with m = (b, iy, ix) the input
// positions and k = (co, ky, kx) is G[m, k] · W[k, ci], where G[m, k] = dy[b, co, oy, ox] for the
// output position (oy, ox) = ((iy + py − ky) / sy, (ix + px − kx) / sx) when it lies on the
// output grid, else 0 (at stride s, about 1 − 1/s² of G is such zeros), and W[k, ci] =
// wt[co, ci, ky, kx]. G tiles are staged along m (neighbouring dy along a row), weight tiles
// along k. Grid: x over input-channel tiles, y over position tiles (the host falls back to
// conv_bwd_data when there are too many).
@compute @workgroup_size(WX, WY, 1)
fn conv_bwd_data_shared(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let plane = p.h * p.w;
    let rows = p.n * plane;
    let kk = p.kh * p.kw;
    let depth = p.cout * kk;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    // This invocation's A row: input position m = (b, iy, ix), decomposed once.
    let m = row0 + li % BM;
    let mc = min(m, rows - 1u);
    let ix = mc % p.w;
    let iy = (mc / p.w) % p.h;
    let dyb = (mc / plane) * p.cout;
    let ty0 = i32(iy + p.pad_y);
    let tx0 = i32(ix + p.pad_x);
    // Uniform: at stride 1 (the FER layers) every output position is on the grid, and the
    // divisions are skipped.
    let unit = p.stride_y == 1u && p.stride_x == 1u;
    var cols: array<vec3<u32>, A_LOADS>;
    for (var j = 0u; j < A_LOADS; j++) {
        cols[j] = a_first(li, j, kk);
    }
    var acc: array<f32, TM * TN>;
    for (var k0 = 0u; k0 < depth; k0 += BK) {
        for (var j = 0u; j < A_LOADS; j++) {
            // Column k = (co, ky, kx): the output position whose window puts (ky, kx) on (iy, ix).
            let col = cols[j];
            let kr = a_offset(li, j);
            let ty = ty0 - i32(col.y);
            let tx = tx0 - i32(col.z);
            var oy = u32(max(ty, 0));
            var ox = u32(max(tx, 0));
            var on_grid = ty >= 0 && tx >= 0;
            if (!unit) {
                on_grid = on_grid && oy % p.stride_y == 0u && ox % p.stride_x == 0u;
                oy = oy / p.stride_y;
                ox = ox / p.stride_x;
            }
            on_grid = on_grid && oy < p.oh && ox < p.ow;
            let v = dy[((dyb + min(col.x, p.cout - 1u)) * p.oh + min(oy, p.oh - 1u)) * p.ow + min(ox, p.ow - 1u)];
            a_tile[kr * A_PITCH + li % BM] = select(0.0, v, on_grid && m < rows && k0 + kr < depth);
            cols[j] = a_advance(col);
        }
        for (var e = li; e < BK * BN; e += WX * WY) {
            let kr = e % BK;
            let c = e / BK;
            let ci = col0 + c;
            let k = min(k0 + kr, depth - 1u);
            let v = wt[((k / kk) * p.cin + min(ci, p.cin - 1u)) * kk + k % kk];
            b_tile[kr * B_PITCH + c] = select(0.0, v, ci < p.cin && k0 + kr < depth);
        }
        workgroupBarrier();
        tile_step(&acc, lid);
        workgroupBarrier();
    }
    for (var r = 0u; r < TM; r++) {
        let m = row0 + lid.y + r * WY;
        for (var t = 0u; t < TN; t++) {
            let ci = col0 + lid.x + t * WX;
            if (m < rows && ci < p.cin) {
                dx[((m / plane) * p.cin + ci) * plane + m % plane] = acc[r * TN + t];
            }
        }
    }
}
