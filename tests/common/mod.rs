//! Shared by the GPU test files: one device per test binary, opened as `dlsvm check` opens it
//! (`Gpu::enable_checks`: NaN padding past every tensor's end, a bounded wait for every launch). A
//! missing adapter FAILS the test with the install hint; GPU tests never pass by skipping.

#![allow(dead_code)]

use std::sync::OnceLock;

use dlsvm::check::{CaseFuture, CaseReport};
use dlsvm::gpu::{Gpu, GpuError};

pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let filter = std::env::var("DLSVM_ADAPTER").ok();
        match Gpu::new(filter.as_deref()) {
            Ok(mut g) => {
                g.enable_checks(dlsvm::check::wait_limit().unwrap_or_else(|e| panic!("{e}")));
                g.on_hang(exit_on_hang);
                g
            }
            Err(e) => {
                panic!("GPU tests need an adapter and none is usable: {e}\n{}", dlsvm::gpu::INSTALL_HINT)
            }
        }
    })
}

/// A kernel never finished: no test can use the device any more, and another test's thread may
/// be blocked behind it for ever, so say which (on the real stderr: the harness captures a test's
/// `eprintln!`) and end the test binary with exit 1.
fn exit_on_hang(e: &GpuError) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "dlsvm tests: {e}; stopping the test binary");
    std::process::exit(1);
}

/// Asserts a case ran and passed; the message names the kernel, shape, worst index and values.
#[track_caller]
pub fn pass(case: CaseFuture<'_>) -> CaseReport {
    let report = pollster::block_on(case).unwrap_or_else(|e| panic!("kernel failed to run: {e}"));
    assert!(report.passed(), "{report}");
    assert!(report.elements > 0, "{report}: nothing was compared");
    report
}

/// [`pass`] for a case on the named shape `name`: a failure says which.
#[track_caller]
pub fn pass_named(name: &str, case: CaseFuture<'_>) -> CaseReport {
    let report = pollster::block_on(case).unwrap_or_else(|e| panic!("{name}: kernel failed to run: {e}"));
    assert!(report.passed(), "{name}: {report}");
    assert!(report.elements > 0, "{name}: {report}: nothing was compared");
    report
}

// ------------------------------------------------------------------------ the command line

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `dlsvm` binary, as a user runs it; without tuning unless a test asks for it
/// (`DLSVM_TUNE`), so runs compared with each other use the same kernels.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlsvm"));
    cmd.env("DLSVM_TUNE", "off");
    cmd
}

/// Runs `dlsvm` with `args` and extra environment variables; waits for it.
pub fn dlsvm(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = bin();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the dlsvm binary runs")
}

/// `dlsvm eval --model MODEL --data DATA --json`: its JSON object (the run must succeed).
pub fn eval_json(model: &str, data: &str) -> serde_json::Value {
    let o = dlsvm(&["eval", "--model", model, "--data", data, "--json"], &[]);
    assert_eq!(o.status.code(), Some(0), "eval of {model} on {data}: {:?}", text(&o));
    serde_json::from_str(text(&o).0.trim()).expect("eval --json prints one object")
}

/// `dlsvm train` with `args`: its `--json` summary (the run must succeed).
pub fn train_json(args: &[&str]) -> serde_json::Value {
    let o = dlsvm(&[&["train"], args, &["--json"]].concat(), &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "train {args:?}: {err}");
    serde_json::from_str(out.trim()).expect("train --json prints one object")
}

/// (stdout, stderr) as text.
pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// A fresh temporary folder, unique per test binary, tag and instance; removed on drop. Derefs
/// to its path.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let exe = std::env::current_exe().ok();
        let binary = exe.as_deref().and_then(|p| p.file_stem()).and_then(|s| s.to_str()).unwrap_or("test");
        let p = std::env::temp_dir().join(format!("dlsvm-{binary}-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `bytes` to `rel` (creating folders) and returns the full path.
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Creates the folder `rel` and returns its path.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
