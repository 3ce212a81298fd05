//! `dlsvm bench`: every kernel's throughput against the device's own ceilings, measured in the
//! same run by an FMA-bound probe (GFLOP/s) and a copy probe (GB/s), and the training step of the
//! FER networks with the share of each layer and direction.
//!
//! Every kernel is first checked against the CPU reference at a small size; one that disagrees is
//! reported as failed and not timed. Timing: a warm-up until the run time is steady (see
//! [`warm_up`]), then the median of at least `reps` runs, each a single submission timed by GPU
//! timestamp queries where the adapter has them (wall clock around submit + wait otherwise);
//! inputs rotate over up to four copies when they are small enough to sit in a cache.

use crate::check::{self, Input, Values};
use crate::gpu::{DType, Dispatch, Gpu, GpuError};
use crate::kernels::registry::{FamilyVariant, Op};
use crate::kernels::{activation, conv, fill, gemm, loss, optim, pool, probe, reduce};
use crate::measure::{
    conv_job, copies, gemm_job, median, op_job, pool_job, random, time_groups, time_sets, warm_up, ConvDir,
    Job, PoolDir, Rotor, Work,
};
use crate::model::{preset, GpuNet, Net, Plan, Top};
use crate::rng::Rng;
use crate::shapes::{GemmShape, Trans};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Only rows whose name contains this text.
    pub filter: Option<String>,
    /// Time every kernel variant, not only the default.
    pub variants: bool,
    /// Timed runs per kernel (at least 10).
    pub reps: usize,
    /// Skip the training-step rows.
    pub no_steps: bool,
    /// How the default rows choose their variant: the tuner's choice (from the cache, or tuned now
    /// with `Full`) or the built-in default (`Off`).
    pub tune: crate::tune::Mode,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            filter: None,
            variants: false,
            reps: 10,
            no_steps: false,
            tune: crate::tune::Mode::Off,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Ceilings {
    pub fma_gflops: f64,
    /// The probe configuration that reached it.
    pub fma_config: String,
    pub copy_gbps: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    pub name: String,
    pub variant: String,
    pub shape: String,
    pub median_ms: f64,
    pub gflops: Option<f64>,
    pub gbps: Option<f64>,
    /// Of `ceiling`.
    pub pct_of_ceiling: f64,
    /// The ceiling the row is a share of: the FMA probe (GFLOP/s) for a row that counts
    /// floating-point operations, the copy probe (GB/s) for one that counts bytes, measured beside
    /// the row (one probe run after each of its timed runs); the run's first ceiling for a row
    /// timed once.
    pub ceiling: f64,
    /// "ok", or why the row was not timed.
    pub status: String,
    /// With tuning: the tuner's second choice for this op (the row times its first).
    pub runner_up: Option<String>,
    /// Timed runs behind `median_ms` (1 for a variant screened out as hopeless; 0 untimed).
    pub runs: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct StepRow {
    pub net: String,
    pub batch: usize,
    pub median_ms: f64,
    pub images_per_sec: f64,
    pub gflops: f64,
    /// Of the FMA ceiling measured beside the step (`ceiling_gflops`: one probe run after each
    /// timed step), not the run's first.
    pub pct_of_ceiling: f64,
    pub ceiling_gflops: f64,
    /// Share of the step not spent inside kernels (submission, dispatch and pass overhead): the
    /// median over the timed steps of (step - its dispatches timed alone just after) / step.
    pub overhead_pct: f64,
    /// (dispatch, ms, share of the kernel time)
    pub kernels: Vec<(String, f64, f64)>,
    /// Ops of the step that ran their built-in default because the tuning cache had no choice for
    /// them at this batch (`--tune cached` after `dlsvm tune` at another batch, or a spent tuning
    /// budget); 0 with tuning off, where every op runs its default by request.
    pub untuned: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub adapter: crate::gpu::AdapterSummary,
    pub timing: String,
    pub ceilings: Ceilings,
    pub rows: Vec<BenchRow>,
    pub steps: Vec<StepRow>,
}

/// The probe's run time below which it grows: long enough that launch and clock ramp are noise.
const FMA_MIN_MS: f64 = 2.0;

/// A ceiling probe built to run again beside a row ([`time_beside`]): its dispatch and the work
/// one run does (floating-point operations or bytes).
pub struct Probe {
    set: Vec<Vec<Dispatch>>,
    amount: f64,
}

impl Probe {
    /// The rate (GFLOP/s or GB/s) of one run of `ms`.
    fn rate(&self, ms: f64) -> f64 {
        self.amount / (ms * 1e-3) / 1e9
    }
}

/// The arithmetic ceiling: the best of the FMA probe's configurations, at a size that fills the
/// device: 2^16 invocations to start (a run of several ms on lavapipe), four times more while a run
/// takes under [`FMA_MIN_MS`], up to 2^24. (At 2^16 an H200 ran the probe in 18 µs with a quarter
/// of its invocation slots filled, and the "ceiling" came out at 45 % of the chip's.) Returns the
/// ceiling, the configuration that reached it, and that configuration as a [`Probe`].
pub fn fma_ceiling(gpu: &Gpu, reps: usize) -> Result<(f64, String, Probe), GpuError> {
    let seeds = gpu.upload(&[0.999_999, 1e-7], &[2])?;
    let iters = 256u32;
    let mut invocations = 1usize << 16;
    let sink = loop {
        let sink = gpu.empty(&[invocations], DType::F32)?;
        let d = probe::fma_probe(gpu, &seeds, &sink, iters, 256, 4)?;
        if invocations >= 1 << 24 || time_groups(gpu, &[vec![d]], 3)? >= FMA_MIN_MS {
            break sink;
        }
        invocations *= 4;
    };
    let mut best: Option<(f64, String, Probe)> = None;
    for wg in probe::FMA_WGS {
        for chains in probe::FMA_CHAINS {
            let d = probe::fma_probe(gpu, &seeds, &sink, iters, wg, chains)?;
            let set = vec![vec![d]];
            let ms = time_groups(gpu, &set, reps.min(5))?;
            let flops = 2.0 * 4.0 * invocations as f64 * iters as f64 * chains as f64;
            let probe = Probe { set, amount: flops };
            let g = probe.rate(ms);
            if best.as_ref().is_none_or(|b| g > b.0) {
                let config = format!("workgroup {wg}, {chains} chains, {invocations} invocations");
                best = Some((g, config, probe));
            }
        }
    }
    best.ok_or_else(|| GpuError::Internal("no FMA probe configuration".into()))
}

/// The bandwidth ceiling: a vec4 copy of 64 MiB, bytes read plus written; with the copy as a
/// [`Probe`].
pub fn copy_ceiling(gpu: &Gpu, reps: usize) -> Result<(f64, Probe), GpuError> {
    let n = 16 << 20;
    let src = random(gpu, n, 1)?;
    let dst = gpu.empty(&[n], DType::F32)?;
    let set = vec![vec![probe::copy_probe(gpu, &src, &dst)?]];
    let ms = time_groups(gpu, &set, reps)?;
    let probe = Probe { set, amount: 2.0 * 4.0 * n as f64 };
    Ok((probe.rate(ms), probe))
}

/// The median ms of `set` and the ceiling measured beside it: `reps` rounds that each run `set`
/// once and `probe` once ([`time_sets`]), so both see the device at the same speed. lavapipe's
/// speed follows the host's, which moved 2.5x within an hour on a shared machine: against a
/// ceiling measured minutes earlier, the same kernel read anywhere from 22 % to 27 %.
fn time_beside(gpu: &Gpu, set: &[Vec<Dispatch>], probe: &Probe, reps: usize) -> Result<(f64, f64), GpuError> {
    let t = time_sets(gpu, &[set, &probe.set], reps)?;
    Ok((t[0], probe.rate(t[1])))
}

fn elementwise_jobs(n: usize, rows: usize, k: usize, weights: usize) -> Vec<Job> {
    let mut jobs = Vec::new();
    let rot = copies(8 * n);
    jobs.push(Job {
        op: None,
        name: "relu_fwd".into(),
        variant: "-".into(),
        shape: format!("n{n}"),
        work: Work::Bytes(8.0 * n as f64),
        check: Box::new(|g| check::relu_fwd_case(g, 1000, Input::unit(1))),
        build: Box::new(move |g| {
            let y = g.empty(&[n], DType::F32)?;
            (0..rot).map(|i| Ok(vec![activation::relu_forward(g, &random(g, n, i as u64)?, &y)?])).collect()
        }),
    });
    jobs.push(Job {
        op: None,
        name: "relu_bwd".into(),
        variant: "-".into(),
        shape: format!("n{n}"),
        work: Work::Bytes(12.0 * n as f64),
        check: Box::new(|g| check::relu_bwd_case(g, 1000, Input::unit(1))),
        build: Box::new(move |g| {
            let dx = g.empty(&[n], DType::F32)?;
            (0..rot)
                .map(|i| {
                    let (y, dy) = (random(g, n, 2 * i as u64)?, random(g, n, 2 * i as u64 + 1)?);
                    Ok(vec![activation::relu_backward(g, &y, &dy, &dx)?])
                })
                .collect()
        }),
    });
    jobs.push(Job {
        op: None,
        name: "dropout".into(),
        variant: "p0.2".into(),
        shape: format!("n{n}"),
        work: Work::Bytes(8.0 * n as f64),
        check: Box::new(|g| check::dropout_case(g, 1000, 0.2, (1, 1), false, Input::unit(1))),
        build: Box::new(move |g| {
            let y = g.empty(&[n], DType::F32)?;
            (0..rot)
                .map(|i| Ok(vec![activation::dropout_forward(g, &random(g, n, i as u64)?, &y, 0.2, 1, 1)?]))
                .collect()
        }),
    });
    for (name, top) in [("softmax_xent", Top::Softmax), ("l2svm", Top::L2svm), ("l1svm", Top::L1svm)] {
        jobs.push(Job {
            op: None,
            name: name.into(),
            variant: "-".into(),
            shape: format!("n{rows} k{k}"),
            work: Work::Bytes(4.0 * (3 * rows * k + 2 * rows) as f64),
            check: Box::new(move |g| {
                let input = Input::values(1, Values::Scaled(if top == Top::Softmax { 4.0 } else { 2.0 }));
                match top {
                    Top::L2svm => check::l2svm_case(g, 64, 7, 1.0, input),
                    Top::L1svm => check::l1svm_case(g, 64, 7, 1.0, input),
                    Top::Softmax => check::softmax_case(g, 64, 7, input),
                }
            }),
            build: Box::new(move |g| {
                let s = random(g, rows * k, 1)?;
                let y = g.upload(&(0..rows as i32).map(|i| i % k as i32).collect::<Vec<_>>(), &[rows])?;
                let (l, gr) = (g.empty(&[rows], DType::F32)?, g.empty(&[rows * k], DType::F32)?);
                let scale = 1.0 / rows as f64;
                Ok(vec![vec![match top {
                    Top::L2svm => loss::l2svm(g, rows, k, &s, &y, scale, &l, &gr)?,
                    Top::L1svm => loss::l1svm(g, rows, k, &s, &y, scale, &l, &gr)?,
                    Top::Softmax => loss::softmax_xent(g, rows, k, &s, &y, scale, &l, &gr)?,
                }]])
            }),
        });
    }
    jobs.push(Job {
        op: None,
        name: "sgd_momentum".into(),
        variant: "-".into(),
        shape: format!("n{weights}"),
        work: Work::Bytes(20.0 * weights as f64),
        check: Box::new(|g| check::sgd_case(g, 1000, (0.05, 0.9, 1e-4), Input::unit(1))),
        build: Box::new(move |g| {
            let (w, v, gr) = (random(g, weights, 1)?, random(g, weights, 2)?, random(g, weights, 3)?);
            Ok(vec![vec![optim::sgd_momentum(g, &w, &v, &gr, 1e-6, 0.9, 1e-4)?]])
        }),
    });
    jobs
}

fn jobs(variants: bool) -> Vec<Job> {
    let mut jobs = Vec::new();
    // Every usable variant of a family, or its default alone.
    fn of<V: FamilyVariant>(variants: bool) -> Vec<V> {
        if variants {
            V::usable()
        } else {
            vec![V::default_variant()]
        }
    }
    let gemm_variants: Vec<gemm::GemmVariant> = of(variants);
    for t in Trans::ALL {
        for size in [256, 512, 1024, 2048] {
            for &v in &gemm_variants {
                jobs.push(gemm_job(&format!("gemm_{}", t.name()), GemmShape::new(size, size, size, t), v));
            }
        }
    }
    let batch = STEP_BATCH;
    for (i, (inp, out)) in [(1600, 3072), (3072, 7)].into_iter().enumerate() {
        let [fwd, data, weight] = check::fc_gemms(batch, inp, out);
        for &v in &gemm_variants {
            jobs.push(gemm_job(&format!("fc{}_fwd", i + 1), fwd, v));
            jobs.push(gemm_job(&format!("fc{}_bwd_data", i + 1), data, v));
            jobs.push(gemm_job(&format!("fc{}_bwd_weight", i + 1), weight, v));
        }
    }
    for (i, s) in check::fer_convs(batch).into_iter().enumerate() {
        let name = format!("conv{}", i + 1);
        for v in of::<conv::ConvFwdVariant>(variants) {
            jobs.push(conv_job(&name, s, ConvDir::Fwd(v)));
        }
        for v in of::<conv::ConvBwdDataVariant>(variants) {
            jobs.push(conv_job(&name, s, ConvDir::Data(v)));
        }
        for v in of::<conv::ConvBwdWeightVariant>(variants) {
            jobs.push(conv_job(&name, s, ConvDir::Weight(v)));
        }
    }
    for (i, s) in check::fer_pools(batch).into_iter().enumerate() {
        let name = format!("pool{}", i + 1);
        for v in of::<pool::PoolFwdVariant>(variants) {
            jobs.push(pool_job(&name, s, i == 0, PoolDir::Fwd(v)));
        }
        for v in of::<pool::PoolBwdVariant>(variants) {
            jobs.push(pool_job(&name, s, i == 0, PoolDir::Bwd(v)));
        }
    }
    jobs.extend(elementwise_jobs(batch * 3072, batch, 7, 3072 * 1600));
    jobs.extend(reduce_jobs(batch));
    jobs
}

/// The step's reductions and fills at the fer network's largest shapes: the conv1 and fc1 bias
/// gradients, conv3's weight-gradient partial sums, the zeroed conv1 pool gradient.
fn reduce_jobs(batch: usize) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (outer, c, inner) in [(batch, 32, 1764), (batch, 3072, 1)] {
        let n = outer * c * inner;
        jobs.push(Job {
            op: None,
            name: "channel_sum".into(),
            variant: "-".into(),
            shape: format!("[{outer}, {c}, {inner}]"),
            work: Work::Bytes(4.0 * n as f64),
            check: Box::new(move |g| check::channel_sum_case(g, 4, c, inner, false, Input::unit(1))),
            build: Box::new(move |g| {
                let out = g.empty(&[c], DType::F32)?;
                (0..copies(4 * n))
                    .map(|i| reduce::channel_sum(g, outer, c, inner, &random(g, n, i as u64)?, &out, false))
                    .collect()
            }),
        });
    }
    let (slices, n) = (24, 51_200);
    jobs.push(Job {
        op: None,
        name: "slice_sum".into(),
        variant: "-".into(),
        shape: format!("[{slices}, {n}]"),
        work: Work::Bytes(4.0 * (slices * n) as f64),
        check: Box::new(move |g| check::slice_sum_case(g, slices, n, false, Input::unit(1))),
        build: Box::new(move |g| {
            let out = g.empty(&[n], DType::F32)?;
            (0..copies(4 * slices * n))
                .map(|i| {
                    Ok(vec![reduce::slice_sum(g, slices, n, &random(g, slices * n, i as u64)?, &out, false)?])
                })
                .collect()
        }),
    });
    let n = batch * 32 * 1764;
    jobs.push(Job {
        op: None,
        name: "fill".into(),
        variant: "-".into(),
        shape: format!("n{n}"),
        work: Work::Bytes(4.0 * n as f64),
        check: Box::new(|g| check::fill_case(g, 260, 1.5)),
        build: Box::new(move |g| Ok(vec![vec![fill::fill(g, &g.empty(&[n], DType::F32)?, 0.0)?]])),
    });
    jobs
}

/// The batch of the training-step rows.
pub const STEP_BATCH: usize = 256;

/// The training step of preset `name` at `batch` with the variants of `plan`: median time over
/// `reps` steps, each dispatch's share and the overhead (each step paired with a profile of its
/// dispatches).
pub fn step_row(
    gpu: &Gpu,
    name: &str,
    batch: usize,
    reps: usize,
    fma: &Probe,
    plan: &Plan,
) -> Result<StepRow, GpuError> {
    let cfg = preset(name).ok_or_else(|| GpuError::Internal(format!("no preset {name}")))?;
    let net = Net::new(&cfg, 7).map_err(|e| GpuError::Internal(e.to_string()))?;
    let g = GpuNet::with_plan(gpu, &net, batch, &net.init_params(1), 1.0, 1, plan)?;
    let mut rng = Rng::new(5);
    let x = rng.vec(batch * net.input_len());
    let y: Vec<i32> = (0..batch).map(|i| (i % 7) as i32).collect();
    let mut step = 0u64;
    let mut one = || -> Result<f64, GpuError> {
        let t0 = Instant::now();
        let sub = g.train_step(gpu, &x, &y, step, 1e-4, 0.9)?;
        gpu.wait_for(sub)?;
        step += 1;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    warm_up(&mut one)?;
    // Each step is followed at once by a pass timing each of its dispatches alone: the overhead
    // is the median over those pairs of (step - its dispatches) / step, so a device whose speed
    // drifts between a run of steps and a later profile (lavapipe on a shared machine: up to 2x
    // within minutes) does not decide it. Then one run of the FMA probe: the step's ceiling.
    let mut probe = Rotor::new(&fma.set);
    let mut probes = Vec::with_capacity(reps);
    let mut times = Vec::with_capacity(reps);
    let mut overheads = Vec::with_capacity(reps);
    let mut per_op: Vec<(String, Vec<f64>)> = Vec::new();
    for _ in 0..reps.max(1) {
        let t = one()?;
        times.push(t);
        let pass = g.profile(gpu, 1)?;
        overheads.push((t - pass.iter().map(|k| k.1).sum::<f64>()) / t);
        if per_op.is_empty() {
            per_op = pass.iter().map(|(n, _)| (n.clone(), Vec::new())).collect();
        }
        for (slot, (_, ms)) in per_op.iter_mut().zip(pass) {
            slot.1.push(ms);
        }
        probes.push(probe.one(gpu)?);
    }
    let ms = median(times);
    let ceiling = fma.rate(median(probes));
    let kernels: Vec<(String, f64)> = per_op.into_iter().map(|(n, t)| (n, median(t))).collect();
    let kernel_ms: f64 = kernels.iter().map(|k| k.1).sum();
    // Forward, data gradient and weight gradient each cost the forward's multiply-adds.
    let flops = 2.0 * 3.0 * net.forward_macs() as f64 * batch as f64;
    let gflops = flops / (ms * 1e-3) / 1e9;
    Ok(StepRow {
        net: name.to_string(),
        batch,
        median_ms: ms,
        images_per_sec: batch as f64 / (ms * 1e-3),
        gflops,
        pct_of_ceiling: 100.0 * gflops / ceiling,
        ceiling_gflops: ceiling,
        overhead_pct: (100.0 * median(overheads)).max(0.0),
        kernels: kernels.into_iter().map(|(n, t)| (n, t, 100.0 * t / kernel_ms.max(1e-12))).collect(),
        untuned: 0,
    })
}

/// `bench --variants`' screen: the fastest time so far of each row, a row being a kernel name at
/// one shape (the GEMM rows share a name over four sizes: keyed by the name alone, the 256³ time
/// screened out every variant of 1024³ on an H200).
#[derive(Default)]
struct Screen(std::collections::HashMap<(String, String), f64>);

impl Screen {
    /// Whether a first look of `ms` is over [`crate::tune::HOPELESS`] x the row's fastest so far.
    fn hopeless(&self, name: &str, shape: &str, ms: f64) -> bool {
        let best = self.0.get(&(name.to_string(), shape.to_string())).copied().unwrap_or(f64::INFINITY);
        ms > crate::tune::HOPELESS * best
    }

    fn record(&mut self, name: &str, shape: &str, ms: f64) {
        let best = self.0.entry((name.to_string(), shape.to_string())).or_insert(f64::INFINITY);
        *best = best.min(ms);
    }
}

/// Runs the benchmark; `progress` receives a line per finished row.
/// Whether `--filter` text selects `job`: every space-separated word of it appears in the row's
/// kernel name, variant or shape (`"gemm_nn 1024x"`, `"fc1 subgroup"`).
fn selects(filter: &str, job: &Job) -> bool {
    every_word(filter, &format!("{} {} {}", job.name, job.variant, job.shape))
}

/// Whether every space-separated word of `filter` appears in `row`.
fn every_word(filter: &str, row: &str) -> bool {
    filter.split_whitespace().all(|w| row.contains(w))
}

/// Whether `--filter` text selects the training step of preset `name`: every word appears in
/// "step train <name>" (`"step"` both steps, `"fer-small"` that one).
fn selects_step(filter: &str, name: &str) -> bool {
    every_word(filter, &format!("step train {name}"))
}

pub fn run(gpu: &Gpu, opts: &BenchOptions, mut progress: impl FnMut(&str)) -> Result<BenchReport, GpuError> {
    let reps = opts.reps.max(10);
    let (fma, fma_config, fma_probe) = fma_ceiling(gpu, reps)?;
    let (copy, copy_probe) = copy_ceiling(gpu, reps)?;
    progress(&format!("ceilings: {fma:.1} GFLOP/s ({fma_config}), copy {copy:.2} GB/s"));
    let mut rows = Vec::new();
    let mut tuner = crate::tune::Tuner::new(opts.tune, &mut |m| progress(&format!("warning: {m}")));
    let mut screen = Screen::default();
    let selected: Vec<Job> = jobs(opts.variants)
        .into_iter()
        .filter(|j| opts.filter.as_deref().is_none_or(|f| selects(f, j)))
        .collect();
    if !opts.variants {
        // Tune ahead, the training steps' rows first and the square GEMMs from the smallest: the
        // rows' own order (every size of one layout, then the next) let a slow device spend the
        // budget on the 2048^3 NN and NT rows and time TN and the network's rows untuned.
        let mut order: Vec<(bool, f64, Op)> = selected
            .iter()
            .filter_map(|j| j.op.map(|op| (j.name.starts_with("gemm_"), j.work.amount(), op)))
            .collect();
        order.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        tuner.prepare(gpu, &order.iter().map(|o| o.2).collect::<Vec<_>>(), &mut |m| progress(&m));
        for (_, _, op) in order {
            tuner.tune_ahead(gpu, &op, &mut |m| progress(&m))?;
        }
    }
    for mut job in selected {
        // The default rows time the tuner's choice for their op.
        let mut runner_up = None;
        if let (false, Some(op)) = (opts.variants, job.op) {
            if let Some(c) = tuner.choice(gpu, &op, &mut |m| progress(&m))? {
                if let Some(chosen) = op_job(&op, c.variant) {
                    job = Job { name: job.name, ..chosen };
                }
                runner_up = c.runner_up.map(|v| v.name().to_string());
            }
        }
        let mut row = BenchRow {
            name: job.name.clone(),
            variant: job.variant.clone(),
            shape: job.shape.clone(),
            median_ms: f64::NAN,
            gflops: None,
            gbps: None,
            pct_of_ceiling: f64::NAN,
            ceiling: f64::NAN,
            status: "ok".into(),
            runner_up,
            runs: 0,
        };
        match pollster::block_on((job.check)(gpu)) {
            Ok(r) if r.passed() => {
                let set = (job.build)(gpu)?;
                let (probe, first_ceiling) = match job.work {
                    Work::Flops(_) => (&fma_probe, fma),
                    Work::Bytes(_) => (&copy_probe, copy),
                };
                // A quick look first: a variant over HOPELESS x the row's fastest is not worth the rest.
                let first = if opts.variants { Some(time_groups(gpu, &set, 1)?) } else { None };
                let (ms, ceiling) = match first {
                    Some(t) if screen.hopeless(&job.name, &job.shape, t) => {
                        row.runs = 1;
                        (t, first_ceiling)
                    }
                    _ => {
                        row.runs = reps;
                        time_beside(gpu, &set, probe, reps)?
                    }
                };
                screen.record(&job.name, &job.shape, ms);
                row.median_ms = ms;
                row.ceiling = ceiling;
                let rate = job.work.amount() / (ms * 1e-3) / 1e9;
                match job.work {
                    Work::Flops(_) => row.gflops = Some(rate),
                    Work::Bytes(_) => row.gbps = Some(rate),
                }
                row.pct_of_ceiling = 100.0 * rate / ceiling;
            }
            Ok(r) => row.status = format!("failed the reference check: {}", r.failure.unwrap_or_default()),
            Err(e) => row.status = format!("failed the reference check: {e}"),
        }
        progress(&format_row(&row));
        rows.push(row);
    }
    let mut steps = Vec::new();
    if !opts.no_steps {
        for (name, r) in [("fer-small", 10), ("fer", 3)] {
            if !opts.filter.as_deref().is_none_or(|f| selects_step(f, name)) {
                continue;
            }
            let mut plan = Plan::default();
            let mut untuned = 0;
            if let Some(net) = preset(name).and_then(|c| Net::new(&c, 7).ok()) {
                for (key, op) in crate::model::plan::ops(&net, STEP_BATCH) {
                    match tuner.choice(gpu, &op, &mut |m| progress(&m))? {
                        Some(c) => {
                            plan.set(key, c.variant).map_err(GpuError::Internal)?;
                        }
                        None if opts.tune != crate::tune::Mode::Off => untuned += 1,
                        None => {}
                    }
                }
            }
            if untuned > 0 {
                progress(&format!(
                    "warning: step {name}: {untuned} ops have no tuned choice at batch {STEP_BATCH} and run their \
                     defaults (`dlsvm tune --preset {name} --batch {STEP_BATCH}` tunes them)"
                ));
            }
            // The ceiling is measured beside the step, not taken from the run's start: minutes of
            // tuning and rows lie between, and a machine whose speed drifts (lavapipe on a shared
            // host: up to 2.5x) would otherwise decide the step's percentage.
            let s = StepRow { untuned, ..step_row(gpu, name, STEP_BATCH, r, &fma_probe, &plan)? };
            progress(&format!("step {name}: {:.1} ms, {:.1} images/s", s.median_ms, s.images_per_sec));
            steps.push(s);
        }
    }
    tuner.finish(&mut |m| progress(&format!("warning: {m}")));
    Ok(BenchReport {
        adapter: gpu.info.clone(),
        timing: if gpu.timestamps { "timestamp queries".into() } else { "wall clock".into() },
        ceilings: Ceilings { fma_gflops: fma, fma_config, copy_gbps: copy },
        rows,
        steps,
    })
}

pub fn format_row(r: &BenchRow) -> String {
    let rate = match (r.gflops, r.gbps) {
        (Some(g), _) => format!("{g:>8.2} GFLOP/s"),
        (_, Some(b)) => format!("{b:>8.2} GB/s   "),
        _ => format!("{:>16}", "-"),
    };
    let mut status = if r.status == "ok" { String::new() } else { format!("  {}", r.status) };
    if r.runs == 1 {
        status.push_str(&format!("  (1 run: over {}x the fastest variant)", crate::tune::HOPELESS));
    }
    if let Some(n) = &r.runner_up {
        status.push_str(&format!("  (runner-up {n})"));
    }
    format!(
        "{:<18} {:<20} {:<38} {:>10.3} ms {rate} {:>6.1}% {:>7.2}{status}",
        r.name, r.variant, r.shape, r.median_ms, r.pct_of_ceiling, r.ceiling
    )
}

/// The report as the table `dlsvm bench` prints.
pub fn table(rep: &BenchReport) -> String {
    let mut s = format!(
        "adapter {} ({}, {}), timing by {}\nceilings at the start: FMA {:.2} GFLOP/s ({}), copy {:.2} GB/s\n\
         each row's share is of the ceiling measured beside it (ceil: the FMA probe's GFLOP/s, or the copy's GB/s)\n\n",
        rep.adapter.name,
        rep.adapter.backend,
        rep.adapter.driver_info,
        rep.timing,
        rep.ceilings.fma_gflops,
        rep.ceilings.fma_config,
        rep.ceilings.copy_gbps
    );
    s.push_str(&format!(
        "{:<18} {:<20} {:<38} {:>13} {:>16} {:>7} {:>7}\n",
        "kernel", "variant", "shape", "median", "rate", "of ceil", "ceil"
    ));
    for r in &rep.rows {
        s.push_str(&format_row(r));
        s.push('\n');
    }
    for st in &rep.steps {
        s.push_str(&format!(
            "\ntraining step {} at batch {}: {:.1} ms, {:.1} images/s, {:.2} GFLOP/s ({:.1}% of the FMA ceiling, {:.1} GFLOP/s beside it), overhead {:.1}%{}\n",
            st.net,
            st.batch,
            st.median_ms,
            st.images_per_sec,
            st.gflops,
            st.pct_of_ceiling,
            st.ceiling_gflops,
            st.overhead_pct,
            if st.untuned > 0 { format!("; {} ops untuned (their defaults)", st.untuned) } else { String::new() }
        ));
        let mut k = st.kernels.clone();
        k.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (name, ms, pct) in k.iter().take(12) {
            s.push_str(&format!("  {pct:>5.1}%  {ms:>9.2} ms  {name}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_selects_a_step_by_every_word() {
        for f in ["step", "train", "fer", "st"] {
            assert!(selects_step(f, "fer") && selects_step(f, "fer-small"), "{f}");
        }
        assert!(selects_step("fer-small", "fer-small") && !selects_step("fer-small", "fer"));
        assert!(selects_step("step fer-small", "fer-small") && !selects_step("step fer-small", "fer"));
        assert!(!selects_step("conv1", "fer") && !selects_step("gemm_nn 1024x", "fer-small"));
    }

    #[test]
    fn the_screen_compares_a_variant_with_its_own_row_only() {
        let mut s = Screen::default();
        assert!(!s.hopeless("gemm_nn", "256x256x256 nn", 1e9), "nothing to lose to yet");
        s.record("gemm_nn", "256x256x256 nn", 0.02);
        assert!(s.hopeless("gemm_nn", "256x256x256 nn", 0.07));
        assert!(!s.hopeless("gemm_nn", "256x256x256 nn", 0.05));
        // Another shape of the same kernel, and another kernel at the same shape, start afresh.
        assert!(!s.hopeless("gemm_nn", "1024x1024x1024 nn", 0.17));
        assert!(!s.hopeless("gemm_nt", "256x256x256 nn", 0.07));
        s.record("gemm_nn", "1024x1024x1024 nn", 0.17);
        s.record("gemm_nn", "1024x1024x1024 nn", 0.30);
        assert!(s.hopeless("gemm_nn", "1024x1024x1024 nn", 0.52), "the fastest, not the last, counts");
    }
}
