// GEMM: C[M,N] = op(A) · op(B) (+ bias[N]) (+ C) (then ReLU), every M, N, K.
//
// Specialization (prepended by the host): TRANS_A, TRANS_B (bool); for gemm_tiled and gemm_shared
// also the workgroup shape WX x WY and the register block TM x TN (each invocation computes TM x TN
// outputs, rows strided by WY and columns strided by WX so neighbouring invocations touch
// neighbouring columns of B and C: coalesced loads and stores); for gemm_shared the K-step BK of
// its workgroup-memory tiles (BM = WY·TM, BN = WX·TN; the other kernels get small placeholders);
// gemm_dot reads WX (its invocations, a power of two <= MAX_WG) and TN (its outputs).
//
// Storage: A is [M,K] (or [K,M] when TRANS_A), B is [K,N] (or [N,K] when TRANS_B), row-major.
// Bindings: params; inputs a, b, bias; output c.

// (Bindings, a_at, b_at and finish: gemm_io.wgsl.)

// The simplest correct kernel: one output per invocation. Fallback and oracle.
@compute @workgroup_size(16, 16, 1)
fn gemm_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i = gid.y;
    if (i >= p.m || j >= p.n) {
        return;
    }
    var acc = 0.0;
    for (var kk = 0u; kk < p.k; kk++) {
        acc += a_at(i, kk) * b_at(kk, j);
    }
    finish(i, j, acc);
}

// Register-blocked: a WX x WY workgroup computes a (WY*TM) x (WX*TN) tile of C.
@compute @workgroup_size(WX, WY, 1)
fn gemm_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wid.y * (WY * TM) + lid.y;
    let col0 = wid.x * (WX * TN) + lid.x;
    // Clamped indices: edge invocations read valid memory and discard the result at the store.
    var rows: array<u32, TM>;
    var cols: array<u32, TN>;
    for (var r = 0u; r < TM; r++) {
        rows[r] = min(row0 + r * WY, p.m - 1u);
    }
    for (var t = 0u; t < TN; t++) {
        cols[t] = min(col0 + t * WX, p.n - 1u);
    }
    var acc: array<f32, TM * TN>;
    for (var i = 0u; i < TM * TN; i++) {
        acc[i] = 0.0;
    }
    for (var kk = 0u; kk < p.k; kk++) {
        var av: array<f32, TM>;
        var bv: array<f32, TN>;
        for (var r = 0u; r < TM; r++) {
            av[r] = a_at(rows[r], kk);
        }
        for (var t = 0u; t < TN; t++) {
            bv[t] = b_at(kk, cols[t]);
        }
        for (var r = 0u; r < TM; r++) {
            for (var t = 0u; t < TN; t++) {
                acc[r * TN + t] += av[r] * bv[t];
            }
        }
    }
    for (var r = 0u; r < TM; r++) {
        let i = row0 + r * WY;
        for (var t = 0u; t < TN; t++) {
            let j = col0 + t * WX;
            if (i < p.m && j < p.n) {
                finish(i, j, acc[r * TN + t]);
            }
        }
    }
}

// Workgroup-tiled, for GPUs: a WX x WY workgroup computes a BM x BN tile of C (BM = WY·TM,
// BN = WX·TN). Per BK-step of K it stages A's BM x BK and B's BK x BN sub-tiles in workgroup
// memory (loaded cooperatively along each operand's contiguous dimension: coalesced), then every
// invocation reads its TM rows of A and TN columns of B from there for TM·TN multiply-adds per
// k. Global traffic per multiply-add: (BM + BN)/(BM·BN) loads; workgroup-memory traffic: (TM +
// TN)/(TM·TN). Rows strided by WY and columns by WX, as in gemm_tiled. Any M, N, K: loads past an
// edge read a clamped address and store zero; stores are guarded.
var<workgroup> a_tile: array<f32, BK * BM>;
var<workgroup> b_tile: array<f32, BK * BN>;

// The tile of C at (row0, col0) over K in [k_begin, k_end), into acc.
fn shared_tile(acc: ptr<function, array<f32, TM * TN>>, row0: u32, col0: u32, k_begin: u32, k_end: u32, lid: vec3<u32>, li: u32) {
    let threads = WX * WY;
    var av: array<f32, TM>;
    var bv: array<f32, TN>;
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        // A's tile as [kk][row]: read along K for A[M,K], along M for A[K,M].
        for (var e = li; e < BM * BK; e += threads) {
            var r = e / BK;
            var kk = e % BK;
            if (TRANS_A) {
                r = e % BM;
                kk = e / BM;
            }
            let gi = row0 + r;
            let gk = k0 + kk;
            let v = a_at(min(gi, p.m - 1u), min(gk, k_end - 1u));
            a_tile[kk * BM + r] = select(0.0, v, gi < p.m && gk < k_end);
        }
        // B's tile as [kk][col]: read along N for B[K,N], along K for B[N,K].
        for (var e = li; e < BK * BN; e += threads) {
            var kk = e / BN;
            var cc = e % BN;
            if (TRANS_B) {
                cc = e / BK;
                kk = e % BK;
            }
            let gj = col0 + cc;
            let gk = k0 + kk;
            let v = b_at(min(gk, k_end - 1u), min(gj, p.n - 1u));
            b_tile[kk * BN + cc] = select(0.0, v, gj < p.n && gk < k_end);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            for (var r = 0u; r < TM; r++) {
                av[r] = a_tile[kk * BM + lid.y + r * WY];
            }
            for (var t = 0u; t < TN; t++) {
                bv[t] = b_tile[kk * BN + lid.x + t * WX];
            }
            for (var r = 0u; r < TM; r++) {
                for (var t = 0u; t < TN; t++) {
                    (*acc)[r * TN + t] += av[r] * bv[t];
                }
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WX, WY, 1)
fn gemm_shared(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    var acc: array<f32, TM * TN>;
    shared_tile(&acc, row0, col0, 0u, p.k, lid, li);
    for (var r = 0u; r < TM; r++) {
        let i = row0 + lid.y + r * WY;
        for (var t = 0u; t < TN; t++) {
            let j = col0 + lid.x + t * WX;
            if (i < p.m && j < p.n) {
                finish(i, j, acc[r * TN + t]);
            }
        }
    }
}

// ---- gemm_split: inputs a, b; output part. gemm_split_sum: inputs parts, split_bias; output
// split_out. (Bindings of their own: neither kernel reads all of a, b and bias.)
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read> split_bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> split_out: array<f32>;

// Split-K, for products whose tiles are too few to fill a GPU (the FER network's fc1: 100 tiles of
// 64 x 64 at K = 3072): workgroup (x, y, z) computes gemm_shared's tile over K in
// [z·kc, z·kc + kc) and stores it, without the epilogue, to the partial products part[z, M, N];
// gemm_split_sum then adds the splits in order and applies the epilogue.
@compute @workgroup_size(WX, WY, 1)
fn gemm_split(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let k_begin = wid.z * p.kc;
    var acc: array<f32, TM * TN>;
    shared_tile(&acc, row0, col0, k_begin, min(k_begin + p.kc, p.k), lid, li);
    for (var r = 0u; r < TM; r++) {
        let i = row0 + lid.y + r * WY;
        for (var t = 0u; t < TN; t++) {
            let j = col0 + lid.x + t * WX;
            if (i < p.m && j < p.n) {
                part[(wid.z * p.m + i) * p.n + j] = acc[r * TN + t];
            }
        }
    }
}

// The second pass of the split-K product: C[i, j] = epilogue(Σ over splits z in order of
// parts[z, i, j]), the partial products of gemm_split; the same grid and register tiles.
@compute @workgroup_size(WX, WY, 1)
fn gemm_split_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    for (var r = 0u; r < TM; r++) {
        let i = wid.y * BM + lid.y + r * WY;
        for (var t = 0u; t < TN; t++) {
            let j = wid.x * BN + lid.x + t * WX;
            if (i < p.m && j < p.n) {
                var v = 0.0;
                for (var z = 0u; z < p.splits; z++) {
                    v += parts[(z * p.m + i) * p.n + j];
                }
                let idx = i * p.n + j;
                split_out[idx] = epilogue(v, split_bias[bias_index(j, p.flags)], split_out[idx], p.flags);
            }
        }
    }
}

// Dot, for skinny products with a long K (the SVM top layer's 256 x 7 x 3072 forward, where the
// tiles above leave most invocations idle and run all of K in one invocation): a workgroup of WX
// invocations computes row i = wid.y, columns wid.x·TN + t. Invocation l adds the products at
// k = l, l + WX, ... (neighbouring invocations: neighbouring k, coalesced where A and B are
// contiguous along K), then workgroup_sum adds the WX partial sums pairwise in a fixed order, a
// column at a time. The host keeps M within the grid.
@compute @workgroup_size(WX, 1, 1)
fn gemm_dot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = wid.y;
    let col0 = wid.x * TN;
    var cols: array<u32, TN>;
    for (var t = 0u; t < TN; t++) {
        cols[t] = min(col0 + t, p.n - 1u);
    }
    var acc: array<f32, TN>;
    for (var kk = lid.x; kk < p.k; kk += WX) {
        let av = a_at(i, kk);
        for (var t = 0u; t < TN; t++) {
            acc[t] += av * b_at(kk, cols[t]);
        }
    }
    for (var t = 0u; t < TN; t++) {
        let total = workgroup_sum(acc[t], lid.x, WX);
        if (lid.x == 0u && col0 + t < p.n) {
            finish(i, col0 + t, total);
        }
    }
}
