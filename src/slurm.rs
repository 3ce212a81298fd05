//! `--slurm FILE`: a SLURM batch script instead of a run. One array task per run (a fold, a grid
//! setting, a compare seed and top), each a plain `dlsvm train ... --resume` in its own run
//! directory, so a requeued or resubmitted task continues its checkpoint; task 0 submits a
//! collect job that runs once every task has ended. SLURM's SIGTERM (preemption, requeue,
//! `scancel`) reaches dlsvm directly, the SIGUSR1 it sends to the batch shell before the time limit
//! is forwarded; either way dlsvm writes a checkpoint and stops, and the shell waits for it (a
//! shell that died first would end the step and have dlsvm killed). After SIGUSR1 the task
//! requeues itself.

use std::path::Path;

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
