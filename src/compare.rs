//! `dlsvm compare`: the paper's experiment. The same network is trained once per top and seed;
//! for one seed the runs differ only in the top's loss (and the top layer's weight decay that
//! belongs to it): the same initial weights (the top layer's too: [`Net::init_params`] depends on
//! the layer shapes and the seed alone), the same batches, augmentation and dropout masks (all
//! drawn from the seed, never from the top). Each run is an ordinary `dlsvm train` run in its own
//! directory; this module only chooses their configs, evaluates the final models and makes the
//! tables: test error per top over seeds, the paired differences with a 95 % t-interval, and the
//! paper's Table 3 (every final model under every objective).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::data::{DataSource, Dataset};
use crate::eval::{self, Metrics, Model};
use crate::gpu::Gpu;
use crate::model::{Net, NetConfig, Top};
use crate::report::{self, ErrorCurve};
use crate::select::{self, SelectSpec, Selection};
use crate::train::{self, RunOptions, TrainError};

/// How many steps a comparison trains each run when neither `--steps` nor `--epochs` is given: it
/// trains `tops × seeds` runs, so its default is a quick look (the mlp preset on data/mnist-5k,
/// two tops and three seeds, in about four minutes on lavapipe).
pub const DEFAULT_STEPS: u64 = 300;

/// What to compare and where.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    pub tops: Vec<Top>,
    pub seeds: Vec<u64>,
    /// `(k, only)`: k-fold cross-validation on the training split per run (every fold, or fold
    /// `only`); the held-out folds stand in for the test split.
    pub folds: Option<(usize, Option<usize>)>,
    /// The options of every run; `out` is the comparison's directory, each run lands in
    /// `<out>/seed<s>/<top>`.
    pub run: RunOptions,
    /// The kernel-variant mode for evaluating the final models (as `dlsvm eval` would).
    pub eval_tune: crate::tune::Mode,
    /// `--select`: each top's setting chosen per seed on folds of the training split first.
    pub select: Option<SelectSpec>,
}

/// The config of the run of `top` with `seed`: `base` with only these two changed.
pub fn run_config(base: &NetConfig, top: Top, seed: u64) -> NetConfig {
    let mut c = base.clone();
    c.top = top;
    c.train.seed = seed;
    c
}

/// The directory of one run within the comparison's `out`.
pub fn run_dir(out: &Path, top: Top, seed: u64) -> PathBuf {
    out.join(format!("seed{seed}")).join(top.name())
}

/// What a comparison trains, settled from its options before any data is read; `dlsvm compare`
/// runs it here ([`CompareOptions`]) or writes it as a SLURM array ([`crate::slurm::compare_tasks`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// In `--tops` order: the first is the one the others' paired differences are taken against.
    pub tops: Vec<Top>,
    pub seeds: Vec<u64>,
    /// `(k, only)` as in [`CompareOptions::folds`].
    pub folds: Option<(usize, Option<usize>)>,
    /// Each run trains [`DEFAULT_STEPS`]: neither `--steps` nor `--epochs` was given.
    pub default_steps: bool,
    /// The model every run starts from (`--warm-start`, else `--init-from`).
    pub warm_start: Option<PathBuf>,
    /// The comparison's directory; each run lands in [`run_dir`] within it.
    pub out: PathBuf,
    /// `--select` (checked against the network).
    pub select: Option<SelectSpec>,
}

/// The tops of `--tops`: comma-separated names, each once, in the order given.
pub fn parse_tops(list: &str) -> Result<Vec<Top>, String> {
    let mut tops = Vec::new();
    for t in list.split(',').map(str::trim) {
        let top = Top::parse(t).ok_or_else(|| {
            format!("--tops: unknown top {t:?}; choose from l2svm, softmax, l1svm (comma-separated)")
        })?;
        if tops.contains(&top) {
            return Err(format!("--tops names {t} twice"));
        }
        tops.push(top);
    }
    Ok(tops)
}

/// The seeds of `n` runs per top: `first`, `first + 1`, ... (wrapping).
pub fn seeds(first: u64, n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| first.wrapping_add(i)).collect()
}

/// One trained model (one fold of it, with `--folds`) and its numbers.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub top: String,
    pub seed: u64,
    pub fold: Option<usize>,
    pub dir: String,
    pub model: String,
    pub steps: u64,
    pub wall_s: f64,
    /// Test error (the held-out fold with `--folds`), a fraction.
    pub test_error: f64,
    /// The final model on the test split (held-out fold).
    pub test: Metrics,
    /// The final model on its training data (centre crops, no dropout).
    pub train: Metrics,
    /// Σ (λ/2)·‖W‖² over the weights, with the weight decays each top trains with.
    pub weight_cost: Vec<(String, f64)>,
    /// The training objectives including the weight costs, on the training data: cross-entropy,
    /// C·squared hinge and C·hinge, each plus its top's weight cost.
    pub objective: Objectives,
    /// Test error after each epoch (from the run's metrics.csv): (step, error).
    pub curve: Vec<(u64, f64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Objectives {
    pub cross_entropy: f64,
    pub squared_hinge: f64,
    pub hinge: f64,
}

/// Mean and spread of one top's test error over seeds.
#[derive(Clone, Debug, Serialize)]
pub struct TopError {
    pub top: String,
    /// Per seed (the mean over folds with `--folds`), in seed order.
    pub per_seed: Vec<f64>,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for one seed.
    pub std: f64,
}

/// Another top's error minus the first top's, paired by seed.
#[derive(Clone, Debug, Serialize)]
pub struct Paired {
    pub top: String,
    pub against: String,
    pub per_seed: Vec<f64>,
    pub mean: f64,
    pub std: f64,
    /// The 95 % t-interval of the mean difference; None with one seed.
    pub ci95: Option<(f64, f64)>,
}

/// Table 3 for one top: its final models' numbers, averaged over seeds (and folds).
#[derive(Clone, Debug, Serialize)]
pub struct Table3Column {
    pub top: String,
    pub test_error: f64,
    pub test_cross_entropy: f64,
    pub test_squared_hinge: f64,
    pub test_hinge: f64,
    pub objective_cross_entropy: f64,
    pub objective_squared_hinge: f64,
    pub objective_hinge: f64,
}

/// Everything a comparison found; `compare.json` holds it.
#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    pub net: String,
    pub data: String,
    pub tops: Vec<String>,
    pub seeds: Vec<u64>,
    pub folds: Option<usize>,
    pub steps: u64,
    pub svm_c: f64,
    pub adapter: String,
    pub wall_s: f64,
    /// The model every run continued (`--warm-start`), if any.
    pub warm_start: Option<String>,
    pub errors: Vec<TopError>,
    pub paired: Vec<Paired>,
    pub table3: Vec<Table3Column>,
    pub runs: Vec<RunResult>,
    /// With `--select`: the choice per top and seed (empty without).
    pub selection: Vec<Selection>,
    /// With `--select`: its K.
    pub select_folds: Option<usize>,
    pub out: String,
}

/// What [`compare`] tells its caller as it goes.
pub enum Progress<'a> {
    Starting {
        index: usize,
        total: usize,
        top: Top,
        seed: u64,
        dir: &'a Path,
    },
    Finished {
        index: usize,
        total: usize,
        result: &'a RunResult,
    },
    /// One selection run done (`--select`) for the run `index` of `total`.
    Selecting {
        index: usize,
        total: usize,
        top: Top,
        seed: u64,
        step: select::Step<'a>,
    },
    /// The setting chosen for the run `index` of `total`.
    Selected {
        index: usize,
        total: usize,
        selection: &'a Selection,
    },
}

/// Trains every top with every seed, evaluates the final models and makes the tables.
pub fn compare(
    gpu: &Gpu,
    base: &NetConfig,
    source: &DataSource,
    opts: &CompareOptions,
    mut progress: impl FnMut(Progress),
) -> Result<CompareReport, TrainError> {
    if opts.tops.is_empty() || opts.seeds.is_empty() {
        return Err(TrainError::Input("a comparison needs at least one top and one seed".into()));
    }
    let began = Instant::now();
    let train_set = source.train()?;
    if let Some((k, only)) = opts.folds {
        train::check_folds(train_set, &source.path, base.train.batch, k, only)?;
    }
    if let Some(spec) = &opts.select {
        if opts.folds.is_some() {
            return Err(TrainError::Input(select::NOT_WITH_FOLDS.into()));
        }
        train::check_folds(train_set, &source.path, base.train.batch, spec.folds, None)?;
    }
    if opts.folds.is_none() && source.test().is_none_or(|d| d.is_empty()) {
        return Err(TrainError::Input(format!(
            "{}: no test split to compare the tops on; use data with a test split or --folds K",
            source.path
        )));
    }
    let total = opts.tops.len() * opts.seeds.len();
    let mut runs = Vec::new();
    let mut selections = Vec::new();
    let mut index = 0;
    for &seed in &opts.seeds {
        for &top in &opts.tops {
            index += 1;
            let mut config = run_config(base, top, seed);
            if let Some(spec) = &opts.select {
                let (selection, chosen) =
                    select::select(gpu, &config, source, train_set, spec, (top, seed), &opts.run, |step| {
                        progress(Progress::Selecting { index, total, top, seed, step })
                    })?;
                progress(Progress::Selected { index, total, selection: &selection });
                selections.push(selection);
                config = chosen;
            }
            let dir = run_dir(&opts.run.out, top, seed);
            progress(Progress::Starting { index, total, top, seed, dir: &dir });
            let mut ropts = RunOptions { out: dir.clone(), progress: false, ..opts.run.clone() };
            let folds: Vec<(Option<usize>, Cow<Dataset>, Cow<Dataset>)> = match opts.folds {
                None => {
                    let test = source.test().map_or_else(|| Cow::Owned(train_set.subset(&[])), Cow::Borrowed);
                    vec![(None, Cow::Borrowed(train_set), test)]
                }
                Some((k, only)) => only
                    .map_or((0..k).collect(), |i| vec![i])
                    .into_iter()
                    .map(|i| {
                        let (tr, held) = train::fold_split(train_set, k, i, seed);
                        (Some(i), Cow::Owned(tr), Cow::Owned(held))
                    })
                    .collect(),
            };
            for (fold, tr, test) in folds {
                if let (Some(i), Some((k, _))) = (fold, opts.folds) {
                    ropts.out = dir.join(format!("fold{i}"));
                    ropts.fold = Some((i, k));
                }
                let s = train::run(gpu, &config, source, &tr, Some(&test), &ropts)?;
                let result = evaluate_run(gpu, &config, &ropts.out, &s, seed, fold, &tr, &test, opts)?;
                progress(Progress::Finished { index, total, result: &result });
                runs.push(result);
            }
        }
    }
    let errors: Vec<TopError> = opts.tops.iter().map(|&t| top_error(t, &opts.seeds, &runs)).collect();
    let paired = errors[1..].iter().map(|e| paired(e, &errors[0])).collect();
    let table3 = opts.tops.iter().map(|&t| table3(t, &runs)).collect();
    Ok(CompareReport {
        net: base.name.clone(),
        data: source.path.clone(),
        tops: opts.tops.iter().map(|t| t.name().to_string()).collect(),
        seeds: opts.seeds.clone(),
        folds: opts.folds.map(|f| f.0),
        steps: runs.first().map_or(0, |r| r.steps),
        svm_c: base.train.svm_c,
        adapter: train::adapter_name(gpu),
        wall_s: began.elapsed().as_secs_f64(),
        warm_start: opts.run.init_from.as_ref().map(|p| p.display().to_string()),
        errors,
        paired,
        table3,
        runs,
        selection: selections,
        select_folds: opts.select.as_ref().map(|s| s.folds),
        out: opts.run.out.display().to_string(),
    })
}

/// The final model of a run, loaded back from its checkpoint as `dlsvm eval` loads it, on its
/// test and training data; its objectives and learning curve.
#[allow(clippy::too_many_arguments)]
fn evaluate_run(
    gpu: &Gpu,
    config: &NetConfig,
    dir: &Path,
    s: &train::Summary,
    seed: u64,
    fold: Option<usize>,
    train_set: &Dataset,
    test_set: &Dataset,
    opts: &CompareOptions,
) -> Result<RunResult, TrainError> {
    let path = dir.join("model.safetensors");
    let model = Model::load(gpu, &path, 128, opts.eval_tune).map_err(eval_error)?;
    let k = model.class_names().len();
    let test = eval::metrics(&model.scores(gpu, test_set, 1)?, &test_set.labels, k);
    let train = eval::metrics(&model.scores(gpu, train_set, 1)?, &train_set.labels, k);
    let c = config.train.svm_c;
    let mut weight_cost = Vec::new();
    for top in Top::ALL {
        let net = Net::new(&run_config(config, top, seed), k)?;
        weight_cost.push((top.name().to_string(), weight_cost_of(&net, &model.checkpoint.params)));
    }
    let cost = |t: Top| weight_cost.iter().find(|(n, _)| n == t.name()).map_or(0.0, |w| w.1);
    let objective = Objectives {
        cross_entropy: train.cross_entropy + cost(Top::Softmax),
        squared_hinge: c * train.squared_hinge + cost(Top::L2svm),
        hinge: c * train.hinge + cost(Top::L1svm),
    };
    let mut curve: Vec<(u64, f64)> = report::read_metrics(&dir.join("metrics.csv"))
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.test_acc.map(|a| (r.step, 1.0 - a)))
        .collect();
    // A warm start's curve begins at the model it continues.
    if let Some(from) = &opts.run.init_from {
        let m = Model::load(gpu, from, 128, opts.eval_tune).map_err(eval_error)?;
        let at_start = eval::metrics(&m.scores(gpu, test_set, 1)?, &test_set.labels, k);
        curve.insert(0, (0, 1.0 - at_start.accuracy));
    }
    Ok(RunResult {
        top: config.top.name().to_string(),
        seed,
        fold,
        dir: dir.display().to_string(),
        model: path.display().to_string(),
        steps: s.steps,
        wall_s: s.wall_s,
        test_error: 1.0 - test.accuracy,
        test,
        train,
        weight_cost,
        objective,
        curve,
    })
}

fn eval_error(e: eval::EvalError) -> TrainError {
    match e {
        eval::EvalError::Gpu(g) => TrainError::Gpu(g),
        eval::EvalError::Input(m) => TrainError::Input(m),
    }
}

/// `Σ (λ/2)·‖W‖²` over the parameters of `net` (biases have λ = 0): the penalty whose gradient is
/// the `λ·W` the SGD step adds.
pub fn weight_cost_of(net: &Net, params: &[Vec<f32>]) -> f64 {
    net.params
        .iter()
        .zip(params)
        .map(|(p, w)| 0.5 * p.weight_decay * w.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
        .sum()
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

fn top_error(top: Top, seeds: &[u64], runs: &[RunResult]) -> TopError {
    let per_seed: Vec<f64> = seeds
        .iter()
        .map(|&s| {
            let e: Vec<f64> =
                runs.iter().filter(|r| r.seed == s && r.top == top.name()).map(|r| r.test_error).collect();
            mean_std(&e).0
        })
        .collect();
    let (mean, std) = mean_std(&per_seed);
    TopError { top: top.name().to_string(), per_seed, mean, std }
}

fn paired(b: &TopError, a: &TopError) -> Paired {
    let d: Vec<f64> = b.per_seed.iter().zip(&a.per_seed).map(|(x, y)| x - y).collect();
    let (mean, std) = mean_std(&d);
    let ci95 = (d.len() > 1).then(|| {
        let h = t975(d.len() - 1) * std / (d.len() as f64).sqrt();
        (mean - h, mean + h)
    });
    Paired { top: b.top.clone(), against: a.top.clone(), per_seed: d, mean, std, ci95 }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (a table to 30, then the
/// Cornish-Fisher expansion around the normal quantile, within 1e-3 there).
pub fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        _ => {
            let (z, n) = (1.959964f64, df as f64);
            z + (z.powi(3) + z) / (4.0 * n) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
        }
    }
}

fn table3(top: Top, runs: &[RunResult]) -> Table3Column {
    let mine: Vec<&RunResult> = runs.iter().filter(|r| r.top == top.name()).collect();
    let avg = |f: &dyn Fn(&RunResult) -> f64| mean_std(&mine.iter().map(|r| f(r)).collect::<Vec<_>>()).0;
    Table3Column {
        top: top.name().to_string(),
        test_error: avg(&|r| r.test_error),
        test_cross_entropy: avg(&|r| r.test.cross_entropy),
        test_squared_hinge: avg(&|r| r.test.squared_hinge),
        test_hinge: avg(&|r| r.test.hinge),
        objective_cross_entropy: avg(&|r| r.objective.cross_entropy),
        objective_squared_hinge: avg(&|r| r.objective.squared_hinge),
        objective_hinge: avg(&|r| r.objective.hinge),
    }
}

fn pct(v: f64) -> String {
    format!("{:.2} %", 100.0 * v)
}

fn signed_pct(v: f64) -> String {
    format!("{:+.2} %", 100.0 * v)
}

/// The error table, the paired differences and Table 3, as Markdown; with `runs`, a table of the
/// runs too.
pub fn markdown(r: &CompareReport, runs: bool) -> String {
    let mut s = format!(
        "# {} on {}: {}\n\n{} seed{} ({}), {} steps per run{}, C = {}, on {}; {:.0} s in all.\n\n",
        r.net,
        r.data,
        r.tops.join(" vs "),
        r.seeds.len(),
        if r.seeds.len() == 1 { "" } else { "s" },
        r.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
        r.steps,
        r.folds
            .map(|k| format!(", {k}-fold cross-validation (held-out folds as the test data)"))
            .unwrap_or_default(),
        r.svm_c,
        r.adapter,
        r.wall_s
    );
    if let Some(w) = &r.warm_start {
        s += &format!("Every run continued the model {w} (a warm start: its weights, fresh momentum).\n\n");
    }
    s += "## Test error\n\n| top | mean ± std over seeds | per seed |\n|---|---|---|\n";
    for e in &r.errors {
        let per: Vec<String> = e.per_seed.iter().map(|v| pct(*v)).collect();
        s += &format!("| {} | {} ± {} | {} |\n", e.top, pct(e.mean), pct(e.std), per.join(", "));
    }
    if !r.paired.is_empty() {
        s += "\n## Paired by seed\n\n| difference | mean | 95 % t-interval | per seed |\n|---|---|---|---|\n";
        for p in &r.paired {
            let ci = p.ci95.map_or("- (one seed)".to_string(), |(lo, hi)| {
                format!("[{}, {}]", signed_pct(lo), signed_pct(hi))
            });
            let per: Vec<String> = p.per_seed.iter().map(|v| signed_pct(*v)).collect();
            s += &format!(
                "| {} − {} | {} | {ci} | {} |\n",
                p.top,
                p.against,
                signed_pct(p.mean),
                per.join(", ")
            );
        }
        s += "\nAn interval that does not contain 0 says the difference is larger than the seed noise.\n";
    }
    s += "\n## Table 3: every final model under every objective\n\n";
    s += "Test rows: the mean over the test samples of each loss of the model's scores (C = 1). \
          Objective rows: the training objective on the training data including the weight costs \
          Σ (λ/2)·‖W‖², with the weight decays of that objective's top (README, \"Reproducing the paper\"). \
          Means over seeds.\n\n";
    s += &format!(
        "| | {} |\n|---|{}\n",
        r.table3.iter().map(|c| c.top.as_str()).collect::<Vec<_>>().join(" | "),
        "---|".repeat(r.table3.len())
    );
    type Row = (&'static str, fn(&Table3Column) -> f64, bool);
    let rows: [Row; 7] = [
        ("test error", |c| c.test_error, true),
        ("avg. cross-entropy (test)", |c| c.test_cross_entropy, false),
        ("avg. squared hinge (test)", |c| c.test_squared_hinge, false),
        ("avg. hinge (test)", |c| c.test_hinge, false),
        ("cross-entropy objective (train, + weight cost)", |c| c.objective_cross_entropy, false),
        ("squared-hinge objective (train, + weight cost)", |c| c.objective_squared_hinge, false),
        ("hinge objective (train, + weight cost)", |c| c.objective_hinge, false),
    ];
    for (name, f, is_pct) in rows {
        let cells: Vec<String> =
            r.table3.iter().map(|c| if is_pct { pct(f(c)) } else { format!("{:.4}", f(c)) }).collect();
        s += &format!("| {name} | {} |\n", cells.join(" | "));
    }
    s += &select::markdown(&r.selection, r.select_folds.unwrap_or(0));
    if !runs {
        return s;
    }
    s += "\n## Runs\n\n| seed | top | fold | test error | run directory |\n|---|---|---|---|---|\n";
    for run in &r.runs {
        let fold = run.fold.map_or("-".to_string(), |f| f.to_string());
        s += &format!("| {} | {} | {fold} | {} | {} |\n", run.seed, run.top, pct(run.test_error), run.dir);
    }
    s
}

/// `compare.json`, `compare.md` and `compare.png` in the comparison's directory.
pub fn write(r: &CompareReport, out: &Path) -> Result<(), TrainError> {
    let io = crate::train::io;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let json = serde_json::to_string_pretty(r).unwrap_or_default();
    let (jp, mp) = (out.join("compare.json"), out.join("compare.md"));
    std::fs::write(&jp, json).map_err(io(&jp))?;
    std::fs::write(&mp, markdown(r, true)).map_err(io(&mp))?;
    let curves: Vec<ErrorCurve> = r
        .tops
        .iter()
        .map(|t| ErrorCurve {
            name: t.clone(),
            runs: r.runs.iter().filter(|x| &x.top == t).map(|x| x.curve.clone()).collect(),
        })
        .collect();
    let n = r.seeds.len();
    let title = format!("{} on {}: test error, {n} seed{}", r.net, r.data, if n == 1 { "" } else { "s" });
    let png = out.join("compare.png");
    if let Err(e) = report::error_curves_png(&png, &curves, &title) {
        eprintln!("dlsvm: warning: could not write {}: {e}", png.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tops_are_named_once_each_in_their_order() {
        assert_eq!(parse_tops("l1svm,softmax").unwrap(), [Top::L1svm, Top::Softmax]);
        assert_eq!(parse_tops(" softmax , svm ").unwrap(), [Top::Softmax, Top::L2svm]);
        assert_eq!(parse_tops("l2svm,svm").unwrap_err(), "--tops names svm twice");
        let e = parse_tops("softmax,,l2svm").unwrap_err();
        assert_eq!(e, "--tops: unknown top \"\"; choose from l2svm, softmax, l1svm (comma-separated)");
    }

    #[test]
    fn seeds_count_up_from_the_first_and_wrap() {
        assert_eq!(seeds(3, 3), [3, 4, 5]);
        assert_eq!(seeds(u64::MAX, 2), [u64::MAX, 0]);
        assert!(seeds(3, 0).is_empty());
    }
}
