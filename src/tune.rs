//! Autotuning per adapter: for every op of a network's step, the variants that pass their check
//! against the CPU reference on this adapter are timed at the op's own shape and the fastest is
//! chosen. Choices persist in a cache file keyed by adapter, backend, driver, dlsvm version and the
//! op's shape, so a second start spends no time tuning.
//!
//! The cache: `$DLSVM_TUNE_CACHE`, else `$XDG_CACHE_HOME/dlsvm/tune.json`, else
//! `$HOME/.cache/dlsvm/tune.json`; written atomically; an unreadable or corrupt file is ignored with
//! one warning (and replaced at the next save). Entries of another driver or dlsvm version are
//! never used: their keys differ.
//!
//! One start tunes for at most [`BUDGET`]; ops left over keep their defaults until a later start.
//!
//! Every variant is timed but one that would run another's kernel on the op's shape (a vec4 GEMM
//! on an unaligned shape) and the direct convolutions. The default goes first and the other simple
//! fallbacks (the naive GEMM, the gather pool backward) last, so that on a device where they are
//! hopeless (lavapipe) one run each is all they cost; on an H200 the naive GEMM won the 256³ and
//! 7-row shapes and the gather the average-pool backward, by up to 1.9x. The direct convolutions
//! lost everywhere they were measured (4–10x on the H200, 8–20x on lavapipe, where one run of the
//! FER network's at batch 256 takes 4–10 s and ate the tuning budget).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bench;
use crate::gpu::{Gpu, GpuError};
use crate::model::plan::{ops, Op};
use crate::model::{Net, Plan};

/// The cache file's path (overrides the default location).
pub const CACHE_ENV: &str = "DLSVM_TUNE_CACHE";
/// The tuning mode when the command line names none: `off`, `cached` or `full`.
pub const MODE_ENV: &str = "DLSVM_TUNE";

/// Timed runs per variant (after two warm-ups): the median decides.
pub const REPS: usize = 5;
/// A variant whose first timed run takes longer than this many times the best so far is not
/// timed further: it cannot win.
pub const HOPELESS: f64 = 3.0;
/// How long one start may spend tuning: ops not reached by then keep their defaults (and are
/// tuned at a later start). A warm cache spends nothing.
pub const BUDGET: Duration = Duration::from_secs(300);

/// How much tuning a command does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The built-in default variants; the cache is neither read nor written.
    Off,
    /// Cached choices where there are some, defaults elsewhere; nothing is timed.
    Cached,
    /// Cached choices, and every op missing from the cache tuned now (and saved).
    Full,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "off" => Some(Mode::Off),
            "cached" => Some(Mode::Cached),
            "full" | "on" => Some(Mode::Full),
            _ => None,
        }
    }

    /// The mode `flag` names, else [`MODE_ENV`]'s, else `default`; an unknown name is an error.
    pub fn choose(flag: Option<&str>, default: Mode) -> Result<Mode, String> {
        let env = std::env::var(MODE_ENV).ok();
        match flag.or(env.as_deref()) {
            None => Ok(default),
            Some(s) => Mode::parse(s.trim())
                .ok_or_else(|| format!("unknown tuning mode {s:?}; choose off, cached or full")),
        }
    }
}

/// What tuning found for one op on one adapter.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The fastest variant that passed its check.
    pub choice: String,
    /// The second fastest, when there was one.
    pub runner_up: Option<String>,
    /// Median milliseconds of every variant timed.
    pub ms: BTreeMap<String, f64>,
    /// Variants not chosen for a reason other than speed (a failed check), with the reason.
    pub skipped: BTreeMap<String, String>,
}

/// The cache file's contents.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cache {
    pub entries: BTreeMap<String, Entry>,
}

/// The cache key of `op` on `gpu`'s adapter under this build of dlsvm: its version and
/// [`kernels_fingerprint`], so a build whose kernels or variants changed (new variants to time,
/// old ones that round or run differently under the same name) tunes afresh. A device opened
/// without subgroups (`DLSVM_SUBGROUPS=off`) has its own choices: its subgroup variants run the
/// tiled kernel; so has one opened with WebGPU's default limits (`DLSVM_LIMITS=webgpu`), where
/// some variants fall back.
pub fn key(gpu: &Gpu, op: &Op) -> String {
    let i = &gpu.info;
    format!(
        "{} | {}{}{} | {} {} | dlsvm {} kernels {:016x} | {}",
        i.name,
        i.backend,
        if gpu.subgroups { "" } else { " (no subgroups)" },
        if gpu.webgpu_limits { " (WebGPU default limits)" } else { "" },
        i.driver,
        i.driver_info,
        env!("CARGO_PKG_VERSION"),
        kernels_fingerprint(),
        op.signature()
    )
}

/// A 64-bit FNV-1a hash of the built-in shader sources and the kernels' host code
/// (`kernels::HOST_SOURCES`: the variant lists, tilings, slicing and fallbacks): what the tuner's
/// choices depend on besides the adapter and the shape.
pub fn kernels_fingerprint() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes.iter().chain([&0xffu8]) {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(crate::gpu::PRELUDE.as_bytes());
    for shader in crate::kernels::SHADERS {
        for (name, source) in shader.parts.iter().chain([&(shader.name, shader.source)]) {
            eat(name.as_bytes());
            eat(source.as_bytes());
        }
    }
    for source in crate::kernels::HOST_SOURCES {
        eat(source.as_bytes());
    }
    h
}

/// The cache file's path: [`CACHE_ENV`], else the user's cache directory.
pub fn cache_path() -> PathBuf {
    if let Some(p) = std::env::var_os(CACHE_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("dlsvm").join("tune.json")
}

impl Cache {
    /// The cache at `path`: empty when the file does not exist; empty with one warning when it
    /// cannot be read or parsed.
    pub fn load(path: &Path, warn: &mut dyn FnMut(String)) -> Cache {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Cache::default(),
            Err(e) => {
                warn(format!("{}: {e}; tuning from scratch", path.display()));
                return Cache::default();
            }
        };
        serde_json::from_str(&text).unwrap_or_else(|e| {
            warn(format!("{}: not a dlsvm tuning cache ({e}); ignoring it", path.display()));
            Cache::default()
        })
    }

    /// Writes the cache to `path` atomically (creating its folder).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::model::checkpoint::write_atomic(path, text.as_bytes())
    }
}

/// Checks and times every speed variant of `op` (the default first) and picks the fastest that
/// passed its check; `None` when none passed.
pub fn tune_op(gpu: &Gpu, op: &Op) -> Result<Option<Entry>, GpuError> {
    let mut ms = BTreeMap::new();
    let mut skipped = BTreeMap::new();
    let mut best = f64::INFINITY;
    for v in speed_variants(gpu, op) {
        // A quick first measurement; only contenders get the full count.
        let first = match bench::measure_op(gpu, op, &v, 1)? {
            Ok(t) => t,
            Err(why) => {
                skipped.insert(v, why);
                continue;
            }
        };
        let t = if first > HOPELESS * best {
            first
        } else {
            bench::measure_op(gpu, op, &v, REPS)?.unwrap_or(first)
        };
        best = best.min(t);
        ms.insert(v, t);
    }
    let mut ranked: Vec<(&String, &f64)> = ms.iter().collect();
    ranked.sort_by(|a, b| a.1.total_cmp(b.1));
    Ok(ranked.first().map(|(choice, _)| Entry {
        choice: choice.to_string(),
        runner_up: ranked.get(1).map(|(n, _)| n.to_string()),
        ms: ms.clone(),
        skipped,
    }))
}

/// The variants to time for `op`: all but the direct convolutions and those that would fall back
/// to another variant's kernel on this shape; the default first, the simple fallbacks last (see
/// the module's notes).
fn speed_variants(gpu: &Gpu, op: &Op) -> Vec<String> {
    let fallback = |v: &str| matches!(v, "naive" | "gather");
    let default = op.default_variant();
    let dev = crate::kernels::gemm::GemmDevice::of(gpu);
    let mut v: Vec<String> =
        op.variants().into_iter().filter(|v| v != "direct" && op.runs_itself(&dev, v)).collect();
    v.sort_by_key(|v| (*v != default, fallback(v)));
    v
}

/// What [`plan`] did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// Ops whose choice came from the cache.
    pub cached: usize,
    /// Ops tuned now.
    pub tuned: usize,
    /// Ops left at their default (mode off or cached and not in the cache, or nothing passed).
    pub defaults: usize,
    pub seconds: f64,
}

/// A tuning session: the cache loaded once, entries looked up or tuned, the cache saved once.
pub struct Tuner {
    mode: Mode,
    path: PathBuf,
    cache: Cache,
    changed: bool,
    began: Instant,
    pub report: Report,
}

impl Tuner {
    /// Opens the cache (not for [`Mode::Off`]); `warn` hears a corrupt file's warning.
    pub fn new(mode: Mode, warn: &mut dyn FnMut(String)) -> Tuner {
        let path = cache_path();
        let cache = if mode == Mode::Off { Cache::default() } else { Cache::load(&path, warn) };
        Tuner { mode, path, cache, changed: false, began: Instant::now(), report: Report::default() }
    }

    /// `op`'s entry on `gpu`: from the cache, or tuned now under [`Mode::Full`] within the
    /// [`BUDGET`] (`progress` hears one line); `None` means the default variant.
    pub fn entry(
        &mut self,
        gpu: &Gpu,
        op: &Op,
        progress: &mut dyn FnMut(String),
    ) -> Result<Option<Entry>, GpuError> {
        let key = key(gpu, op);
        let found = match (self.cache.entries.get(&key), self.mode) {
            (_, Mode::Off) => None,
            (Some(e), _) => {
                self.report.cached += 1;
                return Ok(Some(e.clone()));
            }
            (None, Mode::Full) if self.began.elapsed() > BUDGET => {
                progress(format!(
                    "tuning budget of {} s spent: {} keeps its default",
                    BUDGET.as_secs(),
                    op.signature()
                ));
                None
            }
            (None, Mode::Full) => {
                let t = Instant::now();
                let e = tune_op(gpu, op)?;
                if let Some(e) = &e {
                    let runner = e.runner_up.as_ref().map(|r| format!("; runner-up {r} {:.2} ms", e.ms[r]));
                    progress(format!(
                        "tuned {}: {} {:.2} ms{} ({:.1} s)",
                        op.signature(),
                        e.choice,
                        e.ms[&e.choice],
                        runner.unwrap_or_default(),
                        t.elapsed().as_secs_f64()
                    ));
                    self.cache.entries.insert(key, e.clone());
                    self.changed = true;
                    self.report.tuned += 1;
                }
                e
            }
            (None, Mode::Cached) => None,
        };
        if found.is_none() {
            self.report.defaults += 1;
        }
        Ok(found)
    }

    /// Saves the cache if anything was tuned; returns what was done.
    pub fn finish(mut self, warn: &mut dyn FnMut(String)) -> Report {
        if self.changed {
            if let Err(e) = self.cache.save(&self.path) {
                warn(format!("could not save the tuning cache {}: {e}", self.path.display()));
            }
        }
        self.report.seconds = self.began.elapsed().as_secs_f64();
        self.report
    }
}

/// The plan for a step of `net` at `batch` on `gpu` under `mode`, and what was done for it. With
/// [`Mode::Full`], every op missing from the cache is tuned (`progress` hears one line per op) and
/// the cache saved.
pub fn plan(
    gpu: &Gpu,
    net: &Net,
    batch: usize,
    mode: Mode,
    progress: &mut dyn FnMut(String),
) -> Result<(Plan, Report), GpuError> {
    let mut tuner = Tuner::new(mode, &mut |m| progress(format!("warning: {m}")));
    let mut plan = Plan::default();
    for (name, op) in ops(net, batch) {
        if let Some(e) = tuner.entry(gpu, &op, progress)? {
            plan.0.insert(name, e.choice);
        }
    }
    let report = tuner.finish(&mut |m| progress(format!("warning: {m}")));
    Ok((plan, report))
}
