//! Run reports: the per-epoch metrics CSV, the learning-curve chart, the first-layer filter
//! grid, and the confusion matrix (text and PNG).
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
pub use curve::{learning_curve_png, CURVE_HEIGHT, CURVE_WIDTH};
pub use filters::{filter_grid_png, FilterGridLayout, FILTER_GAP_COLOR, FILTER_NAN_COLOR};

/// One row of the per-epoch (or per evaluation interval) metrics.
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

fn header_line() -> String {
    METRICS_COLUMNS.join(",")
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| v.to_string())
}

/// One CSV line (no newline). Floats use Rust's shortest round-trip form, so reading the file
/// back gives the same values bit for bit (NaN and infinities included).
fn format_row(r: &MetricsRow) -> String {
    format!(
        "{},{},{},{},{},{},{},{},{},{}",
        r.epoch,
        r.step,
        r.lr,
        r.momentum,
        r.train_loss,
        r.train_acc,
        opt(r.test_loss),
        opt(r.test_acc),
        r.images_per_sec,
        r.elapsed_s
    )
}

/// Appends rows to a `metrics.csv`: the header is written when the file is new or empty, and
/// the file is flushed after every row so that a crash loses at most the row being written.
pub struct MetricsCsv {
    path: PathBuf,
    file: File,
}

impl MetricsCsv {
    /// Opens (creating it and its parent directories if needed) `path` for appending. An
    /// existing non-empty file must start with the metrics header; a last line cut short by a
    /// crash is terminated so that new rows start on a line of their own.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            writeln!(file, "{}", header_line())?;
        } else {
            let mut first = Vec::new();
            file.seek(SeekFrom::Start(0))?;
            (&mut file).take(4096).read_to_end(&mut first)?;
            let text = String::from_utf8_lossy(&first);
            let line = text.lines().next().unwrap_or("").trim();
            if line != header_line() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: not a metrics file (first line is {:?}, expected {:?})",
                        path.display(),
                        line,
                        header_line()
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
        Ok(MetricsCsv { path: path.to_path_buf(), file })
    }

    /// Appends one row and flushes it to the file.
    pub fn append(&mut self, row: &MetricsRow) -> std::io::Result<()> {
        let line = format!("{}\n", format_row(row));
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
pub fn write_metrics(path: &Path, rows: &[MetricsRow]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let tmp = path.with_extension("csv.tmp");
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp)?);
        writeln!(w, "{}", header_line())?;
        for r in rows {
            writeln!(w, "{}", format_row(r))?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a `metrics.csv` back. Blank lines are skipped; an empty file (or one with only the
/// header) gives no rows. Every row is written with its newline in one write, so a last line
/// without one is a write torn by a kill: it is dropped (it may even parse, as a cut number).
/// Errors name the file and the 1-based line: `path:line: message`.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>, String> {
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
        if !seen_header {
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            if cols != METRICS_COLUMNS {
                return Err(at(format!("expected the header {:?}, found {line:?}", header_line())));
            }
            seen_header = true;
            continue;
        }
        rows.push(parse_row(line).map_err(at)?);
    }
    Ok(rows)
}

fn parse_row(line: &str) -> Result<MetricsRow, String> {
    let cells: Vec<&str> = line.split(',').map(str::trim).collect();
    if cells.len() != METRICS_COLUMNS.len() {
        return Err(format!("expected {} columns, found {}", METRICS_COLUMNS.len(), cells.len()));
    }
    let num = |i: usize| -> Result<f64, String> {
        cells[i]
            .parse::<f64>()
            .map_err(|_| format!("column {} ({}): {:?} is not a number", i + 1, METRICS_COLUMNS[i], cells[i]))
    };
    let opt_num = |i: usize| -> Result<Option<f64>, String> {
        if cells[i].is_empty() {
            Ok(None)
        } else {
            num(i).map(Some)
        }
    };
    let step = cells[1].parse::<u64>().map_err(|_| {
        format!("column 2 ({}): {:?} is not a non-negative integer", METRICS_COLUMNS[1], cells[1])
    })?;
    Ok(MetricsRow {
        epoch: num(0)?,
        step,
        lr: num(2)?,
        momentum: num(3)?,
        train_loss: num(4)?,
        train_acc: num(5)?,
        test_loss: opt_num(6)?,
        test_acc: opt_num(7)?,
        images_per_sec: num(8)?,
        elapsed_s: num(9)?,
    })
}
