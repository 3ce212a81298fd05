//! The cases `dlsvm check` runs: every kernel family and direction, on the FER network's shapes
//! (at a small batch) and on edge shapes. One [`Row`] per kernel and direction.

use super::cases::*;
use super::CaseReport;
use crate::gpu::{Gpu, GpuError};
use crate::kernels::{conv::ConvBwdWeightVariant, conv::ConvFwdVariant, gemm::GemmVariant};
use crate::shapes::{Conv2dShape, GemmShape, Pool2dShape, Trans};

type CaseFn = Box<dyn Fn(&Gpu) -> Result<CaseReport, GpuError> + Send + Sync>;

/// One comparison of the suite.
pub struct SuiteCase {
    /// The row it belongs to (kernel and direction).
    pub row: String,
    pub run: CaseFn,
}

/// A kernel and direction, over every shape tried.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub kernel: String,
    pub shapes: usize,
    pub max_abs: f64,
    pub max_rel: f64,
    /// Largest error as a fraction of its allowance (<= 1 passes).
    pub worst_ratio: f64,
    pub tolerance: String,
    pub passed: bool,
    /// The first failure (or error) message, if any.
    pub failure: Option<String>,
}

impl Row {
    pub fn new(kernel: &str) -> Self {
        Row {
            kernel: kernel.to_string(),
            shapes: 0,
            max_abs: 0.0,
            max_rel: 0.0,
            worst_ratio: 0.0,
            tolerance: String::new(),
            passed: true,
            failure: None,
        }
    }

    pub fn add(&mut self, r: &CaseReport) {
        self.shapes += 1;
        self.max_abs = self.max_abs.max(r.max_abs);
        self.max_rel = self.max_rel.max(r.max_rel);
        self.worst_ratio = self.worst_ratio.max(r.worst_ratio);
        let tol = r.tol.to_string();
        if !self.tolerance.contains(&tol) {
            if !self.tolerance.is_empty() {
                self.tolerance.push_str("; ");
            }
            self.tolerance.push_str(&tol);
        }
        if let Some(f) = &r.failure {
            self.passed = false;
            self.failure.get_or_insert(format!("[{}] {f}", r.shape));
        }
    }

    pub fn add_error(&mut self, e: &GpuError) {
        self.shapes += 1;
        self.passed = false;
        self.failure.get_or_insert(e.to_string());
    }
}

/// FER network shapes (DESIGN.md §2) at batch `n`.
pub fn fer_convs(n: usize) -> [Conv2dShape; 3] {
    [
        Conv2dShape::square(n, 1, 42, 32, 5, 1, 2),
        Conv2dShape::square(n, 32, 21, 32, 4, 1, 1),
        Conv2dShape::square(n, 32, 10, 64, 5, 1, 2),
    ]
}

/// FER pools at batch `n`: max 42 -> 21, average 20 -> 10, average 10 -> 5.
pub fn fer_pools(n: usize) -> [Pool2dShape; 3] {
    [
        Pool2dShape::square(n, 32, 42, 3, 2, 0),
        Pool2dShape::square(n, 32, 20, 3, 2, 0),
        Pool2dShape::square(n, 64, 10, 3, 2, 0),
    ]
}

/// FC GEMMs of a layer `inp -> out` at batch `n`: forward (NT), backward data (NN), weight (TN).
pub fn fc_gemms(n: usize, inp: usize, out: usize) -> [GemmShape; 3] {
    [
        GemmShape::new(n, out, inp, Trans::NT),
        GemmShape::new(n, inp, out, Trans::NN),
        GemmShape::new(out, inp, n, Trans::TN),
    ]
}

/// Edge conv shapes beyond the FER network's.
pub fn edge_convs() -> Vec<Conv2dShape> {
    vec![
        Conv2dShape::square(1, 1, 1, 1, 1, 1, 0),
        Conv2dShape::square(2, 3, 9, 5, 3, 2, 1),
        Conv2dShape::square(1, 3, 7, 4, 3, 1, 3),
        Conv2dShape::square(3, 5, 8, 7, 1, 1, 0),
        Conv2dShape::square(2, 2, 6, 3, 6, 1, 0),
        Conv2dShape { n: 2, cin: 3, h: 11, w: 7, cout: 9, kh: 3, kw: 2, sy: 2, sx: 1, py: 1, px: 0 },
        // The widest kernel the rows weight gradient is specialized for, and one past it (fallback).
        Conv2dShape::square(1, 2, 9, 3, 8, 1, 2),
        Conv2dShape { n: 2, cin: 2, h: 5, w: 14, cout: 3, kh: 2, kw: 11, sy: 1, sx: 1, py: 1, px: 2 },
    ]
}

pub fn edge_pools() -> Vec<Pool2dShape> {
    vec![
        Pool2dShape::square(2, 3, 8, 2, 2, 0),
        Pool2dShape::square(1, 2, 7, 3, 1, 1),
        Pool2dShape::square(2, 3, 9, 3, 2, 1),
        Pool2dShape { n: 1, c: 5, h: 11, w: 6, kh: 3, kw: 2, sy: 2, sx: 1, py: 1, px: 0 },
        Pool2dShape::square(1, 1, 1, 1, 1, 0),
    ]
}

/// Every case of `dlsvm check`.
pub fn suite() -> Vec<SuiteCase> {
    let mut cases: Vec<SuiteCase> = Vec::new();
    let mut add = |row: String, run: CaseFn| cases.push(SuiteCase { row, run });
    let mut seed = 1u64;
    let mut next = || {
        seed += 1;
        seed
    };

    // GEMM: every transposition and variant on edge shapes and the FER fc layers (batch 8).
    let mut gemm_shapes = vec![(1, 1, 1), (7, 5, 3), (64, 64, 64), (65, 65, 65), (123, 255, 72)];
    // vec4-aligned in every layout but not a multiple of any tile: the vec4 kernel's edges.
    gemm_shapes.extend([(4, 4, 4), (68, 132, 36), (12, 20, 8)]);
    gemm_shapes.push((8, 7, 3072));
    for t in Trans::ALL {
        for v in GemmVariant::all() {
            let row = format!("gemm_{} {}", t.name(), v.name());
            for &(m, n, k) in &gemm_shapes {
                let s = GemmShape::new(m, n, k, t);
                let sd = next();
                add(row.clone(), Box::new(move |g| gemm_case(g, s, v, Flags::BIAS_RELU, sd)));
            }
            let s = GemmShape::new(33, 17, 9, t);
            let sd = next();
            add(row.clone(), Box::new(move |g| gemm_case(g, s, v, Flags::ALL, sd)));
        }
    }
    for s in fc_gemms(8, 1600, 3072).into_iter().chain(fc_gemms(8, 3072, 7)) {
        let sd = next();
        let v = GemmVariant::DEFAULT;
        add(
            format!("gemm_{} {}", s.trans.name(), v.name()),
            Box::new(move |g| gemm_case(g, s, v, Flags::NONE, sd)),
        );
    }

    // Convolution, every direction, FER layers at batch 2 plus edge shapes.
    let convs: Vec<Conv2dShape> = fer_convs(2).into_iter().chain(edge_convs()).collect();
    for &s in &convs {
        for v in ConvFwdVariant::all() {
            let sd = next();
            add(
                format!("conv2d fwd {}", v.name()),
                Box::new(move |g| conv_fwd_case(g, s, v, Flags::BIAS_RELU, sd)),
            );
        }
        let sd = next();
        add("conv2d bwd_data".into(), Box::new(move |g| conv_bwd_data_case(g, s, sd)));
        for v in ConvBwdWeightVariant::all() {
            let sd = next();
            add(
                format!("conv2d bwd_weight {}", v.name()),
                Box::new(move |g| conv_bwd_weight_case(g, s, v, sd % 2 == 0, sd)),
            );
        }
        let sd = next();
        add("conv2d bwd_bias".into(), Box::new(move |g| conv_bwd_bias_case(g, s, sd)));
    }

    // Pooling.
    let pools: Vec<Pool2dShape> = fer_pools(2).into_iter().chain(edge_pools()).collect();
    for &s in &pools {
        let sd = next();
        add("maxpool fwd".into(), Box::new(move |g| maxpool_fwd_case(g, s, sd)));
        for v in crate::kernels::pool::MaxPoolBwdVariant::all() {
            add(
                format!("maxpool bwd {}", v.name()),
                Box::new(move |g| maxpool_bwd_case_variant(g, s, v, sd)),
            );
        }
        add("avgpool fwd".into(), Box::new(move |g| avgpool_fwd_case(g, s, sd)));
        for v in crate::kernels::pool::PoolBwdVariant::all() {
            add(
                format!("avgpool bwd {}", v.name()),
                Box::new(move |g| avgpool_bwd_case_variant(g, s, v, sd)),
            );
        }
    }

    // Element-wise, losses, optimizer, reductions.
    for n in [1, 255, 256, 257, 8 * 3072 + 13] {
        let sd = next();
        add("relu fwd".into(), Box::new(move |g| relu_fwd_case(g, n, sd)));
        add("relu bwd".into(), Box::new(move |g| relu_bwd_case(g, n, sd)));
        add("dropout fwd".into(), Box::new(move |g| dropout_case(g, n, 0.2, sd as u32, 7, false)));
        add("dropout bwd".into(), Box::new(move |g| dropout_case(g, n, 0.5, sd as u32, 8, true)));
        add("sgd_momentum update".into(), Box::new(move |g| sgd_case(g, n, 0.05, 0.9, 1e-4, sd)));
        add("sum".into(), Box::new(move |g| sum_case(g, n, sd % 2 == 0, sd)));
    }
    for (n, k) in [(1, 1), (1, 7), (256, 7), (300, 10), (5, 1000)] {
        let sd = next();
        add("softmax_xent fwd+bwd".into(), Box::new(move |g| softmax_case(g, n, k, 4.0, sd)));
        add("l2svm fwd+bwd".into(), Box::new(move |g| l2svm_case(g, n, k, 1.0, sd)));
        add("argmax_rows".into(), Box::new(move |g| argmax_case(g, n, k, sd)));
        add("count_correct".into(), Box::new(move |g| count_correct_case(g, n, k, sd % 2 == 1, sd)));
    }
    add("softmax_xent fwd+bwd".into(), Box::new(|g| softmax_case(g, 64, 7, 80.0, 99)));
    add("l2svm fwd+bwd".into(), Box::new(|g| l2svm_case(g, 64, 7, 0.02 * 64.0, 98)));
    for (outer, c, inner) in [(1, 1, 1), (8, 3072, 1), (2, 32, 1764), (3, 5, 7)] {
        let sd = next();
        add("channel_sum".into(), Box::new(move |g| channel_sum_case(g, outer, c, inner, sd % 2 == 0, sd)));
    }
    cases
}

/// Runs the suite (cases whose row contains `filter`), calling `progress` after each case.
pub fn run_suite(
    gpu: &Gpu,
    filter: Option<&str>,
    mut progress: impl FnMut(&str, &Result<CaseReport, GpuError>),
) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for case in suite() {
        if filter.is_some_and(|f| !case.row.contains(f)) {
            continue;
        }
        let result = (case.run)(gpu);
        progress(&case.row, &result);
        let row = match rows.iter_mut().find(|r| r.kernel == case.row) {
            Some(r) => r,
            None => {
                rows.push(Row::new(&case.row));
                rows.last_mut().expect("just pushed")
            }
        };
        match &result {
            Ok(r) => row.add(r),
            Err(e) => row.add_error(e),
        }
    }
    rows
}
