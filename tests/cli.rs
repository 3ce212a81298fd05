//! The command line: `dlsvm info`, `dlsvm check`, exit codes, the no-adapter message.

mod common;

use common::{dlsvm, s, text, TempDir};

#[test]
fn info_names_the_adapter_and_limits() {
    let o = dlsvm(&["info"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}\n{}", dlsvm::gpu::INSTALL_HINT);
    for want in [
        "adapter",
        "backend",
        "driver",
        "max_storage_buffer_binding_size",
        "max_compute_invocations_per_workgroup",
    ] {
        assert!(out.contains(want), "info lacks {want}: {out}");
    }
}

#[test]
fn info_json_is_one_object() {
    let o = dlsvm(&["info", "--json"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("valid JSON");
    assert!(v["adapter"]["name"].is_string() && v["limits"]["max_buffer_size"].is_number(), "{v}");
}

#[cfg(target_os = "linux")]
#[test]
fn no_adapter_exits_3_with_the_install_hint() {
    // On Linux no Metal adapter exists, so restricting wgpu to Metal leaves none.
    let o = dlsvm(&["info"], &[("WGPU_BACKEND", "metal")]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "stdout: {out}\nstderr: {err}");
    assert!(err.contains("no GPU adapter found") && err.contains("mesa-vulkan-drivers"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line, no backtrace: {err}");
    let o = dlsvm(&["check"], &[("WGPU_BACKEND", "metal")]);
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn unknown_adapter_name_exits_3_and_lists_adapters() {
    let o = dlsvm(&["info", "--adapter", "no-such-gpu-xyz"], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("no adapter matches") && err.contains("available:"), "{err}");
    let o = dlsvm(&["info"], &[("DLSVM_ADAPTER", "no-such-gpu-xyz")]);
    assert_eq!(o.status.code(), Some(3), "DLSVM_ADAPTER is honoured");
}

#[test]
fn check_filter_prints_rows_and_passes() {
    let o = dlsvm(&["check", "--filter", "relu"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    assert!(out.contains("relu fwd") && out.contains("relu bwd") && out.contains("pass"), "{out}");
    assert!(!out.contains("gemm"), "the filter keeps only relu rows: {out}");
}

#[test]
fn check_json_reports_every_row() {
    let o = dlsvm(&["check", "--json", "--filter", "pool"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("valid JSON");
    let rows = v["rows"].as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["kernel"].as_str()).collect();
    assert_eq!(
        names,
        [
            "maxpool fwd outputs",
            "maxpool fwd rows",
            "maxpool bwd passes",
            "maxpool bwd rows",
            "maxpool bwd gather",
            "avgpool fwd outputs",
            "avgpool fwd rows",
            "avgpool bwd passes",
            "avgpool bwd rows",
            "avgpool bwd gather"
        ]
    );
    assert!(rows.iter().all(|r| r["passed"] == true && r["shapes"].as_u64() > Some(0)));
    assert_eq!(v["passed"], true);
}

#[test]
fn check_runs_every_kernel_family_and_direction() {
    let o = dlsvm(&["check"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    for row in [
        "gemm_nn",
        "gemm_nt",
        "gemm_tn",
        "conv2d fwd blocked",
        "conv2d bwd_data",
        "conv2d bwd_weight",
        "conv2d bwd_bias",
        "maxpool fwd",
        "maxpool bwd",
        "avgpool fwd",
        "avgpool bwd",
        "relu fwd",
        "relu bwd",
        "dropout fwd",
        "dropout bwd",
        "softmax_xent fwd+bwd",
        "l2svm fwd+bwd",
        "l1svm fwd+bwd",
        "sgd_momentum update",
        "sum",
        "argmax_rows",
        "count_correct",
        "channel_sum",
        "slice_sum",
        "fill",
        "network loss l2svm",
        "network loss softmax",
        "network loss l1svm",
    ] {
        assert!(out.contains(row), "check has no row for {row}:\n{out}");
    }
    // Every declared variant of every family, in each of its directions and layouts.
    use dlsvm::kernels::registry::Family;
    let rows: Vec<&str> = out.lines().filter_map(|l| l.split("  ").next()).map(str::trim_end).collect();
    for f in Family::ALL {
        let prefixes: &[&str] = match f {
            Family::Gemm => &["gemm_nn", "gemm_nt", "gemm_tn"],
            Family::ConvFwd => &["conv2d fwd"],
            Family::ConvData => &["conv2d bwd_data"],
            Family::ConvWeight => &["conv2d bwd_weight"],
            Family::PoolFwd => &["maxpool fwd", "avgpool fwd"],
            Family::PoolBwd => &["maxpool bwd", "avgpool bwd"],
        };
        for d in f.decls() {
            for p in prefixes {
                let row = format!("{p} {}", d.name);
                assert!(rows.contains(&row.as_str()), "check has no row {row:?}:\n{out}");
            }
        }
    }
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(dlsvm(&["no-such-command"], &[]).status.code(), Some(2));
    assert_eq!(dlsvm(&["check", "--filter", "no-such-kernel"], &[]).status.code(), Some(2));
}

#[test]
fn synth_train_eval_predict_round_trip() {
    let dir = TempDir::new("round");
    let csv = dir.join("faces.csv");
    let o = dlsvm(&["data", "synth", "--out", csv.to_str().unwrap(), "--count", "160", "--seed", "3"], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let run = dir.join("run");
    let o = dlsvm(
        &[
            "train",
            "--data",
            csv.to_str().unwrap(),
            "--steps",
            "6",
            "--batch",
            "32",
            "--out",
            run.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["steps"], 6);
    assert!(v["test"]["accuracy"].is_number(), "{v}");
    for f in [
        "model.safetensors",
        "metrics.csv",
        "learning_curve.png",
        "filters.png",
        "confusion.png",
        "config.toml",
    ] {
        assert!(run.join(f).exists(), "run directory lacks {f}");
    }
    let model = run.join("model.safetensors");
    let o = dlsvm(
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            csv.to_str().unwrap(),
            "--tta",
            "2",
            "--json",
        ],
        &[],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    for key in ["accuracy", "per_class", "confusion", "cross_entropy", "squared_hinge"] {
        assert!(!v[key].is_null(), "eval --json lacks {key}: {v}");
    }
    assert!(v["accuracy"]["train"].is_number() && v["accuracy"]["private_test"].is_number(), "{v}");
    // An ensemble of the same model twice gives the same accuracy.
    let o2 = dlsvm(
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--data",
            csv.to_str().unwrap(),
            "--tta",
            "2",
            "--json",
        ],
        &[],
    );
    let v2: serde_json::Value = serde_json::from_str(text(&o2).0.trim()).unwrap();
    assert_eq!(v["accuracy"], v2["accuracy"]);
    let img = "data/lfw-face-vs-background/test/face/080.png";
    let o = dlsvm(&["predict", "--model", model.to_str().unwrap(), img, "--json"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v[0]["scores"].as_object().map(|m| m.len()), Some(7), "{v}");
}

#[test]
fn bad_training_input_exits_2_with_one_line() {
    let dir = TempDir::new("bad");
    let out = dir.join("run");
    let o = out.to_str().unwrap();
    for (args, want) in [
        (vec!["train", "--preset", "nope", "--out", o], "unknown preset"),
        (vec!["train", "--lr=-1", "--out", o], "--lr -1"),
        (vec!["train", "--lr", "NaN", "--out", o], "finite positive"),
        (
            vec!["train", "--batch", "100000", "--synth-count", "100", "--out", o],
            "larger than the 100 training samples",
        ),
        (vec!["train", "--data", "/no/such/file.csv", "--out", o], "/no/such/file.csv"),
        (vec!["train", "--folds", "1", "--synth-count", "100", "--out", o], "--folds 1"),
        (vec!["train", "--top", "hinge", "--out", o], "unknown --top"),
        (vec!["eval", "--model", "/no/such/model.safetensors"], "/no/such/model.safetensors"),
    ] {
        let r = dlsvm(&args, &[]);
        let (_, err) = text(&r);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line, no backtrace: {err}");
    }
}

#[test]
fn folds_train_one_fold_and_report_it() {
    let dir = TempDir::new("folds");
    let out = dir.join("cv");
    let o = dlsvm(
        &[
            "train",
            "--synth-count",
            "120",
            "--folds",
            "3",
            "--fold",
            "1",
            "--steps",
            "3",
            "--batch",
            "16",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    let (stdout, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {stdout}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["folds"], 3);
    assert_eq!(v["fold_accuracy"].as_array().map(|a| a.len()), Some(1));
    assert_eq!(v["runs"][0]["test_samples"], 40, "fold 1 of 3 holds out a third of 120");
    assert!(out.join("fold1").join("model.safetensors").exists());
    assert!(!out.join("fold0").exists(), "--fold 1 trains fold 1 alone");
    let r = dlsvm(
        &["train", "--synth-count", "120", "--folds", "3", "--fold", "3", "--out", out.to_str().unwrap()],
        &[],
    );
    assert_eq!(r.status.code(), Some(2));
}

#[test]
fn bench_reports_ceilings_and_rows_as_json() {
    let o = dlsvm(&["bench", "--filter", "relu", "--no-steps", "--json"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert!(v["adapter"]["name"].is_string());
    assert!(v["ceilings"]["fma_gflops"].as_f64().is_some_and(|g| g > 0.0), "{v}");
    assert!(v["ceilings"]["copy_gbps"].as_f64().is_some_and(|g| g > 0.0), "{v}");
    let rows = v["rows"].as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["relu_fwd", "relu_bwd"]);
    for r in rows {
        assert_eq!(r["status"], "ok", "{r}");
        assert!(
            r["median_ms"].as_f64().is_some_and(|t| t > 0.0) && r["gbps"].as_f64().is_some_and(|g| g > 0.0),
            "{r}"
        );
        assert!(r["pct_of_ceiling"].as_f64().is_some_and(|p| p > 0.0), "{r}");
        // The share is of the ceiling the row records (the copy probe measured beside it).
        let (gbps, ceiling, pct) = (
            r["gbps"].as_f64().unwrap(),
            r["ceiling"].as_f64().unwrap(),
            r["pct_of_ceiling"].as_f64().unwrap(),
        );
        assert!(ceiling > 0.0 && (pct - 100.0 * gbps / ceiling).abs() <= 1e-9 * pct, "{r}");
    }
}

/// Every option of `dlsvm train --help` says what it does; the presets' augmentation is named.
#[test]
fn train_help_explains_every_option() {
    let o = dlsvm(&["train", "--help"], &[]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    let lines: Vec<&str> = out.lines().collect();
    let mut options = 0;
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if t.starts_with("--") || t.starts_with("-h,") {
            options += 1;
            let next = lines.get(i + 1).map_or("", |n| n.trim());
            assert!(!next.is_empty() && !next.starts_with('-'), "option {t} has no description:\n{out}");
        }
    }
    assert!(options >= 25, "{options} options:\n{out}");
    for want in
        ["--no-augment", "--noise-std", "rotation ±45°", "no augmentation", "learning-rate schedule moves"]
    {
        assert!(out.contains(want), "train --help lacks {want:?}:\n{out}");
    }
}

/// The help says what each command takes: `compare --help` lists no option compare refuses (--top,
/// --grid) and lists --select; `train --help` names every data format `--data` reads.
#[test]
fn help_lists_what_each_command_takes() {
    let (compare, _) = text(&dlsvm(&["compare", "--help"], &[]));
    for line in compare.lines().map(str::trim_start) {
        assert!(!line.starts_with("--top ") && !line.starts_with("--grid "), "compare --help lists {line}");
    }
    assert!(compare.contains("--tops") && compare.contains("--select") && compare.contains("--select-folds"));
    let (train, _) = text(&dlsvm(&["train", "--help"], &[]));
    for want in ["CSV", "image-folder", "IDX", "CIFAR-10"] {
        assert!(train.contains(want), "train --help's --data lacks {want}:\n{train}");
    }
}

/// A network file may leave out `top` (an L2-SVM, the paper's); one without a required key names
/// the file and the key (not "line 1, column 1").
#[test]
fn a_network_file_without_top_trains_an_l2svm_and_a_missing_key_is_named() {
    let dir = TempDir::new("notop");
    let o = dlsvm(&["train", "--preset", "mlp", "--steps", "1", "--out", s(&dir.join("first"))], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let config = std::fs::read_to_string(dir.join("first/config.toml")).unwrap();
    let without: String =
        config.lines().filter(|l| !l.starts_with("top = ")).map(|l| format!("{l}\n")).collect();
    assert!(!without.contains("top = "), "{without}");
    let file = dir.write("net.toml", &without);
    let out = dir.join("second");
    let o = dlsvm(&["train", "--config", s(&file), "--steps", "1", "--json", "--out", s(&out)], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["top"], "l2svm");
    let no_name: String =
        without.lines().filter(|l| !l.starts_with("name = ")).map(|l| format!("{l}\n")).collect();
    let file = dir.write("noname.toml", &no_name);
    let o = dlsvm(&["train", "--config", s(&file), "--steps", "1", "--out", s(&dir.join("third"))], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(s(&file)) && err.contains("no `name`") && !err.contains("line 1, column 1"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // --set takes one KEY=VALUE; without `=` it says so (not the grid's wording).
    let o =
        dlsvm(&["train", "--preset", "mlp", "--steps", "1", "--set", "lr", "--out", s(&dir.join("x"))], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--set lr: expected KEY=VALUE") && !err.contains("V1,V2"), "{err}");
}

/// `--no-augment` and `--noise-std` reach the run: its config.toml has the identity augmentation
/// with the noise asked for.
#[test]
fn no_augment_and_noise_std_reach_the_run() {
    let dir = TempDir::new("noaug");
    let out = dir.join("run");
    let args = ["train", "--synth-count", "40", "--batch", "8", "--steps", "1", "--json", "--out"];
    let o =
        dlsvm(&[&args[..], &[out.to_str().unwrap(), "--no-augment", "--noise-std", "0.25"]].concat(), &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let cfg = dlsvm::model::NetConfig::from_toml_file(&out.join("config.toml")).unwrap();
    let a = cfg.train.augment;
    assert_eq!(a, dlsvm::data::augment::Augment { noise_std: 0.25, ..dlsvm::data::augment::Augment::NONE });
    let o = dlsvm(&[&args[..], &[out.to_str().unwrap(), "--noise-std=-1"]].concat(), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--noise-std -1 must be a finite number >= 0"), "{:?}", text(&o));
}

/// `DLSVM_SHADER_DIR` compiles the WGSL found there instead of the built-in copies: a fill kernel
/// broken on purpose there makes `dlsvm check` fail, the built-in one passes.
#[test]
fn shader_dir_replaces_the_built_in_shaders_and_check_catches_a_broken_one() {
    let dir = TempDir::new("shaderdir");
    let shaders = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    std::fs::copy(shaders.join("common.wgsl"), dir.join("common.wgsl")).unwrap();
    let fill = std::fs::read_to_string(shaders.join("fill.wgsl")).unwrap();
    let broken = fill.replace("out[i] = p.value;", "out[i] = p.value + 1e-3;");
    assert_ne!(broken, fill, "the mutation applies");
    dir.write("fill.wgsl", broken);
    let env = [("DLSVM_SHADER_DIR", dir.to_str().unwrap())];
    let o = dlsvm(&["check", "--filter", "fill"], &env);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert!(out.contains("fill") && out.contains("FAIL"), "{out}");
    assert_eq!(dlsvm(&["check", "--filter", "fill"], &[]).status.code(), Some(0));
}

/// With WebGPU's default limits (what a browser gives) every kernel still passes its check and a
/// training run completes; `info` reports the limits the device was opened with.
#[test]
fn webgpu_default_limits_run_the_check_and_a_training_step() {
    let env = [("DLSVM_LIMITS", "webgpu")];
    let o = dlsvm(&["info", "--json"], &env);
    let v: serde_json::Value = serde_json::from_str(text(&o).0.trim()).expect("info --json");
    assert_eq!(v["limits"]["max_storage_buffer_binding_size"], 134_217_728, "{v}");
    assert_eq!(v["limits"]["max_buffer_size"], 268_435_456, "{v}");
    let o = dlsvm(&["check", "--filter", "gemm_nn vec4"], &env);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let dir = TempDir::new("webgpu");
    let out = dir.join("run");
    let args = ["train", "--synth-count", "40", "--batch", "8", "--steps", "2", "--json", "--out"];
    let o = dlsvm(&[&args[..], &[out.to_str().unwrap()]].concat(), &env);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
}
