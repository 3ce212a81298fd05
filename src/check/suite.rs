//! The cases `dlsvm check` runs: every kernel family, direction and variant on the named shapes of
//! [`super::shapes`] (edge shapes and the presets' layers at batch 2), the presets' own layers at
//! a realistic batch with the variants training uses, ties in every max and argmax, and the loss of
//! a whole network against its definition. One [`Row`] per kernel, direction and variant.

use super::cases::*;
use super::network::network_loss_case;
use super::shapes::*;
use super::{CaseFuture, CaseReport};
use crate::gpu::{Gpu, GpuError};
use crate::kernels::conv::{ConvBwdDataVariant, ConvBwdWeightVariant, ConvFwdVariant};
use crate::kernels::registry::FamilyVariant;
use crate::kernels::{
    gemm::GemmVariant,
    pool::{PoolBwdVariant, PoolFwdVariant},
};
use crate::model::Top;
use crate::shapes::{GemmShape, Trans};

type CaseFn = Box<dyn Fn(&Gpu) -> CaseFuture<'_> + Send + Sync>;

/// One comparison of the suite.
pub struct SuiteCase {
    /// The row it belongs to (kernel and direction).
    pub row: String,
    /// Whether the row's variant is declared with subgroups (on a device without them it checks
    /// its fallback's kernel).
    pub subgroups: bool,
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
    /// Whether the row's variant is declared with subgroups ([`SuiteCase::subgroups`]).
    pub subgroups: bool,
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
            subgroups: false,
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

/// The suite under construction: each case gets its own seed, in order.
struct Cases {
    cases: Vec<SuiteCase>,
    seed: u64,
    /// Whether the cases added now check a variant declared with subgroups ([`Cases::variant`]).
    subgroups: bool,
}

impl Cases {
    fn add(&mut self, row: String, run: impl Fn(&Gpu, u64) -> CaseFuture<'_> + Send + Sync + 'static) {
        self.seed += 1;
        let seed = self.seed;
        self.cases.push(SuiteCase { row, subgroups: self.subgroups, run: Box::new(move |g| run(g, seed)) });
    }

    /// Adds (`add`) the cases of variant `v`, marked with whether it is declared with subgroups.
    fn variant<V: FamilyVariant>(&mut self, v: V, add: impl FnOnce(&mut Cases)) {
        let before = std::mem::replace(&mut self.subgroups, v.decl().subgroups.is_some());
        add(self);
        self.subgroups = before;
    }
}

impl Cases {
    /// [`Cases::add`] for a case on the named shape `name`: its report's shape starts with the name.
    fn named(
        &mut self,
        row: String,
        name: &str,
        run: impl Fn(&Gpu, u64) -> CaseFuture<'_> + Send + Sync + 'static,
    ) {
        let name = name.to_string();
        self.add(row, move |g, sd| {
            let (case, name) = (run(g, sd), name.clone());
            Box::pin(async move {
                case.await.map(|mut r| {
                    r.shape = format!("{name}: {}", r.shape);
                    r
                })
            })
        });
    }
}

impl Cases {
    /// [`Cases::named`] for a case run with its 1-D grids folded [`FOLD_WIDTH`] workgroups wide.
    fn folded(
        &mut self,
        row: String,
        name: &str,
        run: impl Fn(&Gpu, u64) -> CaseFuture<'_> + Send + Sync + 'static,
    ) {
        self.named(row, &format!("grid folded {FOLD_WIDTH} wide, {name}"), move |g, sd| {
            // The grids are folded when the case prepares its kernels, as it runs.
            let case = run(g, sd);
            Box::pin(async move {
                let _narrow = g.narrow_folds(FOLD_WIDTH);
                case.await
            })
        });
    }
}

/// Every case of `dlsvm check`.
pub fn suite() -> Vec<SuiteCase> {
    let mut c = Cases { cases: Vec::new(), seed: 1, subgroups: false };

    // GEMM: every transposition and variant on the named shapes; the presets' fc layers with the
    // variant training uses (vec4 where aligned, else the tiled fallback).
    for t in Trans::ALL {
        for v in GemmVariant::checked() {
            c.variant(v, |c| {
                let row = format!("gemm_{} {}", t.name(), v.name());
                for (name, (m, n, k), flags) in gemm_shapes() {
                    let s = GemmShape::new(m, n, k, t);
                    c.named(row.clone(), &name, move |g, sd| gemm_case(g, s, v, flags, Input::unit(sd)));
                }
            });
        }
    }
    for (name, s) in preset_gemms(2).into_iter().chain(preset_gemms(PRESET_BATCH)) {
        let v = GemmVariant::DEFAULT;
        c.named(format!("gemm_{} {}", s.trans.name(), v.name()), &name, move |g, sd| {
            gemm_case(g, s, v, Flags::NONE, Input::unit(sd))
        });
    }

    // Convolution: every direction and variant on the named shapes; the presets' layers at a
    // realistic batch with the variants training uses.
    for (name, s) in conv_shapes() {
        for v in ConvFwdVariant::checked() {
            c.variant(v, |c| {
                c.named(format!("conv2d fwd {}", v.name()), &name, move |g, sd| {
                    conv_fwd_case(g, s, v, Flags::BIAS_RELU, Input::unit(sd))
                });
            });
        }
        for v in ConvBwdDataVariant::checked() {
            c.variant(v, |c| {
                c.named(format!("conv2d bwd_data {}", v.name()), &name, move |g, sd| {
                    conv_bwd_data_case(g, s, v, Input::unit(sd))
                });
            });
        }
        for v in ConvBwdWeightVariant::checked() {
            c.variant(v, |c| {
                c.named(format!("conv2d bwd_weight {}", v.name()), &name, move |g, sd| {
                    conv_bwd_weight_case(g, s, v, sd % 2 == 0, Input::unit(sd))
                });
            });
        }
        c.named("conv2d bwd_bias".into(), &name, move |g, sd| {
            conv_bwd_bias_case(g, s, false, Input::unit(sd))
        });
    }
    for (name, s) in preset_convs(PRESET_BATCH) {
        let (fwd, wgrad) = (ConvFwdVariant::DEFAULT, ConvBwdWeightVariant::DEFAULT);
        c.named(format!("conv2d fwd {}", fwd.name()), &name, move |g, sd| {
            conv_fwd_case(g, s, fwd, Flags::BIAS_RELU, Input::unit(sd))
        });
        let data = ConvBwdDataVariant::DEFAULT;
        c.named(format!("conv2d bwd_data {}", data.name()), &name, move |g, sd| {
            conv_bwd_data_case(g, s, data, Input::unit(sd))
        });
        c.named(format!("conv2d bwd_weight {}", wgrad.name()), &name, move |g, sd| {
            conv_bwd_weight_case(g, s, wgrad, false, Input::unit(sd))
        });
        c.named("conv2d bwd_bias".into(), &name, move |g, sd| {
            conv_bwd_bias_case(g, s, false, Input::unit(sd))
        });
    }

    // Pooling: every direction and variant, on tie-free inputs and on inputs full of ties.
    let pools = pool_shapes().into_iter().chain(preset_pools(PRESET_BATCH));
    for (name, s) in pools {
        for values in [Values::Unit, Values::Ties] {
            let input = move |sd| Input { seed: sd, a: values, b: Values::Unit };
            for v in PoolFwdVariant::checked() {
                c.named(format!("maxpool fwd {}", v.name()), &name, move |g, sd| {
                    maxpool_fwd_case(g, s, v, input(sd))
                });
            }
            for v in PoolBwdVariant::checked() {
                c.named(format!("maxpool bwd {}", v.name()), &name, move |g, sd| {
                    maxpool_bwd_case(g, s, v, input(sd))
                });
            }
        }
        for v in PoolFwdVariant::checked() {
            c.named(format!("avgpool fwd {}", v.name()), &name, move |g, sd| {
                avgpool_fwd_case(g, s, v, Input::unit(sd))
            });
        }
        for v in PoolBwdVariant::checked() {
            c.named(format!("avgpool bwd {}", v.name()), &name, move |g, sd| {
                avgpool_bwd_case(g, s, v, Input::unit(sd))
            });
        }
    }

    // Element-wise, losses, optimizer, reductions.
    for n in ELEMENTWISE_LENGTHS {
        c.add("relu fwd".into(), move |g, sd| relu_fwd_case(g, n, Input::unit(sd)));
        c.add("relu bwd".into(), move |g, sd| relu_bwd_case(g, n, Input::unit(sd)));
        c.add("dropout fwd".into(), move |g, sd| {
            dropout_case(g, n, 0.2, (sd as u32, 7), false, Input::unit(sd))
        });
        c.add("dropout bwd".into(), move |g, sd| {
            dropout_case(g, n, 0.5, (sd as u32, 8), true, Input::unit(sd))
        });
        c.add("sgd_momentum update".into(), move |g, sd| sgd_case(g, n, (0.05, 0.9, 1e-4), Input::unit(sd)));
        c.add("sum".into(), move |g, sd| sum_case(g, n, sd % 2 == 0, Input::unit(sd)));
        c.add("fill".into(), move |g, sd| fill_case(g, n, sd as f32 - 0.5));
    }
    for (n, k) in ROW_SHAPES {
        c.add("softmax_xent fwd+bwd".into(), move |g, sd| {
            softmax_case(g, n, k, Input::values(sd, Values::Scaled(4.0)))
        });
        c.add("l2svm fwd+bwd".into(), move |g, sd| {
            l2svm_case(g, n, k, 1.0, Input::values(sd, Values::Scaled(2.0)))
        });
        c.add("l1svm fwd+bwd".into(), move |g, sd| {
            l1svm_case(g, n, k, 1.0, Input::values(sd, Values::Scaled(2.0)))
        });
        for values in [Values::Unit, Values::Ties] {
            c.add("argmax_rows".into(), move |g, sd| argmax_case(g, n, k, Input::values(sd, values)));
        }
        c.add("count_correct".into(), move |g, sd| count_correct_case(g, n, k, sd % 2 == 1, sd));
    }
    c.add("softmax_xent fwd+bwd".into(), |g, sd| {
        softmax_case(g, 64, 7, Input::values(sd, Values::Scaled(80.0)))
    });
    c.add("l2svm fwd+bwd".into(), |g, sd| {
        l2svm_case(g, 64, 7, 0.02 * 64.0, Input::values(sd, Values::Scaled(2.0)))
    });
    c.add("l1svm fwd+bwd".into(), |g, sd| {
        l1svm_case(g, 64, 7, 0.02 * 64.0, Input::values(sd, Values::Scaled(2.0)))
    });
    for (outer, ch, inner) in CHANNEL_SUM_SHAPES {
        c.add("channel_sum".into(), move |g, sd| {
            channel_sum_case(g, outer, ch, inner, sd % 2 == 0, Input::unit(sd))
        });
    }
    for (slices, n) in SLICE_SUM_SHAPES {
        c.add("slice_sum".into(), move |g, sd| slice_sum_case(g, slices, n, sd % 2 == 0, Input::unit(sd)));
    }

    for (n, d, k) in PCA_SHAPES {
        c.add("pca fit+project".into(), move |g, sd| pca_case(g, n, d, k, sd));
    }

    folded_cases(&mut c);

    // The loss of a whole network, against the paper's formula.
    for (top, svm_c) in [(Top::L2svm, 1.0), (Top::L2svm, 0.5), (Top::Softmax, 1.0), (Top::L1svm, 1.0)] {
        c.add(format!("network loss {}", top.name()), move |g, _| Box::pin(network_loss_case(g, top, svm_c)));
    }
    c.cases
}

/// The folded-grid cases of [`suite`] alone (the kernel tests run them).
pub fn folded_suite() -> Vec<SuiteCase> {
    let mut c = Cases { cases: Vec::new(), seed: 1, subgroups: false };
    folded_cases(&mut c);
    c.cases
}

/// Every kernel with a folded 1-D grid again, its grid folded [`FOLD_WIDTH`] wide: the folded
/// indexing and the ragged last row of workgroups on shapes small enough to check quickly.
fn folded_cases(c: &mut Cases) {
    for (name, s) in folded_convs() {
        for v in ConvFwdVariant::checked() {
            c.variant(v, |c| {
                c.folded(format!("conv2d fwd {}", v.name()), &name, move |g, sd| {
                    conv_fwd_case(g, s, v, Flags::BIAS_RELU, Input::unit(sd))
                });
            });
        }
        for v in ConvBwdDataVariant::checked() {
            c.variant(v, |c| {
                c.folded(format!("conv2d bwd_data {}", v.name()), &name, move |g, sd| {
                    conv_bwd_data_case(g, s, v, Input::unit(sd))
                });
            });
        }
        for v in ConvBwdWeightVariant::checked() {
            c.variant(v, |c| {
                c.folded(format!("conv2d bwd_weight {}", v.name()), &name, move |g, sd| {
                    conv_bwd_weight_case(g, s, v, sd % 2 == 0, Input::unit(sd))
                });
            });
        }
        c.folded("conv2d bwd_bias".into(), &name, move |g, sd| {
            conv_bwd_bias_case(g, s, false, Input::unit(sd))
        });
    }
    for (name, s) in folded_pools() {
        for v in PoolFwdVariant::checked() {
            c.folded(format!("maxpool fwd {}", v.name()), &name, move |g, sd| {
                maxpool_fwd_case(g, s, v, Input::unit(sd))
            });
            c.folded(format!("avgpool fwd {}", v.name()), &name, move |g, sd| {
                avgpool_fwd_case(g, s, v, Input::unit(sd))
            });
        }
        for v in PoolBwdVariant::checked() {
            c.folded(format!("maxpool bwd {}", v.name()), &name, move |g, sd| {
                maxpool_bwd_case(g, s, v, Input::unit(sd))
            });
            c.folded(format!("avgpool bwd {}", v.name()), &name, move |g, sd| {
                avgpool_bwd_case(g, s, v, Input::unit(sd))
            });
        }
    }
    for n in FOLDED_LENGTHS {
        let name = format!("length {n}");
        c.folded("relu fwd".into(), &name, move |g, sd| relu_fwd_case(g, n, Input::unit(sd)));
        c.folded("relu bwd".into(), &name, move |g, sd| relu_bwd_case(g, n, Input::unit(sd)));
        c.folded("dropout fwd".into(), &name, move |g, sd| {
            dropout_case(g, n, 0.2, (sd as u32, 7), false, Input::unit(sd))
        });
        c.folded("dropout bwd".into(), &name, move |g, sd| {
            dropout_case(g, n, 0.5, (sd as u32, 8), true, Input::unit(sd))
        });
        c.folded("sgd_momentum update".into(), &name, move |g, sd| {
            sgd_case(g, n, (0.05, 0.9, 1e-4), Input::unit(sd))
        });
        c.folded("sum".into(), &name, move |g, sd| sum_case(g, n, sd % 2 == 0, Input::unit(sd)));
        c.folded("fill".into(), &name, move |g, sd| fill_case(g, n, sd as f32 - 0.5));
    }
    for (n, k) in FOLDED_ROWS {
        let name = format!("{n} rows of {k}");
        c.folded("softmax_xent fwd+bwd".into(), &name, move |g, sd| {
            softmax_case(g, n, k, Input::values(sd, Values::Scaled(4.0)))
        });
        c.folded("l2svm fwd+bwd".into(), &name, move |g, sd| {
            l2svm_case(g, n, k, 1.0, Input::values(sd, Values::Scaled(2.0)))
        });
        c.folded("l1svm fwd+bwd".into(), &name, move |g, sd| {
            l1svm_case(g, n, k, 1.0, Input::values(sd, Values::Scaled(2.0)))
        });
        c.folded("argmax_rows".into(), &name, move |g, sd| {
            argmax_case(g, n, k, Input::values(sd, Values::Ties))
        });
        c.folded("count_correct".into(), &name, move |g, sd| count_correct_case(g, n, k, sd % 2 == 1, sd));
    }
    for (outer, ch, inner) in CHANNEL_SUM_SHAPES {
        c.folded("channel_sum".into(), &format!("{outer}x{ch}x{inner}"), move |g, sd| {
            channel_sum_case(g, outer, ch, inner, sd % 2 == 0, Input::unit(sd))
        });
    }
    c.folded("slice_sum".into(), "86 slices of 16384", |g, sd| {
        slice_sum_case(g, 86, 16_384, true, Input::unit(sd))
    });
}

/// [`run_suite_async`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn run_suite(
    gpu: &Gpu,
    filter: Option<&str>,
    progress: impl FnMut(&str, &Result<CaseReport, GpuError>),
) -> Vec<Row> {
    pollster::block_on(run_suite_async(gpu, filter, progress))
}

/// Runs the suite (cases whose row contains `filter`), calling `progress` after each case. Stops
/// after a case whose kernel never finished ([`GpuError::is_hang`]): nothing more can run.
pub async fn run_suite_async(
    gpu: &Gpu,
    filter: Option<&str>,
    mut progress: impl FnMut(&str, &Result<CaseReport, GpuError>),
) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for case in suite() {
        if filter.is_some_and(|f| !case.row.contains(f)) {
            continue;
        }
        let result = (case.run)(gpu).await;
        progress(&case.row, &result);
        let i = match rows.iter().position(|r| r.kernel == case.row) {
            Some(i) => i,
            None => {
                rows.push(Row { subgroups: case.subgroups, ..Row::new(&case.row) });
                rows.len() - 1
            }
        };
        match &result {
            Ok(r) => rows[i].add(r),
            Err(e) => rows[i].add_error(e),
        }
        if result.as_ref().is_err_and(GpuError::is_hang) {
            break;
        }
    }
    rows
}

/// The table `dlsvm check` prints (and the browser page shows): one line per row.
pub fn table(rows: &[Row]) -> String {
    use std::fmt::Write;
    let w = rows.iter().map(|r| r.kernel.len()).max().unwrap_or(6).max(6);
    let head = ("kernel", "shapes", "max abs", "max rel", "of tol", "tolerance (|diff| <= ...)");
    let mut s = format!(
        "{:<w$}  {:>6}  {:>9}  {:>9}  {:>7}  {:<34}  result\n",
        head.0, head.1, head.2, head.3, head.4, head.5
    );
    for r in rows {
        let result = if r.passed { "pass" } else { "FAIL" };
        let (k, n, a, m, o, t) = (&r.kernel, r.shapes, r.max_abs, r.max_rel, r.worst_ratio, &r.tolerance);
        let _ = writeln!(s, "{k:<w$}  {n:>6}  {a:>9.2e}  {m:>9.2e}  {o:>7.3}  {t:<34}  {result}");
    }
    s
}

/// What `dlsvm check` says under its table: the verdict, each failure, and why rows may stand
/// for other kernels (a stuck device, no subgroups).
pub fn summary(rows: &[Row], gpu: &Gpu, wait_limit: std::time::Duration) -> String {
    use std::fmt::Write;
    let failed = rows.iter().filter(|r| !r.passed).count();
    let mut s = match failed {
        0 => format!("all {} kernels pass on {}\n", rows.len(), gpu.info.name),
        _ => format!("{failed} of {} kernels FAILED on {}\n", rows.len(), gpu.info.name),
    };
    for r in rows.iter().filter(|r| !r.passed) {
        let _ = writeln!(s, "  {}: {}", r.kernel, r.failure.as_deref().unwrap_or("?"));
    }
    if gpu.stuck().is_some() {
        let _ = writeln!(
            s,
            "the check stopped there: a kernel never finished ({} set the limit to {} s) and the \
             device cannot run anything more; the cases after it were not run",
            super::WAIT_LIMIT_ENV,
            wait_limit.as_secs_f64()
        );
    }
    if !gpu.subgroups && rows.iter().any(|r| r.subgroups) {
        s.push_str(
            "note: the device has no subgroups here: the subgroup variants' rows checked the kernels \
             that run in their place (the tiled GEMM, the blocked and rows convolutions; no subgroup kernel \
             was checked)\n",
        );
    }
    s
}
