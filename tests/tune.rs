//! The tuner and its cache, through the command line (each run a process with its own cache file):
//! a cold cache is filled, a warm one spends no time tuning, a corrupt one is ignored with one
//! warning, a stale one (another driver, dlsvm version or kernel fingerprint) is not used, a
//! variant that fails its check is never chosen, runs record and reuse what the cache chose, and
//! `bench` times the choice and names the runner-up.

mod common;

use common::{dlsvm, s, text, TempDir};
use serde_json::Value;

/// `dlsvm tune` of the mlp preset at batch 8 with the cache at `cache`; the JSON report.
fn tune(cache: &std::path::Path, extra_env: &[(&str, &str)]) -> (Value, String) {
    let mut env = vec![("DLSVM_TUNE_CACHE", s(cache))];
    env.extend_from_slice(extra_env);
    let o = dlsvm(&["tune", "--preset", "mlp", "--batch", "8", "--json"], &env);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    (serde_json::from_str(out.trim()).expect("tune --json"), err)
}

fn report(v: &Value, what: &str) -> u64 {
    v["report"][what].as_u64().unwrap_or_else(|| panic!("no report.{what}: {v}"))
}

#[test]
fn cold_warm_corrupt_and_stale_caches() {
    let dir = TempDir::new("tune-cache");
    let cache = dir.join("tune.json");
    // mlp: three fc layers; every GEMM of the step but the first layer's data gradient: 8 ops.
    let (cold, _) = tune(&cache, &[]);
    assert_eq!((report(&cold, "tuned"), report(&cold, "cached")), (8, 0), "{cold}");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    let entries = file["entries"].as_object().unwrap();
    assert_eq!(entries.len(), 8);
    for (key, e) in entries {
        assert!(key.contains("dlsvm ") && key.contains("| gemm "), "{key}");
        let choice = e["choice"].as_str().unwrap();
        assert!(e["ms"][choice].as_f64().is_some(), "{key}: {e}");
        // The fallback is timed too (on a GPU it can win a small shape).
        assert!(e["ms"]["naive"].as_f64().is_some(), "{key}: the naive GEMM was not timed: {e}");
        // The choice is the fastest of the finalists (timed in full, side by side), which are
        // the fastest screens: at most CONTENDERS, within CONTENDER x the best screen.
        let finalists: Vec<&str> =
            e["finalists"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(finalists.contains(&choice), "{key}: the choice is a finalist: {e}");
        assert!(finalists.len() <= dlsvm::tune::CONTENDERS, "{key}: {e}");
        let ms = |v: &str| e["ms"][v].as_f64().unwrap();
        let fastest = finalists.iter().map(|v| ms(v)).fold(f64::INFINITY, f64::min);
        assert_eq!(ms(choice), fastest, "{key}: the choice is the fastest finalist");
    }
    // Warm: nothing timed.
    let (warm, _) = tune(&cache, &[]);
    assert_eq!((report(&warm, "tuned"), report(&warm, "cached")), (0, 8), "{warm}");
    assert!(report_secs(&warm) < 2.0, "a warm start spent {} s", report_secs(&warm));
    // Corrupt: one warning, tuned from scratch, a valid cache written again.
    std::fs::write(&cache, "{ this is not json").unwrap();
    let (again, err) = tune(&cache, &[]);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("not a dlsvm tuning cache"), "{err}");
    assert_eq!(report(&again, "tuned"), 8);
    assert!(serde_json::from_str::<Value>(&std::fs::read_to_string(&cache).unwrap()).is_ok());
    // Stale: the same entries under another dlsvm version are not used.
    let text = std::fs::read_to_string(&cache).unwrap();
    let version = format!("dlsvm {}", env!("CARGO_PKG_VERSION"));
    std::fs::write(&cache, text.replace(&version, "dlsvm 0.0.0-other")).unwrap();
    let (stale, _) = tune(&cache, &[]);
    assert_eq!((report(&stale, "tuned"), report(&stale, "cached")), (8, 0), "{stale}");
    // Stale too: the same version with other kernels (a changed shader or variant list).
    let text = std::fs::read_to_string(&cache).unwrap();
    let kernels = format!("kernels {:016x}", dlsvm::tune::kernels_fingerprint());
    assert!(text.contains(&kernels), "the key names the kernels' fingerprint");
    std::fs::write(&cache, text.replace(&kernels, "kernels 0123456789abcdef")).unwrap();
    let (other, _) = tune(&cache, &[]);
    assert_eq!((report(&other, "tuned"), report(&other, "cached")), (8, 0), "{other}");
}

fn report_secs(v: &Value) -> f64 {
    v["report"]["seconds"].as_f64().unwrap()
}

/// With every vec4 GEMM broken (through DLSVM_SHADER_DIR), no vec4 variant is chosen: each is
/// listed as skipped with its failed check.
#[test]
fn a_variant_that_fails_its_check_is_never_chosen() {
    let dir = TempDir::new("tune-broken");
    let shaders = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let broken = dir.mkdir("shaders");
    for f in std::fs::read_dir(&shaders).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, broken.join(f.file_name().unwrap())).unwrap();
    }
    // The vec4 kernels' shared store (gemm4_io.wgsl): the vec4 and the vec4 subgroup GEMMs.
    let g4 = std::fs::read_to_string(broken.join("gemm4_io.wgsl")).unwrap();
    let bad = g4.replace("c[idx] = epilogue(acc,", "c[idx] = 1.0 + epilogue(acc,");
    assert_ne!(bad, g4);
    std::fs::write(broken.join("gemm4_io.wgsl"), bad).unwrap();
    let (v, _) = tune(&dir.join("tune.json"), &[("DLSVM_SHADER_DIR", s(&broken))]);
    let mut aligned = 0;
    for op in v["ops"].as_array().unwrap() {
        let t = &op["tuned"];
        let choice = t["choice"].as_str().unwrap();
        assert!(!choice.starts_with("vec4") && !choice.starts_with("subgroup4"), "{op}");
        // On shapes the vec4 kernels do not take, they are not timed at all (they would run the
        // tiled kernel); on the others they are checked, fail, and are listed.
        let skipped = t["skipped"].as_object().unwrap();
        let timed = t["ms"].as_object().unwrap();
        assert!(!timed.keys().any(|k| k.starts_with("vec4") || k.starts_with("subgroup4")), "{op}");
        if skipped.keys().any(|k| k.starts_with("vec4")) {
            aligned += 1;
        }
        assert!(skipped.values().all(|w| w.as_str().unwrap().contains("failed the reference check")), "{op}");
    }
    assert!(aligned >= 4, "too few vec4-aligned ops to show the check: {v}");
}

/// A run with tuning records the cache's choices; with the same warm cache a second run ends on
/// the same weights bit for bit; `--tune off` records the defaults.
#[test]
fn runs_use_and_record_the_cached_choices() {
    let dir = TempDir::new("tune-train");
    let cache = dir.join("tune.json");
    let env = [("DLSVM_TUNE_CACHE", s(&cache))];
    let train = |out: &std::path::Path, mode: &str| {
        let args =
            ["train", "--preset", "mlp", "--synth-count", "40", "--batch", "8", "--steps", "3", "--json"];
        let o = dlsvm(&[&args[..], &["--tune", mode, "--out", s(out)]].concat(), &env);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        let summary: Value = serde_json::from_str(text(&o).0.trim()).unwrap();
        let ck = dlsvm::model::checkpoint::load(&out.join("model.safetensors")).unwrap();
        (summary["variants"].clone(), ck)
    };
    let (v1, a) = train(&dir.join("a"), "full");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    let choices: Vec<&str> =
        file["entries"].as_object().unwrap().values().map(|e| e["choice"].as_str().unwrap()).collect();
    for (op, variant) in v1.as_object().unwrap() {
        assert!(choices.contains(&variant.as_str().unwrap()), "{op}: {variant} is not a cached choice");
    }
    assert_eq!(serde_json::to_value(a.plan.as_ref().unwrap()).unwrap(), v1);
    let (v2, b) = train(&dir.join("b"), "cached");
    assert_eq!(v1, v2, "the same cache gives the same variants");
    let bits = |c: &dlsvm::model::checkpoint::Checkpoint| -> Vec<u32> {
        c.params.iter().flatten().map(|v| v.to_bits()).collect()
    };
    assert_eq!(bits(&a), bits(&b), "same seed, adapter and cache: same weights");
    let (off, _) = train(&dir.join("c"), "off");
    for (op, variant) in off.as_object().unwrap() {
        let key: dlsvm::model::plan::OpKey = op.parse().unwrap();
        let default = key.kind.family().default_variant().name();
        assert_eq!(variant.as_str().unwrap(), default, "{op}");
    }
    let o = dlsvm(&["train", "--tune", "sometimes", "--steps", "1"], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("unknown tuning mode \"sometimes\""), "{:?}", text(&o));
}

/// `dlsvm bench` times the tuner's choice for a row's op and names the runner-up.
#[test]
fn bench_times_the_tuned_choice_and_names_the_runner_up() {
    let dir = TempDir::new("tune-bench");
    let cache = dir.join("tune.json");
    let env = [("DLSVM_TUNE_CACHE", s(&cache)), ("DLSVM_TUNE", "full")];
    let o = dlsvm(&["bench", "--filter", "fc2_fwd", "--no-steps", "--json"], &env);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v: Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    let row = &v["rows"][0];
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    let (_, entry) = file["entries"].as_object().unwrap().iter().next().expect("the row's op was tuned");
    assert_eq!(row["variant"], entry["choice"], "{row}");
    assert_eq!(row["runner_up"], entry["runner_up"], "{row}");
    assert!(row["runner_up"].is_string(), "{row}");
}

/// `dlsvm bench` tunes every op its rows need before it times the first row (so it can spend a
/// limited budget on the training steps' rows first), and each op once.
#[test]
fn bench_tunes_its_rows_ahead_each_once() {
    let dir = TempDir::new("tune-ahead");
    let cache = dir.join("tune.json");
    let env = [("DLSVM_TUNE_CACHE", s(&cache)), ("DLSVM_TUNE", "full")];
    let o = dlsvm(&["bench", "--filter", "fc2", "--no-steps"], &env);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let tuned: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with("tuned ")).collect();
    let rows: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with("fc2_")).collect();
    assert_eq!((tuned.len(), rows.len()), (3, 3), "one tuning and one row per op: {err}");
    assert!(tuned.iter().max() < rows.iter().min(), "tuned after a row was timed: {err}");
}

/// A training-step row run with `--tune cached` says how many of its ops had no cached choice at
/// the step's batch (the trap of `dlsvm tune --preset fer-small` at the preset's own batch), and
/// how to tune them; `--filter fer-small` runs that step alone.
#[test]
fn bench_step_names_its_untuned_ops() {
    let dir = TempDir::new("tune-step");
    let cache = dir.join("tune.json");
    let env = [("DLSVM_TUNE_CACHE", s(&cache))];
    let o = dlsvm(&["bench", "--filter", "fer-small", "--tune", "cached", "--json"], &env);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["rows"].as_array().map(|r| r.len()), Some(0), "no kernel row matches: {v}");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{v}");
    assert_eq!(steps[0]["net"], "fer-small");
    let untuned = steps[0]["untuned"].as_u64().unwrap();
    assert!(untuned > 10, "every op of an empty cache: {untuned}");
    assert!(err.contains(&format!("{untuned} ops have no tuned choice at batch 256")), "{err}");
    assert!(err.contains("dlsvm tune --preset fer-small --batch 256"), "{err}");
    assert!(steps[0]["ceiling_gflops"].as_f64().is_some_and(|c| c > 0.0), "{v}");
}

/// `bench --report FILE` writes info, the check, this adapter's tuned choices and the bench into
/// one JSON file.
#[test]
fn bench_report_gathers_info_check_tuning_and_bench() {
    let dir = TempDir::new("tune-report");
    let (cache, report) = (dir.join("tune.json"), dir.join("report.json"));
    let env = [("DLSVM_TUNE_CACHE", s(&cache)), ("DLSVM_TUNE", "full")];
    let o = dlsvm(&["bench", "--filter", "fc2_bwd_weight", "--no-steps", "--report", s(&report)], &env);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("report written to"), "{:?}", text(&o));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(v["info"]["adapter"]["name"].is_string(), "{v}");
    assert_eq!(v["check"]["passed"], true);
    assert!(v["check"]["rows"].as_array().unwrap().len() > 40);
    let tuned = v["tuned"].as_object().unwrap();
    assert_eq!(tuned.len(), 1, "the one op timed: {tuned:?}");
    assert!(tuned.keys().all(|k| k.contains("gemm 7x3072x256 tn")), "{tuned:?}");
    assert_eq!(v["bench"]["rows"][0]["name"], "fc2_bwd_weight");
    assert!(v["table"].as_str().unwrap().contains("fc2_bwd_weight"));
}

/// `bench --variants` times every variant of a row; one whose first run is over
/// `HOPELESS` x the row's fastest so far is recorded from that one run and says so.
#[test]
fn bench_variants_screens_hopeless_variants_after_one_run() {
    let o = dlsvm(&["bench", "--variants", "--filter", "fc2_fwd", "--no-steps", "--json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v: Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert!(rows.len() > 2, "fc2_fwd has several variants: {rows:?}");
    let mut fastest = f64::INFINITY;
    for row in rows {
        let (runs, ms) = (row["runs"].as_u64().unwrap(), row["median_ms"].as_f64().unwrap());
        assert_eq!(row["name"], "fc2_fwd", "{row}");
        match runs {
            1 => assert!(ms > dlsvm::tune::HOPELESS * fastest, "screened without cause: {row}"),
            10 => {}
            _ => panic!("a timed row runs once or --reps (default 10) times: {row}"),
        }
        fastest = fastest.min(ms);
    }
    assert_eq!(rows[0]["runs"], 10, "the first variant has nothing to lose to");
}

/// A variant that crashes the driver while it is tuned must not make dlsvm unusable on that
/// device: the tuner records each variant before it first runs it, so the next start finds the
/// dead process's record, says in one line that it skips that variant, records it in the cache,
/// and tunes without it; later starts skip it too (without the line again).
#[test]
fn a_variant_that_crashed_the_tuner_is_skipped_at_the_next_start() {
    let dir = TempDir::new("tune-crash");
    let cache = dir.join("tune.json");
    let victim = "subgroup4_64r16x4";
    // The simulated crash: the process aborts where it would first run the variant, the only
    // one running (one device: the checks one by one).
    let env =
        [("DLSVM_TUNE_CACHE", s(&cache)), (dlsvm::tune::CRASH_ENV, victim), (dlsvm::tune::WORKERS_ENV, "1")];
    let o = dlsvm(&["tune", "--preset", "mlp", "--batch", "8", "--json"], &env);
    assert!(!o.status.success(), "the simulated crash did not happen: {:?}", text(&o));
    let markers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tune.json.trying."))
        .collect();
    assert_eq!(markers.len(), 1, "the dead process's marker: {markers:?}");
    // The next start: one line naming the variant, then a normal tuning without it.
    let (after, err) = tune(&cache, &[]);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(victim)).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("crashed") && lines[0].contains("skipped"), "{err}");
    assert_eq!(report(&after, "tuned"), 8, "{after}");
    for op in after["ops"].as_array().unwrap() {
        let t = &op["tuned"];
        assert_ne!(t["choice"].as_str(), Some(victim), "{op}");
        assert!(t["ms"].get(victim).is_none(), "{victim} was timed: {op}");
        // Every op that would have timed it says why it did not.
        if let Some(why) = t["skipped"].get(victim) {
            assert!(why.as_str().unwrap().contains("crashed"), "{op}");
        }
    }
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    let crashed = file["crashed"].as_object().expect("the cache records the crash");
    assert!(crashed.values().any(|v| v.get(victim).is_some()), "{file}");
    assert!(
        !std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("trying")),
        "a marker was left behind"
    );
    // A later start with a cold op set still skips it, silently.
    std::fs::write(&cache, serde_json::json!({ "entries": {}, "crashed": file["crashed"] }).to_string())
        .unwrap();
    let (later, err) = tune(&cache, &[]);
    assert!(!err.lines().any(|l| l.contains(victim) && l.contains("warning")), "{err}");
    assert!(later["ops"].as_array().unwrap().iter().all(|op| op["tuned"]["choice"].as_str() != Some(victim)));
}

/// The marker files of dead tuning processes beside `cache`, with their lines.
fn markers(cache: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<String>)> {
    std::fs::read_dir(cache.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("tune.json.trying."))
        .map(|p| {
            let lines = std::fs::read_to_string(&p).unwrap().lines().map(String::from).collect();
            (p, lines)
        })
        .collect()
}

/// A start that checks on several devices at once ([`dlsvm::tune::Tuner::prepare`]) and dies
/// while two variants run cannot tell which crashed: the next start says so in one line, takes
/// neither for a crash, and checks both alone; one that then runs without a crash is tuned as any
/// other (and suspected no more), one that crashes again, alone, is named and skipped from then on.
#[test]
fn a_crash_among_variants_checked_at_once_is_pinned_down_by_checking_them_alone() {
    let dir = TempDir::new("tune-crash-together");
    let cache = dir.join("tune.json");
    let victim = "subgroup4_64r16x4";
    let crash = |workers: &str| {
        let env = [
            ("DLSVM_TUNE_CACHE", s(&cache)),
            (dlsvm::tune::CRASH_ENV, victim),
            (dlsvm::tune::WORKERS_ENV, workers),
        ];
        let o = dlsvm(&["tune", "--preset", "mlp", "--batch", "8", "--json"], &env);
        assert!(!o.status.success(), "the simulated crash did not happen: {:?}", text(&o));
    };
    // Two devices check at once; the marker names the victim (and what the other device ran, if
    // it was running something). Made to name two variants, as a crash mid-check mostly finds.
    let two_running = || {
        let found = markers(&cache);
        assert_eq!(found.len(), 1, "{found:?}");
        let (path, lines) = &found[0];
        let line =
            lines.iter().find(|l| l.ends_with(&format!("\t{victim}"))).expect("the victim's line").clone();
        let other = line.replace(victim, "naive");
        std::fs::write(path, format!("{line}\n{other}\n")).unwrap();
    };
    let file = || -> Value { serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap() };
    crash("2");
    two_running();
    // An innocent victim: a normal start says once that both are checked alone, and times them.
    let (after, err) = tune(&cache, &[]);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("ended abruptly")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(victim) && lines[0].contains("naive") && lines[0].contains("alone"), "{err}");
    assert_eq!(report(&after, "tuned"), 8, "{after}");
    let timed = |v: &Value, name: &str| {
        v["ops"].as_array().unwrap().iter().any(|op| op["tuned"]["ms"].get(name).is_some())
    };
    assert!(timed(&after, victim) && timed(&after, "naive"), "{after}");
    assert!(file().get("crashed").is_none() && file().get("suspects").is_none(), "{}", file());
    assert!(markers(&cache).is_empty(), "a marker was left behind");
    // A guilty one: the start after the parallel crash checks it alone and crashes again, naming it.
    std::fs::remove_file(&cache).unwrap();
    crash("2");
    two_running();
    crash("2");
    let found = markers(&cache);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1.len(), 1, "the victim ran alone: {found:?}");
    assert!(found[0].1[0].ends_with(victim), "{found:?}");
    let suspects = file()["suspects"].clone();
    assert!(suspects.as_object().is_some_and(|m| m.values().any(|v| v.get(victim).is_some())), "{}", file());
    let (last, err) = tune(&cache, &[]);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(victim)).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("crashed") && lines[0].contains("skipped"), "{err}");
    assert!(!timed(&last, victim), "{last}");
    assert!(timed(&last, "naive"), "the other suspect is tuned again: {last}");
    assert!(file()["crashed"].as_object().unwrap().values().any(|v| v.get(victim).is_some()), "{}", file());
    assert!(file().get("suspects").is_none(), "{}", file());
}

/// Ctrl-C (or a scheduler's SIGTERM) during tuning is not a driver crash: the process empties its
/// marker before it quits, so the next start skips nothing.
#[cfg(unix)]
#[test]
fn an_interrupted_tuning_is_not_taken_for_a_crash() {
    let dir = TempDir::new("tune-interrupt");
    let cache = dir.join("tune.json");
    let mut child = common::bin()
        .args(["tune", "--preset", "fer", "--batch", "64"])
        .env("DLSVM_TUNE_CACHE", &cache)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it is running a variant (its marker names one).
    let marker = dir.join(format!("tune.json.trying.{}", child.id()));
    let began = std::time::Instant::now();
    while std::fs::read_to_string(&marker).map_or(true, |t| t.is_empty()) {
        assert!(began.elapsed().as_secs() < 60, "the tuner never marked a variant");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    let (after, err) = tune(&cache, &[]);
    assert!(!err.contains("ended abruptly"), "an interruption was taken for a crash: {err}");
    assert_eq!(report(&after, "tuned"), 8, "{after}");
}
