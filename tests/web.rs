//! The browser build (web/, `bash web/build.sh`) in a real browser: headless Chromium runs the
//! page on WebGPU (SwiftShader, its CPU Vulkan: subgroups of 4, WebGPU's default limits), with the
//! library compiled to wasm: `?run=check` must pass every row of `dlsvm check`. The page is
//! served from web/dist, which must be built from the sources as they are (the test refuses a
//! stale build rather than test old code).

#[path = "common/browser.rs"]
mod browser;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

const BUILD: &str = "run `bash web/build.sh` (after the README's set-up) to build the page into web/dist";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The newest modification time under `dir` (recursively).
fn newest(dir: &Path) -> SystemTime {
    let mut t = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let m = if path.is_dir() { newest(&path) } else { entry.metadata().unwrap().modified().unwrap() };
        t = t.max(m);
    }
    t
}

/// web/dist, checked to be there and newer than every source it is built from.
fn dist() -> PathBuf {
    let dist = root().join("web/dist");
    let wasm = dist.join("dlsvm_web_bg.wasm");
    let built = std::fs::metadata(&wasm)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("\n\nthe page is not built ({} is missing): {BUILD}\n", wasm.display()));
    for src in ["src", "shaders", "web/src", "web/index.html"] {
        let path = root().join(src);
        let t =
            if path.is_dir() { newest(&path) } else { std::fs::metadata(&path).unwrap().modified().unwrap() };
        assert!(t <= built, "\n\nthe page in web/dist is older than {src}: {BUILD}\n");
    }
    dist
}

/// Opens `index.html?QUERY&report=/result` and returns what the page reported.
fn run_page(query: &str, timeout: Duration) -> Value {
    let dist = dist();
    let files = move |path: &str| {
        let name = match path {
            "/" => "index.html",
            p => p.trim_start_matches('/'),
        };
        if name.contains("..") || name.contains('/') {
            return None;
        }
        let kind = match Path::new(name).extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript",
            Some("wasm") => "application/wasm",
            _ => "application/octet-stream",
        };
        std::fs::read(dist.join(name)).ok().map(|b| (kind, b))
    };
    browser::run_page("web", &format!("/index.html?{query}&report=/result"), files, timeout)
}

#[test]
fn the_check_passes_in_the_browser() {
    let report = run_page("run=check", Duration::from_secs(900));
    if let Some(fatal) = report["fatal"].as_str() {
        panic!("the page could not run the check: {fatal}");
    }
    let (passed, failed) = (report["passed"].as_u64().unwrap(), report["failed"].as_u64().unwrap());
    let table = report["table"].as_str().unwrap_or("");
    let summary = report["summary"].as_str().unwrap_or("");
    println!(
        "on {} (subgroups: {}), {} cases in {:.0} s:\n{table}{summary}",
        report["adapter"]["name"],
        report["subgroups"],
        report["cases"],
        report["seconds"].as_f64().unwrap_or(0.0)
    );
    assert_eq!(failed, 0, "{failed} rows failed in the browser:\n{summary}");
    // Every row of the suite ran (the same count natively: the suite is one list).
    assert!(passed >= 100, "only {passed} rows ran:\n{table}");
}
