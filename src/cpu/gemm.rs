//! General matrix multiply with fused bias, accumulation and ReLU.

use super::{check_len, relu_f64, Real};
use crate::shapes::GemmShape;

/// `C[M,N] = op(A) · op(B) (+ bias) (+ C_old)`, then ReLU if `relu`.
///
/// Shapes (see [`crate::shapes::Trans`] for the storage of A and B):
/// - `a`: `M*K` elements, `op(A)[i,k]` at `s.a_index(i, k)`
/// - `b`: `K*N` elements, `op(B)[k,j]` at `s.b_index(k, j)`
/// - `bias`: `[N]`, added to every row
/// - `c`: `[M, N]` row-major; read first when `accumulate`
///
/// Per element: `v = Σ_k op(A)[i,k]·op(B)[k,j] + bias[j] + (c_old[i,j] if accumulate)`, then
/// `v = max(v, 0)` if `relu`; all in `f64`, rounded once.
pub fn gemm<T: Real>(
    s: &GemmShape,
    a: &[T],
    b: &[T],
    bias: Option<&[T]>,
    c: &mut [T],
    accumulate: bool,
    relu: bool,
) {
    if let Err(e) = s.validate() {
        panic!("{e}");
    }
    check_len("gemm a", a.len(), s.a_len());
    check_len("gemm b", b.len(), s.b_len());
    check_len("gemm c", c.len(), s.c_len());
    if let Some(bias) = bias {
        check_len("gemm bias", bias.len(), s.n);
    }
    for i in 0..s.m {
        for j in 0..s.n {
            let mut acc = 0.0f64;
            for kk in 0..s.k {
                acc += a[s.a_index(i, kk)].to_f64() * b[s.b_index(kk, j)].to_f64();
            }
            let mut v = acc;
            if let Some(bias) = bias {
                v += bias[j].to_f64();
            }
            if accumulate {
                v += c[i * s.n + j].to_f64();
            }
            if relu {
                v = relu_f64(v);
            }
            c[i * s.n + j] = T::from_f64(v);
        }
    }
}
