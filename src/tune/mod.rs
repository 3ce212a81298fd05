//! Autotuning per adapter: for every op of a network's step, the variants that pass their check
//! against the CPU reference on this adapter are timed at the op's own shape and the fastest is
//! chosen. Choices persist in a cache file keyed by adapter, backend, driver, dlsvm version and the
//! op's shape, so a second start spends no time tuning.
//!
//! The cache: `$DLSVM_TUNE_CACHE`, else `$XDG_CACHE_HOME/dlsvm/tune.json`, else
//! `$HOME/.cache/dlsvm/tune.json`; written atomically; an unreadable or corrupt file is ignored with
//! one warning (and replaced at the next save). Entries of another driver or dlsvm version are
//! never used: their keys differ; those of another build (dlsvm version or kernel fingerprint)
//! tuned over a month ago are dropped at the next save ([`Cache::prune`]).
//!
//! One start tunes for at most [`BUDGET`]; ops left over keep their defaults until a later start.
//! The variants' reference checks run first, on several devices at once ([`Tuner::prepare`]: a
//! driver that compiles on its queue's thread compiles in parallel), the timing after them, on
//! one device.
//!
//! Every variant is timed but one that would run another's kernel on the op's shape (a vec4 GEMM
//! on an unaligned shape) and the direct convolutions: each is checked and screened with one quick
//! look, and only the fastest few are timed in full, side by side (see [`tune_op`]); the simple
//! fallbacks (the naive GEMM, the gather pool backward) are screened like the rest, which is all
//! they cost on a device where they are hopeless (lavapipe); on an H200 the naive GEMM won the 256³
//! and 7-row shapes and the gather the average-pool backward, by up to 1.9x. The direct convolutions
//! lost everywhere they were measured (4–10x on the H200, 8–20x on lavapipe, where one run of the
//! FER network's at batch 256 takes 4–10 s and ate the tuning budget).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::gpu::{Gpu, GpuError};
use crate::kernels::registry::{Caps, Op};
use crate::measure::{self, Ready};

/// The tuner of the command line (native only): the cache file, crash records, checks on several
/// devices at once, the budget, a network's plan.
#[cfg(not(target_arch = "wasm32"))]
mod tuner;
#[cfg(not(target_arch = "wasm32"))]
pub use tuner::*;

/// The cache file's path (overrides the default location).
pub const CACHE_ENV: &str = "DLSVM_TUNE_CACHE";
/// The tuning mode when the command line names none: `off`, `cached` or `full`.
pub const MODE_ENV: &str = "DLSVM_TUNE";

/// Timed runs per contender (in rounds, after a warm-up): the median decides.
pub const REPS: usize = 5;
/// How many of the fastest screened variants are timed further.
pub const CONTENDERS: usize = 3;
/// A screened variant slower than this many times the best screen is not timed further. A single
/// screen is noisy by 10–20 % on lavapipe; a variant dropped at 1.5x would have to be 25 % slower
/// than its screen said to have been within 5 % of the winner.
pub const CONTENDER: f64 = 1.5;
/// `bench --variants`: a variant whose first timed run takes longer than this many times the
/// row's best so far is not timed further: it cannot win.
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
    /// Milliseconds of every variant timed: the median of the [`Entry::finalists`]' rounds, the
    /// quick screen of the others.
    pub ms: BTreeMap<String, f64>,
    /// The variants timed in full, side by side, among which the choice was made (the fastest
    /// screens); empty in caches written before the tuner screened.
    #[serde(default)]
    pub finalists: Vec<String>,
    /// Variants not chosen for a reason other than speed (a failed check), with the reason.
    pub skipped: BTreeMap<String, String>,
    /// When it was tuned, in seconds since the Unix epoch (0 in caches written before it was
    /// recorded): [`Cache::prune`] drops another build's entries by it.
    #[serde(default)]
    pub tuned_at: u64,
}

/// The cache file's contents.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cache {
    pub entries: BTreeMap<String, Entry>,
    /// Variants whose first run under the tuner never returned (the process died in it: a driver
    /// crash), per device and build ([`device_key`]): the variant's name and the op it was tried
    /// on. The tuner skips them on that device from then on ([`Tuner::new`] reads the markers a
    /// dead process left, [`Trying`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub crashed: BTreeMap<String, BTreeMap<String, String>>,
    /// Variants that were among several running at once ([`Tuner::prepare`]'s checks) when a
    /// tuning process died, per device and build, as in [`Cache::crashed`]: any of them may have
    /// crashed the driver, so each is checked alone, outside the parallel checks, until it has
    /// run once without a crash (then it leaves this list, or a crash in it names it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub suspects: BTreeMap<String, BTreeMap<String, String>>,
}

/// The cache key of `op` on `gpu`'s adapter under this build of dlsvm: its version and
/// [`kernels_fingerprint`], so a build whose kernels or variants changed (new variants to time,
/// old ones that round or run differently under the same name) tunes afresh. A device opened
/// without subgroups (`DLSVM_SUBGROUPS=off`) has its own choices: its subgroup variants run the
/// tiled kernel; so has one opened with WebGPU's default limits (`DLSVM_LIMITS=webgpu`), where
/// some variants fall back.
pub fn key(gpu: &Gpu, op: &Op) -> String {
    format!("{} | {}", device_key(gpu), op.signature())
}

/// The part of a cache key that names the device, how it was opened, and this build: every key
/// of `gpu` starts with it.
pub fn device_key(gpu: &Gpu) -> String {
    let i = &gpu.info;
    format!(
        "{} | {}{}{} | {} {} | {}",
        i.name,
        i.backend,
        if gpu.subgroups { "" } else { " (no subgroups)" },
        if gpu.webgpu_limits { " (WebGPU default limits)" } else { "" },
        i.driver,
        i.driver_info,
        build(),
    )
}

/// This build's part of a cache key: the dlsvm version and the [`kernels_fingerprint`].
pub fn build() -> String {
    format!("dlsvm {} kernels {:016x}", env!("CARGO_PKG_VERSION"), kernels_fingerprint())
}

/// How long another build's entries stay in the cache after they were tuned ([`Cache::prune`]).
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

fn unix_now() -> u64 {
    web_time::SystemTime::now().duration_since(web_time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
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

    /// Drops the entries this build cannot use (another dlsvm version or kernel fingerprint than
    /// `build` names, on any adapter) that were tuned over [`STALE_AFTER`] before `now` (Unix
    /// seconds; an entry without a time counts as old); returns how many. A build in use keeps
    /// its entries: every build tuning on one machine within the month keeps its own, and a
    /// cache that followed a month of upgrades or kernel changes does not keep them all (after
    /// twelve development sessions one held hundreds of such entries).
    pub fn prune(&mut self, build: &str, now: u64) -> usize {
        let before = self.entries.len();
        let mine = format!("| {build} |");
        let keep_after = now.saturating_sub(STALE_AFTER.as_secs());
        self.entries.retain(|k, e| k.contains(&mine) || e.tuned_at > keep_after);
        // Another build's crashes are its own: its kernels may differ.
        self.crashed.retain(|k, _| k.ends_with(&format!("| {build}")));
        self.suspects.retain(|k, v| k.ends_with(&format!("| {build}")) && !v.is_empty());
        before - self.entries.len()
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
/// passed its check; `None` when none passed. Two rounds: every variant is screened (one quick
/// look, [`Ready::screen`]); then the [`CONTENDERS`] fastest, where within [`CONTENDER`] x the
/// best screen, are timed [`REPS`] times side by side ([`measure::time_together`]). Only the
/// contenders' dispatches are kept between the rounds.
///
/// `crashed` names variants to skip (they crashed the driver in an earlier start); `checked` holds
/// the outcomes of checks already run (the command line's `Tuner::prepare`), by variant;
/// `running` hears each variant's name before its first run here and `None` when that returns
/// (the command line records it, so that a crash in it is known at the next start).
pub async fn tune_op(
    gpu: &Gpu,
    op: &Op,
    crashed: &BTreeMap<String, String>,
    checked: &BTreeMap<String, Result<(), String>>,
    running: &mut dyn FnMut(Option<&str>),
) -> Result<Option<Entry>, GpuError> {
    let mut ms = BTreeMap::new();
    let mut skipped = BTreeMap::new();
    // The fastest screens so far, fastest first, with their dispatches.
    let mut top: Vec<(String, f64, Ready)> = Vec::new();
    for v in op.tuned_variants(&Caps::of(gpu)) {
        let name = v.name().to_string();
        if let Some(at) = crashed.get(&name) {
            skipped.insert(name, format!("crashed the driver in an earlier start (tuning {at})"));
            continue;
        }
        running(Some(&name));
        let prepared = measure::prepare_op(gpu, op, v, checked.get(&name).cloned()).await?;
        let screened = match prepared {
            Ok(ready) => Ok((ready.screen(gpu).await?, ready)),
            Err(why) => Err(why),
        };
        running(None);
        let ready = match screened {
            Ok(r) => r,
            Err(why) => {
                skipped.insert(name, why);
                continue;
            }
        };
        let (t, ready) = ready;
        ms.insert(name.clone(), t);
        keep_fastest(&mut top, name, t, ready);
    }
    cut_slow(&mut top);
    let (finalists, ready): (Vec<String>, Vec<Ready>) = top.into_iter().map(|(v, _, r)| (v, r)).unzip();
    if ready.len() > 1 {
        for (v, m) in finalists.iter().zip(measure::time_together(gpu, &ready, REPS).await?) {
            ms.insert(v.clone(), m);
        }
    }
    // The finalists by their medians, then the others by their screens (a screen, the best of a
    // few runs, can read faster than a finalist's median: it does not compete with it).
    let by_ms = |a: &&String, b: &&String| ms[*a].total_cmp(&ms[*b]);
    let mut ranked: Vec<&String> = finalists.iter().collect();
    ranked.sort_by(by_ms);
    let mut rest: Vec<&String> = ms.keys().filter(|v| !finalists.contains(v)).collect();
    rest.sort_by(by_ms);
    ranked.extend(rest);
    let (choice, runner_up) = (ranked.first().map(|v| v.to_string()), ranked.get(1).map(|v| v.to_string()));
    let tuned_at = unix_now();
    Ok(choice.map(|choice| Entry { choice, runner_up, ms, finalists, skipped, tuned_at }))
}

/// Puts a screened variant `(v, t, x)` into `top`, the fastest screens so far, fastest first (a
/// tie after the earlier), keeping at most [`CONTENDERS`].
fn keep_fastest<T>(top: &mut Vec<(String, f64, T)>, v: String, t: f64, x: T) {
    let at = top.partition_point(|(_, u, _)| *u <= t);
    if at < CONTENDERS {
        top.insert(at, (v, t, x));
        top.truncate(CONTENDERS);
    }
}

/// Drops from `top` (fastest first) the screens over [`CONTENDER`] x the fastest.
fn cut_slow<T>(top: &mut Vec<(String, f64, T)>) {
    let best = top.first().map_or(f64::INFINITY, |(_, t, _)| *t);
    top.retain(|(_, t, _)| *t <= CONTENDER * best);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_drops_only_other_builds_entries_older_than_a_month() {
        let entry = |tuned_at| Entry {
            choice: "a".into(),
            runner_up: None,
            ms: BTreeMap::new(),
            finalists: Vec::new(),
            skipped: BTreeMap::new(),
            tuned_at,
        };
        let now = 1_800_000_000;
        let month = STALE_AFTER.as_secs();
        let mine = build();
        let key =
            |adapter: &str, build: &str, op: &str| format!("{adapter} | Vulkan | drv 1 | {build} | {op}");
        let mut c = Cache::default();
        // This build: kept however old, on this adapter and on another.
        c.entries.insert(key("gpu0", &mine, "gemm 1"), entry(0));
        c.entries.insert(key("gpu1", &mine, "gemm 2"), entry(now - 2 * month));
        // Another build: kept within the month, dropped after it or without a time.
        c.entries
            .insert(key("gpu0", "dlsvm 0.0.1 kernels 0000000000000001", "gemm 3"), entry(now - month + 60));
        c.entries
            .insert(key("gpu0", "dlsvm 0.0.1 kernels 0000000000000001", "gemm 4"), entry(now - month - 60));
        c.entries.insert(key("gpu1", "dlsvm 0.0.1 kernels 0000000000000002", "gemm 5"), entry(0));
        assert_eq!(c.prune(&mine, now), 2);
        let mut ops: Vec<&str> = c.entries.keys().map(|k| k.rsplit(" | ").next().unwrap()).collect();
        ops.sort();
        assert_eq!(ops, ["gemm 1", "gemm 2", "gemm 3"]);
        assert_eq!(c.prune(&mine, now), 0, "nothing left to drop");
    }

    fn screen(times: &[(&str, f64)]) -> Vec<String> {
        let mut top = Vec::new();
        for (v, t) in times {
            keep_fastest(&mut top, v.to_string(), *t, ());
        }
        cut_slow(&mut top);
        top.into_iter().map(|(v, _, _)| v).collect()
    }

    #[test]
    fn the_fastest_screens_within_the_margin_are_the_finalists() {
        // At most CONTENDERS, fastest first, whatever the order they were screened in.
        assert_eq!(screen(&[("a", 5.0), ("b", 1.0), ("c", 1.2), ("d", 1.1), ("e", 1.3)]), ["b", "d", "c"]);
        // Over CONTENDER x the fastest: out, even with room left.
        assert_eq!(screen(&[("a", 1.0), ("b", 1.5), ("c", 1.51), ("d", 9.0)]), ["a", "b"]);
        // A late fast variant pushes the earlier ones out of the margin.
        assert_eq!(screen(&[("a", 3.0), ("b", 2.0), ("c", 1.0)]), ["c"]);
        // Ties keep the earlier (the default is screened first).
        assert_eq!(screen(&[("x", 1.0), ("y", 1.0), ("z", 1.0), ("w", 1.0)]), ["x", "y", "z"]);
        assert!(screen(&[]).is_empty());
    }
}
