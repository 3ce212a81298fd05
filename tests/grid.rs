//! `dlsvm train --grid`: every combination of `[train]` values in its own directory, the table and
//! its best setting, a setting equal to the plain run with those values, folds per setting, and
//! bad grids refused in one line.

mod common;

use common::{dlsvm, s, text, train_json, TempDir};
use serde_json::Value;

const MNIST: &str = "data/mnist-5k";

#[test]
fn grid_trains_every_setting_and_names_the_best() {
    let dir = TempDir::new("grid");
    let out = dir.join("g");
    let r = train_json(&[
        "--preset",
        "mlp",
        "--data",
        MNIST,
        "--steps",
        "6",
        "--grid",
        "weight_decay=1e-4,1e-3",
        "--grid",
        "svm_c=0.5,1",
        "--out",
        s(&out),
    ]);
    let rows = r["rows"].as_array().unwrap();
    let names: Vec<String> = rows
        .iter()
        .map(|row| {
            let pairs: Vec<String> = row["setting"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| format!("{}={}", p[0].as_str().unwrap(), p[1].as_str().unwrap()))
                .collect();
            pairs.join(",")
        })
        .collect();
    let want = [
        "weight_decay=1e-4,svm_c=0.5",
        "weight_decay=1e-4,svm_c=1",
        "weight_decay=1e-3,svm_c=0.5",
        "weight_decay=1e-3,svm_c=1",
    ];
    assert_eq!(names, want, "the first axis changes slowest");
    let mut best = (0, f64::NEG_INFINITY);
    for (i, (row, name)) in rows.iter().zip(&names).enumerate() {
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(name).join("summary.json")).unwrap())
                .unwrap();
        let acc = row["accuracy"].as_f64().unwrap();
        assert_eq!(summary["test"]["accuracy"].as_f64().unwrap(), acc, "{name}");
        if acc > best.1 {
            best = (i, acc);
        }
    }
    assert_eq!(r["best"], best.0);
    assert!(std::fs::read_to_string(out.join("grid.md")).unwrap().contains("| 1e-3 | 0.5 |"));
    // A setting is the plain run with those values, bit for bit.
    let solo = dir.join("solo");
    train_json(&[
        "--preset",
        "mlp",
        "--data",
        MNIST,
        "--steps",
        "6",
        "--weight-decay",
        "1e-3",
        "--svm-c",
        "0.5",
        "--out",
        s(&solo),
    ]);
    let a = dlsvm::model::checkpoint::load(&solo.join("model.safetensors")).unwrap();
    let b = dlsvm::model::checkpoint::load(&out.join(want[2]).join("model.safetensors")).unwrap();
    assert!(a.params == b.params, "the grid's weight_decay=1e-3,svm_c=0.5 differs from the plain run");
}

#[test]
fn grid_with_folds_cross_validates_each_setting() {
    let dir = TempDir::new("grid-folds");
    let out = dir.join("g");
    let r = train_json(&[
        "--preset",
        "mlp",
        "--data",
        MNIST,
        "--steps",
        "3",
        "--folds",
        "4",
        "--fold",
        "2",
        "--grid",
        "augment.noise_std=0,0.5",
        "--out",
        s(&out),
    ]);
    assert_eq!(r["folds"], 4);
    for (row, name) in
        r["rows"].as_array().unwrap().iter().zip(["augment.noise_std=0", "augment.noise_std=0.5"])
    {
        assert!(out.join(name).join("fold2/model.safetensors").is_file(), "{name}");
        assert_eq!(row["std"], 0.0, "one fold: no spread");
    }
}

#[test]
fn bad_grids_are_refused_in_one_line() {
    let dir = TempDir::new("grid-bad");
    let out = dir.join("g");
    for (what, grid, want) in [
        ("an unknown key", vec!["--grid", "banana=1,2"], "--grid banana=1: `banana` is not a [train] key"),
        (
            "a value out of range",
            vec!["--grid", "lr=0.1,-1"],
            "--grid lr=-1: [train] lr = -1 must be a finite positive number",
        ),
        ("a value of the wrong type", vec!["--grid", "batch=abc"], "--grid batch=abc:"),
        ("no values", vec!["--grid", "lr"], "--grid lr: expected KEY=V1,V2,..."),
        ("a key twice", vec!["--grid", "lr=1", "--grid", "lr=2"], "--grid names lr twice"),
    ] {
        let mut args = vec!["train", "--preset", "mlp", "--data", MNIST, "--steps", "2", "--out", s(&out)];
        args.extend(grid);
        let o = dlsvm(&args, &[]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(err.contains(want), "{what}: {err}");
        assert!(!out.exists(), "{what}: nothing written");
    }
    let o = dlsvm(&["compare", "--preset", "mlp", "--data", MNIST, "--grid", "lr=1", "--out", s(&out)], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--grid does not apply to compare"));
}
