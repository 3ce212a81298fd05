//! The PCA input stage through the command line: the `mnist-paper` preset trains, evaluates and
//! stores an orthonormal projection fitted on the normalized training split; bad `pca` settings
//! are refused in one line.

mod common;

use common::{dlsvm, eval_json, s, text, train_json, TempDir};

const MNIST: &str = "data/mnist-5k";

#[test]
fn mnist_paper_preset_trains_evaluates_and_stores_its_projection() {
    let dir = TempDir::new("pca-train");
    let out = dir.join("run");
    let summary =
        train_json(&["--preset", "mnist-paper", "--data", MNIST, "--steps", "30", "--out", s(&out)]);
    assert!(summary["test"]["accuracy"].as_f64().unwrap() > 0.5, "{summary}");
    let model = out.join("model.safetensors");
    let ck = dlsvm::model::checkpoint::load(&model).unwrap();
    let pca = ck.pca.as_ref().expect("the checkpoint holds the stage");
    assert_eq!((pca.k, pca.d), (70, 784));
    for a in 0..pca.k {
        for b in 0..pca.k {
            let dot: f64 = (0..pca.d)
                .map(|i| pca.components[a * pca.d + i] as f64 * pca.components[b * pca.d + i] as f64)
                .sum();
            let want = if a == b { 1.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-5, "components {a} and {b}: dot {dot}");
        }
    }
    let e = eval_json(s(&model), MNIST);
    let acc = summary["test"]["accuracy"].as_f64().unwrap();
    assert!((e["accuracy"]["test"].as_f64().unwrap() - acc).abs() < 1e-12, "eval agrees with the run: {e}");
}

#[test]
fn bad_pca_settings_are_refused() {
    let dir = TempDir::new("pca-bad");
    let head = "name = \"p\"\nimage_size = 28\ninput_size = 28\ntop = \"l2svm\"\n";
    let fc = "[[layers]]\ntype = \"fc\"\n";
    let conv = "[[layers]]\ntype = \"conv\"\nfilters = 4\nkernel = 3\n";
    for (what, body, want) in [
        ("zero components", format!("pca = 0\n{fc}"), "pca = 0 over inputs of 784 values"),
        ("more components than inputs", format!("pca = 785\n{fc}"), "expected 1 <= pca <= 784"),
        ("a conv first layer", format!("pca = 10\n{conv}{fc}"), "a PCA stage needs an fc first layer"),
    ] {
        let path = dir.join("net.toml");
        std::fs::write(&path, format!("{head}{body}")).unwrap();
        let o = dlsvm(
            &["train", "--config", s(&path), "--data", MNIST, "--steps", "2", "--out", s(&dir.join("x"))],
            &[],
        );
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(err.contains(want), "{what}: {err}");
    }
}
