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
//! the WGSL file. Without Chromium it fails with the install hint (`.ci/install-chromium.sh`).
//! `DLSVM_CHROMIUM` names the browser's binary where it is not `chromium` on the PATH.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("DLSVM_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("\n\nChromium is not installed, so the shaders cannot be checked against its WGSL compiler (Tint).\n{INSTALL}");
}

const INSTALL: &str = "Install it: `sudo apt-get install chromium` (or `bash .ci/install-chromium.sh`),\n\
                       or set DLSVM_CHROMIUM to a Chromium or Chrome binary.\n\n";

/// The browser, in a process group of its own (it starts a dozen processes), all ended on drop,
/// with its fresh profile folder and its log.
struct Browser {
    child: Child,
    profile: PathBuf,
    log: PathBuf,
}

impl Browser {
    fn start(url: &str, profile: &Path, log_path: &Path) -> Browser {
        use std::os::unix::process::CommandExt;
        let binary = chromium();
        std::fs::create_dir_all(profile).unwrap();
        let log = std::fs::File::create(log_path).unwrap();
        let child = Command::new(&binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                // WebGPU is behind a flag on Linux; the adapter is SwiftShader (no GPU needed).
                "--enable-unsafe-webgpu",
                // The machine may have no network: nothing but the page.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--no-first-run",
                "--no-default-browser-check",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                let _ = std::fs::remove_dir_all(profile);
                let _ = std::fs::remove_file(log_path);
                panic!("\n\ncannot start Chromium ({}): {e}\n{INSTALL}", binary.display())
            });
        Browser { child, profile: profile.to_path_buf(), log: log_path.to_path_buf() }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        'signals: for signal in ["-TERM", "-KILL"] {
            let _ = Command::new("kill").args([signal, "--", &group]).stderr(Stdio::null()).status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    // The group's other processes may outlive the leader a moment.
                    std::thread::sleep(Duration::from_millis(100));
                    let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
                    break 'signals;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&self.profile);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One HTTP request: (method, path, body).
fn read_request(stream: &mut TcpStream) -> std::io::Result<(String, String, Vec<u8>)> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut words = first.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("").to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok((method, path, body))
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body));
}

/// Serves the page and `shaders` until the page posts its report (or the browser dies, or time
/// runs out).
fn compile_in_chromium(shaders: &Value) -> Value {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("dlsvm-tint-{}-{stamp}", std::process::id()));
    let log = dir.with_extension("log");
    let shaders = serde_json::to_vec(shaders).unwrap();
    let mut browser = Browser::start(&url, &dir, &log);
    let log_tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    let started = Instant::now();
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                let Ok((method, path, body)) = read_request(&mut stream) else { continue };
                match (method.as_str(), path.as_str()) {
                    ("GET", "/") => {
                        respond(&mut stream, "200 OK", "text/html; charset=utf-8", PAGE.as_bytes())
                    }
                    ("GET", "/shaders.json") => respond(&mut stream, "200 OK", "application/json", &shaders),
                    ("POST", "/result") => {
                        respond(&mut stream, "200 OK", "text/plain", b"ok");
                        drop(browser);
                        return serde_json::from_slice(&body).expect("the page's report is not JSON");
                    }
                    _ => respond(&mut stream, "404 Not Found", "text/plain", b""),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = browser.child.try_wait() {
                    panic!("Chromium exited ({status}) before the page reported; its log:\n{}", log_tail());
                }
                if started.elapsed() > TIMEOUT {
                    panic!("no report from the page after {TIMEOUT:?}; Chromium's log:\n{}", log_tail());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
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
