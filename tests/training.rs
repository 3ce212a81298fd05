//! Whole runs: checkpoints round-trip, a resumed run ends where an uninterrupted one does (and a
//! resume with another length says how the schedule changes, or is refused), the per-interval
//! records, and training learns.

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

fn run(
    cfg: &NetConfig,
    src: &dlsvm::data::DataSource,
    o: RunOptions,
) -> Result<train::Summary, train::TrainError> {
    train::run(gpu(), cfg, src, src.train().unwrap(), src.test(), &o)
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
    RunOptions { resume, stop_after, ..RunOptions::new(out) }
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

/// Resuming with the length the checkpoint was trained for is silent; with more steps (continuing a
/// finished run) it goes on and says how the schedule moves; with fewer steps than the checkpoint
/// has done it is refused in one line.
#[test]
fn resume_with_another_length_says_how_the_schedule_changes() {
    let src = synth::source(160, 32, 8);
    let cfg = small_config();
    let out = tmp("schedule");
    let s = run(&cfg, &src, opts(out.clone(), false, Some(6))).unwrap();
    assert_eq!(s.schedule_note, None);
    let s = run(&cfg, &src, opts(out.clone(), true, None)).unwrap();
    assert_eq!((s.steps, s.schedule_note), (12, None), "the same length resumes silently");
    // Continue the finished 12-step run to 20 steps: the drops at 2/3 and 5/6 of the run move.
    let mut longer = cfg.clone();
    longer.train.steps = 20;
    longer.train.lr_drops = true;
    let mut finished = cfg.clone();
    finished.train.lr_drops = true;
    let out2 = tmp("schedule-longer");
    run(&finished, &src, opts(out2.clone(), false, None)).unwrap();
    let s = run(&longer, &src, opts(out2.clone(), true, None)).unwrap();
    let note = s.schedule_note.expect("a note on the schedule");
    let (was, now) = (longer.train.lr_at(12, 12), longer.train.lr_at(12, 20));
    assert!(was < now, "the test needs a schedule that moves: {was} vs {now}");
    assert!(note.starts_with("resuming at step 12 of a run planned for 12 steps with 20 steps"), "{note}");
    assert!(note.contains(&format!("{now:.4e}, was {was:.4e}")), "{note}");
    assert_eq!(checkpoint::load(&out2.join("model.safetensors")).unwrap().step, 20);
    // Fewer steps than the checkpoint has done: refused, the checkpoint untouched.
    let mut shorter = cfg.clone();
    shorter.train.steps = 8;
    let before = std::fs::read(out2.join("model.safetensors")).unwrap();
    let e = run(&shorter, &src, opts(out2.clone(), true, None)).unwrap_err().to_string();
    assert!(e.contains("the checkpoint is at step 20, past this run's 8 steps"), "{e}");
    assert_eq!(std::fs::read(out2.join("model.safetensors")).unwrap(), before);
}

/// steps.csv has a row per logging interval (and at each epoch end and checkpoint), with the
/// schedule's values at the interval's last step; a resumed run keeps only the rows before its
/// checkpoint, so its file ends equal to the uninterrupted run's but for the timing columns.
#[test]
fn steps_csv_has_a_row_per_logging_interval() {
    let src = synth::source(160, 32, 9);
    let cfg = small_config(); // 12 steps of 32 on 160 samples: 5 per epoch; log every 2, checkpoint every 4
    let out = tmp("steps");
    run(&cfg, &src, opts(out.clone(), false, None)).unwrap();
    let rows: Vec<dlsvm::report::StepRow> = dlsvm::report::read_rows(&out.join("steps.csv")).unwrap();
    let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    assert_eq!(steps, [2, 4, 5, 6, 8, 10, 12]);
    let t = &cfg.train;
    for r in &rows {
        assert_eq!(r.lr, t.lr_at(r.step - 1, 12), "step {}", r.step);
        assert_eq!(r.momentum, t.momentum_at(r.step - 1));
        assert_eq!(r.epoch, r.step as f64 / 5.0);
        assert!(r.loss.is_finite() && r.loss > 0.0 && (0.0..=1.0).contains(&r.accuracy), "{r:?}");
        assert!(r.images_per_sec > 0.0, "{r:?}");
    }
    let part = tmp("steps-part");
    run(&cfg, &src, opts(part.clone(), false, Some(8))).unwrap();
    run(&cfg, &src, opts(part.clone(), true, None)).unwrap();
    let resumed: Vec<dlsvm::report::StepRow> = dlsvm::report::read_rows(&part.join("steps.csv")).unwrap();
    let key = |r: &dlsvm::report::StepRow| (r.step, r.lr.to_bits(), r.loss.to_bits(), r.accuracy.to_bits());
    assert_eq!(resumed.iter().map(key).collect::<Vec<_>>(), rows.iter().map(key).collect::<Vec<_>>());
}

/// `--no-augment` trains on the plain centre crops: the batch of a step is exactly the centre crops
/// of its samples, where the preset's augmentation gives other pixels.
#[test]
fn no_augment_gives_the_unaugmented_batch() {
    use dlsvm::data::{augment::centre_crop, batch::make_batch, normalize::Normalizer};
    use dlsvm::model::config::Overrides;
    let src = synth::source(64, 8, 10);
    let train_set = src.train().unwrap();
    let x = Normalizer::fit(train_set, true, 150.0).apply(train_set);
    let mut cfg = preset("fer-small").unwrap();
    cfg.train.batch = 8;
    let augmented = make_batch(&x, &train_set.labels, 48, 48, &cfg.batch_spec(), 3);
    Overrides { no_augment: true, ..Overrides::default() }.apply(&mut cfg).unwrap();
    assert!(cfg.train.augment.is_identity());
    let plain = make_batch(&x, &train_set.labels, 48, 48, &cfg.batch_spec(), 3);
    assert_eq!(plain.indices, augmented.indices, "the same samples");
    let mut want = vec![0.0f32; 42 * 42];
    for (p, &i) in plain.indices.iter().enumerate() {
        centre_crop(&x[i * 48 * 48..(i + 1) * 48 * 48], 48, 48, &mut want, 42, 42);
        assert_eq!(&plain.x[p * 42 * 42..(p + 1) * 42 * 42], &want[..], "sample {p} is not its centre crop");
    }
    assert_ne!(plain.x, augmented.x, "the preset's augmentation changes the batch");
    // --noise-std alone adds noise to the centre crops.
    Overrides { noise_std: Some(0.5), ..Overrides::default() }.apply(&mut cfg).unwrap();
    let noisy = make_batch(&x, &train_set.labels, 48, 48, &cfg.batch_spec(), 3);
    let diff = noisy.x.iter().zip(&plain.x).map(|(a, b)| (a - b) as f64).map(|d| d * d).sum::<f64>();
    let std = (diff / plain.x.len() as f64).sqrt();
    assert!((0.45..0.55).contains(&std), "noise std {std}");
}

/// A run records the kernel variant of every op (and its adapter) in its checkpoints; a resumed run
/// keeps them whatever the caller (the tuner) would choose now, so it ends bit-equal to the
/// uninterrupted run. The plan matters: the same run with other variants rounds differently.
#[test]
fn resume_keeps_the_recorded_variants_and_stays_bit_exact() {
    use dlsvm::model::Plan;
    let src = synth::source(160, 32, 11);
    let cfg = small_config();
    let p1 = Plan::from_names(
        &[("6.fc_fwd", "tiled16x16r4x4"), ("2.conv_weight", "split"), ("1.pool_bwd", "gather")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .unwrap();
    let with = |out: &PathBuf, resume, stop, plan: &Plan| RunOptions {
        plan: Some(plan.clone()),
        ..opts(out.clone(), resume, stop)
    };
    let full = tmp("plan-full");
    let a = run(&cfg, &src, with(&full, false, None, &p1)).unwrap();
    let names = a.variants.names();
    assert_eq!(names["6.fc_fwd"], "tiled16x16r4x4");
    assert_eq!(names["8.fc_fwd"], "vec4_8x8r4x8", "the rest default");
    let ck = checkpoint::load(&full.join("model.safetensors")).unwrap();
    assert_eq!(ck.plan.as_ref(), Some(&a.variants));
    assert!(ck.adapter.as_deref().is_some_and(|n| n.starts_with(&gpu().info.name)), "{:?}", ck.adapter);
    // Stop at step 5, then resume asking for the defaults: the checkpoint's variants win.
    let part = tmp("plan-part");
    run(&cfg, &src, with(&part, false, Some(5), &p1)).unwrap();
    let b = run(&cfg, &src, with(&part, true, None, &Plan::default())).unwrap();
    assert_eq!(b.variants, a.variants);
    let (wa, wb) = (ck.params, checkpoint::load(&part.join("model.safetensors")).unwrap().params);
    let bits = |w: &Vec<Vec<f32>>| w.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&wa), bits(&wb), "the resumed run differs from the uninterrupted one");
    // The default variants round differently: without the recorded plan the resume would differ.
    let other = tmp("plan-other");
    run(&cfg, &src, with(&other, false, None, &Plan::default())).unwrap();
    let wc = checkpoint::load(&other.join("model.safetensors")).unwrap().params;
    assert_ne!(bits(&wa), bits(&wc), "the variants do not change the rounding: the test cannot fail");
}
