//! The CPU side of the data pipeline: synthetic faces, the fer2013.csv writer, the paper's
//! augmentation and the minibatch stream. No GPU needed.

use std::path::PathBuf;
use std::sync::Arc;

use dlsvm::data::augment::{centre_crop, crop_into, warp_into, Augment, Jitter};
use dlsvm::data::batch::{self, BatchSpec};
use dlsvm::data::synth;
use dlsvm::data::{Dataset, Format, FER_CLASSES};
use dlsvm::rng::{self as augment, Rng};

// ---------------------------------------------------------------------------------------------
// Helpers.

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("dlsvm_data_pipeline_{}_{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Bitwise equality of two images, naming the first difference (not dumping both).
#[track_caller]
fn assert_same(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    if let Some(k) = (0..a.len()).find(|&k| a[k].to_bits() != b[k].to_bits()) {
        panic!("{what}: first difference at {k}: {} vs {}", a[k], b[k]);
    }
}

#[track_caller]
fn assert_differ(a: &[f32], b: &[f32], what: &str) {
    assert!(bits(a) != bits(b), "{what}: identical");
}

fn fnv(v: &[f32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for x in v {
        for b in x.to_bits().to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A random image with distinct values, `[h, w]`.
fn ramp(h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..h * w).map(|i| i as f32 + r.unit() as f32 * 0.5).collect()
}

/// `n` random images `[n, h, w]` and labels `i % 7`.
fn random_set(n: usize, h: usize, w: usize, seed: u64) -> (Vec<f32>, Vec<i32>) {
    let mut r = Rng::new(seed);
    let x = (0..n * h * w).map(|_| r.normal() as f32).collect();
    let y = (0..n).map(|i| (i % 7) as i32).collect();
    (x, y)
}

fn rounded(v: &[f32]) -> Vec<u8> {
    v.iter().map(|x| x.round().clamp(0.0, 255.0) as u8).collect()
}

/// Nearest-class-mean accuracy on the central face window (rows 12..44, cols 8..40), each image
/// standardized over that window (mean 0, std 1). `window: false`: whole raw images.
fn nearest_class_mean(train: &Dataset, test: &Dataset, window: bool) -> f64 {
    let feats = |d: &Dataset, i: usize| -> Vec<f64> {
        let img = d.image(i);
        if !window {
            return img.iter().map(|&v| v as f64).collect();
        }
        let v: Vec<f64> = (12..44).flat_map(|r| (8..40).map(move |c| img[r * 48 + c] as f64)).collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt().max(1e-9);
        v.iter().map(|x| (x - m) / sd).collect()
    };
    let dim = feats(train, 0).len();
    let mut means = vec![vec![0.0; dim]; 7];
    let mut counts = [0.0f64; 7];
    for i in 0..train.len() {
        let c = train.labels[i] as usize;
        counts[c] += 1.0;
        for (m, f) in means[c].iter_mut().zip(feats(train, i)) {
            *m += f;
        }
    }
    for (m, n) in means.iter_mut().zip(counts) {
        m.iter_mut().for_each(|v| *v /= n);
    }
    let correct = (0..test.len())
        .filter(|&i| {
            let f = feats(test, i);
            let dist = |c: usize| f.iter().zip(&means[c]).map(|(a, b)| (a - b) * (a - b)).sum::<f64>();
            let best = (0..7).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap();
            best == test.labels[i] as usize
        })
        .count();
    correct as f64 / test.len() as f64
}

// ---------------------------------------------------------------------------------------------
// Synthetic faces.

#[test]
fn synth_same_seed_gives_identical_faces() {
    let a = synth::faces(50, 3);
    let b = synth::faces(50, 3);
    assert_eq!((a.h, a.w, a.len()), (48, 48, 50));
    assert_eq!(a.labels, b.labels);
    assert_same(&a.pixels, &b.pixels, "same seed");
}

#[test]
fn synth_other_seed_gives_other_faces() {
    let a = synth::faces(50, 3);
    let b = synth::faces(50, 4);
    assert_ne!(a.labels, b.labels);
    let differing = a.pixels.iter().zip(&b.pixels).filter(|(x, y)| x != y).count();
    assert!(differing > a.pixels.len() / 2, "only {differing} pixels differ");
}

#[test]
fn synth_each_face_depends_only_on_its_seed_not_on_threads() {
    // faces() draws on several threads; every image must equal the one drawn alone.
    let d = synth::faces(23, 77);
    let mut one = vec![0.0f32; 48 * 48];
    for i in 0..d.len() {
        synth::draw_face(d.labels[i] as usize, augment::mix(77, i as u64), &mut one);
        assert_same(&one, d.image(i), &format!("image {i}"));
    }
}

#[test]
fn synth_golden_checksum() {
    // The drawing uses integer RNG and portable arithmetic only: these values hold on every
    // platform. Update them only when the drawing is changed on purpose.
    let d = synth::faces(14, 2013);
    assert_eq!(d.labels, vec![3, 6, 1, 2, 3, 0, 5, 5, 2, 1, 6, 4, 4, 0]);
    assert_eq!(fnv(&d.pixels), 0x22ed_4d23_3b1f_2743, "pixels changed: {:#x}", fnv(&d.pixels));
}

#[test]
fn synth_classes_are_balanced_and_shuffled() {
    for n in [7usize, 100, 701] {
        let labels = synth::balanced_labels(n, 9);
        let mut counts = [0usize; 7];
        labels.iter().for_each(|&l| counts[l as usize] += 1);
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= 1, "n={n}: {counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), n);
    }
    let labels = synth::faces(70, 1).labels;
    let cyclic: Vec<i32> = (0..70).map(|i| i % 7).collect();
    assert_ne!(labels, cyclic, "labels are not shuffled");
}

#[test]
fn synth_values_are_raw_intensities() {
    let d = synth::faces(70, 5);
    assert!(d.pixels.iter().all(|v| v.is_finite() && (0.0..=255.0).contains(v)));
    for i in 0..d.len() {
        let img = d.image(i);
        let m = img.iter().sum::<f32>() / img.len() as f32;
        let sd = (img.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / img.len() as f32).sqrt();
        assert!(sd > 12.0, "image {i} is nearly flat (std {sd})");
    }
}

#[test]
fn synth_expressions_are_learnable_but_not_trivial() {
    let train = synth::faces(700, 21);
    let test = synth::faces(350, 21 ^ synth::TEST_SEED_XOR);
    let window = nearest_class_mean(&train, &test, true);
    let raw = nearest_class_mean(&train, &test, false);
    eprintln!(
        "nearest class mean: standardized face window {window:.3}, raw full image {raw:.3} (chance 0.143)"
    );
    assert!(window > 0.24, "expressions barely separable: nearest-class-mean accuracy {window:.3}");
    assert!(window < 0.9, "expressions trivially separable: nearest-class-mean accuracy {window:.3}");
    // On whole raw images the lighting and background dominate the distance (reported only).
    assert!(raw > 0.1, "raw nearest-class-mean accuracy {raw:.3}");
}

#[test]
fn synth_source_has_train_and_test_splits() {
    let src = synth::source(21, 14, 8);
    assert_eq!(src.format, Format::Synthetic);
    assert_eq!(src.path, "synthetic");
    assert_eq!(src.class_names, FER_CLASSES.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let names: Vec<&str> = src.splits.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["train", "test"]);
    let (train, test) = (&src.splits[0].1, &src.splits[1].1);
    assert_eq!((train.len(), test.len()), (21, 14));
    assert_eq!(train, &synth::faces(21, 8));
    assert_eq!(test, &synth::faces(14, 8 ^ synth::TEST_SEED_XOR));
    assert_differ(train.image(0), test.image(0), "train and test first image");
}

// ---------------------------------------------------------------------------------------------
// fer2013.csv writer.

/// A small independent parser: (emotion, pixels, usage) per row.
fn parse_fer_csv(text: &str) -> Vec<(i32, Vec<u8>, String)> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("emotion,pixels,Usage"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 3, "row {l:.40}");
            let px: Vec<u8> = f[1].split(' ').map(|v| v.parse().unwrap()).collect();
            assert_eq!(px.len(), 2304);
            (f[0].parse().unwrap(), px, f[2].to_string())
        })
        .collect()
}

#[test]
fn csv_writer_round_trips_through_a_plain_parser() {
    let dir = TempDir::new("csv_plain");
    let mut src = synth::source(15, 8, 11);
    // Out-of-range values must be clamped, halves rounded.
    src.splits[0].1.pixels[0] = -7.0;
    src.splits[0].1.pixels[1] = 300.0;
    src.splits[0].1.pixels[2] = 12.5;
    let public = synth::faces(4, 99);
    src.splits.push(("public_test".to_string(), public.clone()));
    let path = dir.0.join("faces.csv");
    synth::write_fer_csv(&path, &src).unwrap();
    let rows = parse_fer_csv(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(rows.len(), 15 + 8 + 4);
    let expect: Vec<(&Dataset, &str)> =
        vec![(&src.splits[0].1, "Training"), (&src.splits[1].1, "PrivateTest"), (&public, "PublicTest")];
    let mut k = 0;
    for (ds, usage) in expect {
        for i in 0..ds.len() {
            let (label, px, u) = &rows[k];
            assert_eq!(*label, ds.labels[i]);
            assert_eq!(u, usage);
            assert_eq!(px, &rounded(ds.image(i)), "row {k}");
            k += 1;
        }
    }
    assert_eq!(&rows[0].1[..3], &[0, 255, 13]);
    // Only the CSV is left in the folder (the temporary file was renamed).
    let names: Vec<_> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("faces.csv")]);
}

#[test]
fn csv_writer_round_trips_through_the_loader() {
    let dir = TempDir::new("csv_loader");
    let src = synth::source(14, 7, 12);
    let path = dir.0.join("fer2013.csv");
    synth::write_fer_csv(&path, &src).unwrap();
    let mut warnings = Vec::new();
    let loaded = dlsvm::data::load(&path, None, &mut |m| warnings.push(m)).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(loaded.class_names, src.class_names);
    for (ours, theirs) in [("train", "train"), ("test", "private_test")] {
        let a = src.split(ours).unwrap();
        let b = loaded.split(theirs).unwrap_or_else(|| panic!("no {theirs} split"));
        assert_eq!((b.h, b.w, b.len()), (48, 48, a.len()));
        assert_eq!(a.labels, b.labels);
        let back: Vec<u8> = b.pixels.iter().map(|&v| v as u8).collect();
        assert_eq!(back, rounded(&a.pixels), "{ours}");
    }
}

#[test]
fn csv_writer_refuses_unknown_splits_and_leaves_nothing() {
    let dir = TempDir::new("csv_bad");
    let mut src = synth::source(7, 7, 1);
    src.splits.push(("holdout".to_string(), synth::faces(2, 1)));
    let path = dir.0.join("x.csv");
    let err = synth::write_fer_csv(&path, &src).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("holdout"), "{err}");
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
}

#[test]
fn preview_png_is_a_grid() {
    let dir = TempDir::new("png");
    let d = synth::faces(12, 2);
    let path = dir.0.join("p.png");
    synth::preview_png(&path, &d, 4, 3).unwrap();
    let img = image::open(&path).unwrap();
    assert_eq!((img.width(), img.height()), (4 * 98 + 2, 3 * 98 + 2));
}

// ---------------------------------------------------------------------------------------------
// Augmentation.

#[test]
fn augment_presets() {
    let f = Augment::fer();
    assert!(f.mirror);
    assert_eq!(
        (f.max_rotate_deg, f.scale_min, f.scale_max, f.max_shift, f.noise_std),
        (45.0, 0.8, 1.2, 3.0, 0.0)
    );
    assert!(!f.is_identity());
    assert!(Augment::NONE.is_identity());
    assert!(!Augment { noise_std: 0.1, ..Augment::NONE }.is_identity());
    let json = serde_json::to_string(&f).unwrap();
    assert_eq!(serde_json::from_str::<Augment>(&json).unwrap(), f);
}

#[test]
fn identity_is_the_exact_centre_crop() {
    let (h, w) = (48, 48);
    let src = ramp(h, w, 1);
    let mut want = vec![0.0; 42 * 42];
    for r in 0..42 {
        for c in 0..42 {
            want[r * 42 + c] = src[(r + 3) * w + c + 3];
        }
    }
    for aug in [None, Some((&Augment::NONE, 5u64))] {
        let mut out = vec![f32::NAN; 42 * 42];
        crop_into(&src, h, w, &mut out, 42, 42, aug);
        assert_same(&out, &want, "centre crop");
    }
    // Identity jitter through the bilinear path is exact too.
    let mut out = vec![f32::NAN; 42 * 42];
    warp_into(&src, h, w, &mut out, 42, 42, &Jitter::IDENTITY);
    assert_same(&out, &want, "identity jitter");
    // Same size: a copy. Odd difference: floor((7 - 4) / 2) = 1.
    let mut out = vec![0.0; h * w];
    crop_into(&src, h, w, &mut out, h, w, None);
    assert_same(&out, &src, "same-size crop");
    let small = ramp(7, 5, 2);
    let mut out = vec![0.0; 4 * 2];
    crop_into(&small, 7, 5, &mut out, 4, 2, None);
    let want: Vec<f32> =
        (0..4).flat_map(|r| (0..2).map(move |c| (r + 1) * 5 + c + 1)).map(|i| small[i]).collect();
    assert_eq!(out, want);
}

#[test]
fn output_larger_than_source_is_zero_padded() {
    let src = ramp(6, 6, 3);
    let mut out = vec![f32::NAN; 10 * 10];
    crop_into(&src, 6, 6, &mut out, 10, 10, None);
    for r in 0..10 {
        for c in 0..10 {
            let inside = (2..8).contains(&r) && (2..8).contains(&c);
            let want = if inside { src[(r - 2) * 6 + c - 2] } else { 0.0 };
            assert_eq!(out[r * 10 + c], want, "({r},{c})");
        }
    }
    let mut warped = vec![f32::NAN; 100];
    warp_into(&src, 6, 6, &mut warped, 10, 10, &Jitter::IDENTITY);
    assert_same(&warped, &out, "identity warp, padded");
}

#[test]
fn mirror_only_flips_exactly() {
    let (h, w) = (48, 48);
    let src = ramp(h, w, 4);
    let mut centre = vec![0.0; 42 * 42];
    centre_crop(&src, h, w, &mut centre, 42, 42);
    let flipped: Vec<f32> =
        (0..42).flat_map(|r| (0..42).map(move |c| (r, c))).map(|(r, c)| centre[r * 42 + 41 - c]).collect();
    let aug = Augment { mirror: true, ..Augment::NONE };
    let (mut plain, mut mirrored) = (0, 0);
    for seed in 0..64u64 {
        let mut out = vec![f32::NAN; 42 * 42];
        crop_into(&src, h, w, &mut out, 42, 42, Some((&aug, seed)));
        if bits(&out) == bits(&centre) {
            plain += 1;
        } else {
            assert_same(&out, &flipped, &format!("seed {seed}: neither the crop nor its mirror"));
            mirrored += 1;
        }
    }
    assert!(plain > 16 && mirrored > 16, "mirror probability off: {plain} plain, {mirrored} mirrored");
}

#[test]
fn rotation_and_scale_move_a_known_pixel() {
    // 21x21 -> 21x21: the centre is pixel (10, 10). A bright pixel 5 px right of the centre.
    let n = 21;
    let mut src = vec![0.0f32; n * n];
    src[10 * n + 15] = 1.0;
    let at = |j: Jitter| -> (usize, usize, f32) {
        let mut out = vec![0.0f32; n * n];
        warp_into(&src, n, n, &mut out, n, n, &j);
        let (k, v) = out.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
        (k / n, k % n, *v)
    };
    // +90°: content turns counter-clockwise on screen, right of centre -> above it.
    let (r, c, v) = at(Jitter { angle_deg: 90.0, ..Jitter::IDENTITY });
    assert_eq!((r, c), (5, 10));
    assert!((v - 1.0).abs() < 1e-4, "{v}");
    let (r, c, _) = at(Jitter { angle_deg: -90.0, ..Jitter::IDENTITY });
    assert_eq!((r, c), (15, 10));
    let (r, c, _) = at(Jitter { angle_deg: 180.0, ..Jitter::IDENTITY });
    assert_eq!((r, c), (10, 5));
    // Scale 2 doubles the offset from the centre: 5 px -> 10 px.
    let (r, c, v) = at(Jitter { scale: 2.0, ..Jitter::IDENTITY });
    assert_eq!((r, c, v), (10, 20, 1.0));
    // 45°: the pixel lands 5 px away along the up-right diagonal (bilinear-blurred).
    let mut out = vec![0.0f32; n * n];
    warp_into(&src, n, n, &mut out, n, n, &Jitter { angle_deg: 45.0, ..Jitter::IDENTITY });
    let (mut sx, mut sy, mut sw) = (0.0, 0.0, 0.0);
    for (k, &v) in out.iter().enumerate() {
        sx += v * (k % n) as f32;
        sy += v * (k / n) as f32;
        sw += v;
    }
    let d = 5.0 / 2f32.sqrt();
    assert!(
        (sx / sw - (10.0 + d)).abs() < 0.3 && (sy / sw - (10.0 - d)).abs() < 0.3,
        "{} {}",
        sx / sw,
        sy / sw
    );
}

#[test]
fn shift_moves_the_crop_window() {
    let (h, w) = (48, 48);
    let src = ramp(h, w, 6);
    let mut out = vec![0.0; 42 * 42];
    warp_into(&src, h, w, &mut out, 42, 42, &Jitter { shift_x: 2.0, shift_y: -3.0, ..Jitter::IDENTITY });
    for r in 0..42 {
        for c in 0..42 {
            assert_eq!(out[r * 42 + c], src[r * w + c + 5], "({r},{c})");
        }
    }
}

#[test]
fn augment_is_a_function_of_the_seed() {
    let (h, w) = (48, 48);
    let src = ramp(h, w, 7);
    let aug = Augment { noise_std: 0.1, ..Augment::fer() };
    let run = |seed: u64| {
        let mut out = vec![0.0; 42 * 42];
        crop_into(&src, h, w, &mut out, 42, 42, Some((&aug, seed)));
        out
    };
    assert_same(&run(10), &run(10), "same seed");
    assert_differ(&run(10), &run(11), "seeds 10 and 11");
    // crop_into = warp with the sampled jitter, then noise from the same generator.
    let mut rng = Rng::new(10);
    let j = aug.sample(&mut rng);
    let mut want = vec![0.0; 42 * 42];
    warp_into(&src, h, w, &mut want, 42, 42, &j);
    for v in want.iter_mut() {
        *v += (rng.normal() * 0.1f32 as f64) as f32;
    }
    assert_same(&run(10), &want, "warp + noise");
}

#[test]
fn sampled_jitter_stays_in_range() {
    let aug = Augment::fer();
    let mut mirrored = 0;
    let (mut max_angle, mut min_scale, mut max_scale, mut max_shift) = (0.0f32, 9.0f32, 0.0f32, 0.0f32);
    for seed in 0..4000u64 {
        let j = aug.sample(&mut Rng::new(seed));
        assert!(j.angle_deg.abs() <= 45.0 && (0.8..=1.2).contains(&j.scale), "{j:?}");
        assert!(j.shift_x.abs() <= 3.0 && j.shift_y.abs() <= 3.0, "{j:?}");
        mirrored += j.mirror as usize;
        max_angle = max_angle.max(j.angle_deg.abs());
        min_scale = min_scale.min(j.scale);
        max_scale = max_scale.max(j.scale);
        max_shift = max_shift.max(j.shift_x.abs()).max(j.shift_y.abs());
    }
    assert!((1800..2200).contains(&mirrored), "{mirrored} of 4000 mirrored");
    assert!(max_angle > 44.0 && min_scale < 0.81 && max_scale > 1.19 && max_shift > 2.95);
}

#[test]
fn noise_has_the_requested_std() {
    let src = vec![0.0f32; 48 * 48];
    let aug = Augment { noise_std: 0.5, ..Augment::NONE };
    let mut all = Vec::new();
    for seed in 0..20u64 {
        let mut out = vec![0.0; 42 * 42];
        crop_into(&src, 48, 48, &mut out, 42, 42, Some((&aug, seed)));
        all.extend(out);
    }
    let n = all.len() as f64;
    let mean = all.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (all.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(mean.abs() < 0.01, "mean {mean}");
    assert!((std - 0.5).abs() < 0.01, "std {std}");
    let within = all.iter().filter(|v| v.abs() < 0.5).count() as f64 / n;
    assert!((within - 0.6827).abs() < 0.01, "{within} within one std: not Gaussian");
}

#[test]
fn portable_math_matches_std() {
    for i in -3000..3000 {
        let x = i as f64 * 0.011;
        let (s, c) = augment::sin_cos(x);
        assert!((s - x.sin()).abs() < 1e-13 && (c - x.cos()).abs() < 1e-13, "{x}");
    }
    for i in 1..3000 {
        let x = i as f64 * 0.037;
        assert!((augment::ln(x) - x.ln()).abs() < 1e-13, "{x}");
    }
}

// ---------------------------------------------------------------------------------------------
// Batches.

fn spec(batch: usize, augment: Option<Augment>) -> BatchSpec {
    BatchSpec { batch, channels: 1, out_h: 8, out_w: 9, augment, seed: 1234 }
}

#[test]
fn steps_per_epoch_floors() {
    assert_eq!(batch::steps_per_epoch(100, 32), 3);
    assert_eq!(batch::steps_per_epoch(96, 32), 3);
    assert_eq!(batch::steps_per_epoch(31, 32), 0);
    assert_eq!(batch::steps_per_epoch(28709, 256), 112);
    assert_eq!(batch::steps_per_epoch(10, 0), 0);
}

#[test]
fn make_batch_is_deterministic_and_shaped() {
    let (x, y) = random_set(50, 10, 11, 1);
    for aug in [None, Some(Augment::fer())] {
        let s = spec(8, aug);
        let a = batch::make_batch(&x, &y, 10, 11, &s, 17);
        let b = batch::make_batch(&x, &y, 10, 11, &s, 17);
        assert_eq!(a, b);
        assert_eq!((a.step, a.x.len(), a.y.len(), a.indices.len()), (17, 8 * 8 * 9, 8, 8));
        for (p, &i) in a.indices.iter().enumerate() {
            assert_eq!(a.y[p], y[i]);
            let mut want = vec![0.0; 72];
            let seed = batch::augment_seed(1234, 17, p);
            crop_into(&x[i * 110..(i + 1) * 110], 10, 11, &mut want, 8, 9, aug.as_ref().map(|a| (a, seed)));
            assert_same(&a.x[p * 72..(p + 1) * 72], &want, "batch image vs crop_into");
        }
        let other = batch::make_batch(&x, &y, 10, 11, &BatchSpec { seed: 1235, ..s }, 17);
        assert_ne!(a.indices, other.indices);
    }
}

#[test]
fn augmented_positions_get_different_jitter() {
    // The same image at two positions (or steps) is jittered differently.
    let (x, y) = random_set(1, 10, 11, 2);
    let x: Vec<f32> = x.repeat(4);
    let y = y.repeat(4);
    let b = batch::make_batch(&x, &y, 10, 11, &spec(4, Some(Augment::fer())), 0);
    for p in 1..4 {
        assert_differ(&b.x[..72], &b.x[p * 72..(p + 1) * 72], "positions 0 and p");
    }
}

#[test]
fn each_epoch_visits_each_sample_at_most_once() {
    let (n, bs) = (53, 8); // 6 steps per epoch, 5 samples left out each epoch
    let (x, y) = random_set(n, 4, 4, 3);
    let s = BatchSpec { out_h: 4, out_w: 4, ..spec(bs, None) };
    let spe = batch::steps_per_epoch(n, bs) as u64;
    for epoch in 0..4u64 {
        let mut seen = vec![0u32; n];
        for step in epoch * spe..(epoch + 1) * spe {
            for i in batch::make_batch(&x, &y, 4, 4, &s, step).indices {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c <= 1), "epoch {epoch}: a sample twice");
        assert_eq!(seen.iter().filter(|&&c| c == 1).count(), n - n % bs);
    }
    // Each epoch has its own permutation.
    let firsts: Vec<Vec<usize>> =
        (0..4).map(|e| batch::make_batch(&x, &y, 4, 4, &s, e * spe).indices).collect();
    assert!(firsts.windows(2).all(|w| w[0] != w[1]));
    assert_eq!(batch::epoch_order(n, 1234, 2)[..bs], firsts[2][..]);
}

#[test]
fn spawn_matches_make_batch_for_any_thread_count() {
    let (x, y) = random_set(40, 10, 11, 4);
    let s = spec(6, Some(Augment::fer()));
    let want: Vec<_> = (0..20).map(|t| batch::make_batch(&x, &y, 10, 11, &s, t)).collect();
    let (xa, ya) = (Arc::new(x.clone()), Arc::new(y.clone()));
    for threads in [1, 3] {
        for ahead in [1, 4] {
            let got: Vec<_> =
                batch::spawn(xa.clone(), ya.clone(), 10, 11, s, 0, 20, threads, ahead).into_iter().collect();
            assert_eq!(got.len(), 20);
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.step, w.step, "threads {threads}");
                assert_eq!(g, w, "threads {threads}, step {}", w.step);
            }
        }
    }
}

#[test]
fn resuming_reproduces_the_uninterrupted_run() {
    let (x, y) = random_set(30, 6, 6, 5);
    let s = BatchSpec { out_h: 5, out_w: 5, ..spec(7, Some(Augment::fer())) };
    let (xa, ya) = (Arc::new(x), Arc::new(y));
    let full: Vec<_> = batch::spawn(xa.clone(), ya.clone(), 6, 6, s, 0, 25, 2, 3).into_iter().collect();
    for start in [1u64, 4, 9, 13] {
        let resumed: Vec<_> =
            batch::spawn(xa.clone(), ya.clone(), 6, 6, s, start, 25, 3, 2).into_iter().collect();
        assert_eq!(resumed.len(), 25 - start as usize);
        assert_eq!(&resumed[..], &full[start as usize..], "resumed at {start}");
    }
    assert_eq!(batch::spawn(xa, ya, 6, 6, s, 7, 7, 2, 2).into_iter().count(), 0);
}

#[test]
fn dropping_the_receiver_stops_the_workers() {
    let (x, y) = random_set(64, 8, 8, 6);
    let s = BatchSpec { out_h: 8, out_w: 8, ..spec(16, None) };
    let rx = batch::spawn(Arc::new(x), Arc::new(y), 8, 8, s, 0, u64::MAX, 3, 2);
    let first: Vec<u64> = rx.iter().take(5).map(|b| b.step).collect();
    assert_eq!(first, [0, 1, 2, 3, 4]);
    drop(rx); // must not hang; the threads end at their next send
}

#[test]
fn eval_batches_cover_every_sample_once_in_order() {
    let (n, h, w) = (23, 10, 11);
    let (x, y) = random_set(n, h, w, 7);
    let batches: Vec<_> = batch::eval_batches(&x, &y, 1, h, w, 8, 9, 5).collect();
    assert_eq!(batches.iter().map(|b| b.y.len()).collect::<Vec<_>>(), [5, 5, 5, 5, 3]);
    let all: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
    for (k, b) in batches.iter().enumerate() {
        assert_eq!(b.step, k as u64);
        for (p, &i) in b.indices.iter().enumerate() {
            assert_eq!(b.y[p], y[i]);
            let mut want = vec![0.0; 72];
            centre_crop(&x[i * h * w..(i + 1) * h * w], h, w, &mut want, 8, 9);
            assert_eq!(&b.x[p * 72..(p + 1) * 72], &want[..]);
        }
    }
    assert_eq!(batch::eval_batches(&x, &y, 1, h, w, 8, 9, 100).count(), 1);
    assert_eq!(batch::eval_batches(&[], &[], 1, h, w, 8, 9, 4).count(), 0);
}

#[test]
fn tta_copies_are_deterministic_jitters() {
    let (n, h, w) = (3, 48, 48);
    let (x, _) = random_set(n, h, w, 8);
    let aug = Augment::fer();
    let get = |i: usize, copy: usize, seed: u64| {
        let mut out = vec![0.0; 42 * 42];
        batch::tta_image(&x, 1, h, w, i, 42, 42, &aug, seed, copy, &mut out);
        out
    };
    let mut centre = vec![0.0; 42 * 42];
    centre_crop(&x[2 * h * w..3 * h * w], h, w, &mut centre, 42, 42);
    assert_same(&get(2, 0, 5), &centre, "copy 0 vs centre crop");
    assert_same(&get(2, 3, 5), &get(2, 3, 5), "same copy");
    assert_differ(&get(2, 3, 5), &get(2, 4, 5), "copies 3 and 4");
    assert_differ(&get(2, 3, 5), &get(2, 3, 6), "seeds 5 and 6");
    let mut want = vec![0.0; 42 * 42];
    crop_into(&x[2 * h * w..3 * h * w], h, w, &mut want, 42, 42, Some((&aug, augment::hash3(5, 2, 3))));
    assert_same(&get(2, 3, 5), &want, "copy 3 vs crop_into");
}
