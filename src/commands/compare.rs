//! `dlsvm compare`: the comparison's plan from its options, then its runs here
//! ([`crate::compare::compare`]) or a SLURM array of them (`--slurm`).

use std::path::PathBuf;

use super::args::CompareArgs;
use super::setup::{check_init_from, net_config, train_data, tuned_plan};
use super::{tune_mode, write_slurm, CommandError, Out};
use crate::compare::{self, CompareOptions, Plan, Progress};
use crate::gpu::Gpu;
use crate::model::NetConfig;
use crate::select::SelectSpec;
use crate::train::RunOptions;
use crate::tune::Mode;

/// What `c` asks to compare, every option checked (those of compare first, then the network's):
/// the network with its origin (as [`net_config`]), with [`compare::DEFAULT_STEPS`] steps
/// unless `--steps` or `--epochs` says otherwise, and the plan.
pub fn plan(c: &CompareArgs) -> Result<(NetConfig, String, Plan), CommandError> {
    let a = &c.train;
    if a.top.is_some() {
        return Err(CommandError::input(
            "--top does not apply to compare: it trains each top of --tops (e.g. --tops l2svm,softmax)",
        ));
    }
    if !a.grid.is_empty() {
        return Err(CommandError::input("--grid does not apply to compare; use it with dlsvm train"));
    }
    let tops = compare::parse_tops(&c.tops).map_err(CommandError::Input)?;
    if c.seeds == 0 {
        return Err(CommandError::input("--seeds 0 must be at least 1"));
    }
    let (mut config, origin) = net_config(a)?;
    let default_steps = a.steps.is_none() && a.epochs.is_none();
    if default_steps {
        config.train.steps = compare::DEFAULT_STEPS;
    }
    let select = match c.select.is_empty() {
        true => None,
        false => {
            if a.folds.is_some() {
                return Err(CommandError::input(crate::select::NOT_WITH_FOLDS));
            }
            if a.slurm.is_some() {
                return Err(CommandError::input(
                    "--select does not write SLURM arrays yet: run the comparison with --select here, \
                     or --slurm without it",
                ));
            }
            let axes = c
                .select
                .iter()
                .map(|s| crate::train::grid::Axis::parse(s).map_err(|m| m.replace("--grid", "--select")))
                .collect::<Result<Vec<_>, _>>()
                .map_err(CommandError::Input)?;
            let spec = SelectSpec { axes, folds: c.select_folds, fold_seed: config.train.seed };
            spec.check(&config).map_err(CommandError::Input)?;
            Some(spec)
        }
    };
    let plan = Plan {
        select,
        tops,
        seeds: compare::seeds(config.train.seed, c.seeds),
        folds: a.folds.map(|k| (k, a.fold)),
        default_steps,
        warm_start: c.warm_start.clone().or_else(|| a.init_from.clone()),
        out: a.out.clone().unwrap_or_else(|| {
            let base = PathBuf::from("runs").join(format!("{}-compare", config.name));
            if a.resume {
                crate::rundir::latest(&base)
            } else {
                crate::rundir::fresh(&base)
            }
        }),
    };
    Ok((config, origin, plan))
}

/// Compares as `c` asks on the adapter named `adapter`, the tables on `out`; `on_train` is
/// called once the device is open (see [`super::train::train`]).
pub fn compare(adapter: Option<&str>, c: &CompareArgs, on_train: fn(), out: Out) -> Result<(), CommandError> {
    let a = &c.train;
    let (config, origin, plan) = plan(c)?;
    if a.slurm.is_some() {
        let argv: Vec<String> = std::env::args().collect();
        let tasks = crate::slurm::compare_tasks(&argv, &plan);
        let collect = crate::slurm::compare_collect(&argv, &plan.out);
        return write_slurm(a, &config.name, &plan.out, &argv, tasks, collect, out);
    }
    // The comparison's directory, as --resume and --overwrite say, locked from here on (each run
    // below it locks its own too).
    let (_claim, on_checkpoint) = super::claim(&plan.out, a.resume, a.overwrite)?;
    let source = train_data(a, &config, &origin)?;
    check_init_from(plan.warm_start.as_deref(), &config, &source)?;
    let mode = tune_mode(&a.tune, Mode::Full)?;
    let eval_tune = tune_mode(&None, Mode::Cached)?;
    let gpu = Gpu::new(adapter)?;
    on_train();
    let run_plan = tuned_plan(&gpu, &config, source.classes(), mode, a.json)?;
    let dir = plan.out;
    let opts = CompareOptions {
        tops: plan.tops,
        seeds: plan.seeds,
        folds: plan.folds,
        run: RunOptions {
            out: dir.clone(),
            resume: a.resume,
            progress: false,
            fold: None,
            stop_after: None,
            plan: Some(run_plan),
            init_from: plan.warm_start,
            locked: Some(dir.clone()),
            on_checkpoint: Some(on_checkpoint),
        },
        eval_tune,
        select: plan.select,
    };
    if !a.json {
        eprintln!(
            "dlsvm: comparing {} on {} ({}) with {} seeds: {} runs in {}",
            opts.tops.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
            source.path,
            gpu.info.name,
            opts.seeds.len(),
            opts.tops.len() * opts.seeds.len(),
            dir.display()
        );
    }
    let report = compare::compare(&gpu, &config, &source, &opts, |p| match p {
        Progress::Starting { index, total, top, seed, dir } => {
            eprintln!("dlsvm: run {index} of {total}: {}, seed {seed}, in {}", top.name(), dir.display())
        }
        Progress::Selecting { index, total, top, seed, step } => {
            eprintln!(
                "dlsvm: run {index} of {total}: {}, seed {seed}: selecting: {}, fold {} of {}: held-out error {:.2}%",
                top.name(),
                crate::train::grid::dir_name(step.setting),
                step.fold + 1,
                step.folds,
                100.0 * step.error
            )
        }
        Progress::Selected { index, total, selection: s } => {
            let chosen: Vec<String> = s.chosen.iter().map(|(k, v)| format!("{k}={v}")).collect();
            eprintln!(
                "dlsvm: run {index} of {total}: {}, seed {}: chose {} (held-out error {:.2}%)",
                s.top,
                s.seed,
                chosen.join(", "),
                100.0 * s.validation_error
            )
        }
        Progress::Finished { index, total, result: r } => {
            let fold = r.fold.map(|f| format!(", fold {f}")).unwrap_or_default();
            eprintln!(
                "dlsvm: run {index} of {total}: {}, seed {}{fold}: test error {:.2}% ({:.1} s)",
                r.top,
                r.seed,
                100.0 * r.test_error,
                r.wall_s
            )
        }
    })?;
    compare::write(&report, &dir)?;
    if a.json {
        let files = ["compare.json", "compare.md", "compare.png"].map(|f| dir.join(f).display().to_string());
        let v = serde_json::json!({
            "net": report.net, "data": report.data, "tops": report.tops, "seeds": report.seeds,
            "folds": report.folds, "steps": report.steps, "errors": report.errors, "paired": report.paired,
            "table3": report.table3, "selection": report.selection, "out": report.out, "files": files,
        });
        outln!(out, "{v}");
    } else {
        out(&compare::markdown(&report, false));
        outln!(
            out,
            "\nwritten: {}/compare.md, compare.json, compare.png (each run in its own directory there)",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testing::{argv, compare_args};
    use crate::model::Top;
    use std::path::Path;

    fn refused(words: &[&str]) -> String {
        match plan(&compare_args(words)) {
            Err(CommandError::Input(m)) => m,
            Err(e) => panic!("{words:?}: not an input error: {e}"),
            Ok(_) => panic!("{words:?}: accepted"),
        }
    }

    #[test]
    fn the_plan_follows_the_options() {
        let (config, origin, p) = plan(&compare_args(&["--preset", "mlp", "--seed", "7"])).unwrap();
        assert_eq!(origin, "--preset mlp");
        assert_eq!(p.tops, [Top::L2svm, Top::Softmax], "the default --tops");
        assert_eq!(p.seeds, [7, 8, 9], "three seeds from --seed on");
        assert!(p.default_steps);
        assert_eq!(config.train.steps, compare::DEFAULT_STEPS);
        assert_eq!((p.folds, p.warm_start.as_deref()), (None, None));
        assert_eq!(p.out, crate::rundir::fresh(Path::new("runs/mlp-compare")));

        let words = ["--preset", "mlp", "--tops", "softmax, l1svm,svm", "--seeds", "1", "--steps", "40"];
        let (config, _, p) =
            plan(&compare_args(&[&words[..], &["--out", "cmp", "--folds", "3"]].concat())).unwrap();
        assert_eq!(p.tops, [Top::Softmax, Top::L1svm, Top::L2svm], "in the order given");
        assert_eq!(p.seeds, [config.train.seed]);
        assert!(!p.default_steps);
        assert_eq!(config.train.steps, 40);
        assert_eq!((p.folds, p.out.as_path()), (Some((3, None)), Path::new("cmp")));
        let (_, _, p) =
            plan(&compare_args(&["--preset", "mlp", "--epochs", "2", "--folds", "3", "--fold", "2"]))
                .unwrap();
        assert!(!p.default_steps, "--epochs sets the length too");
        assert_eq!(p.folds, Some((3, Some(2))));

        let warm =
            |w: &[&str]| plan(&compare_args(&[&["--preset", "mlp"], w].concat())).unwrap().2.warm_start;
        assert_eq!(warm(&["--warm-start", "a/model.safetensors"]).unwrap(), Path::new("a/model.safetensors"));
        assert_eq!(warm(&["--init-from", "b/model.safetensors"]).unwrap(), Path::new("b/model.safetensors"));
    }

    #[test]
    fn compare_refuses_train_only_options_and_bad_tops_before_the_network() {
        // compare's own options are checked first: even with an unknown preset.
        let first = |w: &[&str]| refused(&[&["--preset", "nope"], w].concat());
        assert!(first(&["--top", "softmax"]).starts_with("--top does not apply to compare"));
        assert!(first(&["--grid", "svm_c=1,2"]).starts_with("--grid does not apply to compare"));
        assert_eq!(first(&["--tops", "l2svm,softmax,l2svm"]), "--tops names l2svm twice");
        assert_eq!(first(&["--tops", "svm,l2svm"]), "--tops names l2svm twice", "svm is l2svm");
        assert!(first(&["--tops", "l2svm,hinge"]).starts_with("--tops: unknown top \"hinge\""));
        assert_eq!(first(&["--seeds", "0"]), "--seeds 0 must be at least 1");
        assert!(first(&[]).starts_with("unknown preset"));
        assert_eq!(
            refused(&["--preset", "mlp", "--seeds", "2", "--lr", "0"]),
            "--lr 0 must be a finite positive number"
        );
    }

    #[test]
    fn a_slurm_array_has_one_train_task_per_run_and_the_comparison_resumed_to_collect() {
        let words = [
            "compare",
            "--preset",
            "mlp",
            "--data",
            "d ir",
            "--tops",
            "softmax,l2svm",
            "--seeds",
            "2",
            "--seed=5",
            "--warm-start",
            "w.safetensors",
            "--folds",
            "2",
            "--out",
            "cmp",
            "--json",
            "--slurm",
            "job.sh",
            "--slurm-time",
            "1:00:00",
            "--resume",
        ];
        let (_, _, p) = plan(&compare_args(&words[1..])).unwrap();
        let tasks: Vec<String> =
            crate::slurm::compare_tasks(&argv(&words), &p).iter().map(|t| t.join(" ")).collect();
        let task = |top: &str, seed: u64, fold: usize| {
            format!(
                "train --preset mlp --data d ir --top {top} --seed {seed} --steps 300 --init-from w.safetensors \
                 --folds 2 --fold {fold} --resume --out cmp/seed{seed}/{top}"
            )
        };
        let want = [
            task("softmax", 5, 0),
            task("softmax", 5, 1),
            task("l2svm", 5, 0),
            task("l2svm", 5, 1),
            task("softmax", 6, 0),
            task("softmax", 6, 1),
            task("l2svm", 6, 0),
            task("l2svm", 6, 1),
        ];
        assert_eq!(tasks, want);
        let collect = crate::slurm::compare_collect(&argv(&words), &p.out).join(" ");
        assert_eq!(
            collect,
            "compare --preset mlp --data d ir --tops softmax,l2svm --seeds 2 --seed=5 --warm-start w.safetensors \
             --folds 2 --resume --out cmp"
        );
    }
}
