//! Data sets: loaders for the formats users bring (fer2013-style CSV, image folders, MNIST-family IDX),
//! the paper's preprocessing ([`normalize::Normalizer`]), augmentation, batching and synthetic data.
//!
//! Every loader returns a [`DataSource`]: named splits of [`Dataset`]s holding raw intensities
//! (0..=255 as `f32`; one gray plane, or three colour planes where the network says `channels = 3`),
//! plus the class names. Loaders never panic on file contents: every problem becomes a
//! [`DataError`] whose one-line message names the file, the place (line, record, entry) and what was
//! expected.

pub mod augment;
pub mod batch;
pub mod cifar;
pub mod csv;
pub mod folder;
pub mod idx;
pub mod normalize;
pub mod synth;

use std::path::{Path, PathBuf};

/// Images with labels. pixels: `[n, c, h, w]` row-major (planes of one image together), raw
/// intensities 0..=255 as f32; `c` is 1 (gray) or 3 (red, green, blue).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub pixels: Vec<f32>,
    pub labels: Vec<i32>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values of one image: `c * h * w`.
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Pixels of image `i`, `c * h * w` values (plane after plane, each row-major). Panics if
    /// `i >= len()`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The images at `idx` (in that order, repeats allowed). Panics on an index `>= len()`.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let n = self.image_len();
        let mut pixels = Vec::with_capacity(idx.len() * n);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            pixels.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Dataset { c: self.c, h: self.h, w: self.w, pixels, labels }
    }

    /// Every image resized to `size` x `size` (bilinear, plane by plane).
    pub fn resized(&self, size: usize) -> Dataset {
        let mut pixels = Vec::with_capacity(self.len() * self.c * size * size);
        for i in 0..self.len() {
            pixels.extend(resize_planes(self.image(i), self.c, self.h, self.w, size, size));
        }
        Dataset { c: self.c, h: size, w: size, pixels, labels: self.labels.clone() }
    }

    /// Images per class `0..classes`; labels outside that range (e.g. -1, unlabelled) are not counted.
    pub fn class_counts(&self, classes: usize) -> Vec<usize> {
        let mut counts = vec![0; classes];
        for &l in &self.labels {
            if l >= 0 && (l as usize) < classes {
                counts[l as usize] += 1;
            }
        }
        counts
    }
}

/// Where a [`DataSource`] came from. Labels are class indices 0..classes; -1 = unlabelled (e.g. Kaggle
/// test.csv).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Fer2013Csv,
    KaggleCsv,
    ImageFolder,
    Idx,
    Cifar10,
    Synthetic,
}

impl Format {
    /// A short name for logs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Fer2013Csv => "fer2013-csv",
            Format::KaggleCsv => "kaggle-csv",
            Format::ImageFolder => "image-folder",
            Format::Idx => "idx",
            Format::Cifar10 => "cifar-10",
            Format::Synthetic => "synthetic",
        }
    }
}

/// A loaded data set: its format, the path it was loaded from, the class names (index = label) and the
/// non-empty splits in a fixed order ("train" first).
#[derive(Clone, Debug)]
pub struct DataSource {
    pub format: Format,
    pub path: String,
    pub class_names: Vec<String>,
    pub splits: Vec<(String, Dataset)>,
}

impl DataSource {
    pub fn split(&self, name: &str) -> Option<&Dataset> {
        self.splits.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }

    /// The "train" split; an error naming the path (and the splits it does have) if absent.
    pub fn train(&self) -> Result<&Dataset, DataError> {
        self.split("train").ok_or_else(|| DataError::MissingSplit {
            path: PathBuf::from(&self.path),
            split: "train".into(),
            available: self.splits.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>().join(", "),
        })
    }

    /// The held-out split used for the final test accuracy: "test", else "private_test".
    pub fn test(&self) -> Option<&Dataset> {
        self.split("test").or_else(|| self.split("private_test"))
    }

    /// Number of classes (`class_names.len()`).
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }
}

/// FER2013 class names in the CSV's index order.
pub const FER_CLASSES: [&str; 7] = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];

/// Everything that can go wrong loading data. Each message is one line naming the file, the place and
/// what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file or folder could not be opened, listed or read.
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A CSV problem at a line (1-based; line 1 is the header).
    #[error("{}: line {line}: {msg}", path.display())]
    Csv { path: PathBuf, line: usize, msg: String },
    /// A CSV file that holds no usable rows for a split it must have.
    #[error("{}: {msg}", path.display())]
    CsvContent { path: PathBuf, msg: String },
    /// An image file that could not be decoded.
    #[error("{}: cannot decode image: {msg}", path.display())]
    Image { path: PathBuf, msg: String },
    /// A problem with an image-folder layout (no class folders, an empty class folder, sizes that disagree).
    #[error("{}: {msg}", path.display())]
    Folder { path: PathBuf, msg: String },
    /// An IDX file problem (magic, header, truncation, counts).
    #[error("{}: {msg}", path.display())]
    Idx { path: PathBuf, msg: String },
    /// A CIFAR-10 batch file problem (truncation, labels, class names).
    #[error("{}: {msg}", path.display())]
    Cifar { path: PathBuf, msg: String },
    /// Images of other channels than the network takes (grayscale data for a colour network).
    #[error("{}: {msg}", path.display())]
    Channels { path: PathBuf, msg: String },
    /// A path whose format could not be detected.
    #[error("{}: {msg}", path.display())]
    Unrecognized { path: PathBuf, msg: String },
    /// A split that a caller needs but the data set lacks.
    #[error("{}: no `{split}` split (found: {available})", path.display())]
    MissingSplit { path: PathBuf, split: String, available: String },
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> DataError {
        DataError::Io { path: path.to_path_buf(), source }
    }
}

/// Makes a message one line (decoder errors sometimes carry newlines).
pub(crate) fn one_line(s: impl std::fmt::Display) -> String {
    s.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Detects the format of `path` and loads it as grayscale: [`load_channels`] with 1 channel.
pub fn load(path: &Path, size: Option<usize>, warn: &mut dyn FnMut(String)) -> Result<DataSource, DataError> {
    load_channels(path, size, 1, warn)
}

/// Detects the format of `path` and loads it with `channels` planes per image (1 gray, 3 colour).
///
/// - a file ending in `.csv` → fer2013-style CSV (or the Kaggle `train.csv` / `test.csv` variants);
/// - a directory holding `*idx3-ubyte` or `*idx3-ubyte.gz` files → IDX (MNIST family);
/// - a directory holding `data_batch_N.bin` or `test_batch.bin` → CIFAR-10 binary batches;
/// - a directory with `train/` (and usually `test/`) sub-folders of class folders → image folder;
/// - a directory that itself holds class folders → image folder with a single "train" split.
///
/// CSV and IDX files are grayscale: asked for 3 channels they are refused. Image folders decode
/// each file to gray (luma) or RGB; CIFAR-10 reads its colour planes, or their luma for 1 channel.
///
/// `size`: every image is resized (bilinear) to `size x size` when it isn't already; `warn` is called once
/// per split with a summary when any image was resized. `size = None` keeps native sizes: all images must
/// then agree.
pub fn load_channels(
    path: &Path,
    size: Option<usize>,
    channels: usize,
    warn: &mut dyn FnMut(String),
) -> Result<DataSource, DataError> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    let gray_only = |what: &str| -> Result<(), DataError> {
        if channels == 1 {
            return Ok(());
        }
        Err(DataError::Channels {
            path: path.to_path_buf(),
            msg: format!(
                "{what} holds grayscale images, the network takes {channels} channels (use channels = 1, or colour \
                 image folders or CIFAR-10)"
            ),
        })
    };
    if meta.is_file() {
        let is_csv = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if is_csv {
            gray_only("a fer2013-style CSV")?;
            return csv::load_csv(path, size, warn);
        }
        return Err(DataError::Unrecognized {
            path: path.to_path_buf(),
            msg: "unrecognized data file: expected a fer2013-style .csv file, an image-folder root, a folder of \
                  IDX files or of CIFAR-10 batches"
                .into(),
        });
    }
    if idx::looks_like_idx_dir(path)? {
        gray_only("an IDX folder")?;
        return idx::load_idx(path, size, warn);
    }
    if cifar::looks_like_cifar_dir(path) {
        return cifar::load_cifar(path, size, channels, warn);
    }
    if folder::looks_like_image_folder(path)? {
        return folder::load_folder(path, size, channels, warn);
    }
    Err(DataError::Unrecognized {
        path: path.to_path_buf(),
        msg: "unrecognized data folder: expected IDX files (train-images-idx3-ubyte[.gz], ...), CIFAR-10 batches \
              (data_batch_1.bin, ..., test_batch.bin), train/ and test/ folders of class folders, or class folders \
              of images"
            .into(),
    })
}

/// The data a command works on: `path`'s data set with images of `channels` planes resized to
/// `size`, or without a path the built-in synthetic faces ([`synth::source`]: `synth_count`
/// training faces, a fifth as many test faces, drawn from `seed`; grayscale), resized to `size`
/// where that is not their 48. Warnings (mixed image sizes, resizing) go to `warn`.
pub fn load_or_synth(
    path: Option<&Path>,
    size: usize,
    channels: usize,
    synth_count: usize,
    seed: u64,
    warn: &mut dyn FnMut(String),
) -> Result<DataSource, DataError> {
    if let Some(p) = path {
        return load_channels(p, Some(size), channels, warn);
    }
    if channels != 1 {
        return Err(DataError::Channels {
            path: PathBuf::from("<synthetic faces>"),
            msg: format!(
                "the built-in faces are grayscale, the network takes {channels} channels; give --data"
            ),
        });
    }
    let mut src = synth::source(synth_count, synth_count / 5, seed);
    for (name, ds) in &mut src.splits {
        if (ds.h, ds.w) != (size, size) {
            warn(format!(
                "resized {} synthetic images of {name} from {}x{} to {size}x{size}",
                ds.len(),
                ds.h,
                ds.w
            ));
            *ds = ds.resized(size);
        }
    }
    Ok(src)
}

/// [`resize_bilinear`] for each of the `c` planes of one image.
pub fn resize_planes(src: &[f32], c: usize, h: usize, w: usize, nh: usize, nw: usize) -> Vec<f32> {
    if h == nh && w == nw {
        return src.to_vec();
    }
    let area = h * w;
    (0..c).flat_map(|p| resize_bilinear(&src[p * area..(p + 1) * area], h, w, nh, nw)).collect()
}

/// Resizes one image (`h x w`, row-major) to `nh x nw` by bilinear interpolation with pixel centres aligned
/// (the convention of OpenCV's `INTER_LINEAR` and PIL without antialiasing). Returns a copy when the size
/// is unchanged. An empty source gives zeros.
pub fn resize_bilinear(src: &[f32], h: usize, w: usize, nh: usize, nw: usize) -> Vec<f32> {
    if h == nh && w == nw {
        return src.to_vec();
    }
    let mut out = vec![0.0f32; nh * nw];
    if h == 0 || w == 0 || src.len() < h * w {
        return out;
    }
    // Source coordinate of each destination index along one axis: (index, next index, weight of next).
    let axis = |n: usize, nn: usize| -> Vec<(usize, usize, f32)> {
        let scale = n as f64 / nn as f64;
        (0..nn)
            .map(|i| {
                let s = ((i as f64 + 0.5) * scale - 0.5).clamp(0.0, (n - 1) as f64);
                let i0 = s.floor() as usize;
                let i1 = (i0 + 1).min(n - 1);
                (i0, i1, (s - i0 as f64) as f32)
            })
            .collect()
    };
    let ys = axis(h, nh);
    let xs = axis(w, nw);
    for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
        let r0 = &src[y0 * w..(y0 + 1) * w];
        let r1 = &src[y1 * w..(y1 + 1) * w];
        let orow = &mut out[oy * nw..(oy + 1) * nw];
        for (o, &(x0, x1, fx)) in orow.iter_mut().zip(&xs) {
            let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
            let bot = r1[x0] + (r1[x1] - r1[x0]) * fx;
            *o = top + (bot - top) * fy;
        }
    }
    out
}

/// Collects the images of one split, resizing to `size x size` where needed and counting what was resized,
/// so that the loaders can warn once per split.
pub(crate) struct SplitBuilder {
    pub name: String,
    pub size: Option<usize>,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub pixels: Vec<f32>,
    pub labels: Vec<i32>,
    resized: usize,
    from_sizes: Vec<(usize, usize)>,
}

impl SplitBuilder {
    pub fn new(name: &str, size: Option<usize>, c: usize) -> SplitBuilder {
        SplitBuilder {
            name: name.to_string(),
            size,
            c,
            h: size.unwrap_or(0),
            w: size.unwrap_or(0),
            pixels: Vec::new(),
            labels: Vec::new(),
            resized: 0,
            from_sizes: Vec::new(),
        }
    }

    /// Adds one image of native size `h x w` (`c` planes). With `size = None` the first image fixes the split's size and a
    /// later image of another size is refused: `Err((expected h, expected w))`.
    pub fn push(&mut self, img: &[f32], h: usize, w: usize, label: i32) -> Result<(), (usize, usize)> {
        match self.size {
            Some(s) => {
                if h == s && w == s {
                    self.pixels.extend_from_slice(img);
                } else {
                    self.pixels.extend(resize_planes(img, self.c, h, w, s, s));
                    self.resized += 1;
                    if !self.from_sizes.contains(&(h, w)) {
                        self.from_sizes.push((h, w));
                    }
                }
            }
            None => {
                if self.labels.is_empty() && self.h == 0 && self.w == 0 {
                    self.h = h;
                    self.w = w;
                } else if (h, w) != (self.h, self.w) {
                    return Err((self.h, self.w));
                }
                self.pixels.extend_from_slice(img);
            }
        }
        self.labels.push(label);
        Ok(())
    }

    /// Fixes the expected size before any image is pushed (used so every split of a source agrees).
    pub fn expect_size(&mut self, h: usize, w: usize) {
        if self.size.is_none() {
            self.h = h;
            self.w = w;
        }
    }

    /// The finished dataset; calls `warn` once if any image was resized.
    pub fn finish(self, warn: &mut dyn FnMut(String)) -> Dataset {
        if self.resized > 0 {
            let from: Vec<String> = self.from_sizes.iter().take(4).map(|(h, w)| format!("{w}x{h}")).collect();
            let more = if self.from_sizes.len() > 4 { ", ..." } else { "" };
            warn(format!(
                "resized {} images of {} from {}{} to {}x{}",
                self.resized,
                self.name,
                from.join(", "),
                more,
                self.w,
                self.h
            ));
        }
        Dataset { c: self.c, h: self.h, w: self.w, pixels: self.pixels, labels: self.labels }
    }
}
