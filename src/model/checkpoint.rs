//! Checkpoints as safetensors files, readable by PyTorch's `safetensors.torch.load_file`.
//!
//! Tensors: `layers.{i}.weight` and `layers.{i}.bias` for layer i of the config's layer list
//! (conv weight `[out, in, kh, kw]`, fc weight `[out, in]`, bias `[out]`, f32), and the SGD
//! momentum of each as `optim.layers.{i}.weight` / `optim.layers.{i}.bias`. Metadata (strings):
//! `format` = `dlsvm-1`, `config` (the network and training config as TOML), `classes` (JSON list
//! of class names), `normalizer` (JSON: per-image flag, norm, per-pixel mean and std), `step` (steps
//! done), `total_steps`; and, from runs that recorded them, `variants` (JSON: the kernel variant of
//! each op, [`Plan`]) and `adapter` (the adapter and driver the run trained on).
//!
//! Writes are atomic: a temporary file in the same directory, fsync, rename, fsync of the
//! directory. A failure at any point leaves the previous checkpoint untouched.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};

use super::config::NetConfig;
use super::net::Net;
use super::pca::Pca;
use super::plan::Plan;
use crate::data::normalize::Normalizer;

pub const FORMAT: &str = "dlsvm-1";

/// Everything a run needs to evaluate, predict or resume.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub config: NetConfig,
    pub class_names: Vec<String>,
    pub normalizer: Normalizer,
    pub step: u64,
    pub total_steps: u64,
    pub params: Vec<Vec<f32>>,
    /// SGD momentum, when saved for resuming.
    pub velocity: Option<Vec<Vec<f32>>>,
    /// The kernel variants the run used (absent in files written before runs recorded them).
    pub plan: Option<Plan>,
    /// The adapter and driver the run trained on, as `name (backend, driver info)`.
    pub adapter: Option<String>,
    /// The fitted PCA input stage (tensors `input.pca.mean` `[d]` and `input.pca.components`
    /// `[k, d]`), present exactly when the config has `pca`.
    pub pca: Option<Pca>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a dlsvm checkpoint: {message}")]
    Format { path: String, message: String },
    /// Not a readable safetensors file: garbage, truncated, or a header that contradicts the data.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{path}: tensor {tensor}: {message}")]
    Tensor { path: String, tensor: String, message: String },
}

impl Checkpoint {
    /// The network this checkpoint's weights belong to.
    pub fn net(&self) -> Result<Net, String> {
        Net::new(&self.config, self.class_names.len()).map_err(|e| e.to_string())?.with_pca(self.pca.clone())
    }

    /// Whether a run of `config` on data with `classes` may continue from this checkpoint (read
    /// from `path`): the same image geometry, layers, top and classes, and an optimizer state.
    /// With `classes` None it checks what can be checked before the data is loaded. One check for
    /// the command line and the trainer.
    pub fn check_resumable(
        &self,
        path: &Path,
        config: &NetConfig,
        classes: Option<&[String]>,
    ) -> Result<(), String> {
        let (c, r) = (&self.config, config);
        let fix = "use another --out or drop --resume";
        if (c.image_size, c.input_size, c.channels) != (r.image_size, r.input_size, r.channels) {
            return Err(format!(
                "{}: the checkpoint's network takes {}x{} images cropped to {}x{}, this run's {}x{} cropped to \
                 {}x{}; {fix}",
                path.display(),
                c.image_size,
                c.image_size,
                c.input_size,
                c.input_size,
                r.image_size,
                r.image_size,
                r.input_size,
                r.input_size
            ));
        }
        if c.layers != r.layers || c.top != r.top {
            return Err(format!(
                "{}: the checkpoint's network ({} layers, {} top) differs from this run's ({} layers, {} top); {fix}",
                path.display(),
                c.layers.len(),
                c.top.name(),
                r.layers.len(),
                r.top.name()
            ));
        }
        if let Some(classes) = classes.filter(|cl| *cl != self.class_names.as_slice()) {
            return Err(format!(
                "{}: the checkpoint's classes differ from the data's (checkpoint: {}; data: {}); {fix}",
                path.display(),
                self.class_names.join(", "),
                classes.join(", ")
            ));
        }
        if self.velocity.is_none() {
            return Err(format!("{}: the checkpoint has no optimizer state to resume from", path.display()));
        }
        Ok(())
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, directory fsync).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        {
            // Closed before the rename.
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The tensor names of a PCA input stage.
pub const PCA_MEAN: &str = "input.pca.mean";
pub const PCA_COMPONENTS: &str = "input.pca.components";

pub fn save(path: &Path, ck: &Checkpoint) -> Result<(), CheckpointError> {
    let bytes = to_bytes(ck)
        .map_err(|message| CheckpointError::Format { path: path.display().to_string(), message })?;
    write_atomic(path, &bytes)
        .map_err(|source| CheckpointError::Io { path: path.display().to_string(), source })
}

/// The bytes of `model.safetensors` for `ck` (what [`save`] writes; the browser page offers them
/// as a download).
pub fn to_bytes(ck: &Checkpoint) -> Result<Vec<u8>, String> {
    let fail = |message: String| message;
    let net = ck.net().map_err(fail)?;
    if ck.params.len() != net.params.len() {
        return Err(fail(format!(
            "{} parameter tensors for a network with {}",
            ck.params.len(),
            net.params.len()
        )));
    }
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("config".to_string(), ck.config.to_toml());
    meta.insert(
        "classes".to_string(),
        serde_json::to_string(&ck.class_names).map_err(|e| fail(e.to_string()))?,
    );
    meta.insert(
        "normalizer".to_string(),
        serde_json::to_string(&ck.normalizer).map_err(|e| fail(e.to_string()))?,
    );
    meta.insert("step".to_string(), ck.step.to_string());
    meta.insert("total_steps".to_string(), ck.total_steps.to_string());
    if let Some(plan) = &ck.plan {
        meta.insert("variants".to_string(), serde_json::to_string(plan).map_err(|e| fail(e.to_string()))?);
    }
    if let Some(adapter) = &ck.adapter {
        meta.insert("adapter".to_string(), adapter.clone());
    }
    let mut views: Vec<(String, TensorView)> = Vec::new();
    for (i, p) in net.params.iter().enumerate() {
        let bytes: &[u8] = bytemuck::cast_slice(&ck.params[i]);
        let view = TensorView::new(Dtype::F32, p.shape.clone(), bytes)
            .map_err(|e| fail(format!("{}: {e}", p.name)))?;
        views.push((p.name.clone(), view));
        if let Some(v) = &ck.velocity {
            let bytes: &[u8] = bytemuck::cast_slice(&v[i]);
            let view = TensorView::new(Dtype::F32, p.shape.clone(), bytes)
                .map_err(|e| fail(format!("optim.{}: {e}", p.name)))?;
            views.push((format!("optim.{}", p.name), view));
        }
    }
    if let Some(pca) = &ck.pca {
        for (name, shape, data) in
            [(PCA_MEAN, vec![pca.d], &pca.mean), (PCA_COMPONENTS, vec![pca.k, pca.d], &pca.components)]
        {
            let view = TensorView::new(Dtype::F32, shape, bytemuck::cast_slice(data))
                .map_err(|e| fail(format!("{name}: {e}")))?;
            views.push((name.to_string(), view));
        }
    }
    safetensors::tensor::serialize(views, Some(meta)).map_err(|e| fail(e.to_string()))
}

pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io { path: p.clone(), source })?;
    from_bytes(&bytes, &p)
}

/// The checkpoint in `bytes`, the contents of a `model.safetensors` (what [`load`] reads; the
/// browser page reads a dropped file). `what` names the file in errors.
pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Checkpoint, CheckpointError> {
    let p = what.to_string();
    let fail = |message: String| CheckpointError::Format { path: p.clone(), message };
    let file_err =
        |e: SafeTensorError| CheckpointError::File { path: p.clone(), message: structure_error(bytes, &e) };
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(file_err)?;
    let st = SafeTensors::deserialize(bytes).map_err(file_err)?;
    let meta = metadata.metadata().clone().unwrap_or_default();
    let get = |key: &str| {
        meta.get(key).ok_or_else(|| {
            fail(format!(
                "the header's metadata has no `{key}` (expected format, config, classes, normalizer, step \
                 and total_steps)"
            ))
        })
    };
    if get("format")? != FORMAT {
        return Err(fail(format!("format {:?}, expected {FORMAT}", get("format")?)));
    }
    let config = NetConfig::from_toml(get("config")?).map_err(|e| fail(format!("config: {e}")))?;
    let class_names: Vec<String> =
        serde_json::from_str(get("classes")?).map_err(|e| fail(format!("classes: {e}")))?;
    let normalizer: Normalizer =
        serde_json::from_str(get("normalizer")?).map_err(|e| fail(format!("normalizer: {e}")))?;
    let step: u64 = get("step")?.parse().map_err(|e| fail(format!("step: {e}")))?;
    let total_steps: u64 = get("total_steps")?.parse().map_err(|e| fail(format!("total_steps: {e}")))?;
    let net = Net::new(&config, class_names.len()).map_err(|e| fail(e.to_string()))?;
    let read = |name: &str, shape: &[usize]| -> Result<Option<Vec<f32>>, CheckpointError> {
        let t = match st.tensor(name) {
            Ok(t) => t,
            Err(_) => return Ok(None),
        };
        let terr =
            |message: String| CheckpointError::Tensor { path: p.clone(), tensor: name.to_string(), message };
        if t.dtype() != Dtype::F32 {
            return Err(terr(format!("dtype {:?}, expected F32", t.dtype())));
        }
        if t.shape() != shape {
            return Err(terr(format!("shape {:?} does not match the network's {:?}", t.shape(), shape)));
        }
        Ok(Some(bytemuck::pod_collect_to_vec(t.data())))
    };
    let mut params = Vec::new();
    let mut velocity = Vec::new();
    for prm in &net.params {
        let v = read(&prm.name, &prm.shape)?.ok_or_else(|| CheckpointError::Tensor {
            path: p.clone(),
            tensor: prm.name.clone(),
            message: format!("missing; the network needs it with shape {:?}", prm.shape),
        })?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(CheckpointError::Tensor {
                path: p.clone(),
                tensor: prm.name.clone(),
                message: "holds NaN or infinite values".into(),
            });
        }
        params.push(v);
        velocity.push(read(&format!("optim.{}", prm.name), &prm.shape)?);
    }
    let velocity = if velocity.iter().all(|v| v.is_some()) {
        Some(velocity.into_iter().flatten().collect())
    } else {
        None
    };
    let nz = &normalizer;
    if nz.h != config.image_size || nz.w != config.image_size {
        return Err(fail(format!(
            "normalizer: fitted on {}x{} images, but the config's image_size is {}",
            nz.w, nz.h, config.image_size
        )));
    }
    if nz.channels != config.channels {
        return Err(fail(format!(
            "normalizer: fitted on images of {} channels, but the config's channels is {}",
            nz.channels, config.channels
        )));
    }
    let values = nz.h.checked_mul(nz.w).and_then(|v| v.checked_mul(nz.channels));
    if values != Some(nz.mean.len()) || nz.std.len() != nz.mean.len() {
        return Err(fail(format!(
            "normalizer: {} means and {} stds, expected {} each ({}x{} pixels, {} channels)",
            nz.mean.len(),
            nz.std.len(),
            nz.h.saturating_mul(nz.w).saturating_mul(nz.channels),
            nz.w,
            nz.h,
            nz.channels
        )));
    }
    if !nz.norm.is_finite()
        || nz.mean.iter().chain(&nz.std).any(|v| !v.is_finite())
        || nz.std.iter().any(|&v| v <= 0.0)
    {
        return Err(fail("normalizer: expected a finite norm, finite means and positive finite stds".into()));
    }
    let plan = match meta.get("variants") {
        Some(v) => Some(serde_json::from_str::<Plan>(v).map_err(|e| fail(format!("variants: {e}")))?),
        None => None,
    };
    let adapter = meta.get("adapter").cloned();
    let pca = match config.pca {
        None => None,
        Some(k) => {
            let d = net.input_len();
            let need = |name: &str, shape: &[usize]| {
                read(name, shape)?.ok_or_else(|| CheckpointError::Tensor {
                    path: p.clone(),
                    tensor: name.to_string(),
                    message: format!(
                        "missing; the network's PCA stage (pca = {k}) needs it with shape {shape:?}"
                    ),
                })
            };
            let pca = Pca { k, d, mean: need(PCA_MEAN, &[d])?, components: need(PCA_COMPONENTS, &[k, d])? };
            pca.check(&p).map_err(fail)?;
            Some(pca)
        }
    };
    Ok(Checkpoint {
        config,
        class_names,
        normalizer,
        step,
        total_steps,
        params,
        velocity,
        plan,
        adapter,
        pca,
    })
}

/// What is wrong with a file that safetensors refused, in terms of its bytes: the 8-byte little-endian
/// header length, the JSON header after it, then the tensor data.
fn structure_error(bytes: &[u8], e: &SafeTensorError) -> String {
    let len = bytes.len() as u64;
    let Some(n) = bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes) else {
        return format!(
            "not a safetensors file: {len} bytes, expected an 8-byte header length and a JSON header"
        );
    };
    if bytes.get(8) != Some(&b'{') {
        return "not a safetensors file: expected an 8-byte little-endian header length, then a JSON header \
                starting with `{` at byte 8"
            .into();
    }
    let header_end = n.saturating_add(8);
    match e {
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength => format!(
            "truncated or corrupt: bytes 0-7 declare a {n}-byte JSON header, but the file has {} bytes after them",
            len - 8
        ),
        SafeTensorError::InvalidHeader(_) | SafeTensorError::InvalidHeaderDeserialization(_) => {
            format!("the JSON header (bytes 8-{header_end}) is invalid: {}", one_line(e))
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            // The declared data length: the largest end offset of any tensor.
            let declared = bytes
                .get(8..usize::try_from(header_end).unwrap_or(usize::MAX))
                .and_then(|h| serde_json::from_slice::<HashMap<String, serde_json::Value>>(h).ok())
                .map(|h| {
                    h.values().filter_map(|v| v.get("data_offsets")?.get(1)?.as_u64()).max().unwrap_or(0)
                });
            let have = len.saturating_sub(header_end);
            match declared {
                Some(d) if have < d => format!(
                    "truncated: the header declares {d} bytes of tensor data after byte {header_end}, the file \
                     holds {have}"
                ),
                Some(d) => format!(
                    "{} unexpected bytes after the {d} bytes of tensor data the header declares",
                    have - d
                ),
                None => format!("the tensor data does not match the header: {}", one_line(e)),
            }
        }
        SafeTensorError::InvalidOffset(name) => {
            format!("tensor {name}: its data_offsets do not follow the previous tensor's")
        }
        _ => format!("invalid safetensors header: {}", one_line(e)),
    }
}

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}
