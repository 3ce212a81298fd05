//! `dlsvm train --grid KEY=V1,V2 [--grid ...]`: every combination of a few `[train]` values (the
//! paper chose the weight decay and the SVM constant by cross-validation), one run (or one
//! cross-validation with `--folds`) per setting, each in `<out>/<setting>`, one after another;
//! then a table of accuracies with the best setting.

use std::path::Path;

use serde::Serialize;

use super::{cross_validate, io, run, RunOptions, TrainError};
use crate::data::DataSource;
use crate::gpu::Gpu;
use crate::model::config::TrainConfig;
use crate::model::NetConfig;

/// One `--grid KEY=V1,V2,...`: a `[train]` key (or `augment.KEY`) and its values, as written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

impl Axis {
    /// Parses `KEY=V1,V2,...`; the message says what is wrong with it.
    pub fn parse(s: &str) -> Result<Axis, String> {
        let (key, values) = s.split_once('=').ok_or_else(|| format!("--grid {s}: expected KEY=V1,V2,..."))?;
        let key = key.trim().to_string();
        let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
        if key.is_empty() || values.iter().any(String::is_empty) {
            return Err(format!("--grid {s}: expected KEY=V1,V2,... with no empty key or value"));
        }
        Ok(Axis { key, values })
    }
}

/// One combination: (key, value) per axis, in the axes' order.
pub type Setting = Vec<(String, String)>;

/// Every combination of the axes' values, the first axis changing slowest. Refuses a key given
/// twice.
pub fn settings(axes: &[Axis]) -> Result<Vec<Setting>, String> {
    for (i, a) in axes.iter().enumerate() {
        if axes[..i].iter().any(|b| b.key == a.key) {
            return Err(format!("--grid names {} twice; give its values in one --grid", a.key));
        }
        // Each value names a directory (`<out>/key=value`): it must be a plain name.
        for v in &a.values {
            let bare = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            if !crate::model::config::plain_name(bare) {
                return Err(format!(
                    "--grid {}={v}: a grid value names its run's directory, so it must be a plain name \
                     (letters, digits, -, _ and ., not starting with ., at most 64 characters)",
                    a.key
                ));
            }
        }
    }
    let mut out: Vec<Setting> = vec![Vec::new()];
    for a in axes {
        out = out
            .into_iter()
            .flat_map(|s| {
                a.values.iter().map(move |v| {
                    let mut t = s.clone();
                    t.push((a.key.clone(), v.clone()));
                    t
                })
            })
            .collect();
    }
    Ok(out)
}

/// The directory name of a setting: `key=value,key=value`.
pub fn dir_name(setting: &Setting) -> String {
    setting.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// `config` with the setting's `[train]` values: each value read as TOML (a number, a boolean,
/// a quoted string) into the key; an unknown key, a value of the wrong type or out of range is
/// refused in one line naming `--grid KEY=VALUE`.
pub fn apply(config: &NetConfig, setting: &Setting) -> Result<NetConfig, String> {
    let mut table = match toml::Value::try_from(&config.train).map_err(|e| e.to_string())? {
        toml::Value::Table(t) => t,
        _ => return Err("the [train] table did not serialize as a table".into()),
    };
    for (key, value) in setting {
        let flag = format!("--grid {key}={value}");
        let parsed: toml::Value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let (outer, inner) = match key.split_once('.') {
            Some((o, i)) => (o, Some(i)),
            None => (key.as_str(), None),
        };
        let slot = match inner {
            None => table.get_mut(outer),
            Some(i) => table.get_mut(outer).and_then(|t| t.as_table_mut()).and_then(|t| t.get_mut(i)),
        };
        match slot {
            Some(v) => *v = parsed,
            None => return Err(format!("{flag}: `{key}` is not a [train] key")),
        }
        let train: TrainConfig =
            toml::Value::Table(table.clone()).try_into().map_err(|e: toml::de::Error| {
                format!("{flag}: {}", e.message().split_whitespace().collect::<Vec<_>>().join(" "))
            })?;
        train.validate().map_err(|e| format!("{flag}: {e}"))?;
    }
    let mut out = config.clone();
    out.train = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| e.message().to_string())?;
    Ok(out)
}

/// One setting's outcome: its test accuracy (the mean held-out accuracy over folds with
/// `--folds`) and, with folds, their spread.
#[derive(Clone, Debug, Serialize)]
pub struct GridRow {
    pub setting: Setting,
    pub dir: String,
    pub accuracy: f64,
    pub std: Option<f64>,
}

/// The grid's table, and the row with the highest accuracy.
#[derive(Clone, Debug, Serialize)]
pub struct GridReport {
    pub axes: Vec<Axis>,
    pub folds: Option<usize>,
    pub rows: Vec<GridRow>,
    pub best: usize,
    pub out: String,
}

/// Trains every setting of `axes` (with `folds`: `(k, only)`, a cross-validation per setting),
/// each in `<opts.out>/<setting>`; `on_row` hears of each finished setting.
pub fn run_grid(
    gpu: &Gpu,
    config: &NetConfig,
    source: &DataSource,
    axes: &[Axis],
    folds: Option<(usize, Option<usize>)>,
    opts: &RunOptions,
    mut on_row: impl FnMut(&GridRow),
) -> Result<GridReport, TrainError> {
    let all = settings(axes).map_err(TrainError::Input)?;
    let mut rows = Vec::new();
    for setting in all {
        let cfg = apply(config, &setting).map_err(TrainError::Input)?;
        let dir = opts.out.join(dir_name(&setting));
        let ropts = RunOptions { out: dir.clone(), ..opts.clone() };
        let (accuracy, std) = match folds {
            Some((k, only)) => {
                let cv = cross_validate(gpu, &cfg, source, k, only, &ropts, |_, _| {})?;
                (cv.mean_accuracy, Some(cv.std_accuracy))
            }
            None => {
                let s = run(gpu, &cfg, source, source.train()?, source.test(), &ropts)?;
                (s.test.as_ref().map_or(f64::NAN, |m| m.accuracy), None)
            }
        };
        let row = GridRow { setting, dir: dir.display().to_string(), accuracy, std };
        on_row(&row);
        rows.push(row);
    }
    let best = (0..rows.len()).fold(0, |b, i| if rows[i].accuracy > rows[b].accuracy { i } else { b });
    let report = GridReport {
        axes: axes.to_vec(),
        folds: folds.map(|f| f.0),
        rows,
        best,
        out: opts.out.display().to_string(),
    };
    write(&report, &opts.out)?;
    Ok(report)
}

/// The grid's table as Markdown.
pub fn markdown(r: &GridReport) -> String {
    let keys: Vec<&str> = r.axes.iter().map(|a| a.key.as_str()).collect();
    let what = if r.folds.is_some() { "held-out accuracy, mean ± std over folds" } else { "test accuracy" };
    let mut s = format!("| {} | {what} | |\n|{}---|---|\n", keys.join(" | "), "---|".repeat(keys.len()));
    for (i, row) in r.rows.iter().enumerate() {
        let values: Vec<&str> = row.setting.iter().map(|(_, v)| v.as_str()).collect();
        let acc = match row.std {
            Some(sd) => format!("{:.2} % ± {:.2} %", 100.0 * row.accuracy, 100.0 * sd),
            None => format!("{:.2} %", 100.0 * row.accuracy),
        };
        s += &format!("| {} | {acc} | {} |\n", values.join(" | "), if i == r.best { "best" } else { "" });
    }
    s
}

fn write(r: &GridReport, out: &Path) -> Result<(), TrainError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let (jp, mp) = (out.join("grid.json"), out.join("grid.md"));
    std::fs::write(&jp, serde_json::to_string_pretty(r).unwrap_or_default()).map_err(io(&jp))?;
    std::fs::write(&mp, markdown(r)).map_err(io(&mp))
}
