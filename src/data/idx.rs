//! IDX files (the MNIST family): `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
//! `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]` (`test-` is accepted for `t10k-`, and so are
//! names that merely contain `train` / `t10k` / `test` and end in `idx3-ubyte` / `idx1-ubyte`, like
//! `emnist-digits-train-images-idx3-ubyte` or Kaggle's `train-images.idx3-ubyte`). Gzip is detected by the
//! magic bytes `1f 8b`, whatever the name. When both `x` and `x.gz` exist, the uncompressed `x` is read.
//!
//! Layout: a big-endian u32 magic (0x00000803 for images with dims n, rows, cols; 0x00000801 for labels with
//! dim n), the dims as big-endian u32, then the unsigned bytes. Declared sizes are checked against the file
//! (or the decompressed stream, read incrementally) before anything of that size is allocated.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::{DataError, DataSource, Format, SplitBuilder};

pub const IMAGES_MAGIC: u32 = 0x0000_0803;
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Largest rows x cols accepted (4096 x 4096).
const MAX_IMAGE_PIXELS: u64 = 1 << 24;
/// Largest data payload accepted from one file (8 GiB).
const MAX_PAYLOAD: u64 = 8 << 30;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Images,
    Labels,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Split {
    Train,
    Test,
}

/// What a file name says about an IDX file: (split, kind, name without `.gz`).
fn classify(name: &str) -> Option<(Split, Kind, String)> {
    let lower = name.to_ascii_lowercase();
    let stem = lower.strip_suffix(".gz").unwrap_or(&lower).to_string();
    let kind = if stem.ends_with("idx3-ubyte") {
        Kind::Images
    } else if stem.ends_with("idx1-ubyte") {
        Kind::Labels
    } else {
        return None;
    };
    let split = if stem.contains("train") {
        Split::Train
    } else if stem.contains("t10k") || stem.contains("test") {
        Split::Test
    } else {
        return None;
    };
    Some((split, kind, stem))
}

fn idx_files(dir: &Path) -> Result<Vec<(Split, Kind, String, PathBuf)>, DataError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !p.is_file() {
            continue;
        }
        if let Some((s, k, stem)) = classify(&name) {
            out.push((s, k, stem, p));
        }
    }
    out.sort_by(|a, b| a.3.cmp(&b.3));
    Ok(out)
}

/// True when `dir` holds a `*idx3-ubyte` or `*idx3-ubyte.gz` file.
pub fn looks_like_idx_dir(dir: &Path) -> Result<bool, DataError> {
    Ok(idx_files(dir)?.iter().any(|(_, k, _, _)| *k == Kind::Images))
}

/// The one file for (split, kind): an uncompressed file wins over its `.gz` twin; two unrelated names are an
/// error.
fn pick(
    dir: &Path,
    files: &[(Split, Kind, String, PathBuf)],
    split: Split,
    kind: Kind,
) -> Result<Option<PathBuf>, DataError> {
    let cands: Vec<&(Split, Kind, String, PathBuf)> =
        files.iter().filter(|(s, k, _, _)| *s == split && *k == kind).collect();
    let Some(first) = cands.first() else { return Ok(None) };
    if let Some(other) = cands.iter().find(|c| c.2 != first.2) {
        return Err(DataError::Idx {
            path: dir.to_path_buf(),
            msg: format!(
                "ambiguous IDX files: both `{}` and `{}` could be the same file; keep one",
                first.3.file_name().unwrap_or_default().to_string_lossy(),
                other.3.file_name().unwrap_or_default().to_string_lossy()
            ),
        });
    }
    let plain = cands.iter().find(|c| !c.3.to_string_lossy().to_ascii_lowercase().ends_with(".gz"));
    Ok(Some(plain.unwrap_or(first).3.clone()))
}

/// Reads one IDX file of unsigned bytes: checks the magic, returns the dims and the data.
fn read_idx(path: &Path, magic: u32, ndims: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let err = |msg: String| DataError::Idx { path: path.to_path_buf(), msg };
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    let mut sig = Vec::with_capacity(2);
    (&mut file).take(2).read_to_end(&mut sig).map_err(|e| DataError::io(path, e))?;
    let gz = sig == [0x1f, 0x8b];
    let prefix = std::io::Cursor::new(sig);
    let mut reader: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(BufReader::new(prefix.chain(file))))
    } else {
        Box::new(BufReader::new(prefix.chain(file)))
    };
    let read_err = |e: std::io::Error| {
        if gz {
            err(format!("corrupt gzip data: {}", super::one_line(e)))
        } else {
            DataError::io(path, e)
        }
    };
    let what = if magic == IMAGES_MAGIC { "images" } else { "labels" };
    let header_len = 4 + 4 * ndims as u64;
    let mut head = Vec::new();
    (&mut reader).take(header_len).read_to_end(&mut head).map_err(read_err)?;
    let gz_note = if gz { " (after gunzip)" } else { "" };
    if head.len() < 4 {
        return Err(err(format!(
            "truncated: expected at least {header_len} header bytes, found {}{gz_note}",
            head.len()
        )));
    }
    let be = |i: usize| -> u32 {
        let b = head.get(i..i + 4).unwrap_or(&[0, 0, 0, 0]);
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    };
    let found = be(0);
    if found != magic {
        let hint = match found {
            IMAGES_MAGIC => " (this is an images file)",
            LABELS_MAGIC => " (this is a labels file)",
            _ if found >> 8 == 0x08 => " (unsigned bytes, but another number of dimensions)",
            _ if found >> 16 == 0 => " (an element type other than unsigned bytes)",
            _ => "",
        };
        return Err(err(format!(
            "wrong magic number 0x{found:08x}, expected 0x{magic:08x} (IDX {what}, unsigned bytes, \
             {ndims} dims){hint}"
        )));
    }
    if (head.len() as u64) < header_len {
        return Err(err(format!(
            "truncated header: expected {header_len} bytes, found {}{gz_note}",
            head.len()
        )));
    }
    let dims: Vec<usize> = (0..ndims).map(|d| be(4 + 4 * d) as usize).collect();
    if dims.first() == Some(&0) {
        return Err(err(format!("header declares 0 {what}")));
    }
    let per_item: u64 = dims.iter().skip(1).map(|&d| d as u64).product();
    if ndims == 3 && (per_item == 0 || per_item > MAX_IMAGE_PIXELS) {
        return Err(err(format!(
            "header declares {}x{} images, expected between 1x1 and 4096x4096",
            dims.get(1).copied().unwrap_or(0),
            dims.get(2).copied().unwrap_or(0)
        )));
    }
    let payload = per_item.saturating_mul(dims.first().copied().unwrap_or(0) as u64);
    let shape = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" x ");
    let total = header_len.saturating_add(payload);
    if !gz && file_len != total {
        return Err(err(if file_len < total {
            format!(
                "truncated: expected {total} bytes ({header_len}-byte header + {shape}), found {file_len}"
            )
        } else {
            format!(
                "{} bytes after the declared data: expected {total} bytes ({header_len}-byte header + \
                 {shape}), found {file_len}",
                file_len - total
            )
        }));
    }
    if payload > MAX_PAYLOAD {
        return Err(err(format!(
            "header declares {shape} = {payload} bytes of data, more than the 8 GiB this loader accepts"
        )));
    }
    // Grows with the data actually present: a false declared size cannot cause a large allocation.
    let mut data = Vec::with_capacity(if gz { 0 } else { payload as usize });
    reader.take(payload + 1).read_to_end(&mut data).map_err(read_err)?;
    let got = data.len() as u64;
    if got < payload {
        return Err(err(format!(
            "truncated: expected {total} bytes ({header_len}-byte header + {shape}), found {}{gz_note}",
            header_len + got
        )));
    }
    if got > payload {
        return Err(err(format!(
            "data continues after the declared {total} bytes ({header_len}-byte header + {shape}){gz_note}"
        )));
    }
    Ok((dims, data))
}

/// Reads an IDX images file: `(n, rows, cols, bytes)`.
pub fn read_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let (dims, data) = read_idx(path, IMAGES_MAGIC, 3)?;
    let d = |i: usize| dims.get(i).copied().unwrap_or(0);
    Ok((d(0), d(1), d(2), data))
}

/// Reads an IDX labels file.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    Ok(read_idx(path, LABELS_MAGIC, 1)?.1)
}

/// Loads a folder of IDX files (see the module docs): splits "train" and "test" (when its files exist).
/// `size`/`warn` as in [`super::load`].
pub fn load_idx(
    dir: &Path,
    size: Option<usize>,
    warn: &mut dyn FnMut(String),
) -> Result<DataSource, DataError> {
    let files = idx_files(dir)?;
    let train_images = pick(dir, &files, Split::Train, Kind::Images)?;
    let train_labels = pick(dir, &files, Split::Train, Kind::Labels)?;
    let (Some(train_images), Some(train_labels)) = (train_images, train_labels) else {
        return Err(DataError::Idx {
            path: dir.to_path_buf(),
            msg: "missing training files: expected train-images-idx3-ubyte[.gz] and \
                  train-labels-idx1-ubyte[.gz]"
                .into(),
        });
    };
    let test_images = pick(dir, &files, Split::Test, Kind::Images)?;
    let test_labels = pick(dir, &files, Split::Test, Kind::Labels)?;
    let test = match (test_images, test_labels) {
        (Some(i), Some(l)) => Some((i, l)),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(DataError::Idx {
                path: dir.to_path_buf(),
                msg: "incomplete test files: expected both t10k-images-idx3-ubyte[.gz] and \
                      t10k-labels-idx1-ubyte[.gz] (or neither)"
                    .into(),
            })
        }
    };

    let mut parts = vec![("train", train_images, train_labels)];
    if let Some((i, l)) = test {
        parts.push(("test", i, l));
    }
    let mut loaded = Vec::new();
    for (name, ipath, lpath) in parts {
        let (n, rows, cols, px) = read_images(&ipath)?;
        let labels = read_labels(&lpath)?;
        if labels.len() != n {
            return Err(DataError::Idx {
                path: ipath.clone(),
                msg: format!(
                    "holds {n} images but {} holds {} labels; the counts must agree",
                    lpath.display(),
                    labels.len()
                ),
            });
        }
        loaded.push((name, ipath, rows, cols, px, labels));
    }

    let max_label = loaded.iter().flat_map(|p| p.5.iter()).copied().max().unwrap_or(0) as usize;
    let classes = (max_label + 1).max(10);
    let mut splits = Vec::new();
    let mut native: Option<(usize, usize)> = None;
    for (name, ipath, rows, cols, px, labels) in loaded {
        if size.is_none() {
            if let Some((h, w)) = native {
                if (h, w) != (rows, cols) {
                    return Err(DataError::Idx {
                        path: ipath,
                        msg: format!(
                            "images are {cols}x{rows} but the training images are {w}x{h}; all must have one \
                             size (or pass a size to resize them)"
                        ),
                    });
                }
            }
        }
        native.get_or_insert((rows, cols));
        let mut b = SplitBuilder::new(name, size, 1);
        let per = rows * cols;
        let mut img = Vec::with_capacity(per);
        for (chunk, &l) in px.chunks_exact(per).zip(&labels) {
            img.clear();
            img.extend(chunk.iter().map(|&v| f32::from(v)));
            b.push(&img, rows, cols, i32::from(l))
                .map_err(|_| DataError::Idx { path: ipath.clone(), msg: "image size mismatch".into() })?;
        }
        splits.push((name.to_string(), b.finish(warn)));
    }

    Ok(DataSource {
        format: Format::Idx,
        path: dir.display().to_string(),
        class_names: (0..classes).map(|c| c.to_string()).collect(),
        splits,
    })
}
