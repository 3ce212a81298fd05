//! Kernel-vs-reference comparisons. Each `*_case` function runs one GPU kernel on seeded random
//! inputs, runs the CPU reference (in f64) on the same inputs, and compares element by element
//! against the kernel's written tolerance. `cargo test` (tests/kernels.rs) and `dlsvm check`
//! ([`suite`], one row per kernel, direction and variant) run the cases on the same named shapes
//! ([`shapes`]).
//!
//! Outputs are poisoned with NaN before each kernel runs, so an element the kernel never writes
//! fails the comparison (NaN is never within tolerance).
//!
//! The device is opened with [`crate::gpu::Gpu::enable_checks`]: every tensor is bound with NaN
//! padding past its logical end, so a kernel that reads past an input's end computes NaN (a
//! driver's robust access would have answered 0, which can pass) and one that writes past an
//! output's end fails its download; and a kernel that never finishes fails its case after
//! [`wait_limit`] instead of hanging the check.

mod cases;
pub mod network;
pub mod shapes;
mod suite;
pub mod tolerance;

pub use cases::*;
pub use shapes::{fc_gemms, fer_convs, fer_pools};
#[cfg(not(target_arch = "wasm32"))]
pub use suite::run_suite;
pub use suite::{folded_suite, run_suite_async, suite, summary, table, Row, SuiteCase};
pub use tolerance::Tol;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::gpu::GpuError;

/// A case of the check, running: the GPU work, the read-backs (awaited: a browser cannot block
/// on them) and the comparison. Native callers block on it (`pollster::FutureExt::block_on`).
pub type CaseFuture<'g> = Pin<Box<dyn Future<Output = Result<CaseReport, GpuError>> + 'g>>;

/// Seconds one kernel launch (one submission) of `dlsvm check` and the GPU tests may run before
/// the device counts as stuck and the case fails ([`crate::gpu::GpuError::Hung`]); default
/// [`DEFAULT_WAIT_LIMIT_S`].
pub const WAIT_LIMIT_ENV: &str = "DLSVM_CHECK_TIMEOUT";

/// The default of [`WAIT_LIMIT_ENV`]: far above any launch of the check or the tests (the whole
/// check takes under a minute on lavapipe with two cores).
pub const DEFAULT_WAIT_LIMIT_S: f64 = 60.0;

/// How long one launch of the check may run: [`WAIT_LIMIT_ENV`] (seconds, > 0), else
/// [`DEFAULT_WAIT_LIMIT_S`].
pub fn wait_limit() -> Result<Duration, String> {
    let Ok(text) = std::env::var(WAIT_LIMIT_ENV) else {
        return Ok(Duration::from_secs_f64(DEFAULT_WAIT_LIMIT_S));
    };
    match text.trim().parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() && s < 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{WAIT_LIMIT_ENV}={text:?}: expected a number of seconds above 0")),
    }
}

/// The outcome of one kernel run on one shape.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// Kernel and direction, e.g. `conv2d bwd_weight`.
    pub kernel: String,
    /// The shape tried, e.g. `n2 3x9x9 -> 5 k3x3 s2x2 p1x1`.
    pub shape: String,
    /// Elements compared.
    pub elements: usize,
    pub max_abs: f64,
    /// Largest |gpu - ref| / |ref| over elements whose |ref| >= 1e-6.
    pub max_rel: f64,
    /// Largest error as a fraction of its own allowance (<= 1 passes).
    pub worst_ratio: f64,
    pub tol: Tol,
    /// The first failing element: index, GPU value, reference value, allowance.
    pub failure: Option<String>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}]: {} elements, max abs {:.3e}, max rel {:.3e}, worst {:.2} of tolerance ({})",
            self.kernel, self.shape, self.elements, self.max_abs, self.max_rel, self.worst_ratio, self.tol
        )?;
        if let Some(fail) = &self.failure {
            write!(f, " FAILED: {fail}")?;
        }
        Ok(())
    }
}

/// Accumulates comparisons of one or more outputs of a kernel into a [`CaseReport`].
pub struct Comparison {
    report: CaseReport,
}

impl Comparison {
    pub fn new(kernel: &str, shape: impl fmt::Display, tol: Tol) -> Self {
        Comparison {
            report: CaseReport {
                kernel: kernel.to_string(),
                shape: shape.to_string(),
                elements: 0,
                max_abs: 0.0,
                max_rel: 0.0,
                worst_ratio: 0.0,
                tol,
                failure: None,
            },
        }
    }

    /// Compares `gpu` with `reference` for an output named `what`; `len` is the length of the
    /// reduction behind each element (1 for element-wise outputs).
    pub fn floats(&mut self, what: &str, gpu: &[f32], reference: &[f64], len: usize) -> &mut Self {
        let r = &mut self.report;
        if gpu.len() != reference.len() {
            r.failure.get_or_insert(format!(
                "{what}: {} GPU values, {} reference values",
                gpu.len(),
                reference.len()
            ));
            return self;
        }
        for (i, (&g, &want)) in gpu.iter().zip(reference).enumerate() {
            let g = g as f64;
            let err = (g - want).abs();
            let allow = r.tol.allowance(want, len);
            r.elements += 1;
            if err.is_nan() || err > allow {
                let ratio = if err.is_nan() { f64::INFINITY } else { err / allow };
                r.max_abs = r.max_abs.max(if err.is_nan() { f64::INFINITY } else { err });
                r.worst_ratio = r.worst_ratio.max(ratio);
                r.failure.get_or_insert(format!(
                    "{what}[{i}]: gpu {g:e}, reference {want:e}, |diff| {err:.3e} > allowed {allow:.3e}"
                ));
                continue;
            }
            r.max_abs = r.max_abs.max(err);
            if want.abs() >= 1e-6 {
                r.max_rel = r.max_rel.max(err / want.abs());
            }
            if allow > 0.0 {
                r.worst_ratio = r.worst_ratio.max(err / allow);
            }
        }
        self
    }

    /// Exact comparison of integer outputs.
    pub fn ints(&mut self, what: &str, gpu: &[i32], reference: &[i32]) -> &mut Self {
        let r = &mut self.report;
        if gpu.len() != reference.len() {
            r.failure.get_or_insert(format!(
                "{what}: {} GPU values, {} reference values",
                gpu.len(),
                reference.len()
            ));
            return self;
        }
        r.elements += gpu.len();
        if let Some(i) = gpu.iter().zip(reference).position(|(a, b)| a != b) {
            r.worst_ratio = f64::INFINITY;
            r.failure.get_or_insert(format!("{what}[{i}]: gpu {}, reference {}", gpu[i], reference[i]));
        }
        self
    }

    pub fn finish(&mut self) -> CaseReport {
        self.report.clone()
    }
}

/// f32 values as f64 (the reference runs in f64 on the very same inputs).
pub fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
