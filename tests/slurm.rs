//! A real SLURM: `.ci/slurm-cluster.sh start` brings up a single-node cluster (root; it installs
//! Debian's packages where missing), `dlsvm train --folds 4 --grid svm_c=0.5,1 --slurm` writes the
//! array script, `sbatch` runs it, one task is preempted in mid-run (`scontrol requeue`: SIGTERM,
//! a checkpoint, the task queued again), and the collected result must equal the same runs trained
//! one after another without SLURM, weights bit for bit per run. The daemons are always stopped;
//! on failure the SLURM logs are printed.
//!
//! It needs root and starts daemons, so it is `#[ignore]`d in a plain `cargo test`; `.ci/run`
//! runs it with `cargo test --release --test slurm -- --ignored`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{dlsvm, s, text, TempDir};
use dlsvm::model::checkpoint;

const CLUSTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/slurm-cluster.sh");

/// Stops the daemons when the test ends, however it ends.
struct Cluster;

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").args([CLUSTER, "stop"]).status();
    }
}

fn sh(cmd: &str) -> (bool, String) {
    let o = Command::new("bash").args(["-c", cmd]).output().expect("bash runs");
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), format!("{out}{err}"))
}

/// Everything SLURM logged, for a failure message.
fn logs(runs: &Path) -> String {
    let (_, l) = sh(&format!(
        "squeue; sacct 2>/dev/null | tail -20; tail -n 15 {0}/slurm/*.out; tail -n 30 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log",
        runs.display()
    ));
    l
}

fn queue_empty() -> bool {
    sh("squeue -h").1.trim().is_empty()
}

/// Every run directory (a folder with a model) below `dir`, relative.
fn models(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("checkpoints") && !p.ends_with("slurm") {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "model.safetensors") {
                v.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    v.sort();
    v
}

#[test]
#[ignore = "needs root and starts SLURM daemons; .ci/run runs it with --ignored"]
fn slurm_array_with_a_preempted_task_equals_the_runs_one_after_another() {
    let (ok, log) = sh(&format!("bash {CLUSTER} start"));
    let _cluster = Cluster;
    assert!(ok, "the SLURM cluster did not start:\n{log}");
    let dir = TempDir::new("slurm");
    let runs = dir.join("runs");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-5k");
    let args = [
        "train",
        "--preset",
        "mlp",
        "--data",
        data,
        "--steps",
        "60",
        "--checkpoint-every",
        "10",
        "--log-every",
        "5",
        "--folds",
        "4",
        "--grid",
        "svm_c=0.5,1",
        "--tune",
        "off",
    ];
    let script = dir.join("job.sh");
    let o = dlsvm(&[&args[..], &["--out", s(&runs), "--slurm", s(&script)]].concat(), &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("8 array tasks"), "{:?}", text(&o));
    let (ok, out) = sh(&format!("sbatch --test-only {}", s(&script)));
    assert!(ok, "sbatch --test-only refuses the script: {out}");
    let (ok, job) = sh(&format!("sbatch --parsable {}", s(&script)));
    assert!(ok, "sbatch: {job}");
    let job = job.trim().to_string();
    // Preempt task 0 once it has a checkpoint and before it ends.
    let began = Instant::now();
    let first = runs.join("svm_c=0.5/fold0/model.safetensors");
    while !first.exists() {
        assert!(began.elapsed() < Duration::from_secs(120), "task 0 wrote no checkpoint:\n{}", logs(&runs));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, out) = sh(&format!("scontrol requeue {job}_0"));
    assert!(ok, "scontrol requeue: {out}\n{}", logs(&runs));
    // A requeued task waits about two minutes before it may start again: once it is pending,
    // let it start now.
    let task0 = format!("{job}_0");
    loop {
        let state = sh(&format!("squeue -h -j {task0} -o %T")).1.trim().to_string();
        if state == "PENDING" && sh(&format!("scontrol update jobid={task0} StartTime=now")).0 {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "task 0 did not come back pending ({state}):\n{}",
            logs(&runs)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    while !queue_empty() {
        assert!(
            began.elapsed() < Duration::from_secs(300),
            "the jobs did not end in 5 minutes:\n{}",
            logs(&runs)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, log0) = sh(&format!("cat {}/slurm/{job}_0.out", runs.display()));
    assert!(
        log0.contains("SIGTERM") && log0.contains("interrupted at step"),
        "task 0 was not stopped in mid-run:\n{log0}\n{}",
        logs(&runs)
    );
    let collected = std::fs::read_dir(runs.join("slurm"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("collect_"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap_or_else(|| panic!("no collect job output:\n{}", logs(&runs)));
    assert!(collected.contains("8 run directories, 8 finished"), "{collected}\n{}", logs(&runs));
    assert!(collected.contains("best"), "{collected}");

    // The same runs one after another, without SLURM: the same weights, run by run.
    let plain = dir.join("plain");
    let o = dlsvm(&[&args[..], &["--out", s(&plain)]].concat(), &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let (a, b) = (models(&runs), models(&plain));
    assert_eq!(a.len(), 8, "{a:?}");
    assert_eq!(a, b);
    for m in &a {
        let (x, y) = (checkpoint::load(&runs.join(m)).unwrap(), checkpoint::load(&plain.join(m)).unwrap());
        assert!(x.params == y.params, "{}: the SLURM run's weights differ from the plain run's", m.display());
        assert_eq!(x.step, 60, "{}", m.display());
    }
    let o = dlsvm(&["collect", s(&plain)], &[]);
    let plain_text = text(&o).0;
    let strip = |t: &str, root: &Path| t.replace(s(root), "DIR");
    assert_eq!(strip(&collected, &runs), strip(&plain_text, &plain), "collect differs");
}
