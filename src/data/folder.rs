//! Image-folder data sets: `<root>/<split>/<class>/*.{png,jpg,jpeg}`, or `<root>/<class>/*` for a single
//! "train" split.
//!
//! Split folders (matched case-insensitively): `train`, `val` or `validation` (→ "val"), `test`; other
//! folders beside them are ignored. Image extensions are matched case-insensitively; other files, and files
//! or folders whose name starts with `.`, are ignored. Images are converted to grayscale (luma) and kept in
//! file-name order within each class, classes in index order. With no `size`, every image of every split
//! must have the same size.
//!
//! Classes: if every class folder name is (case-insensitively) one of [`FER_CLASSES`], labels follow the FER
//! index order and `class_names` is all seven FER names, present or not. Otherwise `class_names` is the union
//! of the class folder names of all splits, sorted, with the same mapping in every split.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use super::{one_line, DataError, DataSource, Dataset, Format, SplitBuilder, FER_CLASSES};

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];
/// Largest width or height accepted from an image file.
const MAX_SIDE: u32 = 1 << 14;

fn is_hidden(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn name_of(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Entries of a directory (not hidden), sorted by name, split into (sub-directories, files).
fn list_dir(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), DataError> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let p = entry.path();
        if is_hidden(&p) {
            continue;
        }
        // Follow symbolic links; an entry whose metadata cannot be read is named in the error.
        let meta = std::fs::metadata(&p).map_err(|e| DataError::io(&p, e))?;
        if meta.is_dir() {
            dirs.push(p);
        } else if meta.is_file() {
            files.push(p);
        }
    }
    dirs.sort();
    files.sort();
    Ok((dirs, files))
}

/// True when `dir` holds at least one (non-hidden) sub-folder: split folders or class folders.
pub fn looks_like_image_folder(dir: &Path) -> Result<bool, DataError> {
    Ok(!list_dir(dir)?.0.is_empty())
}

/// The split a folder name stands for, if any.
fn split_of(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "train" => Some("train"),
        "val" | "validation" => Some("val"),
        "test" => Some("test"),
        _ => None,
    }
}

/// A decoded image: `(h, w, pixels)`, pixels plane after plane (one gray plane, or red, green,
/// blue), each row-major, 0..=255.
pub type GrayPixels = (usize, usize, Vec<f32>);

/// Class folder name and its image files.
type ClassFiles = (String, Vec<PathBuf>);

/// Decodes one image file at its native size to `channels` planes: 1 (luma) or 3 (red, green,
/// blue planes): `(h, w, pixels 0..=255)`.
pub fn load_image(path: &Path, channels: usize) -> Result<GrayPixels, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_image(&bytes, channels, path)
}

/// [`load_image`] of a file's contents `bytes` (PNG or JPEG, told by their first bytes, else by
/// the extension of `path`), `path` naming the file in errors: what `predict` reads, natively and
/// in the browser page.
pub fn decode_image(bytes: &[u8], channels: usize, path: &Path) -> Result<GrayPixels, DataError> {
    let image_err = |msg: String| DataError::Image { path: path.to_path_buf(), msg };
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| image_err(one_line(e)))?;
    if reader.format().is_none() {
        // Unknown magic bytes: let the decoder for the extension report what is wrong.
        if let Some(f) = path.extension().and_then(image::ImageFormat::from_extension) {
            reader.set_format(f);
        }
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| {
        image_err(format!("{}; expected a complete PNG or JPEG file", one_line(e).trim_end_matches('.')))
    })?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(image_err(format!("image is {w}x{h}, expected a non-empty image")));
    }
    if channels == 3 {
        let rgb = img.to_rgb8().into_raw();
        let planes = (0..3).flat_map(|c| rgb.iter().skip(c).step_by(3).map(|&v| f32::from(v))).collect();
        return Ok((h, w, planes));
    }
    Ok((h, w, img.to_luma8().into_raw().into_iter().map(f32::from).collect()))
}

/// Decodes `files` on a few threads, results in the same order.
fn decode_all(files: &[PathBuf], channels: usize) -> Vec<Result<GrayPixels, DataError>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    if threads == 1 || files.len() < 64 {
        return files.iter().map(|p| load_image(p, channels)).collect();
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(|p| load_image(p, channels)).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(files.len());
        for (h, c) in handles.into_iter().zip(files.chunks(chunk)) {
            match h.join() {
                Ok(v) => out.extend(v),
                // A decoder panic is turned into an error naming the first file of the chunk.
                Err(_) => {
                    out.extend(c.iter().map(|p| {
                        Err(DataError::Image { path: p.clone(), msg: "the decoder panicked".into() })
                    }))
                }
            }
        }
        out
    })
}

/// Loads an image-folder data set (see the module docs) with `channels` planes per image (1 gray,
/// 3 colour). `size`/`warn` as in [`super::load`].
pub fn load_folder(
    root: &Path,
    size: Option<usize>,
    channels: usize,
    warn: &mut dyn FnMut(String),
) -> Result<DataSource, DataError> {
    let (subdirs, _) = list_dir(root)?;

    // (split name, split folder), in the order train, val, test.
    let mut split_dirs: Vec<(&'static str, PathBuf)> = Vec::new();
    for d in &subdirs {
        if let Some(s) = split_of(&name_of(d)) {
            if let Some((_, other)) = split_dirs.iter().find(|(n, _)| *n == s) {
                return Err(DataError::Folder {
                    path: root.to_path_buf(),
                    msg: format!(
                        "both `{}` and `{}` are the `{s}` split; keep one",
                        name_of(other),
                        name_of(d)
                    ),
                });
            }
            split_dirs.push((s, d.clone()));
        }
    }
    if split_dirs.is_empty() {
        split_dirs.push(("train", root.to_path_buf()));
    }
    let order = |s: &str| ["train", "val", "test"].iter().position(|x| *x == s).unwrap_or(3);
    split_dirs.sort_by_key(|(s, _)| order(s));

    // Class folders and their image files, per split.
    let mut splits: Vec<(&'static str, Vec<ClassFiles>)> = Vec::new();
    for (split, dir) in &split_dirs {
        let (class_dirs, _) = list_dir(dir)?;
        if class_dirs.is_empty() {
            return Err(DataError::Folder {
                path: dir.clone(),
                msg: format!(
                    "no class folders: expected {}<class>/*.png|jpg|jpeg",
                    if dir == root { String::new() } else { format!("{}/", name_of(dir)) }
                ),
            });
        }
        let mut classes = Vec::new();
        for cdir in class_dirs {
            let (_, files) = list_dir(&cdir)?;
            let images: Vec<PathBuf> = files.into_iter().filter(|f| has_image_extension(f)).collect();
            if images.is_empty() {
                return Err(DataError::Folder {
                    path: cdir.clone(),
                    msg: format!("class folder `{}` holds no .png, .jpg or .jpeg images", name_of(&cdir)),
                });
            }
            classes.push((name_of(&cdir), images));
        }
        splits.push((split, classes));
    }

    // Class mapping shared by every split.
    let all_names: Vec<&String> = splits.iter().flat_map(|(_, c)| c.iter().map(|(n, _)| n)).collect();
    let fer = all_names.iter().all(|n| FER_CLASSES.iter().any(|f| n.eq_ignore_ascii_case(f)));
    let class_names: Vec<String> = if fer {
        FER_CLASSES.iter().map(|s| s.to_string()).collect()
    } else {
        let mut v: Vec<String> = all_names.iter().map(|s| s.to_string()).collect();
        v.sort();
        v.dedup();
        v
    };
    let label_of = |name: &str| -> i32 {
        let i = if fer {
            class_names.iter().position(|c| c.eq_ignore_ascii_case(name))
        } else {
            class_names.iter().position(|c| c == name)
        };
        i.map_or(-1, |i| i as i32)
    };

    let mut out: Vec<(String, Dataset)> = Vec::new();
    let mut native: Option<(usize, usize)> = None;
    for (split, classes) in splits {
        // Files in label order, then file-name order.
        let mut jobs: Vec<(i32, PathBuf)> = classes
            .into_iter()
            .flat_map(|(n, files)| files.into_iter().map(move |f| (n.clone(), f)))
            .map(|(n, f)| (label_of(&n), f))
            .collect();
        jobs.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let files: Vec<PathBuf> = jobs.iter().map(|(_, f)| f.clone()).collect();
        let decoded = decode_all(&files, channels);

        let mut b = SplitBuilder::new(split, size, channels);
        if let Some((h, w)) = native {
            b.expect_size(h, w);
        }
        for ((label, file), result) in jobs.iter().zip(decoded) {
            let (h, w, px) = result?;
            b.push(&px, h, w, *label).map_err(|(eh, ew)| DataError::Folder {
                path: file.clone(),
                msg: format!(
                    "image is {w}x{h} but earlier images are {ew}x{eh}; all images must have one size \
                     (or pass a size to resize them)"
                ),
            })?;
        }
        if native.is_none() {
            native = Some((b.h, b.w));
        }
        out.push((split.to_string(), b.finish(warn)));
    }

    Ok(DataSource { format: Format::ImageFolder, path: root.display().to_string(), class_names, splits: out })
}
