// 2-D convolution weight gradient, NCHW:
// dw[co, ci, ky, kx] = Σ over (b, oy, ox) of dy[b, co, oy, ox] · x[b, ci, oy·sy + ky − py, ox·sx + kx − px].
//
// Three kernels, conv_bwd_weight_split, conv_bwd_weight_rows and conv_bwd_weight_shared, each
// writing partial sums per slice, dw[slice, co, ci, ky, kx], which reduce.wgsl's slice_sum adds in a
// fixed order. A slice is `rps` consecutive output rows u = b·oh + oy of the batch: whole samples
// (rps a multiple of oh) for the register-blocked kernels, enough rows for about 1024 workgroups
// for the tiled one.
// Specialization: WG (invocations per workgroup, a power of two); rows also COB (output channels
// per invocation) and KW (the kernel width it is specialized for); shared the tiling of
// conv_tiles.wgsl (WX, WY, TM, TN, BM, BN, BK; placeholders for the others).
// Bindings: params; inputs x, dy; output dw (the gradient, or the partial sums).

// (Bindings and `in_image`: conv_wgrad_io.wgsl.)

// Backward weight as a split-K implicit GEMM: dW[co, col] with col = (ci * kh + ky) * kw + kx is
// dY[co, (b, oy, ox)] · X[(b, oy, ox), col]. Each invocation computes a 4 x 4 block (4 output
// channels x 4 columns) over one slice of output rows: per output position it loads 4
// gradients and gathers 4 inputs for 16 multiply-adds. Slices write partial sums to `dw`
// [slices, cout, cin*kh*kw]; slice_sum adds them up in a fixed order.
@compute @workgroup_size(WG, 1, 1)
fn conv_bwd_weight_split(id: Ids) {
    let t = thread_index(id, WG);
    let kk = p.kh * p.kw;
    let cols = p.cin * kk;
    let col_blocks = (cols + 3u) / 4u;
    let per_slice = ((p.cout + 3u) / 4u) * col_blocks;
    if (t >= per_slice * p.slices) {
        return;
    }
    let slice = t / per_slice;
    let rem = t % per_slice;
    let co0 = (rem / col_blocks) * 4u;
    let col0 = (rem % col_blocks) * 4u;
    let plane_in = p.h * p.w;
    let plane_out = p.oh * p.ow;
    var xoff: array<u32, 4>;
    var ky: array<i32, 4>;
    var kx: array<i32, 4>;
    var goff: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) {
        let col = min(col0 + j, cols - 1u);
        kx[j] = i32(col % p.kw) - i32(p.pad_x);
        ky[j] = i32((col / p.kw) % p.kh) - i32(p.pad_y);
        xoff[j] = (col / kk) * plane_in;
        goff[j] = min(co0 + j, p.cout - 1u) * plane_out;
    }
    var acc: array<f32, 16>;
    let u0 = slice * p.rps;
    let u1 = min(u0 + p.rps, p.n * p.oh);
    for (var u = u0; u < u1; u++) {
        let b = u / p.oh;
        let oy = u % p.oh;
        let xb = b * p.cin * plane_in;
        let gb = b * p.cout * plane_out;
        for (var ox = 0u; ox < p.ow; ox++) {
            let o = oy * p.ow + ox;
            var gv: array<f32, 4>;
            var xv: array<f32, 4>;
            for (var j = 0u; j < 4u; j++) {
                gv[j] = dy[gb + goff[j] + o];
                let iy = i32(oy * p.stride_y) + ky[j];
                let ix = i32(ox * p.stride_x) + kx[j];
                let inside = in_image(iy, ix);
                let idx = xb + xoff[j] + u32(clamp(iy, 0, i32(p.h) - 1)) * p.w + u32(clamp(ix, 0, i32(p.w) - 1));
                xv[j] = select(0.0, x[idx], inside);
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += gv[i] * xv[j];
                }
            }
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let co = co0 + i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + j;
            if (co < p.cout && col < cols) {
                dw[(slice * p.cout + co) * cols + col] = acc[i * 4u + j];
            }
        }
    }
}

// Rows, specialized on the kernel width KW.
// One invocation owns COB output channels x one kernel row (ci, ky) x all KW columns, over one
// slice of output rows, and writes its partial sums to dw[slice, co, ci, ky, kx]; slice_sum
// adds the slices in a fixed order.
// The output-channel block comes from the workgroup (z) and the slice from the workgroup (x/y), so
// every gradient load is the same for the whole workgroup (a broadcast); the invocations of a
// workgroup differ only in their kernel row, i.e. in the input row they read. Per output position:
// COB broadcast gradient loads, KW input loads (1 at stride 1: the window slides along the row)
// and COB·KW multiply-adds. No branch depends on the invocation: rows and columns outside the
// input read a clamped address multiplied by zero.
// Grid: x/y fold (row group, slice) with the row groups fastest; z: output-channel blocks.
@compute @workgroup_size(WG, 1, 1)
fn conv_bwd_weight_rows(id: Ids) {
    let rows = p.cin * p.kh;
    let row_groups = (rows + WG - 1u) / WG;
    let g = group_index(id);
    let slice = g / row_groups;
    if (slice >= p.slices) {
        return;
    }
    let row = (g % row_groups) * WG + id.local.x;
    if (row >= rows) {
        return;
    }
    let ci = row / p.kh;
    let ky = row % p.kh;
    let co0 = id.group.z * COB;
    let plane_in = p.h * p.w;
    let plane_out = p.oh * p.ow;
    var acc: array<f32, COB * KW>;
    let u0 = slice * p.rps;
    let u1 = min(u0 + p.rps, p.n * p.oh);
    for (var u = u0; u < u1; u++) {
        let b = u / p.oh;
        let oy = u % p.oh;
        let xplane = (b * p.cin + ci) * plane_in;
        let gb = b * p.cout * plane_out;
        let iy = i32(oy * p.stride_y + ky) - i32(p.pad_y);
        let row_ok = iy >= 0 && iy < i32(p.h);
        let xrow = xplane + u32(clamp(iy, 0, i32(p.h) - 1)) * p.w;
        var xv: array<f32, KW>;
        for (var ox = 0u; ox < p.ow; ox++) {
            let ix0 = i32(ox * p.stride_x) - i32(p.pad_x);
            row_window(&xv, xrow, ix0, ox, row_ok);
            let o = gb + oy * p.ow + ox;
            for (var j = 0u; j < COB; j++) {
                let gv = dy[o + min(co0 + j, p.cout - 1u) * plane_out];
                for (var kx = 0u; kx < KW; kx++) {
                    acc[j * KW + kx] += gv * xv[kx];
                }
            }
        }
    }
    store_partials(&acc, slice, co0, row);
}

// Backward weight as a split-K implicit GEMM on workgroup-memory tiles (conv_tiles.wgsl), for
// GPUs: dW[co, col] with col = (ci, ky, kx) is dY[co, k] · im2col(x)[k, col] over the output
// positions k = (b, oy, ox) of one slice of output rows. Both operands are staged along k:
// invocation li loads position k0 + li % BK of every K-step (THREADS a multiple of BK; so
// neighbouring invocations read neighbouring dy and, at stride 1, neighbouring x), rows (output
// channels) and columns li / BK + j·W_STRIDE of the tiles. So the columns' (ci, ky, kx) are
// decomposed once, and the position once per K-step. Grid: x over column tiles, y over
// output-channel tiles, z over slices; each slice writes its partial sums to dw[slice, co, col]
// for slice_sum.
const W_STRIDE: u32 = THREADS / BK;
const WA_LOADS: u32 = BM * BK / THREADS;
const WB_LOADS: u32 = BN * BK / THREADS;

@compute @workgroup_size(WX, WY, 1)
fn conv_bwd_weight_shared(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let plane = p.oh * p.ow;
    let kk = p.kh * p.kw;
    let cols = p.cin * kk;
    let slice = wid.z;
    let k_start = slice * p.rps * p.ow;
    let k_end = min((slice + 1u) * p.rps, p.n * p.oh) * p.ow;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let lk = li % BK;
    let lr = li / BK;
    // This invocation's columns of the im2col tile: the input plane's offset and the window
    // offsets (ky − py, kx − px).
    var c_plane: array<u32, WB_LOADS>;
    var c_ky: array<i32, WB_LOADS>;
    var c_kx: array<i32, WB_LOADS>;
    for (var j = 0u; j < WB_LOADS; j++) {
        let col = min(col0 + lr + j * W_STRIDE, cols - 1u);
        let ci = col / kk;
        let ky = (col - ci * kk) / p.kw;
        c_plane[j] = ci * p.h * p.w;
        c_ky[j] = i32(ky) - i32(p.pad_y);
        c_kx[j] = i32(col - ci * kk - ky * p.kw) - i32(p.pad_x);
    }
    var acc: array<f32, TM * TN>;
    for (var k0 = k_start; k0 < k_end; k0 += BK) {
        // This invocation's position of the step, k = (u = b·oh + oy, ox).
        let k = k0 + lk;
        let u = min(k, k_end - 1u) / p.ow;
        let ox = min(k, k_end - 1u) - u * p.ow;
        let b = u / p.oh;
        let oy = u - b * p.oh;
        let g_at = b * p.cout * plane + oy * p.ow + ox;
        let x_at = b * p.cin * p.h * p.w;
        let iy0 = i32(oy * p.stride_y);
        let ix0 = i32(ox * p.stride_x);
        for (var j = 0u; j < WA_LOADS; j++) {
            let r = lr + j * W_STRIDE;
            let co = row0 + r;
            let v = dy[g_at + min(co, p.cout - 1u) * plane];
            a_tile[lk * A_PITCH + r] = select(0.0, v, co < p.cout && k < k_end);
        }
        for (var j = 0u; j < WB_LOADS; j++) {
            let c = lr + j * W_STRIDE;
            let iy = iy0 + c_ky[j];
            let ix = ix0 + c_kx[j];
            let inside = k < k_end && col0 + c < cols && iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
            let at = x_at + c_plane[j] + u32(clamp(iy, 0, i32(p.h) - 1)) * p.w + u32(clamp(ix, 0, i32(p.w) - 1));
            b_tile[lk * B_PITCH + c] = select(0.0, x[at], inside);
        }
        workgroupBarrier();
        tile_step(&acc, lid);
        workgroupBarrier();
    }
    for (var r = 0u; r < TM; r++) {
        let co = row0 + lid.y + r * WY;
        for (var t = 0u; t < TN; t++) {
            let col = col0 + lid.x + t * WX;
            if (co < p.cout && col < cols) {
                dw[(slice * p.cout + co) * cols + col] = acc[r * TN + t];
            }
        }
    }
}
