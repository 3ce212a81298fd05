//! Colour images: CIFAR-10 files in the official binary layout (written here), colour image
//! folders, the `cifar` preset training and evaluating on them, the planes kept apart through
//! cropping and augmentation, and one-line errors for malformed CIFAR files and for grayscale data
//! given to a colour network.

mod common;

use std::path::Path;

use common::{dlsvm, eval_json, s, text, train_json, TempDir};
use dlsvm::data::{self, augment, Format};

/// Record `r` of class `label`: the red plane bright for class 0, green for 1, blue for 2 (others
/// gray), with a per-record pattern so images differ.
fn record(label: u8, r: usize) -> Vec<u8> {
    let mut v = vec![label];
    for plane in 0..3u8 {
        for i in 0..1024usize {
            let base = if plane == label { 200 } else { 40 };
            v.push((base + (i * 7 + r * 13 + plane as usize * 29) % 50) as u8);
        }
    }
    v
}

/// A CIFAR-10 folder: `train` records over two batch files, `test` records, and the meta file.
fn write_cifar(dir: &Path, train: usize, test: usize, classes: u8) {
    std::fs::create_dir_all(dir).unwrap();
    let batch = |n: usize, offset: usize| -> Vec<u8> {
        (0..n).flat_map(|r| record(((r + offset) % classes as usize) as u8, r + offset)).collect()
    };
    let half = train / 2;
    std::fs::write(dir.join("data_batch_1.bin"), batch(half, 0)).unwrap();
    std::fs::write(dir.join("data_batch_2.bin"), batch(train - half, half)).unwrap();
    std::fs::write(dir.join("test_batch.bin"), batch(test, 1000)).unwrap();
    let names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
    std::fs::write(dir.join("batches.meta.txt"), names.join("\n") + "\n\n").unwrap();
}

#[test]
fn cifar_files_load_as_colour_planes_or_luma() {
    let dir = TempDir::new("cifar-load");
    let root = dir.join("cifar-10-batches-bin");
    write_cifar(&root, 10, 4, 3);
    let src = data::load_channels(&root, None, 3, &mut |_| {}).unwrap();
    assert_eq!(src.format, Format::Cifar10);
    assert_eq!(src.class_names[9], "truck");
    let train = src.train().unwrap();
    assert_eq!((train.len(), train.c, train.h, train.w), (10, 3, 32, 32));
    // Record 6 (in data_batch_2) is class 0: its planes as written, red first.
    let want: Vec<f32> = record(0, 6)[1..].iter().map(|&b| b as f32).collect();
    assert_eq!(train.image(6), &want[..]);
    assert_eq!(train.labels[..4], [0, 1, 2, 0]);
    assert_eq!(src.test().unwrap().len(), 4);
    // One channel: the luma of the planes.
    let gray = data::load_channels(&root, Some(16), 1, &mut |_| {}).unwrap();
    let g = gray.train().unwrap();
    assert_eq!((g.c, g.h, g.w), (1, 16, 16));
    let full = data::load_channels(&root, None, 1, &mut |_| {}).unwrap();
    let px = &record(0, 6)[1..];
    let luma = 0.299 * px[5] as f32 + 0.587 * px[1024 + 5] as f32 + 0.114 * px[2048 + 5] as f32;
    assert_eq!(full.train().unwrap().image(6)[5], luma);
}

#[test]
fn malformed_cifar_files_fail_with_one_line() {
    let dir = TempDir::new("cifar-bad");
    type Spoil = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Spoil, Vec<String>)> = vec![
        (
            "a truncated batch",
            Box::new(|root: &Path| {
                let mut b = std::fs::read(root.join("data_batch_1.bin")).unwrap();
                b.truncate(b.len() - 100);
                std::fs::write(root.join("data_batch_1.bin"), b).unwrap();
            }),
            vec![
                "data_batch_1.bin".into(),
                "not a whole number of 3073-byte records".into(),
                "record 4 is truncated".into(),
            ],
        ),
        (
            "a label past the classes",
            Box::new(|root: &Path| {
                let mut b = std::fs::read(root.join("test_batch.bin")).unwrap();
                b[3073] = 10;
                std::fs::write(root.join("test_batch.bin"), b).unwrap();
            }),
            vec!["test_batch.bin".into(), "record 1: label 10, expected 0..=9".into()],
        ),
        (
            "nine class names",
            Box::new(|root: &Path| {
                std::fs::write(root.join("batches.meta.txt"), "a\nb\nc\nd\ne\nf\ng\nh\ni\n").unwrap()
            }),
            vec!["batches.meta.txt".into(), "9 class names, expected 10".into()],
        ),
        (
            "an empty batch",
            Box::new(|root: &Path| std::fs::write(root.join("data_batch_2.bin"), b"").unwrap()),
            vec!["data_batch_2.bin".into(), "empty file".into()],
        ),
        (
            "no training batch",
            Box::new(|root: &Path| {
                std::fs::remove_file(root.join("data_batch_1.bin")).unwrap();
                std::fs::remove_file(root.join("data_batch_2.bin")).unwrap();
            }),
            vec!["no training batch".into()],
        ),
    ];
    for (i, (what, spoil, wants)) in cases.iter().enumerate() {
        let root = dir.join(format!("case{i}"));
        write_cifar(&root, 10, 4, 3);
        spoil(&root);
        let e = data::load_channels(&root, Some(32), 3, &mut |_| {}).unwrap_err().to_string();
        assert_eq!(e.lines().count(), 1, "{what}: {e}");
        for w in wants {
            assert!(e.contains(w.as_str()), "{what}: {e:?} lacks {w:?}");
        }
        let out = dir.join(format!("run{i}"));
        let o = dlsvm(
            &[
                "train",
                "--preset",
                "cifar",
                "--data",
                s(&root),
                "--steps",
                "1",
                "--batch",
                "2",
                "--out",
                s(&out),
            ],
            &[],
        );
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(!out.exists(), "{what}: nothing written");
    }
}

/// The `cifar` preset trains on CIFAR-10 files, evaluates, and predicts a colour PNG.
#[test]
fn cifar_preset_trains_evaluates_and_predicts() {
    let dir = TempDir::new("cifar-train");
    let root = dir.join("cifar");
    write_cifar(&root, 48, 12, 3);
    let out = dir.join("run");
    let summary = train_json(&[
        "--preset",
        "cifar",
        "--data",
        s(&root),
        "--steps",
        "6",
        "--batch",
        "16",
        "--out",
        s(&out),
    ]);
    assert_eq!(summary["test_samples"], 12);
    let model = out.join("model.safetensors");
    let ck = dlsvm::model::checkpoint::load(&model).unwrap();
    assert_eq!((ck.normalizer.channels, ck.normalizer.mean.len()), (3, 3 * 32 * 32));
    assert_eq!(ck.params[0].len(), 32 * 3 * 5 * 5, "conv1 takes 3 input channels");
    let e = eval_json(s(&model), s(&root));
    let acc = summary["test"]["accuracy"].as_f64().unwrap();
    assert!((e["accuracy"]["test"].as_f64().unwrap() - acc).abs() < 1e-12, "{e}");
    // A colour PNG (red) through predict.
    let png = dir.join("red.png");
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([220, (x * 3) as u8, (y * 2) as u8]))
        .save(&png)
        .unwrap();
    let o = dlsvm(&["predict", "--model", s(&model), s(&png), "--json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let p: serde_json::Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    let scores = p[0]["scores"].as_object().unwrap();
    assert_eq!(scores.len(), 10, "{p}");
    let best =
        scores.iter().max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap())).unwrap().0;
    assert_eq!(p[0]["class"], best.as_str(), "the class is the highest score: {p}");
}

/// A colour image folder keeps red, green and blue as separate planes.
#[test]
fn colour_image_folders_load_planes() {
    let dir = TempDir::new("colour-folder");
    for (split, n) in [("train", 2), ("test", 1)] {
        for class in ["red", "blue"] {
            let d = dir.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let c = if class == "red" { [250, 10, 20 + i as u8] } else { [5, 15, 240] };
                image::RgbImage::from_pixel(6, 4, image::Rgb(c)).save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let src = data::load_channels(&dir, None, 3, &mut |_| {}).unwrap();
    let train = src.train().unwrap();
    assert_eq!((train.c, train.h, train.w), (3, 4, 6));
    assert_eq!(src.class_names, ["blue", "red"]);
    let red = train.image(train.labels.iter().position(|&l| l == 1).unwrap());
    assert!(red[..24].iter().all(|&v| v == 250.0) && red[24..48].iter().all(|&v| v == 10.0));
    assert!(red[48..].iter().all(|&v| v == 20.0));
}

/// Cropping and augmenting several planes moves them alike: each plane equals the one-plane
/// crop with the same jitter; with one plane it is the one-plane function exactly.
#[test]
fn planes_share_one_jitter() {
    let (c, h, w, oh, ow) = (3, 12, 10, 8, 8);
    let src: Vec<f32> = (0..c * h * w).map(|i| ((i * 37) % 101) as f32).collect();
    let aug =
        augment::Augment { max_rotate_deg: 20.0, scale_min: 0.9, scale_max: 1.1, ..augment::Augment::fer() };
    let mut out = vec![0.0; c * oh * ow];
    augment::crop_planes_into(&src, c, h, w, &mut out, oh, ow, Some((&aug, 99)));
    let jitter = aug.sample(&mut dlsvm::rng::Rng::new(99));
    for p in 0..c {
        let mut one = vec![0.0; oh * ow];
        augment::warp_into(&src[p * h * w..(p + 1) * h * w], h, w, &mut one, oh, ow, &jitter);
        assert_eq!(&out[p * oh * ow..(p + 1) * oh * ow], &one[..], "plane {p}");
    }
    let noisy = augment::Augment { noise_std: 0.5, ..aug };
    let (mut a, mut b) = (vec![0.0; oh * ow], vec![0.0; oh * ow]);
    augment::crop_planes_into(&src[..h * w], 1, h, w, &mut a, oh, ow, Some((&noisy, 7)));
    augment::crop_into(&src[..h * w], h, w, &mut b, oh, ow, Some((&noisy, 7)));
    assert_eq!(a, b, "one plane: the one-plane function exactly");
}

/// Grayscale data, or no data, for a colour network: one line, exit 2.
#[test]
fn grayscale_data_for_a_colour_network_is_refused() {
    let dir = TempDir::new("colour-gray");
    for (what, data, want) in [
        (
            "an IDX folder",
            Some("data/mnist-5k"),
            "an IDX folder holds grayscale images, the network takes 3 channels",
        ),
        ("the synthetic faces", None, "the built-in faces are grayscale, the network takes 3 channels"),
    ] {
        let mut args = vec!["train", "--preset", "cifar", "--steps", "1", "--out"];
        let out = dir.join("run");
        args.push(s(&out));
        if let Some(d) = data {
            args.extend(["--data", d]);
        }
        let o = dlsvm(&args, &[]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(err.contains(want), "{what}: {err}");
    }
}
