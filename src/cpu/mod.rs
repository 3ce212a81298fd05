//! CPU reference implementation of every op: the oracle the GPU kernels are checked against.
//!
//! Plain loops, written for readability rather than speed. Every sum is accumulated in `f64` and
//! every output is computed as `f64` and rounded once to `T`. Slice lengths are checked against the
//! shapes with `assert!`.

pub mod activation;
pub mod conv;
pub mod gemm;
pub mod loss;
pub mod optim;
pub mod pool;
pub mod reduce;

pub use activation::{dropout_backward, dropout_forward, relu_backward, relu_forward};
pub use conv::{conv2d_backward_data, conv2d_backward_weight, conv2d_forward};
pub use gemm::gemm;
pub use loss::{l1svm, l2svm, softmax_xent};
pub use optim::sgd_momentum;
pub use pool::{avgpool_backward, avgpool_forward, maxpool_backward, maxpool_forward};
pub use reduce::{argmax_rows, channel_sum, count_correct, sum};

/// Element type of the reference ops: `f32` (what the GPU uses) or `f64` (for gradient checks).
pub trait Real: Copy + Default + PartialOrd + Send + Sync + std::fmt::Debug + 'static {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

impl Real for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// Panics with `what` and the length mismatch when `len != expected`.
pub(crate) fn check_len(what: &str, len: usize, expected: usize) {
    assert!(len == expected, "{what}: slice has length {len}, the shape needs {expected}");
}

/// `max(v, 0)` as the fused and standalone ReLUs define it: `v` if `v > 0`, else `0`.
pub(crate) fn relu_f64(v: f64) -> f64 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}
