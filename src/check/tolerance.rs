//! Every kernel's tolerance, in one place. An element passes if
//!
//! ```text
//! |gpu - ref| <= sqrt(max(1, len)) * (atol + rtol * |ref|)
//! ```
//!
//! where `ref` is the CPU reference computed in f64 on the same f32 inputs and `len` is the length
//! of the sum behind the element (K for a GEMM, cin·kh·kw for a conv output, n·oh·ow for a weight
//! gradient, 1 for element-wise ops). Test inputs are uniform in [-1, 1).
//!
//! Why these numbers: an f32 sum of `len` terms of size <= 1 whose partial sums wander like a
//! random walk carries a rounding error of roughly u·len/4 (u = 2^-24 = 6e-8), about 1.5e-8·len,
//! which for every reduction the kernels perform (len <= 5e5, split over 64+ invocations) stays
//! below 1e-5·sqrt(len). A sum of same-signed terms (a loss row) errs relative to its value, by
//! about u·sqrt(len) typically, hence the rtol term also grows with sqrt(len). A structural bug (a missing, extra or misplaced term) moves an element
//! by about the size of one term (~0.3), far above the allowance even at len = 5e5 (7e-3).
//! Element-wise kernels are held to one or a few ulps. These numbers are never loosened to make a
//! test pass: a failure is a bug to find.
//!
//! Inputs of another magnitude (the stress test's 1e30 and 1e-30) use [`Tol::scaled`]: the absolute
//! term follows the size of the terms, the relative term stays.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
}

impl Tol {
    pub const fn new(atol: f64, rtol: f64) -> Self {
        Tol { atol, rtol }
    }
    /// The same tolerance for inputs `magnitude` times the unit range it is written for: the
    /// absolute term is in units of the terms' size, so it scales with the output (for a GEMM of A
    /// scaled by 1e30 and B by 1e-30, by 1e30·1e-30 = 1); the relative term is unchanged. This is no
    /// loosening: scaling every input by a power of two scales the f32 computation exactly (while
    /// nothing overflows or turns subnormal), so the scaled comparison passes if and only if the
    /// unit one does. `magnitude` 1 returns `self`.
    pub fn scaled(self, magnitude: f64) -> Tol {
        Tol { atol: self.atol * magnitude, rtol: self.rtol }
    }
    /// The allowed |gpu - ref| for a reference value `want` behind a sum of `len` terms.
    pub fn allowance(&self, want: f64, len: usize) -> f64 {
        (len.max(1) as f64).sqrt() * (self.atol + self.rtol * want.abs())
    }
}

impl fmt::Display for Tol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sqrt(len)*({:.0e} + {:.0e}*|ref|)", self.atol, self.rtol)
    }
}

/// GEMM, every transposition and variant (len = K).
pub const GEMM: Tol = Tol::new(1e-5, 1e-5);
/// Conv forward (len = cin·kh·kw), backward data (len = cout·kh·kw / stride²), backward weight
/// (len = n·oh·ow), and the bias gradient (len = n·oh·ow).
pub const CONV: Tol = Tol::new(1e-5, 1e-5);
/// Max pooling copies values: exact, as are its argmax indices and its gathered gradient when at
/// most one window routes to an element; overlapping windows add up to ceil(k/s)² terms of size
/// <= 1 (len), a few roundings of u·|partial sum| each.
pub const MAXPOOL: Tol = Tol::new(3e-7, 1.2e-7);
/// Average pooling: a sum of at most kh·kw terms and one division.
pub const AVGPOOL: Tol = Tol::new(1e-7, 5e-7);
/// ReLU is exact; dropout is one f32 multiply (half an ulp).
pub const ELEMENTWISE: Tol = Tol::new(0.0, 1.2e-7);
/// Softmax cross-entropy: exp and log of the driver (a few ulps each) over k classes.
pub const SOFTMAX: Tol = Tol::new(2e-7, 2e-6);
/// Squared hinge: k products and a sum (len = k for the loss).
pub const L2SVM: Tol = Tol::new(1e-7, 1e-6);
/// Hinge: k differences and a sum (len = k for the loss); its gradient is exactly ±C/N or 0.
pub const L1SVM: Tol = Tol::new(1e-7, 1e-6);
/// The PCA stage, per entry at unit scale (the covariance and C·v divided by the largest
/// variance): an f32 covariance sum over n rows (len n), f32-rounded unit components whose dot
/// products and eigen residuals carry about u·sqrt(d) (len d), and the projection GEMM (len d).
pub const PCA: Tol = Tol::new(2e-7, 2e-6);
/// SGD: four f32 operations per element, magnitudes around 1.
pub const SGD: Tol = Tol::new(5e-7, 1e-6);
/// Sums (len = elements) and per-channel sums.
pub const REDUCE: Tol = Tol::new(1e-5, 1e-5);
