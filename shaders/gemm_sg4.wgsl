// GEMM with vec4 loads and the A operand loaded once per subgroup: the vec4 sibling of
// gemm_sg.wgsl (read that first), for vec4-aligned shapes as gemm4.wgsl (NN: K and N multiples of
// 4; NT: K; TN: M and N). Needs the adapter's SUBGROUP feature; other shapes run gemm_sg.wgsl's
// kernel with the same tile, devices without subgroups gemm.wgsl's gemm_tiled.
//
// A workgroup is one row of WX invocations computing a TM x (WX·4·TV) tile of C (TM a multiple of
// 4); an invocation owns TV vec4 columns strided by WX (neighbouring invocations, neighbouring
// vec4s of B and C). A's TM rows, which every invocation needs, are loaded once per subgroup of S
// lanes and passed around by subgroupShuffle:
//   NN, NT (A[M,K]): lane l loads each row's vec4 of K at 4·(q0 + l), one vec4 shuffle per row
//     brings four steps of K to every lane (S vec4s of K per chunk);
//   TN (A[K,M]): lane l loads the TM rows at k = k0 + l as TM/4 vec4s, one shuffle per vec4 a step.
// B per invocation: NN and TN one vec4 of its columns per step of K; NT (B[N,K]) a vec4 of K per
// column, reduced by dot products as in gemm4.wgsl.
// A subgroup that is not full loads A itself, one step of K a chunk (subgroup.wgsl:
// `subgroup_chunk`); every lane of a subgroup runs the same trip counts and calls every shuffle, and
// the operand is chosen by a select, not loaded in a branch.
//
// Specialization: TRANS_A, TRANS_B (bool), WX (invocations), TM (rows, a multiple of 4), TV.
// Bindings: params; inputs a (as vec4), b (as vec4, or a texture in the texture variants), bias;
// output c.

// (Bindings, finish and store4: gemm4_io.wgsl; B and b4: gemm4_b.wgsl.)

const RG: u32 = TM / 4u;

@compute @workgroup_size(WX, 1, 1)
fn gemm_subgroup4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    let m4 = (p.m + 3u) / 4u;
    let n4 = (p.n + 3u) / 4u;
    let k4 = p.k / 4u;
    let row0 = wid.y * TM;
    let cv0 = wid.x * (WX * TV) + lid.x;
    // Clamped rows (NN, NT), row groups (TN) and vec4 columns: loads stay in bounds, stores are
    // guarded.
    var rows: array<u32, TM>;
    for (var r = 0u; r < TM; r++) {
        rows[r] = min(row0 + r, p.m - 1u);
    }
    var rg: array<u32, RG>;
    for (var g = 0u; g < RG; g++) {
        rg[g] = min(wid.y * RG + g, m4 - 1u);
    }
    var cv: array<u32, TV>;
    for (var t = 0u; t < TV; t++) {
        cv[t] = min(cv0 + t * WX, n4 - 1u);
    }
    var acc: array<vec4<f32>, TM * TV>;
    for (var i = 0u; i < TM * TV; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let full = subgroup_full(sg);
    let chunk = subgroup_chunk(full, sg);
    let mine = subgroup_mine(full, lane);
    if (TRANS_A) {
        // TN: one step of K at a time, A's rows as vec4 groups.
        for (var k0 = 0u; k0 < p.k; k0 += chunk) {
            let steps = min(chunk, p.k - k0);
            var own: array<vec4<f32>, RG>;
            let kl = min(k0 + mine, p.k - 1u);
            for (var g = 0u; g < RG; g++) {
                own[g] = a[kl * m4 + rg[g]];
            }
            for (var s = 0u; s < steps; s++) {
                let kk = k0 + s;
                var bv: array<vec4<f32>, TV>;
                for (var t = 0u; t < TV; t++) {
                    bv[t] = b4(kk, cv[t]);
                }
                for (var g = 0u; g < RG; g++) {
                    let av = select(own[g], subgroupShuffle(own[g], s), full);
                    for (var e = 0u; e < 4u; e++) {
                        for (var t = 0u; t < TV; t++) {
                            acc[(g * 4u + e) * TV + t] += av[e] * bv[t];
                        }
                    }
                }
            }
        }
    } else {
        // NN, NT: four steps of K per shuffled vec4.
        for (var q0 = 0u; q0 < k4; q0 += chunk) {
            let steps = min(chunk, k4 - q0);
            var own: array<vec4<f32>, TM>;
            let ql = min(q0 + mine, k4 - 1u);
            for (var r = 0u; r < TM; r++) {
                own[r] = a[rows[r] * k4 + ql];
            }
            for (var s = 0u; s < steps; s++) {
                let kq = q0 + s;
                var av: array<vec4<f32>, TM>;
                for (var r = 0u; r < TM; r++) {
                    av[r] = select(own[r], subgroupShuffle(own[r], s), full);
                }
                if (TRANS_B) {
                    // B[N,K]: each of the invocation's 4·TV columns as a vec4 of the same K.
                    var bk: array<vec4<f32>, TV * 4u>;
                    for (var t = 0u; t < TV; t++) {
                        for (var e = 0u; e < 4u; e++) {
                            bk[t * 4u + e] = b4(min(cv[t] * 4u + e, p.n - 1u), kq);
                        }
                    }
                    for (var r = 0u; r < TM; r++) {
                        for (var t = 0u; t < TV; t++) {
                            acc[r * TV + t] += vec4<f32>(
                                dot(av[r], bk[t * 4u]),
                                dot(av[r], bk[t * 4u + 1u]),
                                dot(av[r], bk[t * 4u + 2u]),
                                dot(av[r], bk[t * 4u + 3u]),
                            );
                        }
                    }
                } else {
                    nn_quad(&acc, &av, &cv, kq);
                }
            }
        }
    }
    for (var r = 0u; r < TM; r++) {
        let i = row0 + r;
        for (var t = 0u; t < TV; t++) {
            store4(i, (cv0 + t * WX) * 4u, acc[r * TV + t]);
        }
    }
}
