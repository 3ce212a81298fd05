//! Every mistake a user can make gets a clear answer. Each bad input below is given to the
//! command line, which must exit 2 (bad usage or input) with exactly one line on stderr naming the file,
//! the place (line, pixel, layer, key, tensor) and what was expected: never a panic or a backtrace. A few
//! inputs that look odd but are fine (CRLF, a UTF-8 BOM, mixed image sizes) must succeed. Last, a seeded
//! fuzz test feeds random and mutated checkpoint files to the checkpoint reader, which must never panic.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

use common::{s, text, TempDir};
use dlsvm::data::normalize::Normalizer;
use dlsvm::model::{checkpoint, Net, NetConfig};
use dlsvm::rng::Rng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

// ---------------------------------------------------------------------------------------------------------
// Helpers

fn dlsvm(args: &[&str]) -> Output {
    common::dlsvm(args, &[])
}

/// Asserts that `o` is the answer to a bad input: exit 2, one line on stderr starting with `dlsvm: `,
/// no panic, and every fragment of `wants` in it.
#[track_caller]
fn assert_input_error(case: &str, o: &Output, wants: &[&str]) {
    let (out, err) = text(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "case `{case}`: expected exit 2 (bad input)\nstdout: {out}\nstderr: {err}"
    );
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "case `{case}` panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "case `{case}`: stderr must be exactly one line, got {}:\n{err}", lines.len());
    assert!(lines[0].starts_with("dlsvm: "), "case `{case}`: the line starts with `dlsvm: `: {err}");
    for w in wants {
        assert!(err.contains(w), "case `{case}`: the message lacks `{w}`:\n{err}");
    }
}

#[track_caller]
fn assert_success(case: &str, o: &Output) -> (String, String) {
    let (out, err) = text(o);
    assert_eq!(o.status.code(), Some(0), "case `{case}`: expected success\nstdout: {out}\nstderr: {err}");
    (out, err)
}

/// `dlsvm train` for one step of batch 2 on `data`, quiet (`--json`), with extra arguments.
fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args =
        vec!["train", "--data", s(data), "--steps", "1", "--batch", "2", "--out", s(out), "--json"];
    args.extend_from_slice(extra);
    dlsvm(&args)
}

// ---------------------------------------------------------------------------------------------------------
// Fixtures

/// 2304 space-separated pixel values.
fn pixels(seed: usize) -> String {
    (0..2304).map(|i| ((i * 7 + seed * 31) % 256).to_string()).collect::<Vec<_>>().join(" ")
}

/// A valid fer2013.csv: 6 Training rows (labels 0..5) and 2 PrivateTest rows.
fn valid_fer_csv() -> String {
    let mut t = String::from("emotion,pixels,Usage\n");
    for i in 0..6 {
        t.push_str(&format!("{i},{},Training\n", pixels(i)));
    }
    for i in 0..2 {
        t.push_str(&format!("{},{},PrivateTest\n", i + 3, pixels(i + 10)));
    }
    t
}

/// A grayscale PNG with a noisy pattern (so that most of the file is image data).
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([((x * 7919 + y * 104_729 + x * y * 31) % 251) as u8])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// `<root>/train/{a,b}/*.png` and `<root>/test/{a,b}/*.png`, 48x48, two per class and split.
fn valid_image_folder(dir: &TempDir, root: &str) -> PathBuf {
    for split in ["train", "test"] {
        for class in ["a", "b"] {
            for i in 0..2 {
                dir.write(&format!("{root}/{split}/{class}/{i}.png"), png(48, 48));
            }
        }
    }
    dir.join(root)
}

fn idx_images(n: u32, rows: u32, cols: u32, magic: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [magic, n, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend((0..(n * rows * cols) as usize).map(|i| (i * 13 % 256) as u8));
    v
}

fn idx_labels(labels: &[u8], magic: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&magic.to_be_bytes());
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

// ---------------------------------------------------------------------------------------------------------
// fer2013.csv

#[test]
fn fer_csv_bad_inputs_exit_2_naming_the_line() {
    let dir = TempDir::new("csv");
    let run = dir.join("run");
    let header = "emotion,pixels,Usage\n";
    let good_row = format!("0,{},Training\n", pixels(1));
    let with_bad_row = |row: String| format!("{header}{good_row}{row}\n");
    let mut px_2303 = pixels(2);
    px_2303.truncate(px_2303.rfind(' ').unwrap());
    let px_with = |i: usize, v: &str| {
        let mut p: Vec<String> = pixels(3).split(' ').map(str::to_string).collect();
        p[i] = v.to_string();
        p.join(" ")
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "missing header",
            format!("{good_row}{good_row}"),
            vec!["line 1", "missing header", "expected header `emotion,pixels,Usage`"],
        ),
        (
            "wrong header",
            format!("label,image,use\n{good_row}"),
            vec!["line 1", "expected header `emotion,pixels,Usage`", "found `label,image,use`"],
        ),
        (
            "wrong column count",
            with_bad_row(format!("0,{}", pixels(4))),
            vec!["line 3", "expected 3 fields (emotion,pixels,Usage), found 2"],
        ),
        (
            "2303 pixels",
            with_bad_row(format!("0,{px_2303},Training")),
            vec!["line 3", "expected 2304 pixel values (48x48), found 2303"],
        ),
        (
            "2305 pixels",
            with_bad_row(format!("0,{} 9,Training", pixels(5))),
            vec!["line 3", "expected 2304 pixel values (48x48), found 2305"],
        ),
        (
            "non-numeric pixel",
            with_bad_row(format!("0,{},Training", px_with(4, "x7"))),
            vec!["line 3", "pixel 5 is `x7`", "expected an integer 0..=255"],
        ),
        (
            "pixel 256",
            with_bad_row(format!("0,{},Training", px_with(6, "256"))),
            vec!["line 3", "pixel 7 is 256", "expected an integer 0..=255"],
        ),
        (
            "label 7",
            with_bad_row(format!("7,{},Training", pixels(6))),
            vec!["line 3", "emotion label 7 is outside 0..=6"],
        ),
        (
            "label -1",
            with_bad_row(format!("-1,{},Training", pixels(6))),
            vec!["line 3", "emotion `-1`", "0..=6"],
        ),
        (
            "unknown Usage",
            with_bad_row(format!("1,{},Validation", pixels(7))),
            vec!["line 3", "unknown Usage `Validation`", "expected Training, PublicTest or PrivateTest"],
        ),
        (
            "empty training split",
            format!("{header}0,{},PublicTest\n1,{},PrivateTest\n", pixels(8), pixels(9)),
            vec!["no row with Usage `Training`", "1 PublicTest and 1 PrivateTest", "must not be empty"],
        ),
        ("header only", header.to_string(), vec!["no data rows after the header"]),
        (
            "unterminated quote",
            with_bad_row(format!("2,\"{},Training", pixels(1))),
            vec!["line 3", "unterminated quote"],
        ),
    ];
    for (i, (case, body, wants)) in cases.iter().enumerate() {
        let csv = dir.write(&format!("case{i}.csv"), body);
        let o = train(&csv, &run, &[]);
        let mut wants = wants.clone();
        wants.push(s(&csv));
        assert_input_error(case, &o, &wants);
    }
}

#[test]
fn fer_csv_with_crlf_and_bom_trains() {
    let dir = TempDir::new("crlf");
    let unix = valid_fer_csv();
    let crlf = unix.replace('\n', "\r\n");
    let bom = |t: &str| [&[0xEF, 0xBB, 0xBF][..], t.as_bytes()].concat();
    for (case, bytes) in
        [("CRLF", crlf.clone().into_bytes()), ("UTF-8 BOM", bom(&unix)), ("BOM and CRLF", bom(&crlf))]
    {
        let csv = dir.write("faces.csv", &bytes);
        // A run directory per case (one that holds a run is refused).
        let o = train(&csv, &dir.join(format!("run {case}")), &[]);
        let (out, err) = assert_success(case, &o);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| {
            panic!("case `{case}`: the summary is one JSON object ({e}): {out}\nstderr: {err}")
        });
        assert_eq!(v["train_samples"], 6, "case `{case}`: every training row is read: {v}");
        assert_eq!(v["test_samples"], 2, "case `{case}`: every test row is read: {v}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Image folders

#[test]
fn image_folder_bad_inputs_exit_2_naming_the_file() {
    let dir = TempDir::new("folder");
    let run = dir.join("run");

    let root = valid_image_folder(&dir, "not-image");
    let bad = dir.write("not-image/train/b/notes.png", "these are my notes, not a picture\n");
    assert_input_error(
        "a file that is not an image",
        &train(&root, &run, &[]),
        &[s(&bad), "cannot decode image", "expected a complete PNG or JPEG file"],
    );

    let root = valid_image_folder(&dir, "truncated");
    let full = png(48, 48);
    let bad = dir.write("truncated/train/a/9.png", &full[..full.len() / 2]);
    assert_input_error(
        "a truncated PNG",
        &train(&root, &run, &[]),
        &[s(&bad), "cannot decode image", "expected a complete PNG or JPEG file"],
    );

    let root = valid_image_folder(&dir, "empty-class");
    let empty = dir.join("empty-class/train/c");
    std::fs::create_dir_all(&empty).unwrap();
    dir.write("empty-class/train/c/readme.txt", "no images");
    assert_input_error(
        "an empty class folder",
        &train(&root, &run, &[]),
        &[s(&empty), "class folder `c` holds no .png, .jpg or .jpeg images"],
    );

    dir.write("no-classes/train/0.png", png(48, 48));
    dir.write("no-classes/test/0.png", png(48, 48));
    let train_dir = dir.join("no-classes/train");
    assert_input_error(
        "no class folders",
        &train(&dir.join("no-classes"), &run, &[]),
        &[s(&train_dir), "no class folders", "expected train/<class>/*.png|jpg|jpeg"],
    );

    let root = dir.join("nothing");
    dir.write("nothing/readme.txt", "empty");
    assert_input_error(
        "a folder with neither class folders nor IDX files",
        &train(&root, &run, &[]),
        &[s(&root), "unrecognized data folder", "expected IDX files"],
    );

    let root = valid_image_folder(&dir, "unreadable");
    let locked = dir.join("unreadable/train/a/0.png");
    let mut perms = std::fs::metadata(&locked).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o000);
    std::fs::set_permissions(&locked, perms).unwrap();
    if std::fs::read(&locked).is_ok() {
        eprintln!("note: running as a user who can read a chmod-000 file (root): the unreadable-file case is skipped");
    } else {
        assert_input_error(
            "an unreadable file",
            &train(&root, &run, &[]),
            &[s(&locked), "cannot read", "ermission denied"],
        );
    }
}

#[test]
fn image_folder_with_mixed_sizes_trains_with_one_warning() {
    let dir = TempDir::new("mixed");
    let root = valid_image_folder(&dir, "faces");
    dir.write("faces/train/b/odd.png", png(30, 20));
    let o = train(&root, &dir.join("run"), &[]);
    let (_, err) = assert_success("mixed image sizes", &o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines, ["dlsvm: warning: resized 1 images of train from 30x20 to 48x48"], "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// IDX files

/// (case, the images file, the labels file, the file the message names, what else it says).
type IdxCase<'a> = (&'a str, Vec<u8>, Vec<u8>, &'a str, Vec<&'a str>);

#[test]
fn idx_bad_inputs_exit_2_naming_the_file() {
    let dir = TempDir::new("idx");
    let run = dir.join("run");
    let imgs = idx_images(4, 28, 28, 0x0803);
    let labels = idx_labels(&[0, 1, 2, 3], 0x0801);
    let cases: Vec<IdxCase> = vec![
        (
            "wrong magic number (images)",
            idx_images(4, 28, 28, 0x0804),
            labels.clone(),
            "train-images-idx3-ubyte",
            vec!["wrong magic number 0x00000804", "expected 0x00000803"],
        ),
        (
            "wrong magic number (labels)",
            imgs.clone(),
            idx_labels(&[0, 1, 2, 3], 0x0803),
            "train-labels-idx1-ubyte",
            vec!["wrong magic number 0x00000803", "expected 0x00000801", "this is an images file"],
        ),
        (
            "truncated images",
            imgs[..imgs.len() - 100].to_vec(),
            labels.clone(),
            "train-images-idx3-ubyte",
            vec!["truncated", "expected 3152 bytes (16-byte header + 4 x 28 x 28), found 3052"],
        ),
        (
            "truncated header",
            imgs[..10].to_vec(),
            labels.clone(),
            "train-images-idx3-ubyte",
            vec!["truncated header", "expected 16 bytes, found 10"],
        ),
        (
            "image and label counts disagree",
            imgs.clone(),
            idx_labels(&[0, 1, 2], 0x0801),
            "train-images-idx3-ubyte",
            vec!["holds 4 images", "train-labels-idx1-ubyte holds 3 labels", "the counts must agree"],
        ),
    ];
    for (i, (case, images, labels, culprit, wants)) in cases.into_iter().enumerate() {
        let d = format!("case{i}");
        dir.write(&format!("{d}/train-images-idx3-ubyte"), images);
        dir.write(&format!("{d}/train-labels-idx1-ubyte"), labels);
        let o = train(&dir.join(&d), &run, &["--preset", "mlp"]);
        let culprit = dir.join(format!("{d}/{culprit}"));
        let mut wants = wants;
        wants.push(s(&culprit));
        assert_input_error(case, &o, &wants);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Checkpoints

/// The tensors of a safetensors file, owned: name -> (dtype, shape, bytes); and its metadata.
type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

fn read_tensors(bytes: &[u8]) -> (Tensors, HashMap<String, String>) {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let meta = SafeTensors::read_metadata(bytes).unwrap().1.metadata().clone().unwrap_or_default();
    let mut t: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    (t, meta)
}

fn write_tensors(tensors: &Tensors, meta: HashMap<String, String>) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, sh, b)| (n.clone(), TensorView::new(*d, sh.clone(), b).unwrap()))
        .collect();
    safetensors::tensor::serialize(views, Some(meta)).unwrap()
}

#[test]
fn checkpoint_bad_inputs_exit_2_naming_the_file_and_tensor() {
    let dir = TempDir::new("ckpt");
    let csv = dir.write("faces.csv", valid_fer_csv());
    let run = dir.join("run");
    assert_success("training the tiny model", &train(&csv, &run, &[]));
    let model = run.join("model.safetensors");
    let good = std::fs::read(&model).unwrap();
    let (tensors, meta) = read_tensors(&good);
    let edited = |f: &dyn Fn(&mut Tensors, &mut HashMap<String, String>)| {
        let (mut t, mut m) = (tensors.clone(), meta.clone());
        f(&mut t, &mut m);
        write_tensors(&t, m)
    };
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let declared = format!("declare a {header_len}-byte JSON header");

    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "not a safetensors file",
            b"this is a text file, not a model\n".to_vec(),
            vec!["not a safetensors file", "JSON header"],
        ),
        ("an empty file", Vec::new(), vec!["not a safetensors file: 0 bytes"]),
        (
            "truncated inside the header",
            good[..header_len / 2].to_vec(),
            vec!["truncated or corrupt", &declared],
        ),
        (
            "truncated inside the tensor data",
            good[..good.len() - 1000].to_vec(),
            vec!["truncated: the header declares", "bytes of tensor data"],
        ),
        (
            "a missing tensor",
            edited(&|t, _| t.retain(|x| x.0 != "layers.3.weight")),
            vec!["tensor layers.3.weight", "missing", "shape [8, 8, 4, 4]"],
        ),
        (
            "a tensor with the wrong shape",
            edited(&|t, _| {
                if let Some(x) = t.iter_mut().find(|x| x.0 == "layers.0.weight") {
                    x.2 = vec![8, 1, 25, 1];
                }
            }),
            vec!["tensor layers.0.weight", "shape [8, 1, 25, 1] does not match the network's [8, 1, 5, 5]"],
        ),
        (
            "a tensor with the wrong dtype",
            edited(&|t, _| {
                if let Some(x) = t.iter_mut().find(|x| x.0 == "layers.9.bias") {
                    x.1 = Dtype::I32;
                }
            }),
            vec!["tensor layers.9.bias", "dtype I32, expected F32"],
        ),
        (
            "a tensor holding NaN",
            edited(&|t, _| {
                if let Some(x) = t.iter_mut().find(|x| x.0 == "layers.12.bias") {
                    x.3[..4].copy_from_slice(&f32::NAN.to_le_bytes());
                }
            }),
            vec!["tensor layers.12.bias", "NaN"],
        ),
        (
            "metadata without the config",
            edited(&|_, m| {
                m.remove("config");
            }),
            vec!["not a dlsvm checkpoint", "metadata has no `config`"],
        ),
        (
            "a config that is not TOML",
            edited(&|_, m| {
                m.insert("config".into(), "name = [".into());
            }),
            vec!["not a dlsvm checkpoint", "config: line 1"],
        ),
        (
            "classes that disagree with the top layer",
            edited(&|_, m| {
                m.insert("classes".into(), r#"["a","b","c"]"#.into());
            }),
            vec!["tensor layers.12.weight", "shape [7, 128] does not match the network's [3, 128]"],
        ),
        (
            "a normalizer for another image size",
            edited(&|_, m| {
                let mut n: serde_json::Value = serde_json::from_str(&m["normalizer"]).unwrap();
                n["h"] = 24.into();
                n["w"] = 24.into();
                m.insert("normalizer".into(), n.to_string());
            }),
            vec!["normalizer: fitted on 24x24 images", "image_size is 48"],
        ),
    ];
    for (i, (case, bytes, wants)) in cases.iter().enumerate() {
        let bad = dir.write(&format!("case{i}.safetensors"), bytes);
        let o = dlsvm(&["eval", "--model", s(&bad), "--data", s(&csv)]);
        let mut wants = wants.clone();
        wants.push(s(&bad));
        assert_input_error(case, &o, &wants);
    }

    // A model evaluated on data with another class count.
    let two_classes = valid_image_folder(&dir, "two-classes");
    assert_input_error(
        "a different class count than the data",
        &dlsvm(&["eval", "--model", s(&model), "--data", s(&two_classes)]),
        &[s(&two_classes), s(&model), "the data has 2 classes but the model", "has 7"],
    );
    // Data without a labelled split (Kaggle's test.csv) cannot be evaluated.
    let unlabelled = dir.write("test.csv", format!("id,pixels\n1,{}\n2,{}\n", pixels(1), pixels(2)));
    assert_input_error(
        "data with no labelled split",
        &dlsvm(&["eval", "--model", s(&model), "--data", s(&unlabelled)]),
        &[s(&unlabelled), "no labelled samples to evaluate (splits: test)", "expected labels"],
    );
    // `predict` with a file that is not an image.
    let notes = dir.write("notes.png", "not a picture");
    assert_input_error(
        "predict on a file that is not an image",
        &dlsvm(&["predict", "--model", s(&model), s(&notes)]),
        &[s(&notes), "cannot decode image"],
    );

    // `train --resume` from a damaged checkpoint, and from one made for another image size.
    std::fs::write(&model, &good[..good.len() / 3]).unwrap();
    assert_input_error(
        "train --resume from a truncated checkpoint",
        &train(&csv, &run, &["--resume"]),
        &[s(&model), "truncated"],
    );
    std::fs::write(&model, &good).unwrap();
    let other = dir.write(
        "other.toml",
        preset_toml("fer-small")
            .replace("image_size = 48", "image_size = 44")
            .replace("input_size = 42", "input_size = 40"),
    );
    assert_input_error(
        "train --resume with another image size",
        &train(&csv, &run, &["--resume", "--config", s(&other)]),
        &[s(&model), "48x48 images cropped to 42x42", "44x44 cropped to 40x40", "drop --resume"],
    );
    assert_input_error(
        "train --resume with other classes",
        &train(&two_classes, &run, &["--resume"]),
        &[s(&model), "classes differ"],
    );
}

fn preset_toml(name: &str) -> String {
    dlsvm::model::preset(name).unwrap().to_toml()
}

// ---------------------------------------------------------------------------------------------------------
// Networks and options

const NET_HEAD: &str = "name = \"tiny\"\nimage_size = 48\ninput_size = 42\ntop = \"l2svm\"\n";

#[test]
fn network_files_and_options_exit_2_naming_the_layer_or_option() {
    let dir = TempDir::new("net");
    let csv = dir.write("faces.csv", valid_fer_csv());
    let run = dir.join("run");
    let conv = |extra: &str| format!("[[layers]]\ntype = \"conv\"\nfilters = 4\nkernel = 3\n{extra}");
    let fc = "[[layers]]\ntype = \"fc\"\n";
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "an unknown layer type",
            format!("{NET_HEAD}[[layers]]\ntype = \"conv3d\"\nfilters = 4\n{fc}"),
            vec!["line 5", "layer 0 (conv3d)", "unknown variant `conv3d`", "expected one of `conv`"],
        ),
        (
            "an unknown layer key",
            format!("{NET_HEAD}{}{fc}", conv("padding = 1\n")),
            vec!["line 5", "layer 0 (conv)", "unknown field `padding`", "expected one of `filters`"],
        ),
        (
            "an unknown top-level key",
            format!("{NET_HEAD}colour = \"red\"\n{fc}"),
            vec!["line 5", "unknown field `colour`", "expected one of `name`"],
        ),
        (
            "an unknown [train] key",
            format!("{NET_HEAD}{fc}[train]\nstepz = 3\n"),
            vec!["line 8", "[train]", "unknown field `stepz`", "expected one of `batch`"],
        ),
        (
            "a layer without a type",
            format!("{NET_HEAD}[[layers]]\nfilters = 3\n{fc}"),
            vec!["line 5", "layer 0", "missing field `type`"],
        ),
        ("a TOML syntax error", format!("{NET_HEAD}name = \"x\n"), vec!["line 5", "column"]),
        (
            "shapes that do not chain (conv after fc)",
            format!("{NET_HEAD}[[layers]]\ntype = \"fc\"\nout = 16\n{}{fc}", conv("")),
            vec!["layer 1 (conv)", "a convolution cannot follow an fc layer"],
        ),
        (
            "shapes that do not chain (top out != classes)",
            format!("{NET_HEAD}[[layers]]\ntype = \"fc\"\nout = 5\n"),
            vec!["layer 0 (fc)", "the top layer has 5 outputs but the data has 7 classes"],
        ),
        (
            "a kernel larger than its input",
            format!("{NET_HEAD}[[layers]]\ntype = \"conv\"\nfilters = 4\nkernel = 50\n{fc}"),
            vec!["layer 0 (conv)", "kernel 50x50 is larger than its input 1x42x42"],
        ),
        (
            "a pool window larger than its input",
            format!(
                "{NET_HEAD}{}[[layers]]\ntype = \"max_pool\"\nsize = 43\nstride = 2\n{fc}",
                conv("pad = 1\n")
            ),
            vec!["layer 1 (max_pool)", "window 43x43 is larger than its input 4x42x42"],
        ),
        (
            "input_size larger than image_size",
            format!("{}{fc}", NET_HEAD.replace("input_size = 42", "input_size = 50")),
            vec!["input_size 50 is larger than image_size 48"],
        ),
        (
            "a zero size (filters)",
            format!("{NET_HEAD}[[layers]]\ntype = \"conv\"\nfilters = 0\nkernel = 3\n{fc}"),
            vec!["layer 0 (conv)", "filters, kernel and stride must be at least 1"],
        ),
        (
            "a zero size (fc out)",
            format!("{NET_HEAD}[[layers]]\ntype = \"fc\"\nout = 0\n{fc}"),
            vec!["layer 0 (fc)", "out must be at least 1"],
        ),
        (
            "a zero size (image_size)",
            format!(
                "{}{fc}",
                NET_HEAD.replace("image_size = 48\ninput_size = 42", "image_size = 0\ninput_size = 0")
            ),
            vec!["image_size, input_size and channels must be at least 1"],
        ),
        (
            "a negative size (filters)",
            format!("{NET_HEAD}[[layers]]\ntype = \"conv\"\nfilters = -4\nkernel = 3\n{fc}"),
            vec!["line 5", "layer 0 (conv)", "`filters` is -4, expected a whole number >= 0"],
        ),
        (
            "a negative size (stride of layer 1)",
            format!("{NET_HEAD}{}[[layers]]\ntype = \"avg_pool\"\nsize = 2\nstride = -2\n{fc}", conv("")),
            vec!["line 9", "layer 1 (avg_pool)", "`stride` is -2, expected a whole number >= 0"],
        ),
        (
            "a negative size (image_size)",
            format!("{}{fc}", NET_HEAD.replace("image_size = 48", "image_size = -48")),
            vec!["line 2", "`image_size` is -48, expected a whole number >= 0"],
        ),
        (
            "a huge size (pad 2^62)",
            format!("{NET_HEAD}{}{fc}", conv("pad = 4611686018427387904\n")),
            vec!["layer 0 (conv): `pad` is 4611686018427387904, expected at most 65536"],
        ),
        (
            "a weight too large to allocate",
            format!("{NET_HEAD}[[layers]]\ntype = \"fc\"\nout = 65536\n[[layers]]\ntype = \"fc\"\nout = 65536\n{fc}"),
            vec!["layers.1.weight [65536, 65536] holds 4294967296 values, expected at most 268435456"],
        ),
        (
            "a fractional size",
            format!("{NET_HEAD}[[layers]]\ntype = \"conv\"\nfilters = 4.5\nkernel = 3\n{fc}"),
            vec!["layer 0 (conv)", "`filters` is 4.5, expected a whole number >= 0"],
        ),
        (
            "a negative [train] batch",
            format!("{NET_HEAD}{fc}[train]\nbatch = -3\n"),
            vec!["line 8", "[train]", "`batch` is -3, expected a whole number >= 0"],
        ),
        (
            "a dropout probability of 1.5",
            format!("{NET_HEAD}[[layers]]\ntype = \"dropout\"\np = 1.5\n{fc}"),
            vec!["layer 0 (dropout)", "dropout probability 1.5 is not in [0, 1)"],
        ),
        (
            "two channels",
            format!("{NET_HEAD}channels = 2\n{fc}"),
            vec!["channels = 2", "expected 1 (grayscale) or 3 (colour)"],
        ),
        (
            "a momentum of 2 in the file",
            format!("{NET_HEAD}{fc}[train]\nmomentum = 2.0\n"),
            vec!["[train] momentum = 2 must be in [0, 1)"],
        ),
        (
            "a zero augmentation scale in the file",
            format!("{NET_HEAD}{fc}[train.augment]\nmirror = true\nmax_rotate_deg = 5.0\nscale_min = 0.0\nscale_max = 1.0\nmax_shift = 1.0\nnoise_std = 0.0\n"),
            vec!["[train] augment.scale_min = 0 must be a finite positive number"],
        ),
        (
            "a negative learning rate in the file",
            format!("{NET_HEAD}{fc}[train]\nlr = -0.5\n"),
            vec!["[train] lr = -0.5", "finite positive"],
        ),
    ];
    for (i, (case, toml, wants)) in cases.iter().enumerate() {
        let net = dir.write(&format!("case{i}.toml"), toml);
        // No --batch: a config's own [train] values must reach the checks.
        let o = dlsvm(&[
            "train",
            "--data",
            s(&csv),
            "--config",
            s(&net),
            "--steps",
            "1",
            "--out",
            s(&run),
            "--json",
        ]);
        let mut wants = wants.clone();
        wants.push(s(&net));
        assert_input_error(case, &o, &wants);
    }
    let missing = dir.join("no-such-net.toml");
    assert_input_error(
        "a network file that does not exist",
        &train(&csv, &run, &["--config", s(&missing)]),
        &[s(&missing), "No such file"],
    );

    // Options. The data has 6 training samples.
    let options: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        ("learning rate 0", vec!["--lr", "0"], vec!["--lr 0", "finite positive"]),
        ("a negative learning rate", vec!["--lr=-0.1"], vec!["--lr -0.1", "finite positive"]),
        ("learning rate NaN", vec!["--lr", "NaN"], vec!["--lr NaN", "finite positive"]),
        ("learning rate inf", vec!["--lr", "inf"], vec!["--lr inf", "finite positive"]),
        (
            "a batch larger than the data",
            vec!["--batch", "7"],
            vec!["--batch 7 is larger than the 6 training samples", s(&csv), "use --batch 6 or less"],
        ),
        ("batch 0", vec!["--batch", "0"], vec!["--batch 0 must be at least 1"]),
        (
            "a batch larger than a fold's training part",
            vec!["--folds", "3", "--batch", "5"],
            vec!["--batch 5 is larger than the 4 training samples of fold 0 of 3", s(&csv)],
        ),
        (
            "--folds 1",
            vec!["--folds", "1"],
            vec!["--folds 1 must be between 2 and the 6 training samples", s(&csv)],
        ),
        (
            "--folds larger than the samples",
            vec!["--folds", "7"],
            vec!["--folds 7 must be between 2 and the 6 training samples", s(&csv)],
        ),
        (
            "--fold outside --folds",
            vec!["--folds", "3", "--fold", "3"],
            vec!["--fold 3 must be below --folds 3"],
        ),
        ("zero steps", vec!["--steps", "0"], vec!["--steps 0 must be at least 1"]),
        ("a momentum of 1", vec!["--momentum", "1"], vec!["--momentum 1 must be in [0, 1)"]),
        ("an unknown preset", vec!["--preset", "huge"], vec!["unknown preset \"huge\"", "fer-small"]),
        (
            "an unknown top",
            vec!["--top", "hinge"],
            vec!["unknown --top \"hinge\"", "l2svm, softmax or l1svm"],
        ),
    ];
    for (case, extra, wants) in options {
        // `train` passes --steps 1 --batch 2 first; later flags win for --batch and --steps.
        let mut args = vec!["train", "--data", s(&csv), "--out", s(&run), "--json"];
        if !extra.contains(&"--batch") {
            args.extend(["--batch", "2"]);
        }
        if !extra.contains(&"--steps") {
            args.extend(["--steps", "1"]);
        }
        args.extend(extra);
        assert_input_error(case, &dlsvm(&args), &wants);
    }
    // Usage errors found by the argument parser, and synthetic-data sizes: one line as well.
    let run_dir = s(&run);
    let usage: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        ("an unknown flag", vec!["train", "--no-such-flag"], vec!["--no-such-flag", "dlsvm --help"]),
        ("a non-numeric --batch", vec!["train", "--batch", "many"], vec!["many", "--batch"]),
        ("an unknown command", vec!["fly"], vec!["fly"]),
        (
            "zero synthetic faces",
            vec!["train", "--synth-count", "0", "--out", run_dir],
            vec!["--synth-count 0"],
        ),
        (
            "too many synthetic faces",
            vec!["train", "--synth-count", "100000000", "--out", run_dir],
            vec!["--synth-count 100000000", "200000"],
        ),
        ("data synth --count 0", vec!["data", "synth", "--out", run_dir, "--count", "0"], vec!["--count 0"]),
    ];
    for (case, args, wants) in usage {
        assert_input_error(case, &dlsvm(&args), &wants);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Fuzz: random and mutated checkpoint files never make the reader panic.

/// A small valid checkpoint, written through the library (no GPU needed).
fn tiny_checkpoint(path: &Path) -> Vec<u8> {
    let toml = "name = \"fuzz\"\nimage_size = 8\ninput_size = 6\ntop = \"l2svm\"\n\
                [[layers]]\ntype = \"conv\"\nfilters = 2\nkernel = 3\npad = 1\n\
                [[layers]]\ntype = \"relu\"\n\
                [[layers]]\ntype = \"max_pool\"\nsize = 2\nstride = 2\n\
                [[layers]]\ntype = \"fc\"\n";
    let config = NetConfig::from_toml(toml).unwrap();
    let classes: Vec<String> = ["a", "b", "c"].iter().map(|c| c.to_string()).collect();
    let net = Net::new(&config, classes.len()).unwrap();
    let params = net.init_params(7);
    let velocity = params.iter().map(|p| vec![0.0; p.len()]).collect();
    let normalizer = Normalizer {
        channels: 1,
        h: 8,
        w: 8,
        per_image: true,
        norm: 150.0,
        mean: vec![0.5; 64],
        std: vec![2.0; 64],
        std_floor: None,
    };
    let ck = checkpoint::Checkpoint {
        config,
        class_names: classes,
        normalizer,
        step: 3,
        total_steps: 10,
        params,
        velocity: Some(velocity),
        plan: None,
        adapter: None,
        pca: None,
    };
    checkpoint::save(path, &ck).unwrap();
    let back = checkpoint::load(path).expect("the fuzz seed is a valid checkpoint");
    assert_eq!(back.params, ck.params);
    std::fs::read(path).unwrap()
}

/// One fuzz case: random bytes, or 1-4 mutations of `base` (bit flips biased to the header, digit changes
/// inside the JSON header, truncation, a rewritten 8-byte header length, insertions).
fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    if rng.below(10) == 0 {
        let n = rng.below(300);
        let mut v: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        if rng.below(2) == 0 && v.len() >= 9 {
            // A plausible header length and a `{`, so the JSON parser sees the noise.
            v[..8].copy_from_slice(&((n as u64).saturating_sub(8 + rng.below(20) as u64)).to_le_bytes());
            v[8] = b'{';
        }
        return v;
    }
    let header_end = (8 + u64::from_le_bytes(base[..8].try_into().unwrap()) as usize).min(base.len());
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 => {
                // A bit flip, three times in four inside the length or the JSON header.
                let i = if rng.below(4) > 0 { rng.below(header_end) } else { rng.below(v.len()) };
                if let Some(b) = v.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 => {
                // A digit of the JSON header (shapes, offsets, config sizes, step) changed or lengthened.
                let digits: Vec<usize> =
                    (8..header_end.min(v.len())).filter(|&i| v[i].is_ascii_digit()).collect();
                if !digits.is_empty() {
                    let i = digits[rng.below(digits.len())];
                    if rng.below(3) == 0 {
                        let extra: Vec<u8> =
                            (0..1 + rng.below(12)).map(|_| b'0' + rng.below(10) as u8).collect();
                        v.splice(i..i, extra);
                    } else {
                        v[i] = b"0123456789-"[rng.below(11)];
                    }
                }
            }
            2 => {
                let n = rng.below(v.len() + 1);
                v.truncate(n);
            }
            3 => {
                // Overwrite the 8-byte header length.
                let len = v.len() as u64;
                let n = [
                    0,
                    1,
                    u64::MAX,
                    u64::MAX / 2,
                    len,
                    len.saturating_sub(8),
                    len.saturating_sub(9),
                    (header_end as u64).saturating_sub(8 + rng.below(4) as u64),
                    (header_end as u64) + rng.below(16) as u64,
                    rng.next_u64(),
                    rng.next_u64() % 100_000_000,
                ][rng.below(11)];
                if v.len() >= 8 {
                    v[..8].copy_from_slice(&n.to_le_bytes());
                }
            }
            4 => {
                let at = rng.below(v.len() + 1);
                let ins: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next_u64() as u8).collect();
                v.splice(at..at, ins);
            }
            _ => {
                // Remove a span (a tensor's bytes, part of a JSON string).
                let a = rng.below(v.len() + 1);
                let b = (a + 1 + rng.below(64)).min(v.len());
                v.drain(a..b);
            }
        }
    }
    v
}

/// Checkpoint fuzz cases (about 0.2 ms each).
const FUZZ_CASES: usize = 2000;

#[test]
fn fuzz_checkpoint_reader_never_panics() {
    let dir = TempDir::new("fuzzck");
    let base = tiny_checkpoint(&dir.join("seed.safetensors"));
    let mut rng = Rng::new(0xC4EC_4B01);
    let path = dir.join("case.safetensors");
    let (mut ok, mut refused) = (0, 0);
    for case in 0..FUZZ_CASES {
        let bytes = mutate(&mut rng, &base);
        std::fs::write(&path, &bytes).unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| checkpoint::load(&path)));
        match result {
            Err(_) => panic!(
                "checkpoint fuzz case {case} panicked ({} bytes; first 64: {:?})",
                bytes.len(),
                &bytes[..bytes.len().min(64)]
            ),
            Ok(Err(e)) => {
                let msg = e.to_string();
                assert!(msg.contains(s(&path)), "case {case}: the error names the file: {msg}");
                assert_eq!(msg.lines().count(), 1, "case {case}: one line: {msg}");
                refused += 1;
            }
            Ok(Ok(ck)) => {
                // Whatever is accepted is consistent: every tensor fits the network it describes.
                let net =
                    ck.net().unwrap_or_else(|e| panic!("case {case}: accepted, but its network fails: {e}"));
                assert_eq!(ck.params.len(), net.params.len(), "case {case}");
                for (p, v) in net.params.iter().zip(&ck.params) {
                    assert_eq!(v.len(), p.len(), "case {case}: {}", p.name);
                }
                let n = &ck.normalizer;
                assert_eq!((n.h, n.w), (ck.config.image_size, ck.config.image_size), "case {case}");
                assert_eq!(n.mean.len(), n.h * n.w, "case {case}");
                ok += 1;
            }
        }
    }
    assert!(refused > FUZZ_CASES / 2, "most mutations are refused ({refused} refused, {ok} accepted)");
}
