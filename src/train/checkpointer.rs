//! The run's checkpoints: `model.safetensors` (written atomically) and the newest
//! [`KEEP_SNAPSHOTS`] periodic snapshots in `checkpoints/`. A diverged run never overwrites its
//! last good checkpoint, and a failed write leaves the previous one whole.

use std::path::{Path, PathBuf};

use super::{io, TrainError};
use crate::data::normalize::Normalizer;
use crate::gpu::Gpu;
use crate::model::checkpoint::{self, Checkpoint};
use crate::model::{GpuNet, NetConfig};

/// Periodic checkpoints kept in `<run>/checkpoints/` besides `model.safetensors`.
pub const KEEP_SNAPSHOTS: usize = 3;

/// Writes the checkpoints of one run and remembers the last one written (or resumed from).
pub struct Checkpointer {
    dir: PathBuf,
    path: PathBuf,
    config: NetConfig,
    class_names: Vec<String>,
    normalizer: Normalizer,
    total: u64,
    /// The step of the checkpoint on disk that belongs to this run.
    saved: Option<u64>,
    /// The adapter the run trains on, recorded in every checkpoint.
    adapter: String,
}

impl Checkpointer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        adapter: &str,
        dir: &Path,
        config: &NetConfig,
        class_names: &[String],
        normalizer: &Normalizer,
        total: u64,
        resumed: Option<u64>,
    ) -> Checkpointer {
        Checkpointer {
            dir: dir.to_path_buf(),
            path: dir.join("model.safetensors"),
            config: config.clone(),
            class_names: class_names.to_vec(),
            normalizer: normalizer.clone(),
            total,
            saved: resumed,
            adapter: adapter.to_string(),
        }
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is left on disk, for error messages: the last checkpoint this run wrote or resumed from.
    pub fn kept(&self) -> String {
        match self.saved {
            Some(s) => format!("the last good checkpoint, step {s}, is kept in {}", self.path.display()),
            None => "no checkpoint of this run was written yet".into(),
        }
    }

    /// Writes the weights and momentum after `step` steps, unless they went non-finite (then
    /// [`TrainError::Diverged`], naming `last_loss`, the last finite logged loss).
    pub fn save(&mut self, gpu: &Gpu, net: &GpuNet, step: u64, last_loss: &str) -> Result<(), TrainError> {
        let (params, velocity) = net.download(gpu)?;
        if params.iter().chain(&velocity).flatten().any(|v| !v.is_finite()) {
            return Err(TrainError::Diverged {
                step,
                what: "the weights hold NaN or infinite values".into(),
                last_finite: last_loss.to_string(),
                kept: self.kept(),
            });
        }
        let ck = Checkpoint {
            config: self.config.clone(),
            class_names: self.class_names.clone(),
            normalizer: self.normalizer.clone(),
            step,
            total_steps: self.total,
            params,
            velocity: Some(velocity),
            plan: Some(net.plan().clone()),
            adapter: Some(self.adapter.clone()),
            pca: net.net.pca.clone(),
        };
        let failed = |source, kept| TrainError::CheckpointWrite { step, source, kept };
        checkpoint::save(&self.path, &ck).map_err(|e| failed(e, self.kept()))?;
        self.saved = Some(step);
        let snapshots = self.dir.join("checkpoints");
        std::fs::create_dir_all(&snapshots).map_err(io(&snapshots))?;
        let snapshot = snapshots.join(format!("step-{step:08}.safetensors"));
        checkpoint::save(&snapshot, &ck).map_err(|e| failed(e, self.kept()))?;
        rotate(&snapshots)
    }
}

/// Removes all but the newest [`KEEP_SNAPSHOTS`] snapshots (their names sort by step).
fn rotate(dir: &Path) -> Result<(), TrainError> {
    let mut old: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-") && n.ends_with(".safetensors"))
        })
        .collect();
    old.sort();
    for p in old.iter().rev().skip(KEEP_SNAPSHOTS) {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

/// Removes the temporary files of checkpoint writes that a killed run left in `dir`.
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.contains(".safetensors.")
            && name.ends_with(".tmp")
            && e.file_type().is_ok_and(|t| t.is_file())
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
