//! `dlsvm eval`: one model, or the average of several, on every split of a data set, with a
//! confusion-matrix PNG per split.

use std::path::{Path, PathBuf};

use super::{load_data, tune_mode, CommandError, Out};
use crate::eval::{self, Model};
use crate::gpu::Gpu;
use crate::tune::Mode;

/// Evaluates the models at `paths` (an ensemble when there are several) on the data at
/// `data_path` (the synthetic faces without one), `tta` jittered copies per image; the PNGs go to
/// `png_dir` (default: beside the first model), the metrics to `out`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    adapter: Option<&str>,
    paths: &[PathBuf],
    data_path: Option<&Path>,
    tta: usize,
    png_dir: Option<&Path>,
    tune: &Option<String>,
    json: bool,
    out: Out,
) -> Result<(), CommandError> {
    let mode = tune_mode(tune, Mode::Cached)?;
    let gpu = Gpu::new(adapter)?;
    let models = paths.iter().map(|p| Model::load(&gpu, p, 128, mode)).collect::<Result<Vec<_>, _>>()?;
    let first = &models[0].checkpoint;
    let c = &first.config;
    let source = load_data(data_path, c.image_size, c.channels, 4000, c.train.seed)?;
    let results = eval::ensemble(&gpu, &models, &source, tta)?;
    let out_dir = png_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| paths[0].parent().unwrap_or(Path::new(".")).to_path_buf());
    let classes = &first.class_names;
    let mut splits = serde_json::Map::new();
    for r in &results {
        let (name, m) = (&r.split, &r.metrics);
        let png = out_dir.join(format!("confusion_{name}.png"));
        let title = format!("{} models, {name}, tta {tta}", models.len());
        if let Err(e) = crate::report::confusion_png(&png, classes, &m.confusion, &title) {
            eprintln!("dlsvm: warning: could not write {}: {e}", png.display());
        }
        if !json {
            let (a, n, x, h) = (100.0 * m.accuracy, m.samples, m.cross_entropy, m.squared_hinge);
            outln!(
                out,
                "{name}: accuracy {a:.2}% on {n} samples; cross-entropy {x:.4}, squared hinge {h:.4}"
            );
            outln!(out, "{}", crate::report::confusion_table(classes, &m.confusion));
        }
        let mut v = serde_json::to_value(m).unwrap_or_default();
        v["confusion_png"] = png.display().to_string().into();
        splits.insert(name.clone(), v);
    }
    if json {
        let accuracy: serde_json::Map<_, _> =
            splits.iter().map(|(k, v)| (k.clone(), v["accuracy"].clone())).collect();
        let first_split = splits.values().next().cloned().unwrap_or_default();
        let mut obj = serde_json::json!({
            "models": paths.iter().map(|m| m.display().to_string()).collect::<Vec<_>>(),
            "tta": tta,
            "classes": classes,
            "accuracy": accuracy,
            "splits": splits,
        });
        for key in ["per_class", "confusion", "cross_entropy", "squared_hinge"] {
            obj[key] = first_split[key].clone();
        }
        outln!(out, "{obj}");
    }
    Ok(())
}
