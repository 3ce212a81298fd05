//! What `dlsvm train` and `dlsvm compare` set up before training: the network (the preset or
//! file with the options applied, every value and layer checked before the possibly long data
//! load), the data checked against it, the `--init-from` model checked before the device is
//! touched, and the kernel variants tuned for the network.

use std::path::Path;

use super::args::TrainArgs;
use super::{load_data, parse_top, CommandError};
use crate::data::{synth, DataSource};
use crate::gpu::Gpu;
use crate::model::config::{InvalidValue, Overrides};
use crate::model::net::ConfigProblem;
use crate::model::{self, NetConfig};
use crate::train;
use crate::tune::{self as tuning, Mode};

/// One line for a value out of range: named by the option that set it, else by the file's key.
fn invalid(e: &InvalidValue, overrides: &Overrides, origin: &str) -> CommandError {
    match overrides.flag_for(e.key) {
        Some(flag) => CommandError::input(format!("{flag} {} must be {}", e.value, e.want)),
        None => CommandError::input(format!("{origin}: {e}")),
    }
}

/// The network of `train` and `compare`: the preset or file with the flags applied, every value
/// and layer checked; with the name of where it came from.
pub fn net_config(a: &TrainArgs) -> Result<(NetConfig, String), CommandError> {
    let (mut config, origin) = match &a.config {
        Some(p) => (
            NetConfig::from_toml_file(p).map_err(|e| CommandError::input(e.to_string()))?,
            p.display().to_string(),
        ),
        None => {
            let choices = model::PRESETS.join(", ");
            let unknown =
                || CommandError::input(format!("unknown preset {:?}; choose one of {choices}", a.preset));
            (model::preset(&a.preset).ok_or_else(unknown)?, format!("--preset {}", a.preset))
        }
    };
    let top = a.top.as_deref().map(parse_top).transpose()?;
    let overrides = Overrides {
        top,
        steps: a.steps,
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        svm_c: a.svm_c,
        dropout: a.dropout,
        seed: a.seed,
        checkpoint_every: a.checkpoint_every,
        log_every: a.log_every,
        no_augment: a.no_augment,
        noise_std: a.noise_std,
    };
    overrides.apply(&mut config).map_err(|e| invalid(&e, &overrides, &origin))?;
    // --set KEY=VALUE: any [train] value, as a one-valued grid setting.
    let sets = a
        .set
        .iter()
        .map(|kv| {
            if !kv.contains('=') {
                return Err(format!("--set {kv}: expected KEY=VALUE (e.g. --set lr=0.01)"));
            }
            let axis = train::grid::Axis::parse(kv).map_err(|m| m.replace("--grid", "--set"))?;
            match axis.values.as_slice() {
                [v] => Ok((axis.key, v.clone())),
                _ => Err(format!("--set {kv}: expected KEY=VALUE (one value; --grid takes several)")),
            }
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(CommandError::Input)?;
    if !sets.is_empty() {
        config = train::grid::apply(&config, &sets)
            .map_err(|m| CommandError::input(m.replace("--grid", "--set")))?;
    }
    // Every value and layer checked before the (possibly long) data load.
    match config.validate() {
        Err(ConfigProblem::Value(e)) => return Err(invalid(&e, &overrides, &origin)),
        Err(ConfigProblem::Shape(e)) => return Err(CommandError::input(format!("{origin}: {e}"))),
        Ok(()) => {}
    }
    Ok((config, origin))
}

/// The data of `train` and `compare`, checked against the network and the fold options.
pub fn train_data(a: &TrainArgs, config: &NetConfig, origin: &str) -> Result<DataSource, CommandError> {
    if a.data.is_none() {
        synth::check_count(a.synth_count).map_err(|e| CommandError::input(format!("--synth-count {e}")))?;
    }
    let source =
        load_data(a.data.as_deref(), config.image_size, config.channels, a.synth_count, config.train.seed)?;
    model::Net::new(config, source.classes())
        .map_err(|e| CommandError::input(format!("{origin}: {e} (data: {})", source.path)))?;
    let train_set = source.train().map_err(|e| CommandError::input(e.to_string()))?;
    if let Some(k) = a.folds {
        train::check_folds(train_set, &source.path, config.train.batch, k, a.fold)?;
    }
    Ok(source)
}

/// Refuses an `--init-from` (or `--warm-start`) model that cannot start this network, before
/// the device is touched; the run repeats the check where it starts.
pub fn check_init_from(
    path: Option<&Path>,
    config: &NetConfig,
    source: &DataSource,
) -> Result<(), CommandError> {
    let Some(p) = path else { return Ok(()) };
    let net = model::Net::new(config, source.classes()).map_err(|e| CommandError::input(e.to_string()))?;
    train::warm::warm_start(p, &net, &source.class_names, config.train.seed)?;
    Ok(())
}

/// The kernel variants for `config` on `gpu` (`mode` of tuning), with a line on what was tuned.
pub fn tuned_plan(
    gpu: &Gpu,
    config: &NetConfig,
    classes: usize,
    mode: Mode,
    quiet: bool,
) -> Result<model::Plan, CommandError> {
    let net = model::Net::new(config, classes).map_err(|e| CommandError::input(e.to_string()))?;
    let (plan, rep) = tuning::plan(gpu, &net, config.train.batch, mode, &mut |m| {
        if !quiet {
            eprintln!("dlsvm: {m}")
        }
    })?;
    if !quiet && rep.tuned > 0 {
        eprintln!("dlsvm: tuned {} ops in {:.1} s ({} from the cache)", rep.tuned, rep.seconds, rep.cached);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testing::train_args;

    fn problem(words: &[&str]) -> String {
        match net_config(&train_args(words)) {
            Err(CommandError::Input(m)) => m,
            Err(e) => panic!("{words:?}: not an input error: {e}"),
            Ok(_) => panic!("{words:?}: accepted"),
        }
    }

    #[test]
    fn the_options_apply_to_the_preset_and_errors_name_the_option() {
        let (config, origin) =
            net_config(&train_args(&["--preset", "mlp", "--steps", "7", "--set", "lr=0.25"])).unwrap();
        assert_eq!(origin, "--preset mlp");
        let preset = model::preset("mlp").unwrap();
        assert_eq!((config.name.as_str(), config.train.steps, config.train.lr), ("mlp", 7, 0.25));
        assert_eq!(config.train.batch, preset.train.batch, "what no option names stays the preset's");
        assert_eq!(problem(&["--steps", "0"]), "--steps 0 must be at least 1");
        assert!(problem(&["--preset", "nope"]).starts_with("unknown preset \"nope\"; choose one of fer, "));
        assert!(problem(&["--top", "svn"]).starts_with("unknown --top \"svn\""));
        // --set speaks of --set, not of the --grid it is parsed as.
        assert_eq!(
            problem(&["--set", "lr=0.1,0.2"]),
            "--set lr=0.1,0.2: expected KEY=VALUE (one value; --grid takes several)"
        );
        let m = problem(&["--set", "lr=-1"]);
        assert!(m.starts_with("--set lr=-1: ") && !m.contains("--grid"), "{m}");
    }
}
