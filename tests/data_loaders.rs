//! Data loaders (fer2013 CSV, Kaggle CSV, image folders, IDX) and the paper's normalizer: the data sets
//! shipped in data/, small fixtures written to a temporary folder, one test per error case, and a seeded
//! fuzz test that feeds mutated files to every loader.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

mod common;

use common::TempDir;
use dlsvm::data::normalize::Normalizer;
use dlsvm::data::{self, DataError, DataSource, Dataset, Format, FER_CLASSES};
use dlsvm::rng::Rng;

// ---------------------------------------------------------------------------------------------------------
// Helpers

fn repo_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(name)
}

fn load(path: &Path, size: Option<usize>) -> Result<(DataSource, Vec<String>), DataError> {
    let mut warnings = Vec::new();
    let src = data::load(path, size, &mut |w| warnings.push(w))?;
    Ok((src, warnings))
}

fn load_err(path: &Path) -> String {
    match load(path, None) {
        Ok(_) => panic!("{} loaded but should have failed", path.display()),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "error message is not one line: {msg}");
            msg
        }
    }
}

/// Asserts `msg` names `file` and contains every one of `parts`.
fn assert_mentions(msg: &str, file: &Path, parts: &[&str]) {
    assert!(msg.contains(&file.display().to_string()), "message does not name {}: {msg}", file.display());
    for p in parts {
        assert!(msg.contains(p), "message lacks `{p}`: {msg}");
    }
}

/// Checks that a split's shapes are consistent.
fn assert_consistent(ds: &Dataset) {
    assert_eq!(ds.pixels.len(), ds.len() * ds.h * ds.w);
    assert!(ds.pixels.iter().all(|v| (0.0..=255.0).contains(v)));
}

/// 2304 pixel values `base, base+1, ...` (mod 256), space-separated.
fn pixels(base: usize) -> String {
    (0..2304).map(|i| ((base + i) % 256).to_string()).collect::<Vec<_>>().join(" ")
}

fn fer_row(label: i32, base: usize, usage: &str) -> String {
    format!("{label},{},{usage}", pixels(base))
}

fn valid_fer_csv() -> String {
    let rows = [
        fer_row(0, 0, "Training"),
        fer_row(6, 10, "Training"),
        fer_row(3, 20, "Training"),
        fer_row(1, 30, "PublicTest"),
        fer_row(2, 40, "PublicTest"),
        fer_row(5, 50, "PrivateTest"),
    ];
    format!("emotion,pixels,Usage\n{}\n", rows.join("\n"))
}

fn gray_png(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

fn idx_images(n: u32, rows: u32, cols: u32, f: impl Fn(usize) -> u8) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(0x0000_0803u32.to_be_bytes());
    for d in [n, rows, cols] {
        v.extend(d.to_be_bytes());
    }
    v.extend((0..(n * rows * cols) as usize).map(f));
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(0x0000_0801u32.to_be_bytes());
    v.extend((labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

// ---------------------------------------------------------------------------------------------------------
// The data sets shipped in data/

#[test]
fn mnist_5k_idx_gz() {
    let (src, warnings) = load(&repo_data("mnist-5k"), None).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(src.format, Format::Idx);
    assert_eq!(src.class_names, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    let train = src.train().unwrap();
    let test = src.test().unwrap();
    assert_eq!((train.len(), train.h, train.w), (4000, 28, 28));
    assert_eq!((test.len(), test.h, test.w), (1000, 28, 28));
    assert_eq!(train.class_counts(10), vec![400; 10]);
    assert_eq!(test.class_counts(10), vec![100; 10]);
    assert_consistent(train);
    assert_consistent(test);
    // Real digits: mostly background with bright strokes.
    let max = train.pixels.iter().cloned().fold(0.0f32, f32::max);
    assert_eq!(max, 255.0);
    let mean = train.pixels.iter().map(|&v| v as f64).sum::<f64>() / train.pixels.len() as f64;
    assert!((20.0..60.0).contains(&mean), "mean intensity {mean}");
}

#[test]
fn lfw_image_folder_native_size() {
    let (src, warnings) = load(&repo_data("lfw-face-vs-background"), None).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(src.format, Format::ImageFolder);
    assert_eq!(src.class_names, vec!["background", "face"]);
    let train = src.train().unwrap();
    let test = src.test().unwrap();
    assert_eq!((train.len(), train.h, train.w), (160, 25, 25));
    assert_eq!((test.len(), test.h, test.w), (40, 25, 25));
    assert_eq!(train.class_counts(2), vec![80, 80]);
    assert_eq!(test.class_counts(2), vec![20, 20]);
    assert_consistent(train);
    assert_consistent(test);
}

#[test]
fn lfw_resized_to_48_warns_once_per_split() {
    let (src, warnings) = load(&repo_data("lfw-face-vs-background"), Some(48)).unwrap();
    assert_eq!(
        warnings,
        vec![
            "resized 160 images of train from 25x25 to 48x48",
            "resized 40 images of test from 25x25 to 48x48"
        ]
    );
    let train = src.train().unwrap();
    assert_eq!((train.len(), train.h, train.w), (160, 48, 48));
    assert_consistent(train);
    // Same size as native: nothing resized, nothing said.
    let (_, warnings) = load(&repo_data("lfw-face-vs-background"), Some(25)).unwrap();
    assert!(warnings.is_empty());
}

// ---------------------------------------------------------------------------------------------------------
// CSV fixtures

#[test]
fn fer_csv_all_three_usages() {
    let dir = TempDir::new("fer");
    let path = dir.write("fer2013.csv", valid_fer_csv().as_bytes());
    let (src, warnings) = load(&path, None).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(src.format, Format::Fer2013Csv);
    assert_eq!(src.class_names, FER_CLASSES.to_vec());
    let names: Vec<&str> = src.splits.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["train", "public_test", "private_test"]);
    let train = src.train().unwrap();
    assert_eq!((train.len(), train.h, train.w), (3, 48, 48));
    assert_eq!(train.labels, vec![0, 6, 3]);
    assert_eq!(&train.image(1)[..3], &[10.0, 11.0, 12.0]);
    assert_eq!(train.image(0)[2303], (2303 % 256) as f32);
    assert_eq!(src.split("public_test").unwrap().labels, vec![1, 2]);
    // test() falls back to private_test.
    assert_eq!(src.test().unwrap().labels, vec![5]);
}

#[test]
fn fer_csv_bom_crlf_quoted_and_resized() {
    let dir = TempDir::new("bom");
    let body = format!(
        "\u{feff}emotion,pixels,Usage\r\n4,\"{}\",Training\r\n\r\n5,{},PrivateTest\r\n",
        pixels(7),
        pixels(9)
    );
    let path = dir.write("fer2013.csv", body.as_bytes());
    let (src, warnings) = load(&path, None).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(src.train().unwrap().labels, vec![4]);
    assert_eq!(src.train().unwrap().image(0)[0], 7.0);
    assert_eq!(src.test().unwrap().labels, vec![5]);

    let (src, warnings) = load(&path, Some(24)).unwrap();
    assert_eq!(
        warnings,
        vec![
            "resized 1 images of train from 48x48 to 24x24",
            "resized 1 images of private_test from 48x48 to 24x24"
        ]
    );
    let train = src.train().unwrap();
    assert_eq!((train.h, train.w, train.pixels.len()), (24, 24, 576));
}

#[test]
fn kaggle_train_and_test_csv() {
    let dir = TempDir::new("kaggle");
    let train =
        dir.write("train.csv", format!("emotion,pixels\n2,{}\n6,{}\n", pixels(1), pixels(2)).as_bytes());
    let test =
        dir.write("test.csv", format!("pixels\n{}\n{}\n{}\n", pixels(3), pixels(4), pixels(5)).as_bytes());
    let test_id = dir.write("test_id.csv", format!("id,pixels\n0,{}\n", pixels(3)).as_bytes());

    let (src, _) = load(&train, None).unwrap();
    assert_eq!(src.format, Format::KaggleCsv);
    assert_eq!(src.train().unwrap().labels, vec![2, 6]);
    assert!(src.test().is_none());

    let (src, _) = load(&test, None).unwrap();
    assert_eq!(src.format, Format::KaggleCsv);
    assert_eq!(src.test().unwrap().labels, vec![-1, -1, -1]);
    assert_eq!(src.test().unwrap().image(2)[0], 5.0);
    let err = src.train().unwrap_err().to_string();
    assert_mentions(&err, &test, &["no `train` split", "test"]);

    let (src, _) = load(&test_id, None).unwrap();
    assert_eq!(src.test().unwrap().len(), 1);
}

#[test]
fn icml_face_data_column_order_and_spaces() {
    // Kaggle's icml_face_data.csv: `emotion, Usage, pixels`, with spaces after the commas.
    let dir = TempDir::new("icml");
    let path = dir.write(
        "icml_face_data.csv",
        format!("emotion, Usage, pixels\n3, Training, {}\n", pixels(0)).as_bytes(),
    );
    let (src, _) = load(&path, None).unwrap();
    assert_eq!(src.format, Format::Fer2013Csv);
    assert_eq!(src.train().unwrap().labels, vec![3]);
}

fn csv_error(tag: &str, body: &str) -> (TempDir, PathBuf, String) {
    let dir = TempDir::new(tag);
    let path = dir.write("fer2013.csv", body.as_bytes());
    let msg = load_err(&path);
    (dir, path, msg)
}

#[test]
fn csv_missing_header() {
    let (_d, path, msg) = csv_error("nohdr", &format!("{}\n", fer_row(0, 0, "Training")));
    assert_mentions(&msg, &path, &["line 1", "missing header", "emotion,pixels,Usage"]);
}

#[test]
fn csv_wrong_header() {
    let (_d, path, msg) = csv_error("badhdr", &format!("label,image,split\n{}\n", fer_row(0, 0, "Training")));
    assert_mentions(&msg, &path, &["line 1", "expected header", "label,image,split"]);
}

#[test]
fn csv_empty_file() {
    let (_d, path, msg) = csv_error("emptyfile", "");
    assert_mentions(&msg, &path, &["line 1", "empty file"]);
}

#[test]
fn csv_wrong_column_count() {
    let body = format!("emotion,pixels,Usage\n{}\n0,{}\n", fer_row(0, 0, "Training"), pixels(0));
    let (_d, path, msg) = csv_error("cols", &body);
    assert_mentions(&msg, &path, &["line 3", "expected 3 fields", "found 2"]);
}

#[test]
fn csv_2303_pixels() {
    let short: Vec<String> = (0..2303).map(|i| (i % 256).to_string()).collect();
    let body =
        format!("emotion,pixels,Usage\n{}\n0,{},Training\n", fer_row(0, 0, "Training"), short.join(" "));
    let (_d, path, msg) = csv_error("short", &body);
    assert_mentions(&msg, &path, &["line 3", "expected 2304 pixel values", "found 2303"]);
}

#[test]
fn csv_non_numeric_pixel() {
    let bad = pixels(0).replacen("5", "abc", 1);
    let body = format!("emotion,pixels,Usage\n0,{bad},Training\n");
    let (_d, path, msg) = csv_error("abc", &body);
    assert_mentions(&msg, &path, &["line 2", "pixel 6", "`abc`", "0..=255"]);
}

#[test]
fn csv_pixel_256() {
    let bad = format!("256 {}", pixels(0).split_once(' ').unwrap().1);
    let body = format!("emotion,pixels,Usage\n{}\n0,{bad},Training\n", fer_row(1, 0, "Training"));
    let (_d, path, msg) = csv_error("p256", &body);
    assert_mentions(&msg, &path, &["line 3", "pixel 1 is 256", "0..=255"]);
}

#[test]
fn csv_label_7() {
    let body = format!("emotion,pixels,Usage\n{}\n", fer_row(7, 0, "Training"));
    let (_d, path, msg) = csv_error("label7", &body);
    assert_mentions(&msg, &path, &["line 2", "label 7", "0..=6"]);
}

#[test]
fn csv_unknown_usage() {
    let body = format!("emotion,pixels,Usage\n{}\n{}\n", fer_row(1, 0, "Training"), fer_row(1, 0, "Foo"));
    let (_d, path, msg) = csv_error("usage", &body);
    assert_mentions(&msg, &path, &["line 3", "unknown Usage `Foo`", "Training, PublicTest or PrivateTest"]);
}

#[test]
fn csv_no_training_rows() {
    let body =
        format!("emotion,pixels,Usage\n{}\n{}\n", fer_row(1, 0, "PublicTest"), fer_row(2, 0, "PrivateTest"));
    let (_d, path, msg) = csv_error("notrain", &body);
    assert_mentions(&msg, &path, &["lines 2-3", "no row with Usage `Training`", "1 PublicTest"]);
}

#[test]
fn csv_header_only() {
    let (_d, path, msg) = csv_error("hdronly", "emotion,pixels\r\n");
    assert_mentions(&msg, &path, &["no data rows", "line 1"]);
}

#[test]
fn csv_unterminated_quote() {
    let body = format!("emotion,pixels,Usage\n0,\"{},Training\n", pixels(0));
    let (_d, path, msg) = csv_error("quote", &body);
    assert_mentions(&msg, &path, &["line 2", "unterminated quote"]);
}

// ---------------------------------------------------------------------------------------------------------
// Image-folder fixtures

#[test]
fn folder_fer_class_names_map_by_name() {
    let dir = TempDir::new("ferfolder");
    // Folder order (alphabetical) differs from the FER index order; one name in capitals.
    for (split, class, v) in
        [("train", "neutral", 60u8), ("train", "Happy", 30), ("train", "angry", 0), ("test", "surprise", 50)]
    {
        dir.write(&format!("{split}/{class}/a.png"), gray_png(48, 48, |_, _| v));
    }
    dir.write("train/neutral/b.PNG", gray_png(48, 48, |_, _| 61));
    dir.write("train/neutral/notes.txt", b"not an image");
    dir.write("train/neutral/.hidden.png", b"garbage: hidden files are ignored");
    let (src, _) = load(dir.path(), None).unwrap();
    assert_eq!(src.class_names, FER_CLASSES.to_vec());
    let train = src.train().unwrap();
    // Label order: angry (0), happy (3), neutral (6), neutral (6).
    assert_eq!(train.labels, vec![0, 3, 6, 6]);
    assert_eq!(train.image(0)[0], 0.0);
    assert_eq!(train.image(1)[0], 30.0);
    assert_eq!(train.image(2)[0], 60.0);
    assert_eq!(train.image(3)[0], 61.0);
    assert_eq!(src.test().unwrap().labels, vec![5]);
    assert_eq!(train.class_counts(7), vec![1, 0, 0, 1, 0, 0, 2]);
}

#[test]
fn folder_other_names_sorted_union_and_val() {
    let dir = TempDir::new("union");
    dir.write("train/dog/1.png", gray_png(8, 8, |x, _| x as u8));
    dir.write("train/cat/1.png", gray_png(8, 8, |_, y| y as u8));
    dir.write("Validation/cat/1.png", gray_png(8, 8, |_, _| 1));
    dir.write("test/bird/1.jpg", &{
        let img = image::RgbImage::from_fn(8, 8, |_, _| image::Rgb([200, 200, 200]));
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg).unwrap();
        out
    });
    dir.write("README.md", b"ignored");
    let (src, _) = load(dir.path(), None).unwrap();
    assert_eq!(src.class_names, vec!["bird", "cat", "dog"]);
    let names: Vec<&str> = src.splits.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["train", "val", "test"]);
    assert_eq!(src.train().unwrap().labels, vec![1, 2]);
    assert_eq!(src.split("val").unwrap().labels, vec![1]);
    let test = src.test().unwrap();
    assert_eq!(test.labels, vec![0]);
    // RGB JPEG converted to luma: a uniform gray stays about 200.
    assert!(test.pixels.iter().all(|&v| (v - 200.0).abs() <= 3.0), "{:?}", &test.pixels[..4]);
}

#[test]
fn folder_single_split_root_of_class_folders() {
    let dir = TempDir::new("single");
    dir.write("b/1.png", gray_png(5, 4, |_, _| 9));
    dir.write("a/1.JPEG", &{
        let img = image::GrayImage::from_fn(5, 4, |_, _| image::Luma([100]));
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg).unwrap();
        out
    });
    let (src, _) = load(dir.path(), None).unwrap();
    assert_eq!(src.splits.len(), 1);
    assert_eq!(src.class_names, vec!["a", "b"]);
    let train = src.train().unwrap();
    assert_eq!((train.h, train.w, train.labels.clone()), (4, 5, vec![0, 1]));
    assert!(src.test().is_none());
}

#[test]
fn folder_mixed_sizes_need_a_size() {
    let dir = TempDir::new("mixed");
    dir.write("train/a/1.png", gray_png(10, 10, |_, _| 0));
    let odd = dir.write("train/a/2.png", gray_png(12, 10, |_, _| 0));
    let msg = load_err(dir.path());
    assert_mentions(&msg, &odd, &["12x10", "10x10"]);
    let (src, warnings) = load(dir.path(), Some(10)).unwrap();
    assert_eq!(warnings, vec!["resized 1 images of train from 12x10 to 10x10"]);
    assert_eq!(src.train().unwrap().len(), 2);
}

#[test]
fn folder_garbage_png() {
    let dir = TempDir::new("garbage");
    dir.write("train/a/1.png", gray_png(4, 4, |_, _| 0));
    let bad = dir.write("train/b/1.png", b"this is not a png at all, just text bytes");
    let msg = load_err(dir.path());
    assert_mentions(&msg, &bad, &["cannot decode image"]);
}

#[test]
fn folder_truncated_png() {
    let dir = TempDir::new("trunc");
    let png = gray_png(16, 16, |x, y| (x * y) as u8);
    dir.write("train/a/1.png", &png);
    let bad = dir.write("train/a/2.png", &png[..png.len() / 2]);
    let msg = load_err(dir.path());
    assert_mentions(&msg, &bad, &["cannot decode image"]);
}

#[test]
fn folder_empty_class_folder() {
    let dir = TempDir::new("emptyclass");
    dir.write("train/a/1.png", gray_png(4, 4, |_, _| 0));
    dir.write("train/b/readme.txt", b"no images here");
    let msg = load_err(dir.path());
    assert_mentions(
        &msg,
        &dir.path().join("train").join("b"),
        &["class folder `b`", "no .png, .jpg or .jpeg"],
    );
}

#[test]
fn folder_no_class_folders() {
    let dir = TempDir::new("noclass");
    dir.write("train/1.png", gray_png(4, 4, |_, _| 0));
    let msg = load_err(dir.path());
    assert_mentions(&msg, &dir.path().join("train"), &["no class folders"]);
}

// ---------------------------------------------------------------------------------------------------------
// IDX fixtures

#[test]
fn idx_raw_gz_and_test_prefix() {
    let dir = TempDir::new("idx");
    let imgs = idx_images(3, 2, 3, |i| i as u8);
    // Gzip detected by magic bytes even without a .gz name; plain test- prefix.
    dir.write("train-images-idx3-ubyte", gzip(&imgs));
    dir.write("train-labels-idx1-ubyte.gz", gzip(&idx_labels(&[1, 0, 12])));
    dir.write("test-images-idx3-ubyte", idx_images(1, 2, 3, |i| 100 + i as u8));
    dir.write("test-labels-idx1-ubyte", idx_labels(&[4]));
    let (src, _) = load(dir.path(), None).unwrap();
    assert_eq!(src.format, Format::Idx);
    // A label above 9: classes 0..=12.
    assert_eq!(src.class_names.len(), 13);
    let train = src.train().unwrap();
    assert_eq!((train.len(), train.h, train.w), (3, 2, 3));
    assert_eq!(train.labels, vec![1, 0, 12]);
    assert_eq!(train.image(2), &[12.0, 13.0, 14.0, 15.0, 16.0, 17.0]);
    assert_eq!(src.test().unwrap().image(0)[5], 105.0);

    let (src, warnings) = load(dir.path(), Some(4)).unwrap();
    assert_eq!(warnings.len(), 2);
    assert_eq!(src.test().unwrap().pixels.len(), 16);
}

#[test]
fn idx_missing_train_files() {
    let dir = TempDir::new("idxmissing");
    dir.write("t10k-images-idx3-ubyte", idx_images(1, 2, 2, |_| 0));
    dir.write("t10k-labels-idx1-ubyte", idx_labels(&[0]));
    let msg = load_err(dir.path());
    assert_mentions(&msg, dir.path(), &["missing training files", "train-images-idx3-ubyte"]);
}

#[test]
fn idx_wrong_magic() {
    let dir = TempDir::new("idxmagic");
    dir.write("train-images-idx3-ubyte", idx_images(2, 2, 2, |_| 0));
    // The labels file holds an images header.
    let bad = dir.write("train-labels-idx1-ubyte", idx_images(2, 2, 2, |_| 0));
    let msg = load_err(dir.path());
    assert_mentions(&msg, &bad, &["wrong magic number 0x00000803", "expected 0x00000801"]);
}

#[test]
fn idx_truncated() {
    let dir = TempDir::new("idxtrunc");
    let imgs = idx_images(2, 4, 4, |_| 0);
    let bad = dir.write("train-images-idx3-ubyte", &imgs[..imgs.len() - 5]);
    dir.write("train-labels-idx1-ubyte", idx_labels(&[0, 1]));
    let msg = load_err(dir.path());
    assert_mentions(&msg, &bad, &["truncated", "expected 48 bytes", "found 43"]);
    // Same through gzip.
    std::fs::remove_file(&bad).unwrap();
    let bad = dir.write("train-images-idx3-ubyte.gz", gzip(&imgs[..imgs.len() - 5]));
    let msg = load_err(dir.path());
    assert_mentions(&msg, &bad, &["truncated", "expected 48 bytes", "found 43"]);
}

#[test]
fn idx_huge_declared_size_is_refused_without_allocating() {
    let dir = TempDir::new("idxhuge");
    let mut imgs = idx_images(1, 2, 2, |_| 0);
    imgs[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let bad = dir.write("train-images-idx3-ubyte", &imgs);
    dir.write("train-labels-idx1-ubyte", idx_labels(&[0]));
    let msg = load_err(dir.path());
    assert_mentions(&msg, &bad, &["truncated", "found 20"]);
    // Gzipped: the stream is read incrementally, so the error comes without a 16 GiB buffer.
    std::fs::remove_file(&bad).unwrap();
    imgs[8..12].copy_from_slice(&4096u32.to_be_bytes());
    let bad = dir.write("train-images-idx3-ubyte.gz", gzip(&imgs));
    let msg = load_err(dir.path());
    assert_mentions(&msg, &bad, &["8 GiB"]);
}

#[test]
fn idx_count_mismatch() {
    let dir = TempDir::new("idxcount");
    let imgs = dir.write("train-images-idx3-ubyte", idx_images(3, 2, 2, |_| 0));
    let labels = dir.write("train-labels-idx1-ubyte", idx_labels(&[0, 1]));
    let msg = load_err(dir.path());
    assert_mentions(&msg, &imgs, &["3 images", "2 labels", &labels.display().to_string()]);
}

// ---------------------------------------------------------------------------------------------------------
// Detection, errors, Dataset helpers

#[test]
fn detection_errors_name_the_path() {
    let dir = TempDir::new("detect");
    let missing = dir.path().join("nope");
    assert_mentions(&load_err(&missing), &missing, &["cannot read"]);
    let txt = dir.write("data.txt", b"hello");
    assert_mentions(&load_err(&txt), &txt, &["unrecognized data file"]);
    let empty = dir.mkdir("empty");
    assert_mentions(&load_err(&empty), &empty, &["unrecognized data folder"]);
}

#[test]
fn dataset_subset_and_counts() {
    let ds = Dataset { c: 1, h: 1, w: 2, pixels: vec![0., 1., 2., 3., 4., 5.], labels: vec![2, -1, 0] };
    assert_eq!(ds.len(), 3);
    assert!(!ds.is_empty());
    assert_eq!(ds.image(1), &[2., 3.]);
    let s = ds.subset(&[2, 0, 2]);
    assert_eq!(s.pixels, vec![4., 5., 0., 1., 4., 5.]);
    assert_eq!(s.labels, vec![0, 2, 0]);
    assert_eq!(ds.class_counts(3), vec![1, 0, 1]);
    assert_eq!(ds.class_counts(2), vec![1, 0]);
}

#[test]
fn resize_bilinear_keeps_constants_and_edges() {
    let up = data::resize_bilinear(&[10.0; 4], 2, 2, 5, 5);
    assert!(up.iter().all(|&v| (v - 10.0).abs() < 1e-5));
    // A horizontal ramp 0, 100 upsampled to 4 wide with centres aligned: 0, 25, 75, 100.
    let r = data::resize_bilinear(&[0.0, 100.0], 1, 2, 1, 4);
    assert_eq!(r, vec![0.0, 25.0, 75.0, 100.0]);
    // Halving averages pairs.
    let d = data::resize_bilinear(&[0.0, 10.0, 20.0, 30.0], 1, 4, 1, 2);
    assert_eq!(d, vec![5.0, 25.0]);
}

// ---------------------------------------------------------------------------------------------------------
// Fuzz: mutated files never make a loader panic.

/// 1 to 4 mutations of `base` (byte flips, interesting bytes, truncation, insertion, duplication), or
/// purely random bytes.
fn mutate(rng: &mut Rng, base: &[u8], interesting: &[u8]) -> Vec<u8> {
    if rng.below(10) == 0 {
        let n = rng.below(200);
        return (0..n).map(|_| rng.next_u64() as u8).collect();
    }
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 => {
                let i = rng.below(v.len());
                if let Some(b) = v.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 => {
                let i = rng.below(v.len());
                if let Some(b) = v.get_mut(i) {
                    *b = interesting[rng.below(interesting.len())];
                }
            }
            2 => {
                let n = rng.below(v.len() + 1);
                v.truncate(n);
            }
            3 => {
                let at = rng.below(v.len() + 1);
                let n = 1 + rng.below(16);
                let ins: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                v.splice(at..at, ins);
            }
            4 => {
                let a = rng.below(v.len() + 1);
                let b = (a + rng.below(64)).min(v.len());
                let chunk = v[a..b].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            _ => {
                // Overwrite a 4-byte window with an extreme big-endian value (IDX dims, PNG lengths).
                let i = rng.below(v.len().saturating_sub(3));
                let val = [u32::MAX, 0, 1, 0x8000_0000, 0x0000_0803][rng.below(5)];
                if i + 4 <= v.len() {
                    v[i..i + 4].copy_from_slice(&val.to_be_bytes());
                }
            }
        }
    }
    v
}

fn assert_no_panic(what: &str, case: usize, path: &Path) {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut warn = |_w: String| {};
        data::load(path, None, &mut warn).map(|src| {
            for (_, ds) in &src.splits {
                assert_eq!(ds.pixels.len(), ds.len() * ds.h * ds.w);
            }
        })
    }));
    assert!(result.is_ok(), "{what} fuzz case {case} panicked on {}", path.display());
}

const FUZZ_CASES: usize = 300;

#[test]
fn fuzz_csv_never_panics() {
    let mut rng = Rng::new(0xC5F0);
    let small = {
        // Rows of 2304 pixels, kept small in bytes by using one-digit values.
        let px = vec!["1"; 2304].join(" ");
        format!("emotion,pixels,Usage\r\n0,{px},Training\n3,\"{px}\",PublicTest\n6,{px},PrivateTest\n")
    };
    let dir = TempDir::new("fuzzcsv");
    for case in 0..FUZZ_CASES {
        let bytes = mutate(&mut rng, small.as_bytes(), b",\"\n\r 9-\xef\xbb\xbfa0");
        let path = dir.write(&format!("case{case}.csv"), &bytes);
        assert_no_panic("csv", case, &path);
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn fuzz_idx_never_panics() {
    let mut rng = Rng::new(0x1D8);
    let imgs = idx_images(4, 3, 3, |i| (i * 7) as u8);
    let labels = idx_labels(&[0, 1, 2, 3]);
    for case in 0..FUZZ_CASES {
        let dir = TempDir::new("fuzzidx");
        let which = rng.below(3);
        let (mut a, mut b) = (imgs.clone(), labels.clone());
        if which != 1 {
            a = mutate(&mut rng, &imgs, &[0, 1, 3, 8, 0xff, 0x1f, 0x8b]);
        }
        if which != 0 {
            b = mutate(&mut rng, &labels, &[0, 1, 3, 8, 0xff, 0x1f, 0x8b]);
        }
        if rng.below(2) == 0 {
            // Mutate after compressing, too: corrupt gzip streams.
            a = gzip(&a);
            if rng.below(2) == 0 {
                a = mutate(&mut rng, &a, &[0, 0xff]);
            }
        }
        dir.write("train-images-idx3-ubyte", &a);
        dir.write("train-labels-idx1-ubyte.gz", gzip(&b));
        if rng.below(2) == 0 {
            dir.write("t10k-images-idx3-ubyte", mutate(&mut rng, &imgs, &[0, 3]));
            dir.write("t10k-labels-idx1-ubyte", &labels);
        }
        assert_no_panic("idx", case, dir.path());
    }
}

#[test]
fn fuzz_image_folder_never_panics() {
    let mut rng = Rng::new(0x9E6);
    let png = gray_png(12, 9, |x, y| (x * 20 + y) as u8);
    let jpg = {
        let img = image::GrayImage::from_fn(12, 9, |x, y| image::Luma([(x * 20 + y) as u8]));
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg).unwrap();
        out
    };
    for case in 0..FUZZ_CASES {
        let dir = TempDir::new("fuzzimg");
        dir.write("train/a/ok.png", &png);
        let (base, name) = if rng.below(3) == 0 { (&jpg, "x.jpg") } else { (&png, "x.png") };
        dir.write(&format!("train/b/{name}"), mutate(&mut rng, base, &[0, 0xff, 0x49, 0x44, 0x41, 0x54]));
        assert_no_panic("image folder", case, dir.path());
    }
}

// ---------------------------------------------------------------------------------------------------------
// Normalizer

#[test]
fn normalizer_hand_checked() {
    // Two 1x2 images: [0, 255] and the constant [255, 255].
    let ds = Dataset { c: 1, h: 1, w: 2, pixels: vec![0.0, 255.0, 255.0, 255.0], labels: vec![0, 1] };
    // Per image: [0,1] - 0.5 = [-0.5, 0.5], norm sqrt(0.5) → scaled to 150: [-106.066, 106.066]; the constant
    // image → [0, 0]. Training mean per pixel [-53.033, 53.033], std 53.033 → images [-1, 1] and [1, -1].
    let n = Normalizer::fit(&ds, true, 150.0);
    let a = 150.0 / 2f32.sqrt() / 2.0;
    assert!((n.mean[0] + a).abs() < 1e-3 && (n.mean[1] - a).abs() < 1e-3, "{:?}", n.mean);
    assert!((n.std[0] - a).abs() < 1e-3 && (n.std[1] - a).abs() < 1e-3, "{:?}", n.std);
    let out = n.apply(&ds);
    for (o, e) in out.iter().zip([-1.0, 1.0, 1.0, -1.0]) {
        assert!((o - e).abs() < 1e-5, "{out:?}");
    }
    // Without the per-image step: /255 only; pixel 0's std is 0.5, the second pixel is constant: its std
    // is the floor, a tenth of the mean std (0.5 + 0) / 2, and it is centred at 0.
    let n = Normalizer::fit(&ds, false, 150.0);
    assert_eq!((n.std[0], n.std[1], n.std_floor), (0.5, 0.025, Some(0.025)));
    let out = n.apply(&ds);
    for (o, e) in out.iter().zip([-1.0, 0.0, 1.0, 0.0]) {
        assert!((o - e).abs() < 1e-6, "{out:?}");
    }
}

/// An image unlike the training set (a flat image; a bright pixel where training was nearly constant)
/// gives inputs bounded by `max |v - mean| / floor`, the floor a tenth of the mean std; the old floor of
/// 1e-6 made the nearly constant pixel's input 10^4 times larger than any the network trained on.
#[test]
fn normalizer_bounds_images_outside_the_training_distribution() {
    // 28x28 "digits": a random blob in the middle, borders 0 except one pixel lit once in 200 images
    // (std ~3e-4 after /255), as in MNIST.
    let (h, w, n) = (28, 28, 200);
    let mut rng = Rng::new(5);
    let mut pixels = vec![0.0f32; n * h * w];
    for (i, img) in pixels.chunks_mut(h * w).enumerate() {
        for y in 6..22 {
            for x in 6..22 {
                img[y * w + x] = (rng.below(256)) as f32;
            }
        }
        if i == 0 {
            img[1] = 1.0;
        }
    }
    // The lit border pixel's own std, which the old floor (1e-6) would have divided by.
    let p1: Vec<f64> = (0..n).map(|i| pixels[i * h * w + 1] as f64 / 255.0).collect();
    let m1 = p1.iter().sum::<f64>() / n as f64;
    let sd1 = (p1.iter().map(|v| (v - m1).powi(2)).sum::<f64>() / n as f64).sqrt();
    let ds = Dataset { c: 1, h, w, pixels, labels: vec![0; n] };
    let norm = Normalizer::fit(&ds, false, 150.0);
    let floor = norm.std_floor.expect("the floor is recorded") as f64;
    assert!(sd1 < floor && sd1 > 0.0, "the lit pixel is below the floor: {sd1} vs {floor}");
    assert!(norm.std.iter().all(|&s| s as f64 >= floor * (1.0 - 1e-6)));
    assert_eq!(norm.std[1] as f64, floor as f32 as f64);
    let bright_border = {
        let mut img = vec![0.0f32; h * w];
        img[1] = 255.0;
        img[w * h - 1] = 255.0;
        img
    };
    for (what, img) in [("flat gray", vec![128.0f32; h * w]), ("bright border", bright_border)] {
        let x = norm.apply_image(&img);
        let dev = |i: usize| (img[i] as f64 / 255.0 - norm.mean[i] as f64).abs();
        let bound = (0..h * w).map(dev).fold(0.0, f64::max) / floor;
        let worst = x.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
        assert!(worst <= bound * (1.0 + 1e-5), "{what}: |x| {worst} above the bound {bound}");
        assert!(worst < 120.0, "{what}: |x| {worst}");
        // Under the old floor the lit pixel alone gave an input dozens of times larger.
        assert!(dev(1) / sd1 > 30.0 * worst, "{what}: old {} vs new {worst}", dev(1) / sd1);
    }
}

#[test]
fn normalizer_per_image_norm_is_150() {
    let ds = Dataset {
        c: 1,
        h: 2,
        w: 3,
        pixels: vec![3.0, 50.0, 7.0, 200.0, 90.0, 1.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0],
        labels: vec![0, 0],
    };
    // With mean 0 and std 1 the output is the per-image step itself.
    let mut n = Normalizer::fit(&ds, true, 150.0);
    n.mean = vec![0.0; 6];
    n.std = vec![1.0; 6];
    let img = n.apply_image(ds.image(0));
    let mean: f32 = img.iter().sum::<f32>() / 6.0;
    let l2: f32 = img.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!(mean.abs() < 1e-4, "{mean}");
    assert!((l2 - 150.0).abs() < 1e-3, "{l2}");
    // A constant image stays all zeros.
    assert!(n.apply_image(ds.image(1)).iter().all(|&v| v == 0.0));
}

#[test]
fn normalizer_standardizes_the_training_set() {
    let (src, _) = load(&repo_data("mnist-5k"), None).unwrap();
    let train = src.train().unwrap();
    let n = Normalizer::fit(train, true, 150.0);
    let out = n.apply(train);
    let px = train.h * train.w;
    assert_eq!(out.len(), train.len() * px);
    let count = train.len() as f64;
    for p in 0..px {
        let vals = out.iter().skip(p).step_by(px).map(|&v| v as f64);
        let mean = vals.clone().sum::<f64>() / count;
        let var = vals.map(|v| (v - mean).powi(2)).sum::<f64>() / count;
        assert!(mean.abs() < 1e-4, "pixel {p}: mean {mean}");
        // MNIST border pixels are constant zero: after the per-image step they are not, so every std is ≈ 1,
        // except pixels that are constant after it (std replaced by 1, values centred to 0).
        if n.std[p] != 1.0 {
            assert!((var.sqrt() - 1.0).abs() < 1e-3, "pixel {p}: std {}", var.sqrt());
        } else {
            assert!(var.sqrt() < 1e-3);
        }
    }
    // The test split goes through the same transform.
    assert_eq!(n.apply(src.test().unwrap()).len(), 1000 * px);
}

#[test]
fn normalizer_serde_round_trip() {
    let ds = Dataset {
        c: 1,
        h: 2,
        w: 2,
        pixels: (0..12).map(|i| (i * 37 % 256) as f32).collect(),
        labels: vec![0, 1, 2],
    };
    let n = Normalizer::fit(&ds, true, 150.0);
    let json = serde_json::to_string(&n).unwrap();
    let back: Normalizer = serde_json::from_str(&json).unwrap();
    assert_eq!(n, back);
    assert_eq!(n.apply(&ds), back.apply(&ds));
}
