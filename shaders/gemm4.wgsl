// GEMM with vec4 loads: C[M,N] = op(A) · op(B) (+ bias[N]) (+ C) (then ReLU).
//
// The vectorized sibling of gemm.wgsl. Each load brings four floats, so a TM x 4·TV register block
// costs TM + 4·TV vec4 loads per four steps of K instead of 4·(TM + 4·TV) scalar loads. The host
// uses it only where every vec4 is aligned: the dimension A and B are contiguous along must be a
// multiple of 4 (NN: K and N; NT: K; TN: M and N). Other shapes take gemm.wgsl's gemm_tiled.
//
// Specialization (prepended by the host): TRANS_A, TRANS_B (bool), workgroup WX x WY, register
// block TM rows (a multiple of 4) x TV vec4 columns. Rows come in groups of four contiguous rows,
// group s of invocation (x, y) at s·WY + y; vec4 columns at t·WX + x: neighbouring invocations
// touch neighbouring vec4s of B and C (coalesced on hardware that coalesces).
//
// Storage: A is [M,K] (or [K,M] when TRANS_A), B is [K,N] (or [N,K] when TRANS_B), row-major.
// Bindings: params; inputs a (as vec4), b (as vec4, or a texture in the texture variants), bias;
// output c.

// (Bindings, finish and store4: gemm4_io.wgsl; B and b4: gemm4_b.wgsl.)

const RG: u32 = TM / 4u;

@compute @workgroup_size(WX, WY, 1)
fn gemm_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m4 = (p.m + 3u) / 4u;
    let n4 = (p.n + 3u) / 4u;
    let k4 = p.k / 4u;
    let rg0 = wid.y * (WY * RG) + lid.y;
    let cv0 = wid.x * (WX * TV) + lid.x;
    // Clamped row groups / vec4 columns: edge invocations load valid memory, discard at the store.
    var rg: array<u32, RG>;
    var cv: array<u32, TV>;
    for (var s = 0u; s < RG; s++) {
        rg[s] = min(rg0 + s * WY, m4 - 1u);
    }
    for (var t = 0u; t < TV; t++) {
        cv[t] = min(cv0 + t * WX, n4 - 1u);
    }
    var acc: array<vec4<f32>, TM * TV>;
    for (var i = 0u; i < TM * TV; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    if (TRANS_A) {
        // TN: A[K,M] and B[K,N] are both contiguous along the output dimension: one K step at a time.
        for (var kk = 0u; kk < p.k; kk++) {
            var bv: array<vec4<f32>, TV>;
            for (var t = 0u; t < TV; t++) {
                bv[t] = b4(kk, cv[t]);
            }
            for (var s = 0u; s < RG; s++) {
                let av = a[kk * m4 + rg[s]];
                for (var e = 0u; e < 4u; e++) {
                    for (var t = 0u; t < TV; t++) {
                        acc[(s * 4u + e) * TV + t] += av[e] * bv[t];
                    }
                }
            }
        }
    } else if (TRANS_B) {
        // NT: A[M,K] and B[N,K] are both contiguous along K: dot products of vec4s.
        for (var kb = 0u; kb < k4; kb++) {
            var bk: array<vec4<f32>, TV * 4u>;
            for (var t = 0u; t < TV; t++) {
                for (var e = 0u; e < 4u; e++) {
                    bk[t * 4u + e] = b4(min(cv[t] * 4u + e, p.n - 1u), kb);
                }
            }
            for (var s = 0u; s < RG; s++) {
                for (var e = 0u; e < 4u; e++) {
                    let av = a[min(rg[s] * 4u + e, p.m - 1u) * k4 + kb];
                    let r = s * 4u + e;
                    for (var t = 0u; t < TV; t++) {
                        acc[r * TV + t] += vec4<f32>(
                            dot(av, bk[t * 4u]),
                            dot(av, bk[t * 4u + 1u]),
                            dot(av, bk[t * 4u + 2u]),
                            dot(av, bk[t * 4u + 3u]),
                        );
                    }
                }
            }
        }
    } else {
        // NN: A[M,K] contiguous along K, B[K,N] along N.
        for (var kb = 0u; kb < k4; kb++) {
            var av: array<vec4<f32>, TM>;
            for (var s = 0u; s < RG; s++) {
                for (var e = 0u; e < 4u; e++) {
                    av[s * 4u + e] = a[min(rg[s] * 4u + e, p.m - 1u) * k4 + kb];
                }
            }
            nn_quad(&acc, &av, &cv, kb);
        }
    }
    for (var s = 0u; s < RG; s++) {
        for (var e = 0u; e < 4u; e++) {
            let i = (rg0 + s * WY) * 4u + e;
            for (var t = 0u; t < TV; t++) {
                store4(i, (cv0 + t * WX) * 4u, acc[(s * 4u + e) * TV + t]);
            }
        }
    }
}
