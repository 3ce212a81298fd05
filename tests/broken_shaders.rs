//! `dlsvm check` against kernels broken on purpose (`DLSVM_SHADER_DIR`: a copy of shaders/ with
//! one kernel changed): a read one element past an input's end must fail its row (the inputs are
//! bound with NaN padding; without it lavapipe answers such a read with 0, and the broken kernels
//! here pass), and a kernel that never finishes must fail its row, by name, and stop the check
//! within the limit of `DLSVM_CHECK_TIMEOUT` instead of hanging.

mod common;

use common::{bin, text, TempDir};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// A copy of shaders/ in a fresh folder.
fn shader_copy(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let shaders = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for entry in std::fs::read_dir(&shaders).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// [`shader_copy`] with `from` replaced by `to` in `file` (where it occurs exactly once).
fn broken_copy(tag: &str, file: &str, from: &str, to: &str) -> TempDir {
    let dir = shader_copy(tag);
    let source = std::fs::read_to_string(dir.join(file)).unwrap();
    assert_eq!(source.matches(from).count(), 1, "{file} holds the text to break exactly once: {from}");
    dir.write(file, source.replace(from, to));
    dir
}

/// `dlsvm check --filter FILTER` with the shaders of `dir` and `env`, killed if it runs past
/// `limit` (so a watchdog that fails cannot hang the test): its output and how long it ran.
fn check(dir: &TempDir, filter: &str, env: &[(&str, &str)], limit: Duration) -> (Output, Duration) {
    let mut cmd = bin();
    cmd.args(["check", "--filter", filter]).env("DLSVM_SHADER_DIR", dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("dlsvm runs");
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!("check --filter {filter:?} still ran after {limit:?}: {:?}", text(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    (o, start.elapsed())
}

const PATIENCE: Duration = Duration::from_secs(600);

/// The ReLU forward (a shader with bounds checks) made to add `prob · x[i + 1]`, where the uniform
/// `prob` is 0 for a ReLU: the last invocation reads x[n], one element past the input's end. A zero
/// there (lavapipe's answer past a binding) changes nothing; the NaN padding makes y[n-1] NaN.
#[test]
fn a_read_one_element_past_an_input_fails_the_relu_row() {
    let dir = broken_copy(
        "relu-oob",
        "activation.wgsl",
        "y[i] = select(0.0, v, v > 0.0);",
        "y[i] = select(0.0, v, v > 0.0) + p.prob * x[i + 1u];",
    );
    let (o, _) = check(&dir, "relu fwd", &[], PATIENCE);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert!(out.contains("relu fwd") && out.contains("FAIL") && out.contains("gpu NaN"), "{out}");
    // The copy itself is sound: unbroken, the same folder passes.
    let (o, _) = check(&shader_copy("relu-intact"), "relu fwd", &[], PATIENCE);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
}

/// The naive GEMM (compiled without bounds checks) with its K loop one step too long, the K-tail
/// bug the padding exists for: row K of B, one row past its end, and A[M-1][K], one element past
/// its end, enter every output. Caught with and without naga's bounds checks (which clamp to the
/// binding: the padding).
#[test]
fn a_k_loop_one_step_too_long_fails_the_gemm_row_with_and_without_bounds_checks() {
    let dir = broken_copy(
        "gemm-oob",
        "gemm.wgsl",
        "for (var kk = 0u; kk < p.k; kk++) {\n        acc +=",
        "for (var kk = 0u; kk <= p.k; kk++) {\n        acc +=",
    );
    for checks in ["0", "1"] {
        let (o, _) = check(&dir, "gemm_nn naive", &[("DLSVM_SHADER_CHECKS", checks)], PATIENCE);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "DLSVM_SHADER_CHECKS={checks}\nstdout: {out}\nstderr: {err}");
        assert!(out.contains("gemm_nn naive") && out.contains("FAIL"), "{out}");
    }
}

/// The ReLU forward made to spin for ever: the first case's row fails, naming the kernel and its
/// shape, the check stops with exit 1 within the limit (plus the start-up), and says why.
#[test]
fn a_kernel_that_never_finishes_fails_its_row_and_stops_the_check() {
    let dir = broken_copy(
        "relu-hang",
        "activation.wgsl",
        "        let v = x[i];\n        y[i] = select(0.0, v, v > 0.0);",
        // A loop the compiler cannot remove: its exit depends on a uniform it cannot know.
        "        var spin = 0u;\n        loop { spin += 1u; if (p.n == 0xffffffffu && spin == 7u) { break; } }\n        \
         let v = x[i] + f32(spin);\n        y[i] = select(0.0, v, v > 0.0);",
    );
    let (o, took) = check(&dir, "relu", &[("DLSVM_CHECK_TIMEOUT", "2")], Duration::from_secs(120));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    let row =
        out.lines().find(|l| l.starts_with("  relu fwd: ")).unwrap_or_else(|| panic!("no failed row: {out}"));
    for want in ["relu_forward (activation::relu_fwd", "bindings [1] [1]", "did not finish within 2 s"] {
        assert!(row.contains(want), "{want:?} not in {row:?}");
    }
    assert!(out.contains("the check stopped there"), "{out}");
    assert!(!out.contains("relu bwd"), "nothing runs after the stuck kernel: {out}");
    assert!(took < Duration::from_secs(60), "the check took {took:?} with a limit of 2 s");
    // The limit is checked: a malformed one is refused before the device is touched.
    let (o, _) = check(&dir, "relu", &[("DLSVM_CHECK_TIMEOUT", "soon")], PATIENCE);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("DLSVM_CHECK_TIMEOUT"), "{:?}", text(&o));
}
