//! Every shader, as dlsvm assembles it for every specialization the crate uses, compiled by
//! Chromium's WGSL compiler (Tint), which every WebGPU user runs: naga (tests/shaders.rs) accepts
//! things Tint rejects, above all barriers and subgroup operations that Tint's uniformity analysis
//! cannot prove uniform. The subgroup shaders get their `enable subgroups;` directive as the
//! browser build adds it (`ShaderDef::source_for` with `Backend::BrowserWebGpu`).
//!
//! The test serves a page and the sources (JSON) from a tiny HTTP server on 127.0.0.1, runs
//! headless Chromium on it (WebGPU on SwiftShader, its CPU Vulkan), and takes the page's results
//! back by POST: one `createShaderModule` and `getCompilationInfo` per source, all in one page
//! load. It fails on any error message, naming the shader, the specialization and the line in
//! the WGSL file. Without Chromium it fails with the install hint (tests/common/browser.rs).

#[path = "common/browser.rs"]
mod browser;

use std::path::Path;
use std::time::{Duration, Instant};

use dlsvm::gpu::{Extension, ShaderDef, PRELUDE};
use dlsvm::kernels::SHADERS;
use serde_json::{json, Value};

/// How long the browser may take to start, compile every shader and answer.
const TIMEOUT: Duration = Duration::from_secs(120);

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>dlsvm shaders through Tint</title>
<script>
// Compiles every source of /shaders.json and posts what the compiler said to /result.
async function run() {
  const report = { adapter: null, features: [], subgroups: false, fatal: null, results: [] };
  try {
    const shaders = await (await fetch('/shaders.json')).json();
    if (!navigator.gpu) throw new Error('navigator.gpu is missing: WebGPU is off (--enable-unsafe-webgpu?)');
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) throw new Error('requestAdapter() gave no adapter');
    const info = adapter.info || {};
    report.adapter = [info.vendor, info.architecture, info.device, info.description].filter(s => s).join(' ');
    report.features = [...adapter.features].sort();
    report.subgroups = adapter.features.has('subgroups');
    const device = await adapter.requestDevice({ requiredFeatures: report.subgroups ? ['subgroups'] : [] });
    const modules = shaders.map(s => {
      device.pushErrorScope('validation');
      const module = device.createShaderModule({ label: s.name + ' ' + s.spec, code: s.code });
      return { module, scope: device.popErrorScope() };
    });
    for (let i = 0; i < shaders.length; i++) {
      const info = await modules[i].module.getCompilationInfo();
      const scoped = await modules[i].scope;
      const messages = info.messages.map(m => ({ type: m.type, line: m.lineNum, pos: m.linePos, message: m.message }));
      // A validation error outside the compiler's messages (none expected), kept as an error.
      if (scoped && !messages.some(m => m.type === 'error')) {
        messages.push({ type: 'error', line: 0, pos: 0, message: scoped.message });
      }
      report.results.push({ index: i, messages });
    }
  } catch (e) {
    report.fatal = String(e && e.stack || e);
  }
  await fetch('/result', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(report) });
}
run();
</script>
"#;

/// One source to compile: the shader, its specialization, the assembled WGSL.
struct Source {
    def: &'static ShaderDef,
    spec: String,
    code: String,
}

fn sources() -> Vec<Source> {
    let mut out = Vec::new();
    for def in SHADERS {
        for spec in (def.specs)() {
            let spec_text = spec.0.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(" ");
            let code = def.source_for(&spec, wgpu::Backend::BrowserWebGpu);
            if def.extension == Extension::Subgroups {
                assert!(
                    code.starts_with("enable subgroups;"),
                    "{}: no `enable subgroups;` for the browser",
                    def.name
                );
            }
            out.push(Source { def, spec: spec_text, code });
        }
    }
    out
}

/// Where line `line` (1-based) of `src`'s assembled code comes from: (file, line in that file).
/// The assembly (ShaderDef::source_with) is a directive, the specialization constants, the prelude
/// (common.wgsl), then each part and the shader's own file after a `// <name>.wgsl` line.
fn origin(src: &Source, line: u64) -> (String, u64) {
    let line_of = |byte: usize| src.code[..byte].matches('\n').count() as u64 + 1;
    let mut starts: Vec<(u64, String)> = vec![(1, "(header)".to_string())];
    // The prelude as source_with read it (DLSVM_SHADER_DIR may name another copy).
    let prelude = std::env::var_os("DLSVM_SHADER_DIR")
        .and_then(|dir| std::fs::read_to_string(Path::new(&dir).join("common.wgsl")).ok())
        .unwrap_or_else(|| PRELUDE.to_string());
    if let Some(at) = src.code.find(&prelude) {
        starts.push((line_of(at), "common.wgsl".to_string()));
    }
    for name in src.def.parts.iter().map(|p| p.0).chain([src.def.file()]) {
        if let Some(at) = src.code.find(&format!("// {name}.wgsl\n")) {
            starts.push((line_of(at) + 1, format!("{name}.wgsl")));
        }
    }
    starts.sort();
    let (first, file) =
        starts.iter().rev().find(|(start, _)| *start <= line).cloned().unwrap_or((1, String::new()));
    (file, line + 1 - first)
}

/// Serves the page and `shaders` until the page posts its report.
fn compile_in_chromium(shaders: &Value) -> Value {
    let shaders = serde_json::to_vec(shaders).unwrap();
    browser::run_page(
        "tint",
        "/",
        |path| match path {
            "/" => Some(("text/html; charset=utf-8", PAGE.as_bytes().to_vec())),
            "/shaders.json" => Some(("application/json", shaders.clone())),
            _ => None,
        },
        TIMEOUT,
    )
}

#[test]
fn every_shader_compiles_in_chromium() {
    let started = Instant::now();
    let sources = sources();
    let payload: Vec<Value> =
        sources.iter().map(|s| json!({ "name": s.def.name, "spec": s.spec, "code": s.code })).collect();
    let report = compile_in_chromium(&Value::Array(payload));
    if let Some(fatal) = report["fatal"].as_str() {
        panic!("the page failed before compiling everything: {fatal}");
    }
    println!(
        "Chromium's adapter: {} (features: {})",
        report["adapter"].as_str().unwrap_or("?"),
        report["features"]
            .as_array()
            .map(|f| f.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    );
    let results = report["results"].as_array().expect("no results");
    assert_eq!(
        results.len(),
        sources.len(),
        "the page compiled {} of {} sources",
        results.len(),
        sources.len()
    );

    let mut errors = Vec::new();
    let mut warnings = 0;
    for result in results {
        let src = &sources[result["index"].as_u64().unwrap() as usize];
        let messages = result["messages"].as_array().unwrap();
        // Tint follows an error with its notes (of type info): report them with it.
        let mut current: Option<String> = None;
        for m in messages {
            let kind = m["type"].as_str().unwrap_or("");
            let line = m["line"].as_u64().unwrap_or(0);
            let (file, file_line) = origin(src, line);
            let text = format!(
                "{file}:{file_line}:{} (assembled line {line}): {kind}: {}",
                m["pos"].as_u64().unwrap_or(0),
                m["message"].as_str().unwrap_or("")
            );
            match kind {
                "error" => {
                    if let Some(done) = current.take() {
                        errors.push(done);
                    }
                    current = Some(format!("shader {} [{}]:\n  {text}", src.def.name, src.spec));
                }
                "warning" => {
                    warnings += 1;
                    println!("warning: shader {} [{}]: {text}", src.def.name, src.spec);
                }
                _ => {
                    if let Some(error) = current.as_mut() {
                        error.push_str(&format!("\n    {text}"));
                    }
                }
            }
        }
        errors.extend(current);
    }
    println!(
        "{} sources ({} shaders) compiled by Chromium in {:.1} s: {} error(s), {warnings} warning(s)",
        sources.len(),
        SHADERS.len(),
        started.elapsed().as_secs_f64(),
        errors.len()
    );
    // Even with every source compiled, a subgroup shader's compile without the feature is no check.
    let subgroups = report["subgroups"].as_bool().unwrap_or(false);
    assert!(
        errors.is_empty() && subgroups,
        "\n{}{}",
        errors.iter().map(|e| format!("{e}\n")).collect::<String>(),
        if subgroups {
            format!("{} error(s) from Chromium's WGSL compiler", errors.len())
        } else {
            "Chromium's WebGPU adapter has no `subgroups` feature: the subgroup shaders were not checked"
                .to_string()
        }
    );
}
