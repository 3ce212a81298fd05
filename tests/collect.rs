//! `dlsvm collect DIR`: the summary of a set of runs from their directories alone: per-fold and
//! mean ± std accuracy, the fold models as an ensemble (equal to `dlsvm eval` of them), a grid's
//! best setting, and unfinished or failed runs named with exit 1.

mod common;

use common::{dlsvm, s, text, train_json, TempDir};
use serde_json::Value;

const MNIST: &str = "data/mnist-5k";

fn collect(dir: &std::path::Path) -> (Option<i32>, Value) {
    let o = dlsvm(&["collect", s(dir), "--json"], &[]);
    let v = serde_json::from_str(text(&o).0.trim()).unwrap_or_else(|e| panic!("{e}: {:?}", text(&o)));
    (o.status.code(), v)
}

#[test]
fn collect_summarizes_folds_ensembles_and_grids_and_names_what_is_missing() {
    let dir = TempDir::new("collect");
    let out = dir.join("runs");
    let grid = train_json(&[
        "--preset",
        "mlp",
        "--data",
        MNIST,
        "--steps",
        "8",
        "--folds",
        "3",
        "--grid",
        "svm_c=0.5,1",
        "--out",
        s(&out),
    ]);
    let (code, c) = collect(&out);
    assert_eq!(code, Some(0), "{c}");
    assert_eq!(c["runs"].as_array().unwrap().len(), 6);
    assert!(c["incomplete"].as_array().unwrap().is_empty());
    let sets = c["fold_sets"].as_array().unwrap();
    assert_eq!(sets.len(), 2);
    for (set, row) in sets.iter().zip(grid["rows"].as_array().unwrap()) {
        assert!(
            (set["mean"].as_f64().unwrap() - row["accuracy"].as_f64().unwrap()).abs() < 1e-12,
            "{set} {row}"
        );
        let name = set["name"].as_str().unwrap();
        for (i, acc) in
            set["folds"].as_array().unwrap().iter().map(|f| (f[0].as_u64().unwrap(), f[1].as_f64().unwrap()))
        {
            let summary: Value = serde_json::from_str(
                &std::fs::read_to_string(out.join(name).join(format!("fold{i}/summary.json"))).unwrap(),
            )
            .unwrap();
            assert_eq!(summary["test"]["accuracy"].as_f64().unwrap(), acc, "{name} fold {i}");
        }
        // The ensemble is what `dlsvm eval` says of the three fold models together.
        let models: Vec<String> = (0..3)
            .map(|i| s(&out.join(name).join(format!("fold{i}/model.safetensors"))).to_string())
            .collect();
        let mut args = vec!["eval", "--data", MNIST, "--json"];
        for m in &models {
            args.extend(["--model", m.as_str()]);
        }
        let o = dlsvm(&args, &[]);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        let e: Value = serde_json::from_str(text(&o).0.trim()).unwrap();
        assert_eq!(set["ensemble"]["Ok"].as_f64(), e["accuracy"]["test"].as_f64(), "{name}: {set}");
    }
    assert_eq!(c["best"], grid["best"]);

    // A run without its summary is unfinished (resumable), one without a checkpoint failed.
    std::fs::remove_file(out.join("svm_c=1/fold2/summary.json")).unwrap();
    std::fs::remove_file(out.join("svm_c=0.5/fold1/summary.json")).unwrap();
    std::fs::remove_file(out.join("svm_c=0.5/fold1/model.safetensors")).unwrap();
    let o = dlsvm(&["collect", s(&out)], &[]);
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("unfinished: svm_c=1/fold2 (step 8 of 8; resumable)"), "{stdout}");
    assert!(stdout.contains("failed: svm_c=0.5/fold1 (no checkpoint"), "{stdout}");
    assert!(stdout.contains("no ensemble: 2 of 3 folds finished"), "{stdout}");
}

#[test]
fn collect_refuses_a_folder_without_runs() {
    let dir = TempDir::new("collect-empty");
    for (what, path) in [("an empty folder", dir.join("")), ("a missing folder", dir.join("nope"))] {
        std::fs::create_dir_all(&*dir).unwrap();
        let o = dlsvm(&["collect", s(&path)], &[]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
    }
}
