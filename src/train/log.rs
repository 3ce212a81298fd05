//! What a run records as it goes: the loss and accuracy the GPU accumulates, read back once per
//! logging interval (`steps.csv`, one row per interval) and summed per epoch (`metrics.csv`, one
//! row per epoch with the test evaluation), and the divergence test on every read-back.

use std::path::Path;
use std::time::Instant;

use super::checkpointer::Checkpointer;
use super::{io, TrainError};
use crate::gpu::Gpu;
use crate::model::GpuNet;
use crate::report::{read_rows, write_rows, CsvLog, CsvRow, MetricsRow, StepRow};

/// A logged loss more than this many times the first logged one counts as divergence.
pub const EXPLODE_FACTOR: f64 = 1e6;

/// Why a logged mean loss means the run has diverged, if it does: it is not finite, or it is more
/// than [`EXPLODE_FACTOR`] times `first`, the first loss the run logged.
pub fn divergence(loss: f64, first: Option<f64>) -> Option<String> {
    if !loss.is_finite() {
        return Some(format!("the loss is {loss}"));
    }
    match first {
        Some(f) if f > 0.0 && loss > EXPLODE_FACTOR * f => Some(format!(
            "the loss is {loss:.4e}, more than {EXPLODE_FACTOR:e} times the first logged loss {f:.4}"
        )),
        _ => None,
    }
}

/// Sums over a stretch of steps.
#[derive(Clone, Copy, Default)]
struct Totals {
    /// The loss summed over steps (each step adds its batch mean).
    loss: f64,
    correct: u64,
    samples: u64,
    steps: u64,
}

/// The run's records: `steps.csv`, `metrics.csv`, and the steps since the last read-back.
pub struct TrainLog {
    steps: CsvLog<StepRow>,
    epochs: CsvLog<MetricsRow>,
    /// Samples trained since the last read-back, and when it was.
    window: (u64, Instant),
    epoch: Totals,
    /// The run's first logged loss (from before a resume too) and its last finite one.
    first_loss: Option<f64>,
    last_loss: Option<f64>,
    began: Instant,
    images: u64,
    pub last_epoch: Option<MetricsRow>,
}

/// Opens a metrics file of a run: a fresh run (`resumed` None) starts it anew; a resumed run
/// keeps the rows up to its checkpoint's step (later ones belong to steps that run again).
fn reopen<R: CsvRow>(path: &Path, resumed: Option<u64>) -> Result<(CsvLog<R>, Vec<R>), TrainError> {
    let kept = match resumed {
        Some(step) if path.exists() => {
            let rows: Vec<R> = read_rows(path).map_err(TrainError::Input)?;
            let kept: Vec<R> = rows.into_iter().filter(|r| r.step() <= step).collect();
            write_rows(path, &kept).map_err(io(path))?;
            kept
        }
        Some(_) => Vec::new(),
        None => {
            if path.exists() {
                std::fs::remove_file(path).map_err(io(path))?;
            }
            Vec::new()
        }
    };
    Ok((CsvLog::open(path).map_err(io(path))?, kept))
}

impl TrainLog {
    /// Opens `steps.csv` and `metrics.csv` in the run directory `dir` (see [`reopen`]).
    pub fn open(dir: &Path, resumed: Option<u64>) -> Result<TrainLog, TrainError> {
        let (steps, step_rows) = reopen::<StepRow>(&dir.join("steps.csv"), resumed)?;
        let (epochs, epoch_rows) = reopen::<MetricsRow>(&dir.join("metrics.csv"), resumed)?;
        // The divergence test compares with the run's first logged loss, from before a resume too.
        let first = step_rows.iter().map(|r| r.loss).chain(epoch_rows.iter().map(|r| r.train_loss));
        let first_loss = first.clone().find(|l| l.is_finite());
        Ok(TrainLog {
            steps,
            epochs,
            window: (0, Instant::now()),
            epoch: Totals::default(),
            first_loss,
            last_loss: None,
            began: Instant::now(),
            images: 0,
            last_epoch: None,
        })
    }

    /// Counts one step of `batch` samples.
    pub fn step_done(&mut self, batch: usize) {
        self.window.0 += batch as u64;
        self.images += batch as u64;
    }

    /// The last finite logged loss, for messages.
    pub fn last_loss(&self) -> String {
        self.last_loss.map_or("none yet".to_string(), |v| format!("{v:.4}"))
    }

    /// Throughput since this process started training.
    pub fn images_per_sec(&self) -> f64 {
        self.images as f64 / self.began.elapsed().as_secs_f64().max(1e-9)
    }

    /// Ends a logging interval at `step` (of `steps_per_epoch`): reads the loss and accuracy the
    /// GPU accumulated and resets them, stops the run if it diverged, and appends a `steps.csv`
    /// row.
    #[allow(clippy::too_many_arguments)]
    pub fn interval(
        &mut self,
        gpu: &Gpu,
        net: &GpuNet,
        step: u64,
        steps_per_epoch: u64,
        (lr, momentum): (f64, f64),
        ckpt: &Checkpointer,
    ) -> Result<StepRow, TrainError> {
        let (loss_sum, correct) = net.read_metrics(gpu)?;
        net.reset_metrics(gpu);
        let samples = self.window.0;
        let steps = (samples / net.batch as u64).max(1);
        let loss = loss_sum / steps as f64;
        if let Some(what) = divergence(loss, self.first_loss) {
            return Err(TrainError::Diverged {
                step,
                what,
                last_finite: self.last_loss(),
                kept: ckpt.kept(),
            });
        }
        self.first_loss.get_or_insert(loss);
        self.last_loss = Some(loss);
        self.epoch.loss += loss_sum;
        self.epoch.correct += correct;
        self.epoch.samples += samples;
        self.epoch.steps += steps;
        let row = StepRow {
            step,
            epoch: step as f64 / steps_per_epoch as f64,
            lr,
            momentum,
            loss,
            accuracy: correct as f64 / samples.max(1) as f64,
            images_per_sec: samples as f64 / self.window.1.elapsed().as_secs_f64().max(1e-9),
            elapsed_s: self.began.elapsed().as_secs_f64(),
        };
        self.window = (0, Instant::now());
        self.steps.append(&row).map_err(io(self.steps.path()))?;
        Ok(row)
    }

    /// Ends an epoch at `step` with the test split's objective and accuracy, when there is one:
    /// appends a `metrics.csv` row with the epoch's mean loss and accuracy.
    pub fn epoch(
        &mut self,
        step: u64,
        steps_per_epoch: u64,
        (lr, momentum): (f64, f64),
        test: Option<(f64, f64)>,
    ) -> Result<MetricsRow, TrainError> {
        let e = std::mem::take(&mut self.epoch);
        let row = MetricsRow {
            epoch: step as f64 / steps_per_epoch as f64,
            step,
            lr,
            momentum,
            train_loss: e.loss / e.steps.max(1) as f64,
            train_acc: e.correct as f64 / e.samples.max(1) as f64,
            test_loss: test.map(|t| t.0),
            test_acc: test.map(|t| t.1),
            images_per_sec: self.images_per_sec(),
            elapsed_s: self.began.elapsed().as_secs_f64(),
        };
        self.epochs.append(&row).map_err(io(self.epochs.path()))?;
        self.last_epoch = Some(row.clone());
        Ok(row)
    }
}
