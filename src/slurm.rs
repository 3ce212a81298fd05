//! `--slurm FILE`: a SLURM batch script instead of a run. One array task per run (a fold, a grid
//! setting, a compare seed and top), each a plain `dlsvm train ... --resume` in its own run
//! directory, so a requeued or resubmitted task continues its checkpoint; task 0 submits a
//! collect job that runs once every task has ended. SLURM's SIGTERM (preemption, requeue,
//! `scancel`) reaches dlsvm directly, the SIGUSR1 it sends to the batch shell before the time limit
//! is forwarded; either way dlsvm writes a checkpoint and stops, and the shell waits for it (a
//! shell that died first would end the step and have dlsvm killed). After SIGUSR1 the task
//! requeues itself.

use std::path::Path;

use crate::compare::{self, Plan};
use crate::train::grid::{self, Setting};

/// What `#SBATCH` lines the user passes through.
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    pub job_name: String,
    pub partition: Option<String>,
    pub time: Option<String>,
    pub gres: Option<String>,
    /// Whole `#SBATCH` options, e.g. `--mem=16G`.
    pub extra: Vec<String>,
}

/// Seconds before the time limit at which SLURM sends SIGUSR1 (`--signal=B:USR1@120`).
pub const WARN_SECONDS: u32 = 120;

/// One word for a POSIX shell: as it is when plain, else single-quoted.
pub fn quote(a: &str) -> String {
    let plain = !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

fn line(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// `args` without the options named in `drop` (`(name, takes a value)`), in both the `--opt value`
/// and `--opt=value` spellings.
pub fn without(args: &[String], drop: &[(&str, bool)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let hit = drop.iter().find(|(name, _)| a == name || a.starts_with(&format!("{name}=")));
        match hit {
            Some((name, true)) if a == name => i += 2,
            Some(_) => i += 1,
            None => {
                out.push(a.clone());
                i += 1;
            }
        }
    }
    out
}

/// The options a task of a `--slurm` array does not take from the command that wrote it.
pub const SLURM_OPTIONS: [(&str, bool); 5] = [
    ("--slurm", true),
    ("--slurm-partition", true),
    ("--slurm-time", true),
    ("--slurm-gres", true),
    ("--slurm-extra", true),
];

/// The invocation `argv` (the binary, the command name, then its arguments) after the command
/// name, without the `--slurm` options and `drop`.
pub fn args_without(argv: &[String], drop: &[(&str, bool)]) -> Vec<String> {
    let args: Vec<String> = argv.iter().skip(2).cloned().collect();
    without(&without(&args, &SLURM_OPTIONS), drop)
}

/// The tasks of `dlsvm train --slurm` (command lines after the binary) for the invocation
/// `argv`: one per grid setting (`settings`: one empty setting without `--grid`) and fold (every
/// fold of `--folds`, or the one of `--fold`), each `train` with the invocation's options and
/// the setting as `--set`s, resumed in its own directory: `out`, or `<out>/<setting>` on a grid.
/// The message names a `--folds` below 2.
pub fn train_tasks(
    argv: &[String],
    out: &Path,
    settings: &[Setting],
    folds: Option<usize>,
    fold: Option<usize>,
) -> Result<Vec<Vec<String>>, String> {
    let base = args_without(
        argv,
        &[
            ("--grid", true),
            ("--folds", true),
            ("--fold", true),
            ("--resume", false),
            ("--json", false),
            ("--out", true),
        ],
    );
    let folds_of_task: Vec<Option<usize>> = match folds {
        Some(k) if k >= 2 => fold.map_or((0..k).map(Some).collect(), |i| vec![Some(i)]),
        Some(k) => return Err(format!("--folds {k} must be at least 2")),
        None => vec![None],
    };
    let mut tasks = Vec::new();
    for setting in settings {
        let dir = if setting.is_empty() { out.to_path_buf() } else { out.join(grid::dir_name(setting)) };
        for task_fold in &folds_of_task {
            let mut t: Vec<String> =
                std::iter::once("train".to_string()).chain(base.iter().cloned()).collect();
            for (k, v) in setting {
                t.extend(["--set".to_string(), format!("{k}={v}")]);
            }
            if let (Some(k), Some(i)) = (folds, task_fold) {
                t.extend(["--folds".to_string(), k.to_string(), "--fold".to_string(), i.to_string()]);
            }
            t.extend(["--resume".to_string(), "--out".to_string(), dir.display().to_string()]);
            tasks.push(t);
        }
    }
    Ok(tasks)
}

/// The tasks of `dlsvm compare --slurm` for the invocation `argv`: one `train` per run of the
/// plan (seed by seed, each top, each fold), with the invocation's options, the run's top and
/// seed, the comparison's steps and warm start, resumed in the run's directory.
pub fn compare_tasks(argv: &[String], plan: &Plan) -> Vec<Vec<String>> {
    let base = args_without(
        argv,
        &[
            ("--seeds", true),
            ("--tops", true),
            ("--seed", true),
            ("--warm-start", true),
            ("--init-from", true),
            ("--folds", true),
            ("--fold", true),
            ("--resume", false),
            ("--json", false),
            ("--out", true),
        ],
    );
    let mut tasks = Vec::new();
    for &seed in &plan.seeds {
        for top in &plan.tops {
            let folds: Vec<Option<usize>> = match plan.folds {
                Some((k, only)) => only.map_or((0..k).map(Some).collect(), |i| vec![Some(i)]),
                None => vec![None],
            };
            for fold in folds {
                let mut t: Vec<String> =
                    std::iter::once("train".to_string()).chain(base.iter().cloned()).collect();
                t.extend(["--top".into(), top.name().into(), "--seed".into(), seed.to_string()]);
                if plan.default_steps {
                    t.extend(["--steps".into(), compare::DEFAULT_STEPS.to_string()]);
                }
                if let Some(w) = &plan.warm_start {
                    t.extend(["--init-from".into(), w.display().to_string()]);
                }
                if let (Some((k, _)), Some(i)) = (plan.folds, fold) {
                    t.extend(["--folds".into(), k.to_string(), "--fold".into(), i.to_string()]);
                }
                let dir = compare::run_dir(&plan.out, *top, seed);
                t.extend(["--resume".into(), "--out".into(), dir.display().to_string()]);
                tasks.push(t);
            }
        }
    }
    tasks
}

/// The collect job of `dlsvm compare --slurm` for the invocation `argv`: the same comparison,
/// resumed in `out`; every run is done by then, so it only evaluates and makes the tables.
pub fn compare_collect(argv: &[String], out: &Path) -> Vec<String> {
    let mut collect: Vec<String> = std::iter::once("compare".to_string())
        .chain(args_without(argv, &[("--resume", false), ("--json", false), ("--out", true)]))
        .collect();
    collect.extend(["--resume".into(), "--out".into(), out.display().to_string()]);
    collect
}

/// The batch script: `tasks` (each a full command line), and `collect` run after them all.
/// `out` is where the runs write; the task logs go to `<out>/slurm/` (which must exist before
/// `sbatch`: the caller creates it). `origin` is the command that wrote the script.
pub fn script(
    tasks: &[Vec<String>],
    collect: &[String],
    out: &Path,
    o: &SlurmOptions,
    origin: &str,
) -> String {
    let logs = out.join("slurm");
    let mut sbatch = Vec::new();
    if let Some(p) = &o.partition {
        sbatch.push(format!("--partition={p}"));
    }
    if let Some(t) = &o.time {
        sbatch.push(format!("--time={t}"));
    }
    if let Some(g) = &o.gres {
        sbatch.push(format!("--gres={g}"));
    }
    sbatch.extend(o.extra.iter().cloned());
    let mut s = String::from("#!/bin/bash\n");
    s += &format!(
        "# {} runs of `{origin}` as one SLURM array, written by dlsvm {} (--slurm).\n",
        tasks.len(),
        env!("CARGO_PKG_VERSION")
    );
    s += "# Submit it with `sbatch THIS_FILE`. Each task trains one run with --resume, so a requeued or\n\
          # resubmitted task continues from its checkpoint. SIGUSR1 (sent before the time limit) and\n\
          # SIGTERM (preemption, requeue, scancel) make dlsvm finish its step, write a checkpoint and\n\
          # exit; after SIGUSR1 the task requeues itself. Task 0 submits the collect job, which runs once\n\
          # every task has ended. Logs (every attempt appended): ";
    s += &format!("{}/%A_%a.out.\n", logs.display());
    s += &format!("#SBATCH --job-name={}\n", o.job_name);
    s += &format!("#SBATCH --array=0-{}\n", tasks.len().saturating_sub(1));
    s += &format!("#SBATCH --output={}/%A_%a.out\n", logs.display());
    s += "#SBATCH --requeue\n#SBATCH --open-mode=append\n";
    s += &format!("#SBATCH --signal=B:USR1@{WARN_SECONDS}\n");
    for opt in &sbatch {
        s += &format!("#SBATCH {opt}\n");
    }
    s += "set -u\ncase \"$SLURM_ARRAY_TASK_ID\" in\n";
    for (i, t) in tasks.iter().enumerate() {
        s += &format!("  {i}) run=({}) ;;\n", line(t));
    }
    s += "  *) echo \"no run for task $SLURM_ARRAY_TASK_ID\" >&2; exit 2 ;;\nesac\n";
    let mut submit = vec![
        "sbatch".to_string(),
        "--dependency=afterany:$SLURM_ARRAY_JOB_ID".to_string(),
        format!("--job-name={}-collect", o.job_name),
        format!("--output={}/collect_%j.out", logs.display()),
    ];
    submit.extend(sbatch.iter().cloned());
    let submit: Vec<String> =
        submit.iter().map(|w| if w.contains('$') { format!("\"{w}\"") } else { quote(w) }).collect();
    s += "# The collect job, once: not again when task 0 is requeued.\n";
    s += "if [ \"$SLURM_ARRAY_TASK_ID\" = 0 ] && [ \"${SLURM_RESTART_COUNT:-0}\" = 0 ]; then\n";
    s += &format!("  {} --wrap {}\n", submit.join(" "), quote(&line(collect)));
    s += "fi\n";
    s += "\"${run[@]}\" &\npid=$!\n";
    s += "# SIGUSR1 comes to this shell alone: pass it on. SIGTERM reaches dlsvm itself: wait for it.\n";
    s += "trap 'kill -USR1 \"$pid\"' USR1\ntrap ':' TERM\n";
    s += "code=0\nwhile :; do\n  wait \"$pid\"; code=$?\n  kill -0 \"$pid\" 2>/dev/null || break\ndone\n";
    s += "# 138 = 128 + SIGUSR1: stopped with a checkpoint before the time limit; run again later.\n";
    s += "if [ \"$code\" = 138 ]; then scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"; fi\n";
    s += "exit \"$code\"\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::grid::Axis;

    /// `std::env::args()` of `dlsvm <words>`.
    fn argv(words: &[&str]) -> Vec<String> {
        std::iter::once("/opt/dlsvm/bin/dlsvm").chain(words.iter().copied()).map(String::from).collect()
    }

    fn lines(tasks: &[Vec<String>]) -> Vec<String> {
        tasks.iter().map(|t| t.join(" ")).collect()
    }

    #[test]
    fn a_task_takes_the_invocation_after_its_command_without_the_slurm_options() {
        let words = [
            "train",
            "--slurm",
            "a.sh",
            "--steps",
            "5",
            "--slurm-time=1:00:00",
            "--slurm-extra",
            "--mem=4G",
            "--json",
            "--out=o",
            "--lr",
            "0.1",
            "--slurm-gres",
            "gpu:1",
            "--slurm-partition=p",
        ];
        assert_eq!(args_without(&argv(&words), &[]), ["--steps", "5", "--json", "--out=o", "--lr", "0.1"]);
        assert_eq!(
            args_without(&argv(&words), &[("--json", false), ("--out", true)]),
            ["--steps", "5", "--lr", "0.1"]
        );
    }

    #[test]
    fn train_tasks_are_one_per_grid_setting_and_fold() {
        let words = [
            "train",
            "--preset",
            "mlp",
            "--grid",
            "svm_c=0.5,1",
            "--folds=2",
            "--out",
            "runs",
            "--resume",
            "--slurm",
            "job.sh",
            "--json",
            "--steps",
            "30",
        ];
        let axes = [Axis::parse("svm_c=0.5,1").unwrap()];
        let settings = grid::settings(&axes).unwrap();
        let tasks = train_tasks(&argv(&words), Path::new("runs"), &settings, Some(2), None).unwrap();
        let task = |c: &str, fold: usize| {
            format!("train --preset mlp --steps 30 --set svm_c={c} --folds 2 --fold {fold} --resume --out runs/svm_c={c}")
        };
        assert_eq!(lines(&tasks), [task("0.5", 0), task("0.5", 1), task("1", 0), task("1", 1)]);

        // No grid: the run directory itself; --fold: that fold only; no folds: one task.
        let one = grid::settings(&[]).unwrap();
        let words = ["train", "--folds", "3", "--fold", "2", "--slurm=job.sh", "--lr", "0.1"];
        let tasks = train_tasks(&argv(&words), Path::new("r"), &one, Some(3), Some(2)).unwrap();
        assert_eq!(lines(&tasks), ["train --lr 0.1 --folds 3 --fold 2 --resume --out r"]);
        let tasks =
            train_tasks(&argv(&["train", "--slurm", "j.sh"]), Path::new("r"), &one, None, None).unwrap();
        assert_eq!(lines(&tasks), ["train --resume --out r"]);
        let refused = train_tasks(&argv(&["train"]), Path::new("r"), &one, Some(1), None).unwrap_err();
        assert_eq!(refused, "--folds 1 must be at least 2");
    }

    #[test]
    fn compare_tasks_train_each_run_of_the_plan_and_the_collect_job_compares_again() {
        use crate::model::Top;
        let words = [
            "compare",
            "--tops=l1svm,softmax",
            "--seeds",
            "2",
            "--seed",
            "9",
            "--lr",
            "0.1",
            "--json",
            "--out",
            "o",
        ];
        let plan = Plan {
            tops: vec![Top::L1svm, Top::Softmax],
            seeds: vec![9, 10],
            folds: None,
            default_steps: false,
            warm_start: None,
            out: "o".into(),
            select: None,
        };
        let task = |top: &str, seed: u64| {
            format!("train --lr 0.1 --top {top} --seed {seed} --resume --out o/seed{seed}/{top}")
        };
        let want = [task("l1svm", 9), task("softmax", 9), task("l1svm", 10), task("softmax", 10)];
        assert_eq!(lines(&compare_tasks(&argv(&words), &plan)), want);
        let collect = compare_collect(&argv(&words), &plan.out).join(" ");
        assert_eq!(collect, "compare --tops=l1svm,softmax --seeds 2 --seed 9 --lr 0.1 --resume --out o");
    }
}
