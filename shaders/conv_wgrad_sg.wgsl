// conv_wgrad.wgsl's rows kernel with the gradients loaded once per subgroup. Needs the adapter's
// SUBGROUP feature (without it the host runs conv_bwd_weight_rows instead); no `enable
// subgroups;` directive (naga 30 refuses it; the host adds it for the browser's compiler).
//
// In conv_bwd_weight_rows every invocation of a workgroup reads the same COB gradients per output
// position (it differs from its neighbours only in its kernel row), an address lavapipe gathers
// lane by lane because it cannot prove it uniform (as the blocked convolutions' weights:
// conv_sg.wgsl). Here lane l of a subgroup of S lanes loads the COB gradients of the slice's
// position k0 + l, and each position's gradients reach every lane by subgroupShuffle.
//
// The walk over the slice's output positions (u = b·oh + oy, ox) is the same in every lane, so
// trip counts and shuffles stay in uniform control flow; invocations past the last kernel row
// compute a clamped row and store nothing (a subgroup of them only returns at once). A subgroup
// that is not full loads its gradients itself, one position a chunk (subgroup.wgsl:
// subgroup_chunk). Inputs outside the image read a clamped address multiplied by zero.
//
// Specialization: WG (invocations per workgroup), COB (output channels per invocation), KW (the
// kernel width); the tiling constants of conv_tiles.wgsl are placeholders here. Bindings:
// conv_wgrad_io.wgsl. Writes partial sums per slice, dw[slice, co, ci, ky, kx], as the rows
// kernel; slice_sum adds them in a fixed order.
// Grid: x/y fold (row group, slice) with the row groups fastest; z: output-channel blocks.
//
// Uniformity (what the browsers' compiler checks; naga checks none): the kernel takes the
// workgroup's place (workgroup_id, num_workgroups) and its local id as separate builtins
// (common.wgsl, workgroup_index), so the return on the slice is uniform to
// WGSL's analysis, and the ballot of subgroup_full and the subgroupAll come before any return
// that is not. The subgroup exit after them is uniform within each subgroup (every lane of a
// subgroup leaves, or none), but the analysis knows only workgroup uniformity: the shuffles after
// it go through `shuffle_kept`, which turns its subgroup check off.
@compute @workgroup_size(WG, 1, 1)
fn conv_bwd_weight_rows_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    let rows = p.cin * p.kh;
    let row_groups = (rows + WG - 1u) / WG;
    let g = workgroup_index(wid, nwg);
    let slice = g / row_groups;
    // The same for the whole workgroup: no subgroup is split by this return.
    if (slice >= p.slices) {
        return;
    }
    // Every lane of the subgroup is here (the return below keeps whole subgroups, so `full` holds
    // after it as well).
    let full = subgroup_full(sg);
    let row = (g % row_groups) * WG + lid.x;
    // A subgroup with no kernel row leaves (a layer with few input channels, e.g. 5 rows of 64
    // at cin 1); one with some keeps every lane, each loading its share of the gradients.
    if (subgroupAll(row >= rows)) {
        return;
    }
    let rc = min(row, rows - 1u);
    let ci = rc / p.kh;
    let ky = rc % p.kh;
    let co0 = wid.z * COB;
    let plane_in = p.h * p.w;
    let plane_out = p.oh * p.ow;
    var cbase: array<u32, COB>;
    for (var j = 0u; j < COB; j++) {
        cbase[j] = min(co0 + j, p.cout - 1u) * plane_out;
    }
    var acc: array<f32, COB * KW>;
    let u0 = slice * p.rps;
    let u1 = min(u0 + p.rps, p.n * p.oh);
    let count = (u1 - u0) * p.ow;
    let chunk = subgroup_chunk(full, sg);
    let mine = subgroup_mine(full, lane);
    // This lane's position k0 + mine of the slice as (ox, oy, b), stepped a chunk at a time by
    // counter_ahead (no division; subgroup.wgsl). Lanes past the slice's end read a clamped
    // sample; no step uses them.
    let lu = u0 + mine / p.ow;
    var lpos = vec3<u32>(mine % p.ow, lu % p.oh, lu / p.oh);
    // Output position (ox, oy, b) (counter_next), the same in every lane; the input row of (b, oy).
    var pos = vec3<u32>(0u, u0 % p.oh, u0 / p.oh);
    var xrow = 0u;
    var row_ok = false;
    var xv: array<f32, KW>;
    for (var k0 = 0u; k0 < count; k0 += chunk) {
        let steps = min(chunk, count - k0);
        var own: array<f32, COB>;
        let o = (min(lpos.z, p.n - 1u) * p.cout * p.oh + lpos.y) * p.ow + lpos.x;
        for (var j = 0u; j < COB; j++) {
            own[j] = dy[o + cbase[j]];
        }
        lpos = counter_ahead(lpos, chunk, p.ow, p.oh);
        for (var s = 0u; s < steps; s++) {
            let ox = pos.x;
            let oy = pos.y;
            let b = pos.z;
            if (ox == 0u) {
                let iy = i32(oy * p.stride_y + ky) - i32(p.pad_y);
                row_ok = iy >= 0 && iy < i32(p.h);
                xrow = (b * p.cin + ci) * plane_in + u32(clamp(iy, 0, i32(p.h) - 1)) * p.w;
            }
            let ix0 = i32(ox * p.stride_x) - i32(p.pad_x);
            row_window(&xv, xrow, ix0, ox, row_ok);
            var gv: array<f32, COB>;
            for (var j = 0u; j < COB; j++) {
                gv[j] = select(own[j], shuffle_kept(own[j], s), full);
            }
            for (var j = 0u; j < COB; j++) {
                for (var kx = 0u; kx < KW; kx++) {
                    acc[j * KW + kx] += gv[j] * xv[kx];
                }
            }
            pos = counter_next(pos, p.ow, p.oh);
        }
    }
    if (row < rows) {
        store_partials(&acc, slice, co0, row);
    }
}

// subgroupShuffle for the lanes left after the kernel's subgroup exit: every lane of their
// subgroup is there, but WGSL's uniformity analysis cannot see it (it has no notion of uniform
// within a subgroup), so its subgroup_uniformity check is off here, and only here. (naga takes the
// rule as one it does not know, with a warning at most.)
@diagnostic(off, subgroup_uniformity)
fn shuffle_kept(v: f32, src: u32) -> f32 {
    return subgroupShuffle(v, src);
}
