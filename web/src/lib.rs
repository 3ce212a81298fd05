//! dlsvm in the browser: what the page of web/index.html calls, over the library's async host
//! path (the same code the native commands block on). Built by `bash web/build.sh` for
//! wasm32-unknown-unknown with wgpu's WebGPU backend; every function opens the page's adapter
//! (`navigator.gpu`) and answers JSON.

use std::time::Duration;

use dlsvm::check;
use dlsvm::gpu::{AdapterReport, Gpu};
use wasm_bindgen::prelude::*;

fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

/// Panics go to the console as errors (a page has no stderr).
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&JsValue::from_str(&format!("dlsvm panicked: {info}")));
    }));
}

/// Opens the page's adapter. Browsers rarely give wgpu a description of it; `name` is what the
/// page read of `GPUAdapter.info` (vendor, architecture), used where wgpu has none.
async fn open(name: &str) -> Result<Gpu, JsValue> {
    let mut gpu = Gpu::open_async(None).await.map_err(js_error)?;
    if gpu.info.name.is_empty() {
        gpu.info.name = if name.is_empty() { "the browser's WebGPU adapter".into() } else { name.into() };
    }
    Ok(gpu)
}

/// The page's adapter as `dlsvm info --json` describes one: name, backend, limits, features,
/// subgroup sizes.
#[wasm_bindgen]
pub async fn adapter(name: String) -> Result<String, JsValue> {
    let gpu = open(&name).await?;
    serde_json::to_string(&AdapterReport::new(&gpu)).map_err(js_error)
}

/// `dlsvm check` on the page's adapter: every kernel and variant against the CPU reference
/// (compiled to wasm), on NaN-padded inputs. `filter` keeps the rows whose name contains it.
/// `on_case(row, passed, done)` hears of each case as it finishes. Answers JSON: `rows` (as
/// `dlsvm check --json`), `table` and `summary` (the text `dlsvm check` prints), `cases`,
/// `passed` and `failed` (rows), `seconds`.
#[wasm_bindgen]
pub async fn run_check(
    name: String,
    filter: Option<String>,
    on_case: js_sys::Function,
) -> Result<String, JsValue> {
    let mut gpu = open(&name).await?;
    let limit = Duration::from_secs_f64(check::DEFAULT_WAIT_LIMIT_S);
    gpu.enable_checks(limit);
    let started = js_sys::Date::now();
    let mut cases = 0u32;
    let filter = filter.filter(|f| !f.is_empty());
    let rows = check::run_suite_async(&gpu, filter.as_deref(), |row, result| {
        cases += 1;
        let passed = result.as_ref().is_ok_and(|r| r.passed());
        let args = [JsValue::from_str(row), JsValue::from_bool(passed), JsValue::from_f64(cases as f64)];
        let _ = on_case.call3(&JsValue::NULL, &args[0], &args[1], &args[2]);
    })
    .await;
    let failed = rows.iter().filter(|r| !r.passed).count();
    let report = serde_json::json!({
        "adapter": gpu.info,
        "subgroups": gpu.subgroups,
        "table": check::table(&rows),
        "summary": check::summary(&rows, &gpu, limit),
        "rows": rows,
        "cases": cases,
        "passed": rows.len() - failed,
        "failed": failed,
        "seconds": (js_sys::Date::now() - started) / 1e3,
    });
    Ok(report.to_string())
}
