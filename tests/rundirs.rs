//! Run directories never lose or mix a run: a default directory never collides, an explicit one
//! that holds a run is refused without `--resume` or `--overwrite` (and left byte for byte as it
//! was), `--overwrite` replaces it, one process writes to a directory at a time (a second is
//! refused with the first's pid, a killed one frees it at once), a network's name cannot choose
//! where files go, and `compare`, grids and `collect` follow the same rules.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, s, text, TempDir};

/// `dlsvm <args>` run in `cwd`.
fn run_in(cwd: &Path, args: &[&str]) -> Output {
    bin().current_dir(cwd).args(args).output().expect("dlsvm runs")
}

/// Every file below `dir` with its bytes (the lock file aside: a lock is not content).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != dlsvm::rundir::LOCK_FILE) {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn steps_of(dir: &Path) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    v["steps"].as_u64().unwrap()
}

#[test]
fn the_default_directory_never_collides() {
    let cwd = TempDir::new("default");
    for want in ["runs/mlp", "runs/mlp-2", "runs/mlp-3"] {
        let o = run_in(&cwd, &["train", "--preset", "mlp", "--steps", "5"]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert!(out.contains(&format!("run directory: {want}")), "{out}");
        assert!(err.contains(&format!("run directory {want}")), "printed at the start too: {err}");
        assert!(cwd.join(want).join("model.safetensors").exists());
    }
    // --resume without --out continues the newest.
    let o = run_in(&cwd, &["train", "--preset", "mlp", "--steps", "8", "--resume"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("run directory: runs/mlp-3"), "{:?}", text(&o));
    assert_eq!((steps_of(&cwd.join("runs/mlp")), steps_of(&cwd.join("runs/mlp-3"))), (5, 8));
}

#[test]
fn an_explicit_directory_holding_a_run_is_refused_then_resumed_or_replaced() {
    let dir = TempDir::new("explicit");
    let r = dir.join("R");
    let o = run_in(&dir, &["train", "--preset", "mlp", "--steps", "20", "--out", s(&r)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let before = snapshot(&r);
    let o = run_in(&dir, &["train", "--preset", "mlp", "--steps", "5", "--out", s(&r)]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(s(&r)) && err.contains("a finished run of 20 steps"), "{err}");
    assert!(err.contains("--resume") && err.contains("--overwrite") && err.contains("last written"), "{err}");
    assert_eq!(snapshot(&r), before, "the refused command changed the run");
    // --overwrite replaces it; nothing of the old run is left beside it.
    let o = run_in(&dir, &["train", "--preset", "mlp", "--steps", "5", "--out", s(&r), "--overwrite"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(steps_of(&r), 5);
    let metrics = std::fs::read_to_string(r.join("metrics.csv")).unwrap();
    assert!(!metrics.lines().any(|l| l.starts_with("20,")), "{metrics}");
    let entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["R"], "the replaced run was not deleted");
    // --resume and --overwrite together: bad usage.
    let o = run_in(&dir, &["train", "--preset", "mlp", "--out", s(&r), "--overwrite", "--resume"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn overwrite_keeps_the_old_run_when_the_new_one_fails_to_start() {
    let dir = TempDir::new("overwrite-fails");
    let r = dir.join("R");
    let o = run_in(&dir, &["train", "--preset", "mlp", "--steps", "5", "--out", s(&r)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let before = snapshot(&r);
    // A batch too large for the device is refused after the directory was claimed.
    let o = bin()
        .current_dir(dir.path())
        .args(["train", "--preset", "mlp", "--steps", "5", "--out", s(&r), "--overwrite"])
        .env("DLSVM_MAX_BUFFER_BYTES", "4096")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(snapshot(&r), before, "a failed start lost the run it was to replace");
}

#[test]
fn a_folder_that_is_not_a_run_is_never_written_into() {
    let dir = TempDir::new("foreign");
    let f = dir.mkdir("thesis");
    std::fs::write(f.join("chapter1.tex"), "x").unwrap();
    for extra in [&[][..], &["--overwrite"], &["--resume"]] {
        let o =
            run_in(&dir, &[&["train", "--preset", "mlp", "--steps", "5", "--out", s(&f)], extra].concat());
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains("\"chapter1.tex\", which is not a dlsvm run"), "{err}");
    }
    assert_eq!(snapshot(&f).len(), 1);
    // An empty folder is fine.
    let e = dir.mkdir("empty");
    let o = run_in(&dir, &["train", "--preset", "mlp", "--steps", "5", "--out", s(&e)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
}

#[test]
fn a_network_name_cannot_choose_where_files_go() {
    let dir = TempDir::new("names");
    let preset = run_in(&dir, &["train", "--preset", "mlp", "--steps", "1", "--out", "first"]);
    assert_eq!(preset.status.code(), Some(0));
    let config = std::fs::read_to_string(dir.join("first/config.toml")).unwrap();
    for bad in ["../../escaped", "a/b", ".hidden", "x y"] {
        let file = dir.write("net.toml", config.replace("name = \"mlp\"", &format!("name = {bad:?}")));
        let o = run_in(&dir, &["train", "--config", s(&file), "--steps", "1"]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains(s(&file)) && err.contains("`name`") && err.contains("plain name"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert!(!dir.join("escaped").exists() && !dir.parent().unwrap().join("escaped").exists());
    // A grid value names a directory too.
    for bad in ["top=\"../../escaped\"", "lr=0.1,../x"] {
        let o = run_in(&dir, &["train", "--preset", "mlp", "--steps", "1", "--out", "g", "--grid", bad]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--grid") && err.contains("plain name"), "{err}");
        assert!(!dir.join("g").exists(), "{bad}");
    }
}

/// Starts `dlsvm train` into `out` long enough to be caught running.
fn start_long(cwd: &Path, out: &Path) -> Child {
    bin()
        .current_dir(cwd)
        .args(["train", "--preset", "mlp", "--steps", "3000", "--checkpoint-every", "50", "--out", s(out)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `out` holds a checkpoint (the run is under way).
fn wait_for_checkpoint(child: &mut Child, out: &Path) {
    let began = Instant::now();
    while !out.join("model.safetensors").exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        assert!(began.elapsed() < Duration::from_secs(120), "no checkpoint after 2 minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_process_per_run_directory() {
    let dir = TempDir::new("lock");
    let r = dir.join("R");
    let mut first = start_long(&dir, &r);
    wait_for_checkpoint(&mut first, &r);
    let pid = first.id();
    // A second train, a --resume and a compare into it are refused, naming the first.
    for args in [
        vec!["train", "--preset", "mlp", "--steps", "5", "--out", s(&r), "--overwrite"],
        vec!["train", "--preset", "mlp", "--steps", "5", "--out", s(&r), "--resume"],
    ] {
        let o = run_in(&dir, &args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("in use by another dlsvm") && err.contains(&format!("pid {pid} on host")),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // collect says it is running; eval of its model still works (it only reads).
    let o = run_in(&dir, &["collect", s(&r)]);
    assert!(text(&o).0.contains("running: . (by dlsvm, pid"), "{:?}", text(&o));
    let o = run_in(&dir, &["eval", "--model", s(&r.join("model.safetensors")), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    // A kill -9 frees the directory at once: --resume takes it and finishes.
    first.kill().unwrap();
    first.wait().unwrap();
    let done = dlsvm::model::checkpoint::load(&r.join("model.safetensors")).unwrap().step;
    let steps = (done + 10).to_string();
    let o = run_in(&dir, &["train", "--preset", "mlp", "--steps", &steps, "--out", s(&r), "--resume"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(steps_of(&r), done + 10);
}

#[test]
fn the_first_of_two_processes_finishes_normally() {
    let dir = TempDir::new("two");
    let r = dir.join("R");
    let mut first = bin()
        .current_dir(dir.path())
        .args(["train", "--preset", "mlp", "--steps", "400", "--checkpoint-every", "20", "--out", s(&r)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_checkpoint(&mut first, &r);
    let second = run_in(&dir, &["train", "--preset", "mlp", "--steps", "5", "--out", s(&r)]);
    assert_eq!(second.status.code(), Some(2), "{:?}", text(&second));
    assert_eq!(first.wait().unwrap().code(), Some(0));
    assert_eq!(steps_of(&r), 400, "the second process changed the first's run");
}

#[test]
fn compare_and_grids_follow_the_same_rules() {
    let dir = TempDir::new("sets");
    let c = dir.join("C");
    let args = ["compare", "--preset", "mlp", "--steps", "5", "--seeds", "1", "--out", s(&c)];
    let o = run_in(&dir, &args);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let before = snapshot(&c);
    let o = run_in(&dir, &args);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("already holds 2 runs") || err.contains("already holds"), "{err}");
    assert_eq!(snapshot(&c), before);
    let o = run_in(&dir, &[&args[..], &["--resume"]].concat());
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    // compare's default directory never collides either.
    for want in ["runs/mlp-compare", "runs/mlp-compare-2"] {
        let o = run_in(&dir, &["compare", "--preset", "mlp", "--steps", "3", "--seeds", "1"]);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        assert!(dir.join(want).join("compare.json").exists(), "{want}");
    }
    // A grid's directory too.
    let g = dir.join("G");
    let grid = ["train", "--preset", "mlp", "--steps", "3", "--grid", "lr=0.01,0.02", "--out", s(&g)];
    assert_eq!(run_in(&dir, &grid).status.code(), Some(0));
    let o = run_in(&dir, &grid);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
}
