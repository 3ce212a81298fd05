//! Whole runs: checkpoints round-trip, a resumed run ends where an uninterrupted one does, and
//! training learns.

mod common;

use std::path::PathBuf;

use common::gpu;
use dlsvm::data::synth;
use dlsvm::model::checkpoint;
use dlsvm::model::{preset, NetConfig};
use dlsvm::train::{self, RunOptions};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dlsvm-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small_config() -> NetConfig {
    let mut c = preset("fer-small").unwrap();
    c.train.batch = 32;
    c.train.steps = 12;
    c.train.checkpoint_every = 4;
    c.train.log_every = 2;
    c
}

fn opts(out: PathBuf, resume: bool, stop_after: Option<u64>) -> RunOptions {
    RunOptions { out, resume, progress: false, fold: None, stop_after }
}

#[test]
fn checkpoint_round_trip_and_corruption() {
    let g = gpu();
    let src = synth::source(160, 32, 5);
    let cfg = small_config();
    let out = tmp("roundtrip");
    let s =
        train::run(g, &cfg, &src, src.train().unwrap(), src.test(), &opts(out.clone(), false, None)).unwrap();
    assert_eq!(s.steps, 12);
    let path = out.join("model.safetensors");
    let ck = checkpoint::load(&path).unwrap();
    assert_eq!(ck.step, 12);
    assert_eq!(ck.config, cfg);
    assert_eq!(ck.class_names.len(), 7);
    let again = out.join("again.safetensors");
    checkpoint::save(&again, &ck).unwrap();
    let back = checkpoint::load(&again).unwrap();
    assert_eq!(back.params, ck.params);
    assert_eq!(back.velocity, ck.velocity);
    assert_eq!(back.normalizer, ck.normalizer);
    for f in
        ["metrics.csv", "config.toml", "summary.json", "learning_curve.png", "filters.png", "confusion.png"]
    {
        assert!(out.join(f).exists(), "the run directory lacks {f}");
    }
    // Truncated and garbage files are refused with the path in the message.
    let bytes = std::fs::read(&path).unwrap();
    let cut = out.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = checkpoint::load(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.safetensors"), "{e}");
    let junk = out.join("junk.safetensors");
    std::fs::write(&junk, b"hello, not a model").unwrap();
    let e = checkpoint::load(&junk).unwrap_err().to_string();
    assert!(e.contains("junk.safetensors") && e.contains("not a"), "{e}");
}

#[test]
fn resumed_run_equals_uninterrupted_run_bit_for_bit() {
    let g = gpu();
    let src = synth::source(160, 32, 6);
    let cfg = small_config();
    let full = tmp("full");
    train::run(g, &cfg, &src, src.train().unwrap(), src.test(), &opts(full.clone(), false, None)).unwrap();
    let part = tmp("part");
    train::run(g, &cfg, &src, src.train().unwrap(), src.test(), &opts(part.clone(), false, Some(5))).unwrap();
    assert_eq!(checkpoint::load(&part.join("model.safetensors")).unwrap().step, 5);
    train::run(g, &cfg, &src, src.train().unwrap(), src.test(), &opts(part.clone(), true, None)).unwrap();
    let a = checkpoint::load(&full.join("model.safetensors")).unwrap();
    let b = checkpoint::load(&part.join("model.safetensors")).unwrap();
    assert_eq!(b.step, 12);
    // The resumed run's records match the uninterrupted run's steps, without duplicates.
    let steps = |d: &PathBuf| -> Vec<u64> {
        dlsvm::report::read_metrics(&d.join("metrics.csv")).unwrap().iter().map(|r| r.step).collect()
    };
    assert_eq!(steps(&part), steps(&full));
    // A fresh run into the same directory starts its records anew.
    train::run(g, &cfg, &src, src.train().unwrap(), src.test(), &opts(part.clone(), false, None)).unwrap();
    assert_eq!(steps(&part), steps(&full));
    for (i, (x, y)) in a.params.iter().zip(&b.params).enumerate() {
        let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "parameter tensor {i} differs after resuming");
    }
}

#[test]
fn fer_small_learns_synthetic_faces() {
    let g = gpu();
    let src = synth::source(2000, 400, 7);
    let mut cfg = preset("fer-small").unwrap();
    cfg.train.steps = 250;
    cfg.train.checkpoint_every = 0;
    let out = tmp("learn");
    let s = train::run(g, &cfg, &src, src.train().unwrap(), src.test(), &opts(out, false, None)).unwrap();
    let acc = s.test.as_ref().unwrap().accuracy;
    // Chance is 1/7; the default 600-step run reaches far more, this shortened one must clear 40%.
    assert!(acc > 0.4, "test accuracy {acc} after 250 steps (chance 0.14)");
}
