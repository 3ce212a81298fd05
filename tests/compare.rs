//! `dlsvm compare`: its files and tables, its numbers against `dlsvm eval` of the same models,
//! its runs bit-equal to `dlsvm train` runs of the same top and seed, folds, and bad options.

mod common;

use common::{dlsvm, eval_json, s, text, TempDir};
use serde_json::Value;

const MNIST: &str = "data/mnist-5k";

fn json_file(p: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-300)
}

/// Two tops, two seeds, a few steps of mlp on data/mnist-5k: the files, the tables' arithmetic,
/// every run's numbers against `dlsvm eval --json` of its model, and one run against a `dlsvm
/// train` of the same top and seed (bit-equal weights: the same top twice is the same run).
#[test]
fn compare_tables_agree_with_eval_and_runs_equal_train_runs() {
    let dir = TempDir::new("compare");
    let out = dir.join("cmp");
    let args = ["compare", "--preset", "mlp", "--data", MNIST, "--seeds", "2", "--steps", "20", "--json"];
    let o = dlsvm(&[&args[..], &["--out", s(&out)]].concat(), &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(
        stderr.matches("dlsvm: run ").count(),
        8,
        "a line as each of 4 runs starts and ends: {stderr}"
    );
    let summary: Value = serde_json::from_str(stdout.trim()).expect("--json prints one object");
    for f in ["compare.json", "compare.md", "compare.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let r = json_file(&out.join("compare.json"));
    assert_eq!(summary["errors"], r["errors"]);
    assert_eq!(summary["table3"], r["table3"]);
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    for needle in
        ["## Test error", "softmax − l2svm", "## Table 3", "avg. cross-entropy (test)", "seed2/softmax"]
    {
        assert!(md.contains(needle), "compare.md lacks {needle:?}:\n{md}");
    }

    // Every run's numbers are those `dlsvm eval` gives for its model.
    for run in runs {
        let model = run["model"].as_str().unwrap();
        let e = eval_json(model, MNIST);
        for (split, ours) in [("test", &run["test"]), ("train", &run["train"])] {
            let theirs = &e["splits"][split];
            for key in ["accuracy", "cross_entropy", "squared_hinge", "hinge"] {
                let (a, b) = (ours[key].as_f64().unwrap(), theirs[key].as_f64().unwrap());
                assert!(close(a, b), "{model} {split} {key}: compare {a}, eval {b}");
            }
        }
        let err = run["test_error"].as_f64().unwrap();
        assert!(close(err, 1.0 - e["splits"]["test"]["accuracy"].as_f64().unwrap()));
        assert!(!run["curve"].as_array().unwrap().is_empty(), "{run}");
    }

    // The tables' arithmetic: means over seeds, paired differences per seed, Table 3's means.
    let err = |top: &str, seed: u64| {
        runs.iter().find(|x| x["top"] == top && x["seed"] == seed).unwrap()["test_error"].as_f64().unwrap()
    };
    for e in r["errors"].as_array().unwrap() {
        let top = e["top"].as_str().unwrap();
        let mean = (err(top, 1) + err(top, 2)) / 2.0;
        assert!(close(e["mean"].as_f64().unwrap(), mean), "{e}");
        let std = ((err(top, 1) - mean).powi(2) + (err(top, 2) - mean).powi(2)).sqrt();
        assert!((e["std"].as_f64().unwrap() - std).abs() < 1e-12, "{e}");
    }
    let p = &r["paired"][0];
    assert_eq!((p["top"].as_str(), p["against"].as_str()), (Some("softmax"), Some("l2svm")));
    let d: Vec<f64> = [1, 2].iter().map(|&sd| err("softmax", sd) - err("l2svm", sd)).collect();
    assert!(close(p["mean"].as_f64().unwrap(), (d[0] + d[1]) / 2.0), "{p}");
    // Two seeds: t(0.975, 1) = 12.706, half-width 12.706 · sd / sqrt(2).
    let sd = (d[0] - d[1]).abs() / 2f64.sqrt();
    let half = 12.706 * sd / 2f64.sqrt();
    let (lo, hi) = (p["ci95"][0].as_f64().unwrap(), p["ci95"][1].as_f64().unwrap());
    assert!((hi - lo - 2.0 * half).abs() < 1e-9, "{p}: width {} vs {}", hi - lo, 2.0 * half);
    let t3 = &r["table3"][1];
    assert_eq!(t3["top"], "softmax");
    assert!(close(t3["test_error"].as_f64().unwrap(), (err("softmax", 1) + err("softmax", 2)) / 2.0));

    // A train run of the same top and seed ends with the same weights, bit for bit.
    let solo = dir.join("solo");
    let o = dlsvm(
        &[
            "train",
            "--preset",
            "mlp",
            "--data",
            MNIST,
            "--steps",
            "20",
            "--top",
            "softmax",
            "--seed",
            "2",
            "--out",
            s(&solo),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let a = dlsvm::model::checkpoint::load(&solo.join("model.safetensors")).unwrap();
    let b = dlsvm::model::checkpoint::load(&out.join("seed2/softmax/model.safetensors")).unwrap();
    assert!(a.params == b.params, "compare's softmax run of seed 2 differs from the same train run");
}

/// `--folds K --fold I` trains fold I of each run, held out as its test data.
#[test]
fn compare_with_folds_trains_each_fold() {
    let dir = TempDir::new("compare-folds");
    let out = dir.join("cmp");
    let o = dlsvm(
        &[
            "compare",
            "--preset",
            "mlp",
            "--data",
            MNIST,
            "--seeds",
            "1",
            "--steps",
            "5",
            "--folds",
            "4",
            "--fold",
            "1",
            "--tops",
            "l2svm,l1svm",
            "--out",
            s(&out),
            "--json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let r = json_file(&out.join("compare.json"));
    assert_eq!(r["folds"], 4);
    for top in ["l2svm", "l1svm"] {
        assert!(out.join(format!("seed1/{top}/fold1/model.safetensors")).is_file(), "{top}");
        let run = r["runs"].as_array().unwrap().iter().find(|x| x["top"] == top).unwrap().clone();
        assert_eq!(run["fold"], 1);
        // Fold 1 of 4 holds out a quarter of the 4000 training images.
        assert_eq!(run["test"]["samples"], 1000, "{run}");
        assert_eq!(run["train"]["samples"], 3000, "{run}");
    }
    assert_eq!(r["paired"][0]["ci95"], Value::Null, "one seed: no interval");
}

/// Bad options: one line naming the option, exit 2, nothing trained.
#[test]
fn compare_refuses_bad_options() {
    let dir = TempDir::new("compare-bad");
    let out = dir.join("cmp");
    for (what, extra, want) in [
        ("an unknown top", vec!["--tops", "l2svm,hinge"], "--tops: unknown top \"hinge\""),
        ("a top twice", vec!["--tops", "softmax,softmax"], "--tops names softmax twice"),
        ("no seeds", vec!["--seeds", "0"], "--seeds 0 must be at least 1"),
        ("--top", vec!["--top", "softmax"], "--top does not apply to compare"),
        ("--select without =", vec!["--select", "lr"], "--select lr: expected KEY=V1,V2"),
        ("--select of an unknown key", vec!["--select", "speed=1,2"], "--select speed=1"),
        ("--select of a bad value", vec!["--select", "lr=fast,0.1"], "--select lr=fast"),
        ("--select with --folds", vec!["--select", "lr=0.1,0.2", "--folds", "3"], "use one of them"),
        ("one select fold", vec!["--select", "lr=0.1,0.2", "--select-folds", "1"], "at least 2 folds"),
    ] {
        let mut args = vec!["compare", "--preset", "mlp", "--data", MNIST, "--steps", "2", "--out", s(&out)];
        args.extend(extra);
        let o = dlsvm(&args, &[]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(err.contains(want), "{what}: {err}");
        assert!(!out.exists(), "{what}: nothing may be written");
    }
}

/// The `[train] lr` a run directory's config.toml holds.
fn run_lr(dir: &std::path::Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let t: toml::Table = text.parse().unwrap();
    t["train"]["lr"].as_float().unwrap()
}

/// `--select lr=...`: per top and seed, every candidate trained on K-1 folds of the training split
/// and scored on the held-out fold; the lowest mean held-out error chosen; the comparison's run of
/// that top and seed trained with it (its config.toml says so); `selection` in the JSON and a
/// Selection table in compare.md.
#[test]
fn compare_select_chooses_each_tops_setting_on_held_out_folds() {
    let dir = TempDir::new("compare-select");
    let out = dir.join("cmp");
    let args = ["compare", "--preset", "mlp", "--data", MNIST, "--seeds", "2", "--steps", "30"];
    let select = ["--select", "lr=0.003,0.03", "--select-folds", "2", "--json", "--out", s(&out)];
    let o = dlsvm(&[&args[..], &select[..]].concat(), &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).expect("--json prints one object");
    let selection = summary["selection"].as_array().expect("a selection list");
    assert_eq!(selection.len(), 4, "two tops x two seeds: {selection:?}");
    for (sel, (top, seed)) in
        selection.iter().zip([("l2svm", 1), ("softmax", 1), ("l2svm", 2), ("softmax", 2)])
    {
        assert_eq!((sel["top"].as_str().unwrap(), sel["seed"].as_u64().unwrap()), (top, seed));
        let candidates = sel["candidates"].as_array().unwrap();
        let lrs: Vec<f64> = candidates.iter().map(|c| c["setting"]["lr"].as_f64().unwrap()).collect();
        assert_eq!(lrs, [0.003, 0.03], "the candidates in the order given");
        let mut best = (f64::INFINITY, 0.0);
        for c in candidates {
            let folds: Vec<f64> =
                c["fold_errors"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(folds.len(), 2);
            let mean = (folds[0] + folds[1]) / 2.0;
            assert!(close(c["validation_error"].as_f64().unwrap(), mean), "{c}");
            if mean < best.0 {
                best = (mean, c["setting"]["lr"].as_f64().unwrap());
            }
            // Each selection run is an ordinary run directory.
            for f in 0..2 {
                let run = out.join(format!("select/seed{seed}/{top}/lr={}/fold{f}", c["setting"]["lr"]));
                assert!(run.join("model.safetensors").is_file(), "{}", run.display());
                assert_eq!(run_lr(&run), c["setting"]["lr"].as_f64().unwrap());
            }
        }
        let chosen = sel["chosen"]["lr"].as_f64().unwrap();
        assert_eq!(chosen, best.1, "the lowest mean held-out error: {sel}");
        assert!(close(sel["validation_error"].as_f64().unwrap(), best.0));
        // What the reported run trained with.
        assert_eq!(run_lr(&out.join(format!("seed{seed}/{top}"))), chosen, "{top} seed {seed}");
    }
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("## Selection") && md.contains("lr=0.03"), "{md}");
    assert_eq!(json_file(&out.join("compare.json"))["selection"], summary["selection"]);
}

/// Copies data/mnist-5k to `to`, its test images changed by `f` (pixel by pixel).
fn mnist_with_test_images(to: &std::path::Path, f: fn(u8) -> u8) {
    use std::io::{Read, Write};
    std::fs::create_dir_all(to).unwrap();
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(std::path::Path::new(MNIST).join(name), to.join(name)).unwrap();
    }
    let name = "t10k-images-idx3-ubyte.gz";
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(std::path::Path::new(MNIST).join(name)).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    for b in &mut raw[16..] {
        *b = f(*b);
    }
    let mut gz =
        flate2::write::GzEncoder::new(std::fs::File::create(to.join(name)).unwrap(), Default::default());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap();
}

/// The selection never reads the test split: with the test images inverted, every held-out error
/// and every choice is the same, bit for bit, while the final models' test errors change.
#[test]
fn selection_never_reads_the_test_split() {
    let dir = TempDir::new("compare-select-test");
    let (plain, inverted) = (dir.join("plain"), dir.join("inverted"));
    mnist_with_test_images(&plain, |b| b);
    mnist_with_test_images(&inverted, |b| 255 - b);
    let run = |data: &std::path::Path, out: &str| {
        let args = ["compare", "--preset", "mlp", "--tops", "l2svm", "--seeds", "1", "--steps", "20"];
        let select = ["--select", "lr=0.01,0.1", "--select-folds", "2", "--json"];
        let o =
            dlsvm(&[&args[..], &select[..], &["--data", s(data), "--out", s(&dir.join(out))]].concat(), &[]);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        serde_json::from_str::<Value>(text(&o).0.trim()).unwrap()
    };
    let (a, b) = (run(&plain, "a"), run(&inverted, "b"));
    assert_eq!(a["selection"], b["selection"], "the selection saw the test split");
    let error = |v: &Value| v["errors"][0]["mean"].as_f64().unwrap();
    assert!(error(&a) != error(&b), "the inverted test images changed nothing: {} {}", error(&a), error(&b));
}

/// A candidate whose run diverges is out (noted, its error counted as 1), not the end of the
/// comparison; when every candidate diverges the comparison says so in one line.
#[test]
fn a_diverging_candidate_is_out_not_fatal() {
    let dir = TempDir::new("compare-select-diverge");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let args =
        ["compare", "--preset", "mlp", "--data", MNIST, "--tops", "l2svm", "--seeds", "1", "--steps", "20"];
    let select = ["--select", "lr=0.01,1000", "--select-folds", "2", "--json", "--out", s(&a)];
    let o = dlsvm(&[&args[..], &select[..]].concat(), &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let sel = &v["selection"][0];
    assert_eq!(sel["chosen"]["lr"].as_f64(), Some(0.01), "{sel}");
    let bad = &sel["candidates"][1];
    assert!(bad["diverged"].as_str().is_some_and(|d| d.contains("diverged")), "{bad}");
    assert_eq!(bad["validation_error"].as_f64(), Some(1.0));
    assert!(sel["candidates"][0]["diverged"].is_null());
    let select = ["--select", "lr=1000,5000", "--select-folds", "2", "--out", s(&b)];
    let o = dlsvm(&[&args[..], &select[..]].concat(), &[]);
    let (_, err) = text(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("every candidate diverged"), "{err}");
}
