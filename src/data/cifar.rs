//! CIFAR-10 in its binary layout (`cifar-10-batches-bin/`): `data_batch_1.bin` .. `data_batch_5.bin`
//! (the training split) and `test_batch.bin`, each a run of 3073-byte records: one label byte
//! (0..=9), then the 32x32 image as three 1024-byte planes, red, green, blue, each row-major; and
//! `batches.meta.txt` with the class names, one per line. Images load as 3-channel planes, or as
//! one gray plane (ITU-R BT.601 luma) for a network with `channels = 1`.

use std::path::{Path, PathBuf};

use super::{DataError, DataSource, Format, SplitBuilder};

/// Bytes of one record: a label and 3 planes of 32x32.
pub const RECORD: usize = 1 + 3 * 32 * 32;
/// The training batch files, in the order their records are taken.
pub const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
pub const TEST_FILE: &str = "test_batch.bin";
pub const META_FILE: &str = "batches.meta.txt";
/// The classes when `batches.meta.txt` is absent, in label order.
pub const CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Whether `dir` holds CIFAR-10 binary batches.
pub fn looks_like_cifar_dir(dir: &Path) -> bool {
    TRAIN_FILES.iter().chain([&TEST_FILE]).any(|f| dir.join(f).is_file())
}

fn err(path: &Path, msg: String) -> DataError {
    DataError::Cifar { path: path.to_path_buf(), msg }
}

/// The class names of `batches.meta.txt` (blank lines ignored), else [`CLASSES`].
fn class_names(dir: &Path) -> Result<Vec<String>, DataError> {
    let meta = dir.join(META_FILE);
    if !meta.is_file() {
        return Ok(CLASSES.iter().map(|s| s.to_string()).collect());
    }
    let text = std::fs::read_to_string(&meta).map_err(|e| DataError::io(&meta, e))?;
    let names: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.len() != 10 {
        return Err(err(&meta, format!("{} class names, expected 10 (one per line)", names.len())));
    }
    Ok(names)
}

/// Appends the records of one batch file to `split`.
fn read_batch(
    path: &Path,
    channels: usize,
    classes: usize,
    split: &mut SplitBuilder,
) -> Result<(), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.is_empty() {
        return Err(err(
            path,
            "empty file; expected 3073-byte records (a label byte, then 3072 pixel bytes)".into(),
        ));
    }
    if bytes.len() % RECORD != 0 {
        let whole = bytes.len() / RECORD;
        return Err(err(
            path,
            format!(
                "{} bytes is not a whole number of 3073-byte records: record {whole} is truncated after {} bytes",
                bytes.len(),
                bytes.len() - whole * RECORD
            ),
        ));
    }
    let plane = 32 * 32;
    let mut img = vec![0.0f32; channels * plane];
    for (r, rec) in bytes.chunks_exact(RECORD).enumerate() {
        let label = rec[0] as usize;
        if label >= classes {
            return Err(err(path, format!("record {r}: label {label}, expected 0..={}", classes - 1)));
        }
        let px = &rec[1..];
        if channels == 3 {
            for (o, &b) in img.iter_mut().zip(px) {
                *o = b as f32;
            }
        } else {
            for i in 0..plane {
                let (r, g, b) = (px[i] as f32, px[plane + i] as f32, px[2 * plane + i] as f32);
                img[i] = 0.299 * r + 0.587 * g + 0.114 * b;
            }
        }
        split.push(&img, 32, 32, label as i32).map_err(|_| err(path, format!("record {r}: not 32x32")))?;
    }
    Ok(())
}

/// Loads the CIFAR-10 folder `dir`: a "train" split of every `data_batch_N.bin` present, a "test"
/// split of `test_batch.bin`; images resized to `size` when given; `channels` 3 (colour planes) or
/// 1 (gray).
pub fn load_cifar(
    dir: &Path,
    size: Option<usize>,
    channels: usize,
    warn: &mut dyn FnMut(String),
) -> Result<DataSource, DataError> {
    if channels != 1 && channels != 3 {
        return Err(err(
            dir,
            format!("CIFAR-10 images have 3 colour channels (or 1 as gray), the network asks for {channels}"),
        ));
    }
    let classes = class_names(dir)?;
    let mut splits = Vec::new();
    let train_files: Vec<PathBuf> = TRAIN_FILES.iter().map(|f| dir.join(f)).filter(|p| p.is_file()).collect();
    if train_files.is_empty() {
        return Err(err(
            dir,
            format!("no training batch: expected {} .. {}", TRAIN_FILES[0], TRAIN_FILES[4]),
        ));
    }
    let mut train = SplitBuilder::new("train", size, channels);
    for p in &train_files {
        read_batch(p, channels, classes.len(), &mut train)?;
    }
    splits.push(("train".to_string(), train.finish(warn)));
    let test_path = dir.join(TEST_FILE);
    if test_path.is_file() {
        let mut test = SplitBuilder::new("test", size, channels);
        read_batch(&test_path, channels, classes.len(), &mut test)?;
        splits.push(("test".to_string(), test.finish(warn)));
    }
    Ok(DataSource { format: Format::Cifar10, path: dir.display().to_string(), class_names: classes, splits })
}
