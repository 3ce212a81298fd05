//! Run reports: the metrics CSV files (one row per epoch in `metrics.csv`, one per logging
//! interval in `steps.csv`), the learning-curve chart, the first-layer filter grid, and the
//! confusion matrix (text and PNG).
//!
//! Every PNG is drawn on a plain RGB raster with a built-in 5x7 bitmap font, and written
//! atomically: to `path.with_extension("png.tmp")` first, then renamed over `path`, after
//! creating the parent directories.

mod canvas;
mod confusion;
mod curve;
mod filters;
mod font;

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub use confusion::{confusion_png, confusion_png_size, confusion_table, per_class_accuracy, CONFUSION_DARK};
pub use curve::{error_curves_png, learning_curve_png, ErrorCurve, CURVE_HEIGHT, CURVE_WIDTH};
pub use filters::{filter_grid_png, FilterGridLayout, FILTER_GAP_COLOR, FILTER_NAN_COLOR};

/// A row type of a metrics CSV file: its columns, and how a row is written and read back.
pub trait CsvRow: Sized {
    const COLUMNS: &'static [&'static str];
    /// The row's step (rows past a resumed checkpoint's step are dropped).
    fn step(&self) -> u64;
    /// One cell per column.
    fn cells(&self) -> Vec<String>;
    /// Parses one line's cells (as many as [`CsvRow::COLUMNS`]); the error names the column.
    fn parse(cells: &[&str]) -> Result<Self, String>;
}

/// One row of `metrics.csv`: an epoch's mean training loss and accuracy and, where the data has a
/// test split, the test objective and accuracy.
///
/// Accuracies are fractions in `[0, 1]`; `test_*` are `None` where no evaluation ran.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct MetricsRow {
    pub epoch: f64,
    pub step: u64,
    pub lr: f64,
    pub momentum: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: Option<f64>,
    pub test_acc: Option<f64>,
    pub images_per_sec: f64,
    pub elapsed_s: f64,
}

/// The column names of `metrics.csv`, in [`MetricsRow`]'s field order.
pub const METRICS_COLUMNS: [&str; 10] = [
    "epoch",
    "step",
    "lr",
    "momentum",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "images_per_sec",
    "elapsed_s",
];

/// One row of `steps.csv`: a logging interval (`--log-every` steps) ending at `step`, with the
/// learning rate and momentum of its last step, its mean loss, its training accuracy and the
/// throughput over the interval.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct StepRow {
    pub step: u64,
    pub epoch: f64,
    pub lr: f64,
    pub momentum: f64,
    pub loss: f64,
    pub accuracy: f64,
    pub images_per_sec: f64,
    pub elapsed_s: f64,
}

/// The column names of `steps.csv`, in [`StepRow`]'s field order.
pub const STEP_COLUMNS: [&str; 8] =
    ["step", "epoch", "lr", "momentum", "loss", "accuracy", "images_per_sec", "elapsed_s"];

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| v.to_string())
}

/// Cell `i` of `cells` as a number; an error naming the column of `columns`.
fn num(cells: &[&str], columns: &[&str], i: usize) -> Result<f64, String> {
    cells[i]
        .parse::<f64>()
        .map_err(|_| format!("column {} ({}): {:?} is not a number", i + 1, columns[i], cells[i]))
}

fn opt_num(cells: &[&str], columns: &[&str], i: usize) -> Result<Option<f64>, String> {
    if cells[i].is_empty() {
        Ok(None)
    } else {
        num(cells, columns, i).map(Some)
    }
}

fn whole(cells: &[&str], columns: &[&str], i: usize) -> Result<u64, String> {
    cells[i].parse::<u64>().map_err(|_| {
        format!("column {} ({}): {:?} is not a non-negative integer", i + 1, columns[i], cells[i])
    })
}

// Floats use Rust's shortest round-trip form, so reading a file back gives the same values bit for
// bit (NaN and infinities included).
impl CsvRow for MetricsRow {
    const COLUMNS: &'static [&'static str] = &METRICS_COLUMNS;
    fn step(&self) -> u64 {
        self.step
    }
    fn cells(&self) -> Vec<String> {
        let r = self;
        vec![
            r.epoch.to_string(),
            r.step.to_string(),
            r.lr.to_string(),
            r.momentum.to_string(),
            r.train_loss.to_string(),
            r.train_acc.to_string(),
            opt(r.test_loss),
            opt(r.test_acc),
            r.images_per_sec.to_string(),
            r.elapsed_s.to_string(),
        ]
    }
    fn parse(c: &[&str]) -> Result<Self, String> {
        let k = Self::COLUMNS;
        Ok(MetricsRow {
            epoch: num(c, k, 0)?,
            step: whole(c, k, 1)?,
            lr: num(c, k, 2)?,
            momentum: num(c, k, 3)?,
            train_loss: num(c, k, 4)?,
            train_acc: num(c, k, 5)?,
            test_loss: opt_num(c, k, 6)?,
            test_acc: opt_num(c, k, 7)?,
            images_per_sec: num(c, k, 8)?,
            elapsed_s: num(c, k, 9)?,
        })
    }
}

impl CsvRow for StepRow {
    const COLUMNS: &'static [&'static str] = &STEP_COLUMNS;
    fn step(&self) -> u64 {
        self.step
    }
    fn cells(&self) -> Vec<String> {
        let r = self;
        [r.epoch, r.lr, r.momentum, r.loss, r.accuracy, r.images_per_sec, r.elapsed_s].iter().fold(
            vec![r.step.to_string()],
            |mut v, x| {
                v.push(x.to_string());
                v
            },
        )
    }
    fn parse(c: &[&str]) -> Result<Self, String> {
        let k = Self::COLUMNS;
        Ok(StepRow {
            step: whole(c, k, 0)?,
            epoch: num(c, k, 1)?,
            lr: num(c, k, 2)?,
            momentum: num(c, k, 3)?,
            loss: num(c, k, 4)?,
            accuracy: num(c, k, 5)?,
            images_per_sec: num(c, k, 6)?,
            elapsed_s: num(c, k, 7)?,
        })
    }
}

fn header_line<R: CsvRow>() -> String {
    R::COLUMNS.join(",")
}

/// Appends rows to a metrics CSV file: the header is written when the file is new or empty, and
/// the file is flushed after every row so that a crash loses at most the row being written.
pub struct CsvLog<R> {
    path: PathBuf,
    file: File,
    _rows: std::marker::PhantomData<R>,
}

/// The `metrics.csv` writer.
pub type MetricsCsv = CsvLog<MetricsRow>;

impl<R: CsvRow> CsvLog<R> {
    /// Opens (creating it and its parent directories if needed) `path` for appending. An
    /// existing non-empty file must start with the header; a last line cut short by a crash is
    /// terminated so that new rows start on a line of their own.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            writeln!(file, "{}", header_line::<R>())?;
        } else {
            let mut first = Vec::new();
            file.seek(SeekFrom::Start(0))?;
            (&mut file).take(4096).read_to_end(&mut first)?;
            let text = String::from_utf8_lossy(&first);
            let line = text.lines().next().unwrap_or("").trim();
            if line != header_line::<R>() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: not a metrics file (first line is {:?}, expected {:?})",
                        path.display(),
                        line,
                        header_line::<R>()
                    ),
                ));
            }
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        file.flush()?;
        Ok(CsvLog { path: path.to_path_buf(), file, _rows: std::marker::PhantomData })
    }

    /// Appends one row (in one write, with its newline) and flushes it to the file.
    pub fn append(&mut self, row: &R) -> std::io::Result<()> {
        let line = format!("{}\n", row.cells().join(","));
        self.file.write_all(line.as_bytes())?;
        self.file.flush()
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Replaces `path` with a metrics file holding exactly `rows` (header included), atomically
/// (temporary file, then rename). Useful on resume, to drop rows past the restored checkpoint.
pub fn write_rows<R: CsvRow>(path: &Path, rows: &[R]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let tmp = path.with_extension("csv.tmp");
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp)?);
        writeln!(w, "{}", header_line::<R>())?;
        for r in rows {
            writeln!(w, "{}", r.cells().join(","))?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a metrics CSV file back. Blank lines are skipped; an empty file (or one with only the
/// header) gives no rows. Every row is written with its newline in one write, so a last line
/// without one is a write torn by a kill: it is dropped (it may even parse, as a cut number).
/// Errors name the file and the 1-based line: `path:line: message`.
pub fn read_rows<R: CsvRow>(path: &Path) -> Result<Vec<R>, String> {
    let mut bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !bytes.ends_with(b"\n") {
        bytes.truncate(bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1));
    }
    let text = String::from_utf8(bytes).map_err(|e| format!("{}: not UTF-8 text: {e}", path.display()))?;
    let mut rows = Vec::new();
    let mut seen_header = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let at = |msg: String| format!("{}:{}: {msg}", path.display(), i + 1);
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if !seen_header {
            if cells != R::COLUMNS {
                return Err(at(format!("expected the header {:?}, found {line:?}", header_line::<R>())));
            }
            seen_header = true;
            continue;
        }
        if cells.len() != R::COLUMNS.len() {
            return Err(at(format!("expected {} columns, found {}", R::COLUMNS.len(), cells.len())));
        }
        rows.push(R::parse(&cells).map_err(at)?);
    }
    Ok(rows)
}

/// [`write_rows`] for `metrics.csv`.
pub fn write_metrics(path: &Path, rows: &[MetricsRow]) -> std::io::Result<()> {
    write_rows(path, rows)
}

/// [`read_rows`] for `metrics.csv`.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>, String> {
    read_rows(path)
}
