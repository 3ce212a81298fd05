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

thread_local! {
    /// The page's model, as `model.safetensors` bytes ([`model`]).
    static MODEL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The page's model as `model.safetensors` bytes, the file native `dlsvm eval` and `predict` read:
/// that of the last [`run_train`], or the last file [`set_model`] took (empty before either).
#[wasm_bindgen]
pub fn model() -> Vec<u8> {
    MODEL.with(|m| m.borrow().clone())
}

/// Makes `bytes` (a dropped `model.safetensors`, named `file`) the page's model, for [`predict`]
/// and [`model`], once read as a dlsvm checkpoint; anything else is refused with one line naming
/// `file` and what is wrong, and the page's model stays as it was. Answers JSON: `net`, `classes`,
/// `image_size`, `channels`, `step`.
#[wasm_bindgen]
pub fn set_model(file: String, bytes: Vec<u8>) -> Result<String, JsValue> {
    let ck = dlsvm::model::checkpoint::from_bytes(&bytes, &file).map_err(js_error)?;
    ck.net().map_err(|e| js_error(format!("{file}: {e}")))?;
    MODEL.with(|m| *m.borrow_mut() = bytes);
    let summary = serde_json::json!({
        "net": ck.config.name,
        "classes": ck.class_names,
        "image_size": ck.config.image_size,
        "channels": ck.config.channels,
        "step": ck.step,
    });
    Ok(summary.to_string())
}

/// `dlsvm predict` of an image file's contents `image` (PNG or JPEG, named `file`) with the
/// page's model (the last trained, or the last set by [`set_model`]), on the page's adapter: the
/// library's one prediction path (`eval::Model::predict_bytes_async`: decode, resize to the
/// model's image size, the checkpoint's normalizer, the centre crop's scores) with the kernels'
/// default variants. Answers JSON: `file`, `class`, `scores` (class name to score) and `classes`
/// (the model's class order).
#[wasm_bindgen]
pub async fn predict(name: String, file: String, image: Vec<u8>) -> Result<String, JsValue> {
    use dlsvm::eval::Model;
    use dlsvm::model::{checkpoint, Plan};
    let bytes = model();
    if bytes.is_empty() {
        return Err(js_error("no model to predict with: train one on this page or drop a model.safetensors"));
    }
    let ck = checkpoint::from_bytes(&bytes, "the page's model").map_err(js_error)?;
    let gpu = open(&name).await?;
    let source = std::path::Path::new("the page's model");
    let model = Model::with_checkpoint(&gpu, source, ck, 1, |_, _| Ok(Plan::default())).map_err(js_error)?;
    let (class, scores) =
        model.predict_bytes_async(&gpu, std::path::Path::new(&file), &image).await.map_err(js_error)?;
    let names = model.class_names();
    let by_name: serde_json::Map<_, _> =
        names.iter().zip(&scores).map(|(n, v)| (n.clone(), serde_json::json!(v))).collect();
    let answer = serde_json::json!({ "file": file, "class": class, "scores": by_name, "classes": names });
    Ok(answer.to_string())
}

/// Trains `fer-small` on the built-in synthetic faces for `steps` steps (its schedule spanning
/// them), as `dlsvm train --steps N` does on the default data (the same faces, batches,
/// augmentation, initial weights and schedule; the kernels' default variants, no tuning in the
/// page). `on_log(step, loss, accuracy, images_per_sec)` hears every `log_every` steps (the mean
/// loss and training accuracy since the last call). Answers JSON: the steps, images/s, the
/// losses logged, the test accuracy and confusion matrix; [`model`] then holds the model.
#[wasm_bindgen]
pub async fn run_train(
    name: String,
    steps: u32,
    log_every: u32,
    on_log: js_sys::Function,
) -> Result<String, JsValue> {
    use dlsvm::data::{batch, normalize::Normalizer, synth};
    use dlsvm::model::{checkpoint, config, GpuNet, Net};
    let gpu = open(&name).await?;
    let mut cfg = config::preset("fer-small").ok_or_else(|| js_error("no fer-small preset"))?;
    cfg.train.steps = steps.max(1) as u64;
    let t = cfg.train.clone();
    // The README's first command's data: 4,000 training faces, 800 test faces, the run's seed.
    let source = synth::source(4000, 800, t.seed);
    let (train, test) =
        (source.train().map_err(js_error)?, source.test().ok_or_else(|| js_error("no test split"))?);
    let net = Net::new(&cfg, source.classes()).map_err(js_error)?;
    let normalizer = Normalizer::fit(train, t.per_image_norm, t.norm);
    let (train_x, test_x) = (normalizer.apply(train), normalizer.apply(test));
    let init = net.init_params(t.seed);
    let gnet = GpuNet::new(&gpu, &net, t.batch, &init, t.svm_c, t.mask_seed()).map_err(js_error)?;
    let spec = cfg.batch_spec();
    let total = t.steps;
    let log_every = log_every.max(1) as u64;
    let (mut losses, mut window) = (Vec::new(), (0u64, js_sys::Date::now()));
    let began = js_sys::Date::now();
    for step in 0..total {
        let b = batch::make_batch(&train_x, &train.labels, train.h, train.w, &spec, step);
        gnet.train_step(&gpu, &b.x, &b.y, step, t.lr_at(step, total), t.momentum_at(step))
            .map_err(js_error)?;
        window.0 += 1;
        let done = step + 1;
        if done % log_every == 0 || done == total {
            let (loss_sum, correct) = gnet.read_metrics_async(&gpu).await.map_err(js_error)?;
            gnet.reset_metrics(&gpu);
            let samples = window.0 * t.batch as u64;
            let loss = loss_sum / window.0 as f64;
            let accuracy = correct as f64 / samples as f64;
            let rate = samples as f64 / ((js_sys::Date::now() - window.1) / 1e3).max(1e-9);
            losses.push((done, loss, accuracy));
            let args = js_sys::Array::of4(
                &JsValue::from_f64(done as f64),
                &JsValue::from_f64(loss),
                &JsValue::from_f64(accuracy),
                &JsValue::from_f64(rate),
            );
            let _ = on_log.apply(&JsValue::NULL, &args);
            if !loss.is_finite() {
                return Err(js_error(format!("the loss is {loss} at step {done}: the run diverged")));
            }
            window = (0, js_sys::Date::now());
        }
    }
    let seconds = (js_sys::Date::now() - began) / 1e3;
    let scores =
        dlsvm::eval::scores_async(&gpu, &gnet, &test_x, test.len(), test.h, test.w, 1, &t.augment, t.seed)
            .await
            .map_err(js_error)?;
    let metrics = dlsvm::eval::metrics(&scores, &test.labels, net.classes);
    let (params, velocity) = gnet.download_async(&gpu).await.map_err(js_error)?;
    let ck = checkpoint::Checkpoint {
        config: cfg.clone(),
        class_names: source.class_names.clone(),
        normalizer,
        step: total,
        total_steps: total,
        params,
        velocity: Some(velocity),
        plan: Some(gnet.plan().clone()),
        adapter: Some(format!("{} ({})", gpu.info.name, gpu.info.backend)),
        pca: None,
    };
    let bytes = checkpoint::to_bytes(&ck).map_err(js_error)?;
    MODEL.with(|m| *m.borrow_mut() = bytes);
    let report = serde_json::json!({
        "net": cfg.name,
        "top": cfg.top.name(),
        "steps": total,
        "batch": t.batch,
        "seconds": seconds,
        "images_per_sec": (total * t.batch as u64) as f64 / seconds.max(1e-9),
        "losses": losses,
        "test_accuracy": metrics.accuracy,
        "test_samples": metrics.samples,
        "confusion": metrics.confusion,
        "classes": source.class_names,
        "adapter": gpu.info,
    });
    Ok(report.to_string())
}

/// The page's tuning cache from `text` (the JSON the page keeps in the browser's storage, the
/// `tune.json` of the command line): empty when there is none; a value that is not a cache is
/// ignored with a console warning (and replaced at the next save).
fn parse_cache(text: Option<&str>) -> dlsvm::tune::Cache {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Default::default();
    };
    serde_json::from_str(text).unwrap_or_else(|e| {
        web_sys::console::warn_1(&JsValue::from_str(&format!(
            "dlsvm: the tuning cache in this browser's storage is not one ({e}); tuning afresh"
        )));
        Default::default()
    })
}

/// Hands the page's tuning cache to `save(json)` (which keeps it in the browser's storage),
/// another build's month-old entries dropped as the command line drops them.
fn save_cache(cache: &mut dlsvm::tune::Cache, save: &js_sys::Function) -> Result<(), JsValue> {
    cache.prune(&dlsvm::tune::build(), (js_sys::Date::now() / 1e3) as u64);
    let text = serde_json::to_string(cache).map_err(js_error)?;
    save.call1(&JsValue::NULL, &JsValue::from_str(&text)).map(|_| ())
}

/// The plan of a step of `net` at `batch` on `gpu` with the tuner's choices: each op from
/// `cache` (the page's), or tuned now (the command line's tuner: every variant that passes its
/// check against the CPU reference is screened, the fastest timed side by side) and handed to
/// `save` at once, so a closed tab keeps what was done. `on_op(line)` hears each op tuned.
/// Answers the plan and a row per op: `op`, `shape`, `choice`, `ms`, `runner_up`,
/// `runner_up_ms`, `cached`, `seconds`, `skipped` (variants that failed their check, and why).
async fn tuned_plan(
    gpu: &Gpu,
    net: &dlsvm::model::Net,
    batch: usize,
    mut cache: dlsvm::tune::Cache,
    on_op: &js_sys::Function,
    save: &js_sys::Function,
) -> Result<(dlsvm::model::Plan, Vec<serde_json::Value>), JsValue> {
    use std::collections::BTreeMap;
    let mut plan = dlsvm::model::Plan::default();
    let mut rows = Vec::new();
    for (k, op) in dlsvm::model::plan::ops(net, batch) {
        let key = dlsvm::tune::key(gpu, &op);
        let began = js_sys::Date::now();
        let (entry, cached) = match cache.entries.get(&key) {
            Some(e) => (Some(e.clone()), true),
            None => {
                let e = dlsvm::tune::tune_op(gpu, &op, &BTreeMap::new(), &BTreeMap::new(), &mut |_| {})
                    .await
                    .map_err(js_error)?;
                if let Some(e) = &e {
                    cache.entries.insert(key, e.clone());
                    save_cache(&mut cache, save)?;
                    let line = format!(
                        "tuned {}: {} {:.2} ms ({:.1} s)",
                        op.signature(),
                        e.choice,
                        e.ms[&e.choice],
                        (js_sys::Date::now() - began) / 1e3
                    );
                    let _ = on_op.call1(&JsValue::NULL, &JsValue::from_str(&line));
                }
                (e, false)
            }
        };
        let Some(e) = entry else {
            // Nothing passed its check: the default runs (and its own check says why).
            rows.push(serde_json::json!({ "op": k.to_string(), "shape": op.signature(), "choice": null }));
            continue;
        };
        let variant = op.parse(&e.choice).map_err(js_error)?;
        plan.set(k, variant).map_err(js_error)?;
        let runner_up_ms = e.runner_up.as_ref().and_then(|r| e.ms.get(r));
        rows.push(serde_json::json!({
            "op": k.to_string(),
            "shape": op.signature(),
            "choice": e.choice,
            "ms": e.ms[&e.choice],
            "runner_up": e.runner_up,
            "runner_up_ms": runner_up_ms,
            "cached": cached,
            "seconds": (js_sys::Date::now() - began) / 1e3,
            "skipped": e.skipped,
        }));
    }
    Ok((plan, rows))
}

/// Times a training step of the preset `net_name` (at `batch`) on the page's adapter: with
/// `tune`, with the tuner's choice for each op ([`tuned_plan`]: from `cache`, the JSON the page
/// keeps in the browser's storage, or tuned now and handed to `save(json)` to keep there), else
/// with the kernels' default variants; the whole step (`reps` times, after two warm-up steps) and
/// each of its dispatches on its own (`GpuNet::profile_async`, the rows of `dlsvm bench`'s step
/// breakdown). `on_op(line)` hears each op tuned. Answers JSON: `step_ms` (each repetition),
/// `median_ms`, `images_per_sec`, `rows` ([name, median ms]), `ops` (the tuner's rows:
/// [`tuned_plan`]), `tuned` and `cached` (ops), `tuning_seconds`, `plan` (op to variant),
/// `timing` (timestamp queries or the wall clock).
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)] // The page's call: plain arguments are its whole interface.
pub async fn run_bench(
    name: String,
    net_name: String,
    batch: u32,
    reps: u32,
    tune: bool,
    cache: Option<String>,
    on_op: js_sys::Function,
    save: js_sys::Function,
) -> Result<String, JsValue> {
    use dlsvm::data::{batch as batches, normalize::Normalizer, synth};
    use dlsvm::model::{config, GpuNet, Net, Plan};
    let gpu = open(&name).await?;
    let cfg = config::preset(&net_name).ok_or_else(|| js_error(format!("no preset {net_name}")))?;
    let (batch, reps) = (batch.max(1) as usize, reps.max(1) as usize);
    let t = &cfg.train;
    let net = Net::new(&cfg, dlsvm::data::FER_CLASSES.len()).map_err(js_error)?;
    let tuning_began = js_sys::Date::now();
    let (plan, ops) = if tune {
        tuned_plan(&gpu, &net, batch, parse_cache(cache.as_deref()), &on_op, &save).await?
    } else {
        (Plan::default(), Vec::new())
    };
    let tuning_seconds = (js_sys::Date::now() - tuning_began) / 1e3;
    let init = net.init_params(t.seed);
    let gnet =
        GpuNet::with_plan(&gpu, &net, batch, &init, t.svm_c, t.mask_seed(), &plan).map_err(js_error)?;
    // A batch of faces at the network's image size, cut as training cuts it.
    let faces = synth::faces(batch, t.seed).resized(cfg.image_size);
    let x = Normalizer::fit(&faces, t.per_image_norm, t.norm).apply(&faces);
    let spec = dlsvm::data::batch::BatchSpec { batch, ..cfg.batch_spec() };
    let b = batches::make_batch(&x, &faces.labels, faces.h, faces.w, &spec, 0);
    let mut step_ms = Vec::with_capacity(reps);
    for step in 0..reps as u64 + 2 {
        let began = js_sys::Date::now();
        gnet.train_step(&gpu, &b.x, &b.y, step, 1e-4, 0.9).map_err(js_error)?;
        gpu.idle().await.map_err(js_error)?;
        if step >= 2 {
            step_ms.push(js_sys::Date::now() - began);
        }
    }
    let rows = gnet.profile_async(&gpu, reps).await.map_err(js_error)?;
    let mut sorted = step_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let report = serde_json::json!({
        "net": net_name,
        "batch": batch,
        "step_ms": step_ms,
        "median_ms": median,
        "images_per_sec": batch as f64 / (median / 1e3).max(1e-9),
        "rows": rows,
        "ops": ops,
        "tuned": ops.iter().filter(|o| o["cached"] == false).count(),
        "cached": ops.iter().filter(|o| o["cached"] == true).count(),
        "tuning_seconds": tuning_seconds,
        "plan": gnet.plan().names(),
        "timing": if gpu.timestamps { "timestamp queries" } else { "wall clock around submit and the queue's done" },
        "adapter": gpu.info,
    });
    Ok(report.to_string())
}
