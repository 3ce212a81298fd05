// GEMM with the A operand loaded once per subgroup: C[M,N] = op(A) · op(B) (+ bias[N]) (+ C)
// (then ReLU), every M, N, K. Needs the adapter's SUBGROUP feature (the host opens the device with
// it where the adapter has it; without it the host runs gemm.wgsl's gemm_tiled instead). No
// `enable subgroups;` directive: naga 30 takes subgroup operations without it and refuses it.
//
// A workgroup is one row of WX invocations computing a TM x (WX·TN) tile of C: every invocation
// needs the same TM rows of A. Instead of each invocation loading them (a gather per lane where
// the compiler cannot prove the address uniform, redundant traffic where it can), lane l of a
// subgroup of S lanes loads A's TM values at k = k0 + l (S consecutive K per row: coalesced for
// A[M,K]), and each k's values reach every lane by subgroupShuffle. B is read per invocation, TN
// columns strided by WX (neighbouring invocations, neighbouring columns), as in gemm_tiled.
// Per S steps of K an invocation makes TM loads of A, TM·S shuffles, TN·S loads of B, TM·TN·S FMAs.
//
// The subgroup's size and which invocations form it are the device's: the kernel assumes neither.
// A subgroup that is not full (a ballot of its active lanes counts fewer than subgroup_size) reads
// A itself, one step of K a chunk (subgroup.wgsl: subgroup_chunk), and takes its own value over
// the shuffle's, so it never uses an inactive lane's. Every lane of a subgroup runs the same loop
// trip counts (they depend on K and the subgroup size only) and calls each shuffle: subgroup
// operations stay in uniform control flow. Columns past N are clamped for loads, stores guarded.
//
// Specialization: TRANS_A, TRANS_B (bool), WX (invocations), TM, TN.
// Storage: A is [M,K] (or [K,M] when TRANS_A), B is [K,N] (or [N,K] when TRANS_B), row-major.
// Bindings: params; inputs a, b, bias; output c.

// (Bindings, a_at, b_at and finish: gemm_io.wgsl.)

@compute @workgroup_size(WX, 1, 1)
fn gemm_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    let row0 = wid.y * TM;
    let col0 = wid.x * (WX * TN) + lid.x;
    var rows: array<u32, TM>;
    var cols: array<u32, TN>;
    for (var r = 0u; r < TM; r++) {
        rows[r] = min(row0 + r, p.m - 1u);
    }
    for (var t = 0u; t < TN; t++) {
        cols[t] = min(col0 + t * WX, p.n - 1u);
    }
    var acc: array<f32, TM * TN>;
    for (var i = 0u; i < TM * TN; i++) {
        acc[i] = 0.0;
    }
    let full = subgroup_full(sg);
    let chunk = subgroup_chunk(full, sg);
    let mine = subgroup_mine(full, lane);
    for (var k0 = 0u; k0 < p.k; k0 += chunk) {
        let steps = min(chunk, p.k - k0);
        // This lane's share of the chunk: the TM rows at k0 + mine (lanes past K load a clamped
        // address; no step reads them).
        var own: array<f32, TM>;
        let kl = min(k0 + mine, p.k - 1u);
        for (var r = 0u; r < TM; r++) {
            own[r] = a_at(rows[r], kl);
        }
        for (var s = 0u; s < steps; s++) {
            var av: array<f32, TM>;
            var bv: array<f32, TN>;
            for (var r = 0u; r < TM; r++) {
                av[r] = select(own[r], subgroupShuffle(own[r], s), full);
            }
            for (var t = 0u; t < TN; t++) {
                bv[t] = b_at(k0 + s, cols[t]);
            }
            for (var r = 0u; r < TM; r++) {
                for (var t = 0u; t < TN; t++) {
                    acc[r * TN + t] += av[r] * bv[t];
                }
            }
        }
    }
    for (var r = 0u; r < TM; r++) {
        let i = row0 + r;
        for (var t = 0u; t < TN; t++) {
            let j = col0 + t * WX;
            if (i < p.m && j < p.n) {
                finish(i, j, acc[r * TN + t]);
            }
        }
    }
}
