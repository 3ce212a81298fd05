//! Timing kernels, shared by `dlsvm bench` and the tuner: a warm-up until a kernel's run time is
//! steady ([`warm_up`]), medians of runs interleaved across several kernels ([`time_sets`]), and
//! the jobs that check a variant of an op against the CPU reference at a small size and build it
//! at the op's own shape ([`prepare_op`]).

use crate::check::{self, CaseFuture, Flags, Input};
use crate::gpu::{DType, Dispatch, Gpu, GpuError, Tensor};
use crate::kernels::registry::{FamilyVariant, Op, Variant};
use crate::kernels::{conv, gemm, pool, Epilogue};
use crate::rng::Rng;
use crate::shapes::{Conv2dShape, GemmShape, Pool2dShape};
use std::time::Duration;
use web_time::Instant;

// The rows' fields and their amounts of work serve `dlsvm bench` (native); the tuner (both
// targets) uses the checks and the builds.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) enum Work {
    Flops(f64),
    Bytes(f64),
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
impl Work {
    /// The floating-point operations or bytes, whichever the row counts.
    pub(crate) fn amount(&self) -> f64 {
        match self {
            Work::Flops(v) | Work::Bytes(v) => *v,
        }
    }
}

pub(crate) type CheckFn = Box<dyn Fn(&Gpu) -> CaseFuture<'_>>;
pub(crate) type BuildFn = Box<dyn Fn(&Gpu) -> Result<Vec<Vec<Dispatch>>, GpuError>>;

/// A kernel to check against the CPU reference at a small size and to time at its own shape.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) struct Job {
    pub name: String,
    /// The variant, as the row shows it.
    pub variant: String,
    /// The training-step op the job times, where it is one the tuner chooses a variant for.
    pub op: Option<Op>,
    pub shape: String,
    pub work: Work,
    pub check: CheckFn,
    pub build: BuildFn,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// One warm-up batch lasts at least this long.
pub(crate) const WARM_BATCH: Duration = Duration::from_millis(25);
/// The warm-up lasts at least this long.
const WARM_MIN: Duration = Duration::from_millis(200);
/// The warm-up stops after this long even if the run time has not settled.
const WARM_MAX: Duration = Duration::from_millis(1500);

/// Runs `run` (one timed run, ms) until its time is steady: after a first run, batches of at
/// least [`WARM_BATCH`] until a batch's median is within 5 % of the previous one's, for at least
/// [`WARM_MIN`] and at most [`WARM_MAX`]; a first run of [`WARM_MIN`] or more is warm-up enough.
/// A real GPU idles at a low clock and raises it only under sustained load: on an H200 the first
/// runs after an idle spell (the CPU reference checks) were up to 4.5x slower than warm ones, a
/// fixed two warm-up runs of a 20 µs kernel are no load at all, and with 25 ms of warm-up rows
/// still came out up to 1.9x slower after a check than in a run of rows back to back (a plateau
/// on the way up). On lavapipe a large kernel's first run outlasts the minimum: one run, where the
/// old fixed warm-up took two.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn warm_up(mut run: impl FnMut() -> Result<f64, GpuError>) -> Result<(), GpuError> {
    let mut w = WarmUp::new();
    while !w.warm_after(run()?) {}
    Ok(())
}

/// [`warm_up`]'s rule, fed one run at a time (so that a caller awaiting its runs uses it too).
pub(crate) struct WarmUp {
    began: Instant,
    /// The previous batch's median (the first run's time, before the first batch).
    prev: Option<f64>,
    batch: Instant,
    runs: Vec<f64>,
}

impl WarmUp {
    pub(crate) fn new() -> WarmUp {
        WarmUp { began: Instant::now(), prev: None, batch: Instant::now(), runs: Vec::new() }
    }

    /// Takes the time of the run just done: whether the device is warm now.
    pub(crate) fn warm_after(&mut self, ms: f64) -> bool {
        let Some(prev) = self.prev else {
            // One run that long is sustained load by itself (lavapipe at FER sizes): nothing to
            // ramp.
            self.prev = Some(ms);
            self.batch = Instant::now();
            return self.began.elapsed() >= WARM_MIN;
        };
        self.runs.push(ms);
        if self.batch.elapsed() < WARM_BATCH {
            return false;
        }
        let m = median(std::mem::take(&mut self.runs));
        let steady = (m - prev).abs() <= 0.05 * prev && self.began.elapsed() >= WARM_MIN;
        if steady || self.began.elapsed() >= WARM_MAX {
            return true;
        }
        self.prev = Some(m);
        self.batch = Instant::now();
        false
    }
}

/// The dispatch groups of one timed set, run in turn one timed run at a time.
pub(crate) struct Rotor<'a> {
    refs: Vec<Vec<&'a Dispatch>>,
    next: usize,
}

impl<'a> Rotor<'a> {
    pub(crate) fn new(set: &'a [Vec<Dispatch>]) -> Rotor<'a> {
        Rotor { refs: set.iter().map(|g| g.iter().collect()).collect(), next: 0 }
    }

    /// One run of the next group, in ms.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn one(&mut self, gpu: &Gpu) -> Result<f64, GpuError> {
        pollster::block_on(self.one_async(gpu))
    }

    /// [`Rotor::one`], awaited.
    pub(crate) async fn one_async(&mut self, gpu: &Gpu) -> Result<f64, GpuError> {
        let t = gpu.time_async(&self.refs[self.next % self.refs.len()], 1).await?;
        self.next += 1;
        Ok(t.first().copied().unwrap_or(f64::NAN))
    }
}

/// Median ms of the dispatch groups in `set`, run round-robin after a [`warm_up`]. With
/// `reps == 1` (the tuner's quick screen): the fastest of the runs within [`WARM_BATCH`] (at
/// least one, so a slow variant on a slow device costs one run), which a cold clock cannot push
/// past the screen's threshold as easily as one run.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn time_groups(gpu: &Gpu, set: &[Vec<Dispatch>], reps: usize) -> Result<f64, GpuError> {
    pollster::block_on(time_groups_async(gpu, set, reps))
}

/// [`time_groups`], awaited.
pub(crate) async fn time_groups_async(
    gpu: &Gpu,
    set: &[Vec<Dispatch>],
    reps: usize,
) -> Result<f64, GpuError> {
    if reps > 1 {
        return Ok(time_sets_async(gpu, &[set], reps).await?[0]);
    }
    let mut rotor = Rotor::new(set);
    let began = Instant::now();
    let mut best = rotor.one_async(gpu).await?;
    while began.elapsed() < WARM_BATCH {
        best = best.min(rotor.one_async(gpu).await?);
    }
    Ok(best)
}

/// The median ms of each set: after a [`warm_up`] on the first, `reps` rounds that each run every
/// set once (its next group), in turn.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn time_sets(gpu: &Gpu, sets: &[&[Vec<Dispatch>]], reps: usize) -> Result<Vec<f64>, GpuError> {
    pollster::block_on(time_sets_async(gpu, sets, reps))
}

/// [`time_sets`], awaited.
pub(crate) async fn time_sets_async(
    gpu: &Gpu,
    sets: &[&[Vec<Dispatch>]],
    reps: usize,
) -> Result<Vec<f64>, GpuError> {
    let mut rotors: Vec<Rotor> = sets.iter().map(|s| Rotor::new(s)).collect();
    let Some(first) = rotors.first_mut() else {
        return Ok(Vec::new());
    };
    let mut w = WarmUp::new();
    while !w.warm_after(first.one_async(gpu).await?) {}
    let mut t = vec![Vec::with_capacity(reps); rotors.len()];
    for _ in 0..reps.max(1) {
        for (r, ti) in rotors.iter_mut().zip(t.iter_mut()) {
            ti.push(r.one_async(gpu).await?);
        }
    }
    Ok(t.into_iter().map(median).collect())
}

pub(crate) fn random(gpu: &Gpu, len: usize, seed: u64) -> Result<Tensor, GpuError> {
    let mut rng = Rng::new(seed);
    gpu.upload(&rng.vec(len), &[len])
}

/// How many input copies to rotate: up to 4 while they total under 64 MiB.
pub(crate) fn copies(bytes: usize) -> usize {
    (64usize << 20).checked_div(bytes.max(1)).unwrap_or(1).clamp(1, 4)
}

pub(crate) fn gemm_job(name: &str, s: GemmShape, v: gemm::GemmVariant) -> Job {
    // Smaller for the CPU reference, keeping each dimension's remainder mod 4 (and so the variant
    // the full shape runs: vec4 kernels need aligned shapes) and partial tiles.
    let shrink = |x: usize| if x <= 64 { x } else { 60 + x % 4 };
    let small = GemmShape::new(shrink(s.m) + 4, shrink(s.n), shrink(s.k), s.trans);
    Job {
        op: Some(Op::Gemm(s)),
        name: name.to_string(),
        variant: v.name().to_string(),
        shape: s.to_string(),
        work: Work::Flops(2.0 * s.m as f64 * s.n as f64 * s.k as f64),
        check: Box::new(move |g| check::gemm_case(g, small, v, Flags::NONE, Input::unit(1))),
        build: Box::new(move |g| {
            let c = g.empty(&[s.c_len()], DType::F32)?;
            let mut set = Vec::new();
            for i in 0..copies(4 * (s.a_len() + s.b_len())) {
                let a = random(g, s.a_len(), 2 * i as u64)?;
                let b = random(g, s.b_len(), 2 * i as u64 + 1)?;
                set.push(gemm::gemm(g, &s, &a, &b, &c, &Epilogue::default(), v)?);
            }
            Ok(set)
        }),
    }
}

#[derive(Clone, Copy)]
pub(crate) enum ConvDir {
    Fwd(conv::ConvFwdVariant),
    Data(conv::ConvBwdDataVariant),
    Weight(conv::ConvBwdWeightVariant),
}

pub(crate) fn conv_job(name: &str, s: Conv2dShape, dir: ConvDir) -> Job {
    let small = Conv2dShape { n: 2, ..s };
    let macs = s.y_len() as f64 * (s.cin * s.kh * s.kw) as f64;
    let (suffix, variant) = match dir {
        ConvDir::Fwd(v) => ("fwd", v.name()),
        ConvDir::Data(v) => ("bwd_data", v.name()),
        ConvDir::Weight(v) => ("bwd_weight", v.name()),
    };
    let op = match dir {
        ConvDir::Fwd(_) => Some(Op::ConvFwd(s)),
        ConvDir::Data(_) => Some(Op::ConvData(s)),
        ConvDir::Weight(_) => Some(Op::ConvWeight(s)),
    };
    Job {
        op,
        name: format!("{name}_{suffix}"),
        variant: variant.to_string(),
        shape: s.to_string(),
        work: Work::Flops(2.0 * macs),
        check: Box::new(move |g| match dir {
            ConvDir::Fwd(v) => check::conv_fwd_case(g, small, v, Flags::BIAS_RELU, Input::unit(1)),
            ConvDir::Data(v) => check::conv_bwd_data_case(g, small, v, Input::unit(1)),
            ConvDir::Weight(v) => check::conv_bwd_weight_case(g, small, v, false, Input::unit(1)),
        }),
        build: Box::new(move |g| {
            let (x, w, y) = (random(g, s.x_len(), 1)?, random(g, s.w_len(), 2)?, random(g, s.y_len(), 3)?);
            let bias = random(g, s.cout, 4)?;
            Ok(vec![match dir {
                ConvDir::Fwd(v) => {
                    let ep = Epilogue { bias: Some(&bias), accumulate: false, relu: true };
                    vec![conv::conv2d_forward(g, &s, &x, &w, &y, &ep, v)?]
                }
                ConvDir::Data(v) => conv::conv2d_backward_data(g, &s, &y, &w, &x, v)?,
                ConvDir::Weight(v) => conv::conv2d_backward_weight(g, &s, &x, &y, &w, false, v)?,
            }])
        }),
    }
}

#[derive(Clone, Copy)]
pub(crate) enum PoolDir {
    Fwd(pool::PoolFwdVariant),
    Bwd(pool::PoolBwdVariant),
}

pub(crate) fn pool_job(name: &str, s: Pool2dShape, max: bool, dir: PoolDir) -> Job {
    let small = Pool2dShape { n: 2, ..s };
    let bytes = 4.0 * (s.x_len() + s.y_len() * if max { 2 } else { 1 }) as f64;
    let (suffix, v) = match dir {
        PoolDir::Fwd(v) => ("fwd", v.name()),
        PoolDir::Bwd(v) => ("bwd", v.name()),
    };
    let op = match dir {
        PoolDir::Fwd(_) => Op::PoolFwd { shape: s, max },
        PoolDir::Bwd(_) => Op::PoolBwd { shape: s, max },
    };
    Job {
        op: Some(op),
        name: format!("{name}_{suffix}"),
        variant: format!("{} {v}", if max { "max" } else { "avg" }),
        shape: s.to_string(),
        work: Work::Bytes(bytes),
        check: Box::new(move |g| match (max, dir) {
            (true, PoolDir::Fwd(v)) => check::maxpool_fwd_case(g, small, v, Input::unit(1)),
            (true, PoolDir::Bwd(v)) => check::maxpool_bwd_case(g, small, v, Input::unit(1)),
            (false, PoolDir::Fwd(v)) => check::avgpool_fwd_case(g, small, v, Input::unit(1)),
            (false, PoolDir::Bwd(v)) => check::avgpool_bwd_case(g, small, v, Input::unit(1)),
        }),
        build: Box::new(move |g| {
            let (x, y) = (random(g, s.x_len(), 1)?, random(g, s.y_len(), 2)?);
            let idx = g.upload(&vec![0; s.y_len()], &[s.y_len()])?;
            let fwd = pool::PoolFwdVariant::DEFAULT;
            if max && matches!(dir, PoolDir::Bwd(_)) {
                // Real argmax indices: the backward's memory traffic depends on them.
                g.run(&[&pool::maxpool_forward(g, &s, &x, &y, &idx, fwd)?])?;
            }
            Ok(vec![match (max, dir) {
                (true, PoolDir::Fwd(v)) => vec![pool::maxpool_forward(g, &s, &x, &y, &idx, v)?],
                (true, PoolDir::Bwd(v)) => pool::maxpool_backward(g, &s, &y, &idx, &x, v)?,
                (false, PoolDir::Fwd(v)) => vec![pool::avgpool_forward(g, &s, &x, &y, v)?],
                (false, PoolDir::Bwd(v)) => pool::avgpool_backward(g, &s, &y, &x, v)?,
            }])
        }),
    }
}

/// The job that checks and times `variant` of a training step's op (`None`: a variant of another
/// family).
pub(crate) fn op_job(op: &Op, variant: Variant) -> Option<Job> {
    Some(match (*op, variant) {
        (Op::Gemm(s), Variant::Gemm(v)) => gemm_job("gemm", s, v),
        (Op::ConvFwd(s), Variant::ConvFwd(v)) => conv_job("conv", s, ConvDir::Fwd(v)),
        (Op::ConvData(s), Variant::ConvData(v)) => conv_job("conv", s, ConvDir::Data(v)),
        (Op::ConvWeight(s), Variant::ConvWeight(v)) => conv_job("conv", s, ConvDir::Weight(v)),
        (Op::PoolFwd { shape, max }, Variant::PoolFwd(v)) => pool_job("pool", shape, max, PoolDir::Fwd(v)),
        (Op::PoolBwd { shape, max }, Variant::PoolBwd(v)) => pool_job("pool", shape, max, PoolDir::Bwd(v)),
        _ => return None,
    })
}

/// One variant of a tuner's op, checked against the CPU reference at a small size and built at
/// the op's own shape, ready to time ([`prepare_op`]).
pub struct Ready {
    set: Vec<Vec<Dispatch>>,
}

impl Ready {
    /// The tuner's quick screen: the fastest run within [`WARM_BATCH`] (at least one).
    pub async fn screen(&self, gpu: &Gpu) -> Result<f64, GpuError> {
        time_groups_async(gpu, &self.set, 1).await
    }
}

/// Checks `variant` of `op` against the CPU reference at a small size: `Ok(())`, or `Err(why)`
/// when it failed or is not a variant of `op`. (It builds the variant's pipeline, whose
/// specialization is the shape's layout, not its size: the pipeline [`prepare_op`] then uses.)
pub async fn check_op(gpu: &Gpu, op: &Op, variant: Variant) -> Result<(), String> {
    check_job(gpu, &job_of(op, variant)?).await
}

/// [`op_job`], or why there is none.
fn job_of(op: &Op, variant: Variant) -> Result<Job, String> {
    op_job(op, variant).ok_or_else(|| format!("{variant} is not a variant of {}", op.signature()))
}

/// `job`'s check against the CPU reference ([`check_op`]).
async fn check_job(gpu: &Gpu, job: &Job) -> Result<(), String> {
    match (job.check)(gpu).await {
        Ok(r) if r.passed() => Ok(()),
        Ok(r) => Err(format!("failed the reference check: {}", r.failure.unwrap_or_default())),
        Err(e) => Err(format!("failed the reference check: {e}")),
    }
}

/// Checks `variant` of `op` ([`check_op`]; `checked` is that check's outcome where it already
/// ran) and, if it passes, builds its dispatches at the op's own shape: `Ok(Ready)`, or
/// `Err(why)` when it failed its check or does not exist.
pub async fn prepare_op(
    gpu: &Gpu,
    op: &Op,
    variant: Variant,
    checked: Option<Result<(), String>>,
) -> Result<Result<Ready, String>, GpuError> {
    let job = match job_of(op, variant) {
        Ok(job) => job,
        Err(why) => return Ok(Err(why)),
    };
    let checked = match checked {
        Some(c) => c,
        None => check_job(gpu, &job).await,
    };
    if let Err(why) = checked {
        return Ok(Err(why));
    }
    Ok(Ok(Ready { set: (job.build)(gpu)? }))
}

/// Times several variants of one op side by side ([`time_sets`]): the median of each. Interleaved,
/// a device whose speed drifts (lavapipe's, up to 2x within minutes) slows every variant alike
/// instead of deciding the choice.
pub async fn time_together(gpu: &Gpu, ready: &[Ready], reps: usize) -> Result<Vec<f64>, GpuError> {
    let sets: Vec<&[Vec<Dispatch>]> = ready.iter().map(|r| r.set.as_slice()).collect();
    time_sets_async(gpu, &sets, reps).await
}
