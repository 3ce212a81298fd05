//! `--init-from MODEL` (and `compare --warm-start MODEL`): what is loaded, what starts fresh,
//! what is refused (another body, another input, files that are not models), and the warm-start
//! comparison's curves starting at the model's own test error.

mod common;

use std::path::PathBuf;

use common::{dlsvm, eval_json, s, text, TempDir};
use dlsvm::model::{checkpoint, preset, LayerSpec, Net};
use dlsvm::train::warm::warm_start;
use serde_json::Value;

const MNIST: &str = "data/mnist-5k";

/// An mlp (L2-SVM top) trained 10 steps on data/mnist-5k, in `dir`.
fn source_model(dir: &TempDir) -> PathBuf {
    let out = dir.join("source");
    let o = dlsvm(&["train", "--preset", "mlp", "--data", MNIST, "--steps", "10", "--out", s(&out)], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    out.join("model.safetensors")
}

fn digits() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// Every parameter of the same network is loaded, bit for bit, and the normalizer with it.
#[test]
fn init_from_loads_every_matching_layer() {
    let dir = TempDir::new("warm-load");
    let model = source_model(&dir);
    let ck = checkpoint::load(&model).unwrap();
    let mut cfg = preset("mlp").unwrap();
    cfg.top = dlsvm::model::Top::Softmax;
    let net = Net::new(&cfg, 10).unwrap();
    let w = warm_start(&model, &net, &ck.class_names, 99).unwrap();
    assert!(w.params == ck.params, "every layer, the top too (same shape and classes)");
    assert_eq!(w.normalizer, ck.normalizer);
    assert!(
        w.report.contains("loaded layers.0.weight, layers.0.bias") && !w.report.contains("fresh ("),
        "{}",
        w.report
    );

    // Other classes (same count, other names): the top starts from this run's own values.
    let other: Vec<String> = (0..10).map(|d| format!("c{d}")).collect();
    let w = warm_start(&model, &net, &other, 99).unwrap();
    let own = net.init_params(99);
    let top = net.params.len() - 2;
    assert!(w.params[..top] == ck.params[..top]);
    assert!(w.params[top..] == own[top..], "the top is drawn as this run would draw it");
    assert!(
        w.report.contains("layers.4.weight, layers.4.bias start fresh (the model's classes differ"),
        "{}",
        w.report
    );

    // Fewer classes: the top has another shape and starts fresh.
    let net7 = Net::new(&cfg, 7).unwrap();
    let w = warm_start(&model, &net7, &digits()[..7], 99).unwrap();
    assert!(w.params[..top] == ck.params[..top]);
    assert!(w.report.contains("start fresh (another shape there)"), "{}", w.report);
}

/// Another body, another input size, or nothing in common: refused in one line naming the file.
#[test]
fn init_from_refuses_another_body_or_input() {
    let dir = TempDir::new("warm-refuse");
    let model = source_model(&dir);
    let mut wider = preset("mlp").unwrap();
    wider.layers[0] = LayerSpec::Fc { out: Some(256), weight_decay: None, lr_scale: None, init_std: None };
    let e = warm_start(&model, &Net::new(&wider, 10).unwrap(), &digits(), 1).unwrap_err().to_string();
    assert!(
        e.contains(
            "--init-from: its body differs from this network's at layer 0 (fc 512 there, fc 256 here)"
        ),
        "{e}"
    );
    let mut deeper = preset("mlp").unwrap();
    deeper.layers.insert(4, LayerSpec::Dropout { p: 0.1 });
    let e = warm_start(&model, &Net::new(&deeper, 10).unwrap(), &digits(), 1).unwrap_err().to_string();
    assert!(e.contains("the model has 4 layers below its top, this network 5"), "{e}");
    let fer = preset("fer-small").unwrap();
    let e = warm_start(&model, &Net::new(&fer, 10).unwrap(), &digits(), 1).unwrap_err().to_string();
    assert!(e.contains("the model takes 28x28 images") && e.contains(&model.display().to_string()), "{e}");
    let mut single = preset("mlp").unwrap();
    single.layers = vec![LayerSpec::Fc { out: None, weight_decay: None, lr_scale: None, init_std: None }];
    let e = warm_start(&model, &Net::new(&single, 10).unwrap(), &digits(), 1).unwrap_err().to_string();
    assert!(e.contains("the model has 4 layers below its top, this network 0"), "{e}");
}

/// From the command line: a run that starts from the model says what it loaded and records it;
/// bad files are refused with one line, exit 2, and nothing written.
#[test]
fn init_from_on_the_command_line() {
    let dir = TempDir::new("warm-cli");
    let model = source_model(&dir);
    let out = dir.join("run");
    let o = dlsvm(
        &[
            "train",
            "--preset",
            "mlp",
            "--data",
            MNIST,
            "--steps",
            "5",
            "--top",
            "softmax",
            "--init-from",
            s(&model),
            "--out",
            s(&out),
            "--json",
        ],
        &[],
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("initialized from") && stderr.contains("loaded layers.0.weight"), "{stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["init_from"], s(&model));
    assert_eq!(summary["top"], "softmax");

    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a model").unwrap();
    let missing = dir.join("missing.safetensors");
    for (what, path, want) in [
        ("a file that is not a model", garbage.clone(), "not a safetensors file"),
        ("a missing file", missing.clone(), "missing.safetensors"),
    ] {
        let fresh = dir.join("refused");
        let o = dlsvm(
            &[
                "train",
                "--preset",
                "mlp",
                "--data",
                MNIST,
                "--steps",
                "5",
                "--init-from",
                s(&path),
                "--out",
                s(&fresh),
            ],
            &[],
        );
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(err.contains(want), "{what}: {err}");
        assert!(!fresh.exists(), "{what}: nothing written");
    }
    let o = dlsvm(
        &[
            "train",
            "--preset",
            "fer-small",
            "--steps",
            "5",
            "--init-from",
            s(&model),
            "--out",
            s(&dir.join("x")),
        ],
        &[],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("a warm start needs the same input"), "{err}");
}

/// `compare --warm-start`: every run continues the model; each curve starts at step 0 with the
/// model's own test error (the same for every top: the same weights).
#[test]
fn compare_warm_start_curves_start_at_the_model() {
    let dir = TempDir::new("warm-compare");
    let model = source_model(&dir);
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
            "40",
            "--warm-start",
            s(&model),
            "--out",
            s(&out),
            "--json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(r["warm_start"], s(&model));
    let e = eval_json(s(&model), MNIST);
    let start = 1.0 - e["splits"]["test"]["accuracy"].as_f64().unwrap();
    for run in r["runs"].as_array().unwrap() {
        let curve = run["curve"].as_array().unwrap();
        assert_eq!(curve[0][0], 0, "{run}");
        assert!((curve[0][1].as_f64().unwrap() - start).abs() < 1e-12, "{run}");
        assert!(curve.len() >= 2, "{run}");
    }
}
