//! `--slurm FILE`: the batch script a cluster runs instead of training here: one array task per
//! run, each the plain `dlsvm train ... --resume` of that run, the collect job, the signal
//! forwarding and the requeue after SIGUSR1; valid bash. tests/slurm.rs runs such a script on a
//! real SLURM.

mod common;

use common::{dlsvm, s, text, TempDir};

const MNIST: &str = "data/mnist-5k";

fn tasks(script: &str) -> Vec<String> {
    script
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains(") run=("))
        .map(String::from)
        .collect()
}

#[test]
fn train_folds_and_grid_write_one_task_per_run() {
    let dir = TempDir::new("slurm-train");
    let (out, file) = (dir.join("runs"), dir.join("job.sh"));
    let o = dlsvm(
        &[
            "train",
            "--preset",
            "mlp",
            "--data",
            MNIST,
            "--steps",
            "30",
            "--folds",
            "2",
            "--grid",
            "svm_c=0.5,1",
            "--out",
            s(&out),
            "--slurm",
            s(&file),
            "--slurm-partition",
            "gpu",
            "--slurm-time",
            "01:00:00",
            "--slurm-gres",
            "gpu:1",
            "--slurm-extra=--mem=16G",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("4 array tasks"), "{:?}", text(&o));
    assert!(!out.join("svm_c=0.5").exists(), "nothing trained here");
    assert!(out.join("slurm").is_dir(), "the log folder exists before sbatch");
    let script = std::fs::read_to_string(&file).unwrap();
    for line in [
        "#SBATCH --array=0-3",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:USR1@120",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=01:00:00",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --mem=16G",
        "trap 'kill -USR1 \"$pid\"' USR1",
        "trap ':' TERM",
        "#SBATCH --open-mode=append",
        "scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"",
    ] {
        assert!(script.contains(line), "no {line:?} in:\n{script}");
    }
    let t = tasks(&script);
    assert_eq!(t.len(), 4, "{script}");
    assert!(
        t[1].contains("--set svm_c=0.5 --folds 2 --fold 1 --resume --out")
            && t[1].ends_with("/svm_c=0.5) ;;"),
        "{}",
        t[1]
    );
    assert!(t[2].contains("--set svm_c=1 --folds 2 --fold 0"), "{}", t[2]);
    assert!(t.iter().all(|l| !l.contains("--slurm") && !l.contains("--grid")), "{t:?}");
    assert!(
        script.contains("--dependency=afterany:$SLURM_ARRAY_JOB_ID") && script.contains(" collect "),
        "{script}"
    );
    let bash = std::process::Command::new("bash").args(["-n", s(&file)]).output().unwrap();
    assert!(bash.status.success(), "bash -n: {}", String::from_utf8_lossy(&bash.stderr));
}

#[test]
fn compare_seeds_write_train_tasks_and_a_resumed_compare() {
    let dir = TempDir::new("slurm-compare");
    let (out, file) = (dir.join("cmp"), dir.join("job.sh"));
    let o = dlsvm(
        &[
            "compare",
            "--preset",
            "mlp",
            "--data",
            MNIST,
            "--seeds",
            "2",
            "--tops",
            "l2svm,softmax",
            "--out",
            s(&out),
            "--slurm",
            s(&file),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let script = std::fs::read_to_string(&file).unwrap();
    let t = tasks(&script);
    assert_eq!(t.len(), 4, "{script}");
    assert!(
        t[3].contains(" train ")
            && t[3].contains("--top softmax --seed 2 --steps 300 --resume --out")
            && t[3].contains("seed2/softmax"),
        "{}",
        t[3]
    );
    assert!(
        script.contains("compare --preset mlp") && script.contains("--resume --out"),
        "the collect job resumes the comparison:\n{script}"
    );
    let bash = std::process::Command::new("bash").args(["-n", s(&file)]).output().unwrap();
    assert!(bash.status.success(), "bash -n: {}", String::from_utf8_lossy(&bash.stderr));
}

/// A task of the script is the same run as the plain command: `--set` of the grid's value and the
/// fold give the weights of the grid's own run, bit for bit.
#[test]
fn a_task_command_is_the_grid_run() {
    let dir = TempDir::new("slurm-task");
    let grid = dir.join("grid");
    let o = dlsvm(
        &[
            "train",
            "--preset",
            "mlp",
            "--data",
            MNIST,
            "--steps",
            "4",
            "--folds",
            "3",
            "--fold",
            "1",
            "--grid",
            "svm_c=0.5",
            "--out",
            s(&grid),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let task = dir.join("task");
    let o = dlsvm(
        &[
            "train",
            "--preset",
            "mlp",
            "--data",
            MNIST,
            "--steps",
            "4",
            "--set",
            "svm_c=0.5",
            "--folds",
            "3",
            "--fold",
            "1",
            "--resume",
            "--out",
            s(&task),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let a = dlsvm::model::checkpoint::load(&grid.join("svm_c=0.5/fold1/model.safetensors")).unwrap();
    let b = dlsvm::model::checkpoint::load(&task.join("fold1/model.safetensors")).unwrap();
    assert!(a.params == b.params);
}
