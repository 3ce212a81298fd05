//! Shared by the GPU test files: one device per test binary. A missing adapter FAILS the test
//! with the install hint; GPU tests never pass by skipping.

#![allow(dead_code)]

use std::sync::OnceLock;

use dlsvm::check::CaseReport;
use dlsvm::gpu::{Gpu, GpuError};

pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let filter = std::env::var("DLSVM_ADAPTER").ok();
        match Gpu::new(filter.as_deref()) {
            Ok(g) => g,
            Err(e) => {
                panic!("GPU tests need an adapter and none is usable: {e}\n{}", dlsvm::gpu::INSTALL_HINT)
            }
        }
    })
}

/// Asserts a case ran and passed; the message names the kernel, shape, worst index and values.
#[track_caller]
pub fn pass(result: Result<CaseReport, GpuError>) -> CaseReport {
    let report = result.unwrap_or_else(|e| panic!("kernel failed to run: {e}"));
    assert!(report.passed(), "{report}");
    assert!(report.elements > 0, "{report}: nothing was compared");
    report
}
