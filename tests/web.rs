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
    run_visits(&[query], timeout, &[]).pop().unwrap()
}

/// [`run_page`], the server also serving `extra` files (name, bytes) at `/NAME`.
fn run_page_with(query: &str, timeout: Duration, extra: &[(&str, Vec<u8>)]) -> Value {
    run_visits(&[query], timeout, extra).pop().unwrap()
}

/// [`run_page_with`] for each query in turn, as one visitor coming back (the same origin and
/// browser profile, so the page's storage is kept); `timeout` for each.
fn run_visits(queries: &[&str], timeout: Duration, extra: &[(&str, Vec<u8>)]) -> Vec<Value> {
    let dist = dist();
    let extra: Vec<(String, Vec<u8>)> = extra.iter().map(|(n, b)| (n.to_string(), b.clone())).collect();
    let files = move |path: &str| {
        let name = match path {
            "/" => "index.html",
            p => p.trim_start_matches('/'),
        };
        if name.contains("..") || name.contains('/') {
            return None;
        }
        if let Some((_, bytes)) = extra.iter().find(|(n, _)| n == name) {
            return Some(("application/octet-stream", bytes.clone()));
        }
        let kind = match Path::new(name).extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript",
            Some("wasm") => "application/wasm",
            _ => "application/octet-stream",
        };
        std::fs::read(dist.join(name)).ok().map(|b| (kind, b))
    };
    let urls: Vec<String> = queries.iter().map(|q| format!("/index.html?{q}&report=/result")).collect();
    browser::run_pages("web", &urls.iter().map(String::as_str).collect::<Vec<_>>(), files, timeout)
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

/// Standard base64 (the page's `btoa`), decoded.
fn unbase64(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| value(c) as u32).collect();
        let n = v.iter().enumerate().fold(0u32, |n, (i, &x)| n | x << (18 - 6 * i));
        out.extend(n.to_be_bytes()[1..chunk.len()].iter());
    }
    out
}

/// A synthetic face (data::synth, label `face_label`) as a 64x64 grayscale PNG file's bytes:
/// larger than the models' 48x48, so predicting it resizes it.
fn face_png(index: usize) -> (Vec<u8>, i32) {
    let faces = dlsvm::data::synth::faces(index + 1, 11);
    let (h, w) = (faces.h, faces.w);
    let big = dlsvm::data::resize_planes(faces.image(index), 1, h, w, 64, 64);
    let gray: Vec<u8> = big.iter().map(|&v| v.round().clamp(0.0, 255.0) as u8).collect();
    let img = image::GrayImage::from_raw(64, 64, gray).unwrap();
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    (png.into_inner(), faces.labels[index])
}

/// Native `dlsvm predict --json` of `image` with `model` (files in `dir`): (class, scores by
/// class name).
fn native_predict(dir: &Path, model: &[u8], image: &[u8]) -> (String, serde_json::Map<String, Value>) {
    let (model_path, image_path) = (dir.join("model.safetensors"), dir.join("face.png"));
    std::fs::write(&model_path, model).unwrap();
    std::fs::write(&image_path, image).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dlsvm"))
        .args(["predict", "--model", model_path.to_str().unwrap(), image_path.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "dlsvm predict: {err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    (v[0]["class"].as_str().unwrap().to_string(), v[0]["scores"].as_object().unwrap().clone())
}

/// The page's prediction `page` (its `predict` answer) against native `dlsvm predict`'s of the
/// same model file and image file: the same class and every score within `SCORE_TOL`.
fn assert_same_prediction(page: &Value, native: &(String, serde_json::Map<String, Value>)) {
    let classes: Vec<&str> =
        page["classes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(classes.len(), 7, "{page}");
    let (class, scores) = native;
    let mut worst = 0.0f64;
    for c in &classes {
        let (p, n) = (page["scores"][c].as_f64().unwrap(), scores[*c].as_f64().unwrap());
        worst = worst.max((p - n).abs());
        assert!(
            (p - n).abs() <= SCORE_TOL,
            "{c}: the page scores {p}, native {n} (page: {page}; native: {scores:?})"
        );
    }
    println!(
        "the page: {} {}; native: {class} {scores:?}; largest difference {worst:e}",
        page["class"], page["scores"]
    );
    assert_eq!(page["class"].as_str(), Some(class.as_str()), "page: {page}; native: {scores:?}");
}

/// How far the page's scores (WebGPU on SwiftShader, the kernels' default variants) may be from
/// native `dlsvm predict`'s (lavapipe, the tuned variants) for the same model and image. The
/// pixels, resize and normalization are the same code on the CPU on both sides (bit-identical up
/// to wasm's and x86's shared IEEE f32); only the GPU's sums differ, in order: each kernel is
/// within sqrt(len)·(1e-5 + 1e-5·|ref|) of the f64 reference on either adapter
/// (src/check/tolerance.rs, GEMM and CONV), about 5e-4 for fer-small's longest sums (the fc
/// layer's 1,152 inputs, scores of magnitude ~1), and the four layers pass such differences on
/// without amplifying them much (the weights are small; a max pool can switch on a near-tie,
/// which moves a score by at most that tie's gap). 2e-3 is that bound for each adapter, twice over;
/// a real difference (a missed normalizer, another resize, another crop) moves scores by 0.1 or
/// more.
const SCORE_TOL: f64 = 2e-3;

/// `?run=train&steps=100&predict=/face.png` trains fer-small on the synthetic faces in the page:
/// the loss falls, the test accuracy is above chance (1/7), and the model the page offers is a
/// `model.safetensors` that native `dlsvm eval` reads and scores as the page did; the page then
/// predicts a served PNG, and native `dlsvm predict` of the page's model on the same file agrees.
#[test]
fn training_in_the_browser_learns_and_its_model_is_dlsvms() {
    let (png, _) = face_png(3);
    let report = run_page_with(
        "run=train&steps=100&predict=/face.png",
        Duration::from_secs(900),
        &[("face.png", png.clone())],
    );
    if let Some(fatal) = report["fatal"].as_str() {
        panic!("the page could not train: {fatal}");
    }
    let losses: Vec<(u64, f64)> = report["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_f64().unwrap()))
        .collect();
    let accuracy = report["test_accuracy"].as_f64().unwrap();
    println!(
        "{} steps in {:.1} s ({:.0} images/s), test accuracy {:.2} %, losses {losses:?}",
        report["steps"],
        report["seconds"].as_f64().unwrap(),
        report["images_per_sec"].as_f64().unwrap(),
        100.0 * accuracy
    );
    assert_eq!(report["steps"], 100);
    assert_eq!(losses.last().unwrap().0, 100, "the last step is logged");
    let (first, last) = (losses[0].1, losses.last().unwrap().1);
    assert!(last < 0.8 * first, "the loss did not fall: {losses:?}");
    assert!(accuracy > 0.20, "test accuracy {accuracy} is not above chance (1/7)");

    let dir = std::env::temp_dir().join(format!("dlsvm-web-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model_bytes = unbase64(report["model_base64"].as_str().expect("the model"));
    let model = dir.join("model.safetensors");
    std::fs::write(&model, &model_bytes).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dlsvm"))
        .args(["eval", "--model", model.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let native = native_predict(&dir, &model_bytes, &png);
    let _ = std::fs::remove_dir_all(&dir);
    assert_same_prediction(&report["predict"], &native);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "dlsvm eval of the page's model: {err}");
    let e: Value = serde_json::from_str(out.trim()).unwrap();
    let native = e["splits"]["test"]["accuracy"].as_f64().unwrap();
    // The same weights and test faces; other kernels and adapter: a face or two may land the
    // other way (800 faces: 0.125 % each).
    assert!((native - accuracy).abs() <= 0.005, "native eval {native}, the page {accuracy}");
}

/// The rows of `?run=bench`'s report: every dispatch of a fer-small step has a row with a
/// positive time, and the step's median is at least the slowest dispatch alone.
fn check_step_rows(report: &Value, reps: usize) {
    if let Some(fatal) = report["fatal"].as_str() {
        panic!("the page could not benchmark: {fatal}");
    }
    let rows = report["rows"].as_array().unwrap();
    println!("{} ms a step ({}), {} rows: {rows:?}", report["median_ms"], report["timing"], rows.len());
    assert!(rows.len() >= 15, "a fer-small step has more dispatches: {rows:?}");
    let slowest = rows.iter().map(|r| r[1].as_f64().unwrap()).fold(0.0, f64::max);
    assert!(rows.iter().all(|r| r[1].as_f64().unwrap() > 0.0), "{rows:?}");
    let median = report["median_ms"].as_f64().unwrap();
    assert!(median >= slowest, "a step ({median} ms) faster than one of its dispatches ({slowest} ms)");
    assert_eq!(report["step_ms"].as_array().unwrap().len(), reps);
}

/// `?run=bench` tunes each op of a fer-small step on the page's adapter (the command line's
/// tuner: checked against the CPU reference, screened, the fastest timed side by side), times the
/// step with those choices, and keeps them in the browser's storage: the visitor's next run takes
/// every choice from there and tunes nothing.
#[test]
fn the_benchmark_tunes_in_the_browser_and_keeps_the_choices() {
    let query = "run=bench&net=fer-small&batch=16&reps=3";
    let reports = run_visits(&[query, query], Duration::from_secs(1200), &[]);
    let ops = |r: &Value| r["ops"].as_array().cloned().unwrap_or_default();
    for (visit, r) in reports.iter().enumerate() {
        check_step_rows(r, 3);
        println!(
            "visit {visit}: {} ops tuned in {} s, {} cached: {:?}",
            r["tuned"],
            r["tuning_seconds"],
            r["cached"],
            ops(r)
                .iter()
                .map(|o| (o["op"].clone(), o["choice"].clone(), o["ms"].clone()))
                .collect::<Vec<_>>()
        );
    }
    let (first, second) = (&reports[0], &reports[1]);
    // fer-small's step: 3 convolutions (forward, weight; data for the last two), 3 pools (both
    // ways), 2 fc layers (forward, data, weight): 20 ops, every one tuned on the first visit.
    assert_eq!(ops(first).len(), 20, "{first}");
    assert_eq!((first["tuned"].as_u64(), first["cached"].as_u64()), (Some(20), Some(0)), "{first}");
    for o in ops(first) {
        let choice = o["choice"].as_str().unwrap_or_else(|| panic!("no variant passed its check: {o}"));
        assert!(o["ms"].as_f64().unwrap() > 0.0, "{o}");
        // The step ran with the choice.
        assert_eq!(first["plan"][o["op"].as_str().unwrap()].as_str(), Some(choice), "{o}: {}", first["plan"]);
        assert!(o["skipped"].as_object().is_some_and(|s| s.is_empty()), "a variant failed its check: {o}");
    }
    // The second visit: every choice from the browser's storage, the same ones.
    assert_eq!((second["tuned"].as_u64(), second["cached"].as_u64()), (Some(0), Some(20)), "{second}");
    assert_eq!(second["plan"], first["plan"]);
}

/// `?run=bench&tune=off` times the step with the kernels' default variants and tunes nothing; a
/// run that cannot start says why (on the page, the console and the report).
#[test]
fn the_benchmark_runs_the_defaults_untuned_and_says_why_it_cannot_start() {
    let report = run_page("run=bench&net=fer-small&batch=64&reps=3&tune=off", Duration::from_secs(600));
    check_step_rows(&report, 3);
    assert!(report["ops"].as_array().is_some_and(|o| o.is_empty()), "{report}");
    assert_eq!(report["tuned"], 0);
    let report = run_page("run=bench&net=nope&batch=8&reps=1", Duration::from_secs(120));
    assert!(report["fatal"].as_str().is_some_and(|f| f.contains("no preset nope")), "{report}");
}

/// An untrained fer-small model's `model.safetensors` bytes (the initial weights, the normalizer of
/// 400 synthetic faces): a model for the page without training one there.
fn untrained_model() -> Vec<u8> {
    use dlsvm::data::{normalize::Normalizer, synth};
    use dlsvm::model::{checkpoint, config, Net};
    let cfg = config::preset("fer-small").unwrap();
    let t = &cfg.train;
    let source = synth::source(400, 80, t.seed);
    let net = Net::new(&cfg, source.classes()).unwrap();
    let ck = checkpoint::Checkpoint {
        config: cfg.clone(),
        class_names: source.class_names.clone(),
        normalizer: Normalizer::fit(source.train().unwrap(), t.per_image_norm, t.norm),
        step: 0,
        total_steps: 0,
        params: net.init_params(t.seed),
        velocity: None,
        plan: None,
        adapter: None,
        pca: None,
    };
    checkpoint::to_bytes(&ck).unwrap()
}

/// `?run=predict&model=M&predict=I` loads the model file M as a dropped one and predicts the image
/// file I: with a dlsvm model and a PNG, as native `dlsvm predict` does; a file that is not an
/// image, or a model file that is not a dlsvm model, is refused with one line naming it (on the
/// page, the console and the report).
#[test]
fn the_page_predicts_a_dropped_model_and_refuses_other_files() {
    let model = untrained_model();
    let (png, _) = face_png(5);
    let files = [
        ("model.safetensors", model.clone()),
        ("face.png", png.clone()),
        ("notes.png", b"not a picture".to_vec()),
        ("notes.safetensors", b"not a model at all".to_vec()),
    ];
    let minute = Duration::from_secs(120);
    let report = run_page_with("run=predict&model=/model.safetensors&predict=/face.png", minute, &files);
    assert!(report["fatal"].is_null(), "{report}");
    let dir = std::env::temp_dir().join(format!("dlsvm-web-predict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let native = native_predict(&dir, &model, &png);
    let _ = std::fs::remove_dir_all(&dir);
    assert_same_prediction(&report, &native);

    let one_line = |report: &Value, want: &[&str]| {
        let fatal = report["fatal"].as_str().unwrap_or_else(|| panic!("no failure reported: {report}"));
        assert!(!fatal.contains('\n'), "not one line: {fatal}");
        for w in want {
            assert!(fatal.contains(w), "{fatal:?} lacks {w:?}");
        }
        assert_eq!(report["run"], "predict", "{report}");
        println!("{fatal}");
    };
    let report = run_page_with("run=predict&model=/model.safetensors&predict=/notes.png", minute, &files);
    one_line(
        &report,
        &["predict failed", "notes.png: cannot decode image", "expected a complete PNG or JPEG file"],
    );
    let report = run_page_with("run=predict&model=/notes.safetensors&predict=/face.png", minute, &files);
    one_line(&report, &["could not load the model", "notes.safetensors: not a safetensors file"]);
}
