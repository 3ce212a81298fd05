//! `--init-from MODEL`: a fresh run (step 0, zero momentum) whose initial weights are another
//! model's. Every parameter whose layer index and shape match is loaded; the layers below the top
//! must be the same layers (kind and geometry; decays, learning-rate scales and dropout rates may
//! differ), or the run is refused. The top layer is loaded when its shape and the classes match,
//! else it starts from this run's own initial values: the top's loss may differ from the model's
//! (the paper's warm start continues an L2-SVM network under softmax). The model's input
//! normalizer (and PCA stage) come with its weights: they were trained on inputs prepared that way.

use std::path::Path;

use super::TrainError;
use crate::data::normalize::Normalizer;
use crate::model::checkpoint;
use crate::model::{LayerSpec, Net};

/// The initial state of a warm-started run.
#[derive(Clone, Debug)]
pub struct WarmStart {
    pub normalizer: Normalizer,
    /// The model's PCA input stage, when the networks have one.
    pub pca: Option<crate::model::pca::Pca>,
    /// The model's values where they were loaded, this run's initial values elsewhere.
    pub params: Vec<Vec<f32>>,
    /// What was loaded and what starts fresh, in one line.
    pub report: String,
}

/// A layer's kind and geometry: what must match below the top.
fn geometry(spec: &LayerSpec) -> String {
    match spec {
        LayerSpec::Conv { filters, kernel, stride, pad, .. } => {
            format!("conv {filters} filters {kernel}x{kernel} stride {stride} pad {pad}")
        }
        LayerSpec::MaxPool { size, stride, pad } => format!("max_pool {size} stride {stride} pad {pad}"),
        LayerSpec::AvgPool { size, stride, pad } => format!("avg_pool {size} stride {stride} pad {pad}"),
        LayerSpec::Relu => "relu".into(),
        LayerSpec::Dropout { .. } => "dropout".into(),
        LayerSpec::Fc { out, .. } => format!("fc {}", out.map_or("classes".into(), |o| o.to_string())),
    }
}

/// The warm start of `net` (this run's network, for `classes`) from the checkpoint at `path`;
/// `seed` draws what is not loaded. Refused, in one line naming the file, when the file is not a
/// dlsvm model, its input differs, its body differs, or nothing matches.
pub fn warm_start(path: &Path, net: &Net, classes: &[String], seed: u64) -> Result<WarmStart, TrainError> {
    let ck = checkpoint::load(path)?;
    let p = path.display();
    let refuse = |m: String| TrainError::Input(format!("{p}: --init-from: {m}"));
    let (c, r) = (&ck.config, &net.config);
    if (c.image_size, c.input_size, c.channels) != (r.image_size, r.input_size, r.channels) {
        return Err(refuse(format!(
            "the model takes {}x{} images cropped to {}x{} with {} channel(s), this network {}x{} cropped to {}x{} \
             with {}; a warm start needs the same input",
            c.image_size,
            c.image_size,
            c.input_size,
            c.input_size,
            c.channels,
            r.image_size,
            r.image_size,
            r.input_size,
            r.input_size,
            r.channels
        )));
    }
    if c.pca != r.pca {
        let show = |p: Option<usize>| p.map_or("none".to_string(), |k| format!("pca = {k}"));
        return Err(refuse(format!(
            "the model's PCA stage ({}) is not this network's ({}); a warm start needs the same input",
            show(c.pca),
            show(r.pca)
        )));
    }
    let body = |layers: &[LayerSpec]| -> Vec<String> {
        let n = layers.len().saturating_sub(1);
        layers[..n].iter().map(geometry).collect()
    };
    let (theirs, mine) = (body(&c.layers), body(&r.layers));
    if let Some(i) = (0..theirs.len().min(mine.len())).find(|&i| theirs[i] != mine[i]) {
        return Err(refuse(format!(
            "its body differs from this network's at layer {i} ({} there, {} here); a warm start needs the same \
             layers below the top",
            theirs[i], mine[i]
        )));
    }
    if theirs.len() != mine.len() {
        return Err(refuse(format!(
            "the model has {} layers below its top, this network {}; a warm start needs the same layers below the top",
            theirs.len(),
            mine.len()
        )));
    }
    let source = Net::new(c, ck.class_names.len()).map_err(|e| refuse(e.to_string()))?;
    let mut params = net.init_params(seed);
    let top = net.params.len().saturating_sub(2);
    let same_classes = ck.class_names == classes;
    let (mut loaded, mut fresh) = (Vec::new(), Vec::new());
    let mut why = "";
    for (i, want) in net.params.iter().enumerate() {
        match source.params.iter().position(|q| q.name == want.name && q.shape == want.shape) {
            Some(j) if i < top || same_classes => {
                params[i] = ck.params[j].clone();
                loaded.push(want.name.clone());
            }
            Some(_) => {
                why = "the model's classes differ from the data's";
                fresh.push(want.name.clone());
            }
            None => {
                why = "another shape there";
                fresh.push(want.name.clone());
            }
        }
    }
    if loaded.is_empty() {
        return Err(refuse("no layer of the model matches this network in index and shape".into()));
    }
    let mut report = format!(
        "initialized from {p} (top {}, {} classes, step {}): loaded {}",
        ck.config.top.name(),
        ck.class_names.len(),
        ck.step,
        loaded.join(", ")
    );
    if !fresh.is_empty() {
        report += &format!("; {} start fresh ({why})", fresh.join(", "));
    }
    report += "; optimizer state fresh, the model's input normalizer kept";
    Ok(WarmStart { normalizer: ck.normalizer, pca: ck.pca, params, report })
}
