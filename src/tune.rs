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
use std::time::{Duration, Instant};

use crate::gpu::{Gpu, GpuError};
use crate::kernels::registry::{Caps, Op, Variant};
use crate::measure::{self, Ready};
use crate::model::plan::ops;
use crate::model::{Net, Plan};

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
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
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
/// the outcomes of checks already run ([`Tuner::prepare`]), by variant; `trying`, where given,
/// records each variant before its first run here, so that a crash in it is known at the next
/// start.
pub fn tune_op(
    gpu: &Gpu,
    op: &Op,
    crashed: &BTreeMap<String, String>,
    checked: &BTreeMap<String, Result<(), String>>,
    mut trying: Option<&mut Trying>,
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
        if let Some(t) = trying.as_deref_mut() {
            t.set(0, &device_key(gpu), &op.signature(), &name);
            crash_here(&name);
        }
        let prepared = measure::prepare_op(gpu, op, v, checked.get(&name).cloned())?;
        let screened = match prepared {
            Ok(ready) => Ok((ready.screen(gpu)?, ready)),
            Err(why) => Err(why),
        };
        if let Some(t) = trying.as_deref_mut() {
            t.clear(0);
        }
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
        for (v, m) in finalists.iter().zip(measure::time_together(gpu, &ready, REPS)?) {
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

/// For the tests of crash recovery only: a variant name; the tuner aborts the process where it
/// would first run that variant (after recording that it is trying it), as a driver crash would.
pub const CRASH_ENV: &str = "DLSVM_TEST_TUNE_CRASH";

/// The test of crash recovery ([`CRASH_ENV`]): dies as a driver crash would, in `variant`'s run.
fn crash_here(variant: &str) {
    if std::env::var(CRASH_ENV).is_ok_and(|v| v == variant) {
        std::process::abort();
    }
}

/// How many devices [`Tuner::prepare`] checks on at once (overrides the default, the number of
/// CPU cores up to [`MAX_WORKERS`]); 1 checks each variant just before timing it, on one device.
pub const WORKERS_ENV: &str = "DLSVM_TUNE_WORKERS";
/// The most devices [`Tuner::prepare`] opens by default.
pub const MAX_WORKERS: usize = 4;

/// The devices [`Tuner::prepare`] checks on at once: [`WORKERS_ENV`], else the CPU cores (the
/// driver compiles on the CPU), at most [`MAX_WORKERS`].
pub fn workers() -> usize {
    std::env::var(WORKERS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS)))
        .max(1)
}

/// A tuning process's marker file, `<cache>.trying.<pid>`, held under an exclusive OS lock for
/// the process's life: before a variant first runs it names the device, the op and the variant,
/// and it is emptied when the run returns. The kernel releases the lock when the process dies, so
/// a marker that can be locked and still names a variant is a process that died in that variant's
/// run (a driver crash, or a kill): [`take_crashes`] reads it at the next start.
pub struct Trying {
    file: std::fs::File,
    path: PathBuf,
    /// The variant each running check or timing is in (one line each), by slot.
    slots: Vec<Option<String>>,
}

/// The marker of this process's live [`Trying`], for [`forget_trying`].
static ACTIVE: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// Empties this process's marker, if it has one: for a process that is about to exit on a signal
/// (Ctrl-C, SIGTERM), so that the next start does not take the variant it was running for a
/// driver crash. (A kill that gives no chance, SIGKILL, still reads as one: the next start says so
/// in one line and how to try the variant again.)
pub fn forget_trying() {
    if let Some(path) = ACTIVE.lock().ok().and_then(|a| a.clone()) {
        let _ = std::fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(0));
    }
}

impl Trying {
    /// Creates and locks this process's marker beside the cache at `cache` (`None`, with the
    /// reason, where the folder cannot hold it: tuning goes on without crash records).
    pub fn open(cache: &Path) -> Result<Trying, String> {
        let path = marker_path(cache, std::process::id());
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let file = std::fs::File::create(&path).map_err(fail)?;
        file.lock().map_err(fail)?;
        if let Ok(mut active) = ACTIVE.lock() {
            *active = Some(path.clone());
        }
        Ok(Trying { file, path, slots: Vec::new() })
    }

    /// Records that `variant` of op `op` on device `device` is about to run in `slot` (one of
    /// several running at once; a line each, tab-separated).
    pub fn set(&mut self, slot: usize, device: &str, op: &str, variant: &str) {
        if self.slots.len() <= slot {
            self.slots.resize(slot + 1, None);
        }
        self.slots[slot] = Some(format!("{device}\t{op}\t{variant}\n"));
        self.write();
    }

    /// The run in `slot` returned.
    pub fn clear(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot) {
            *s = None;
        }
        self.write();
    }

    fn write(&mut self) {
        let text: String = self.slots.iter().flatten().map(String::as_str).collect();
        use std::io::{Seek, Write};
        // A process crash keeps what write() handed the kernel: no sync needed.
        let _ = self.file.set_len(0);
        let _ = self.file.seek(std::io::SeekFrom::Start(0));
        let _ = self.file.write_all(text.as_bytes());
    }
}

impl Drop for Trying {
    fn drop(&mut self) {
        if let Ok(mut active) = ACTIVE.lock() {
            *active = None;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn marker_path(cache: &Path, pid: u32) -> PathBuf {
    let name = cache.file_name().map_or("tune.json".into(), |n| n.to_string_lossy().into_owned());
    cache.with_file_name(format!("{name}.trying.{pid}"))
}

/// A variant a dead tuning process was running ([`take_crashes`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Crash {
    /// [`device_key`]
    pub device: String,
    pub op: String,
    pub variant: String,
    /// Whether it was the only variant running then: the one that crashed. Otherwise any of
    /// those running may have.
    pub alone: bool,
}

/// The crashes dead tuning processes left beside the cache at `cache` ([`Trying`]): the variants
/// each was running. Their markers are deleted; live processes' are left alone.
pub fn take_crashes(cache: &Path) -> Vec<Crash> {
    let prefix = format!("{}.trying.", cache.file_name().map_or("tune.json".into(), |n| n.to_string_lossy()));
    let dir = match cache.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(listing) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in listing.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let Ok(file) = std::fs::File::open(entry.path()) else {
            continue;
        };
        // Held: a live process's. Free: its process is gone.
        if file.try_lock().is_err() {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let running: Vec<Vec<&str>> =
            text.lines().map(|l| l.splitn(3, '\t').collect::<Vec<_>>()).filter(|p| p.len() == 3).collect();
        for p in &running {
            found.push(Crash {
                device: p[0].to_string(),
                op: p[1].to_string(),
                variant: p[2].to_string(),
                alone: running.len() == 1,
            });
        }
        let _ = std::fs::remove_file(entry.path());
    }
    found
}

/// Runs [`measure::check_op`] for every `(key, op, variant)` of `jobs` on `gpu` and up to
/// `workers - 1` more devices on its adapter ([`Gpu::sibling`]), each on a thread of its own,
/// taking the next group of jobs as it finishes one: the jobs of one variant on ops of one kind
/// and layout (which mostly share a pipeline) go to one device, so that no two compile it.
/// `trying` records what each device is running. Returns each job's outcome (`None`: not run,
/// where a device failed) and how many devices checked. The other devices are closed before it
/// returns (a driver's shader cache writes are done).
fn check_together(
    gpu: &Gpu,
    jobs: &[(String, Op, Variant)],
    workers: usize,
    device: &str,
    trying: Option<&mut Trying>,
) -> (Vec<Option<Result<(), String>>>, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of = std::collections::HashMap::new();
    for (i, (_, op, v)) in jobs.iter().enumerate() {
        let layout = match op {
            Op::Gemm(s) => Some(s.trans),
            _ => None,
        };
        let g = *group_of.entry((std::mem::discriminant(op), layout, v.name())).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Result<(), String>>>> = Mutex::new(vec![None; jobs.len()]);
    let trying = Mutex::new(trying);
    let devices = AtomicUsize::new(1);
    let work = |g: &Gpu, slot: usize| {
        while let Some(group) = groups.get(next.fetch_add(1, Ordering::SeqCst)) {
            for &i in group {
                let (_, op, v) = &jobs[i];
                if let Some(t) = trying.lock().unwrap().as_deref_mut() {
                    t.set(slot, device, &op.signature(), v.name());
                }
                crash_here(v.name());
                let o = measure::check_op(g, op, *v);
                if let Some(t) = trying.lock().unwrap().as_deref_mut() {
                    t.clear(slot);
                }
                outcomes.lock().unwrap()[i] = Some(o);
            }
        }
    };
    std::thread::scope(|s| {
        for slot in 1..workers.min(groups.len()) {
            let (work, devices) = (&work, &devices);
            s.spawn(move || {
                // A device that cannot be opened leaves its share to the others.
                if let Ok(g) = gpu.sibling() {
                    devices.fetch_add(1, Ordering::SeqCst);
                    work(&g, slot);
                }
            });
        }
        work(gpu, 0);
    });
    (outcomes.into_inner().unwrap(), devices.into_inner())
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

/// A tuned op's choice, typed.
#[derive(Clone, Debug)]
pub struct Choice {
    pub variant: Variant,
    pub runner_up: Option<Variant>,
    /// The cache entry it came from.
    pub entry: Entry,
}

/// A tuning session: the cache loaded once, entries looked up or tuned, the cache saved once.
pub struct Tuner {
    mode: Mode,
    path: PathBuf,
    cache: Cache,
    changed: bool,
    began: Instant,
    pub report: Report,
    /// Keys [`Tuner::tune_ahead`] tuned in this run, not yet asked for by [`Tuner::entry`] (which
    /// then counts them as tuned, not as cached).
    ahead: std::collections::HashSet<String>,
    /// This process's marker of the variants it is trying (with [`Mode::Full`]).
    trying: Option<Trying>,
    /// The outcomes of [`Tuner::prepare`]'s checks: by cache key, then variant.
    checked: std::collections::HashMap<String, BTreeMap<String, Result<(), String>>>,
}

impl Tuner {
    /// Opens the cache (not for [`Mode::Off`]); `warn` hears a corrupt file's warning.
    /// Under [`Mode::Full`] it also takes the crashes a dead tuning process left ([`take_crashes`]):
    /// each is recorded in the cache (saved at once) and `warn` hears one line per variant, which
    /// this and later starts then skip on that device.
    pub fn new(mode: Mode, warn: &mut dyn FnMut(String)) -> Tuner {
        let path = cache_path();
        let mut cache = if mode == Mode::Off { Cache::default() } else { Cache::load(&path, warn) };
        let mut trying = None;
        if mode == Mode::Full {
            let crashes = take_crashes(&path);
            for c in crashes.iter().filter(|c| c.alone) {
                warn(format!(
                    "variant {} was running when an earlier start ended abruptly (a driver crash, or a \
                     kill) while tuning {} on this device; it is skipped here from now on (remove it from \
                     \"crashed\" in {} to try it again)",
                    c.variant,
                    c.op,
                    path.display()
                ));
                cache.crashed.entry(c.device.clone()).or_default().insert(c.variant.clone(), c.op.clone());
            }
            let together: Vec<&Crash> = crashes.iter().filter(|c| !c.alone).collect();
            if !together.is_empty() {
                let names: Vec<String> =
                    together.iter().map(|c| format!("{} ({})", c.variant, c.op)).collect();
                warn(format!(
                    "an earlier start ended abruptly (a driver crash, or a kill) while checking {} at once on \
                     this device; each is checked alone from now on, so that a crash names its variant",
                    names.join(", ")
                ));
                for c in together {
                    cache
                        .suspects
                        .entry(c.device.clone())
                        .or_default()
                        .insert(c.variant.clone(), c.op.clone());
                }
            }
            if !crashes.is_empty() {
                if let Err(e) = cache.save(&path) {
                    warn(format!("could not save the tuning cache {}: {e}", path.display()));
                }
            }
            trying =
                Trying::open(&path).map_err(|e| warn(format!("no crash records while tuning: {e}"))).ok();
        }
        Tuner {
            mode,
            path,
            cache,
            changed: false,
            began: Instant::now(),
            report: Report::default(),
            ahead: Default::default(),
            trying,
            checked: Default::default(),
        }
    }

    /// Checks every variant the tuner would time for `ops` (those [`Tuner::entry`] would tune now)
    /// against the CPU reference ahead of the timing, on [`workers`] devices at once: the checks
    /// build every pipeline the timing then uses, and a driver that compiles a pipeline on its
    /// queue's thread at its first run (lavapipe: most of a first start's tuning time) compiles
    /// on each device's own thread, where one device would compile them one after another. The
    /// timing stays on `gpu` alone, after the checks; it finds the pipelines the other devices
    /// built in the driver's shader cache (where the driver keeps one: Mesa's, NVIDIA's, ...).
    /// Variants suspected of a crash are left to be checked alone. `progress` hears one line.
    pub fn prepare(&mut self, gpu: &Gpu, ops: &[Op], progress: &mut dyn FnMut(String)) {
        let workers = workers();
        if self.mode != Mode::Full || workers < 2 || self.began.elapsed() > BUDGET {
            return;
        }
        let device = device_key(gpu);
        let caps = Caps::of(gpu);
        let empty = BTreeMap::new();
        let crashed = self.cache.crashed.get(&device).unwrap_or(&empty);
        let suspects = self.cache.suspects.get(&device).unwrap_or(&empty);
        let mut jobs: Vec<(String, Op, Variant)> = Vec::new();
        let mut keys = std::collections::HashSet::new();
        for op in ops {
            let k = key(gpu, op);
            if self.cache.entries.contains_key(&k) || self.checked.contains_key(&k) || !keys.insert(k.clone())
            {
                continue;
            }
            for v in op.tuned_variants(&caps) {
                if !crashed.contains_key(v.name()) && !suspects.contains_key(v.name()) {
                    jobs.push((k.clone(), *op, v));
                }
            }
        }
        if jobs.is_empty() {
            return;
        }
        let t = Instant::now();
        let (outcomes, devices) = check_together(gpu, &jobs, workers, &device, self.trying.as_mut());
        let n = outcomes.len();
        for ((k, _, v), outcome) in jobs.iter().zip(outcomes) {
            if let Some(o) = outcome {
                self.checked.entry(k.clone()).or_default().insert(v.name().to_string(), o);
            }
        }
        progress(format!(
            "checked {n} variants of {} ops against the CPU reference on {devices} devices at once ({:.1} s)",
            keys.len(),
            t.elapsed().as_secs_f64()
        ));
    }

    /// Tunes `op` now where [`Tuner::entry`] would (full mode, not cached, budget left), silently
    /// otherwise: a caller with many ops and one budget chooses which are tuned first, and
    /// `entry` still reports each op once, when it is asked for.
    pub fn tune_ahead(
        &mut self,
        gpu: &Gpu,
        op: &Op,
        progress: &mut dyn FnMut(String),
    ) -> Result<(), GpuError> {
        let key = key(gpu, op);
        if self.mode != Mode::Full || self.cache.entries.contains_key(&key) || self.began.elapsed() > BUDGET {
            return Ok(());
        }
        if self.tune_now(gpu, op, key.clone(), progress)?.is_some() {
            self.ahead.insert(key);
        }
        Ok(())
    }

    /// Tunes `op` and caches the choice (None: nothing to choose on this device).
    fn tune_now(
        &mut self,
        gpu: &Gpu,
        op: &Op,
        key: String,
        progress: &mut dyn FnMut(String),
    ) -> Result<Option<Entry>, GpuError> {
        let t = Instant::now();
        let device = device_key(gpu);
        let crashed = self.cache.crashed.get(&device).cloned().unwrap_or_default();
        let checked = self.checked.remove(&key).unwrap_or_default();
        let e = tune_op(gpu, op, &crashed, &checked, self.trying.as_mut())?;
        // The suspects this op ran alone ran without a crash.
        if let (Some(e), Some(suspects)) = (&e, self.cache.suspects.get_mut(&device)) {
            let before = suspects.len();
            suspects.retain(|v, _| !e.ms.contains_key(v) && !e.skipped.contains_key(v));
            self.changed |= suspects.len() != before;
        }
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
        Ok(e)
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
                if !self.ahead.remove(&key) {
                    self.report.cached += 1;
                }
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
            (None, Mode::Full) => self.tune_now(gpu, op, key, progress)?,
            (None, Mode::Cached) => None,
        };
        if found.is_none() {
            self.report.defaults += 1;
        }
        Ok(found)
    }

    /// `op`'s choice on `gpu` ([`Tuner::entry`]) as typed variants. An entry whose names this build
    /// does not know (a cache edited by hand: this build's keys carry its kernels' fingerprint) is
    /// ignored with a warning naming the cache file.
    pub fn choice(
        &mut self,
        gpu: &Gpu,
        op: &Op,
        progress: &mut dyn FnMut(String),
    ) -> Result<Option<Choice>, GpuError> {
        let Some(e) = self.entry(gpu, op, progress)? else {
            return Ok(None);
        };
        let parsed = op.parse(&e.choice).and_then(|v| {
            let runner_up = e.runner_up.as_deref().map(|r| op.parse(r)).transpose()?;
            Ok(Choice { variant: v, runner_up, entry: e.clone() })
        });
        match parsed {
            Ok(c) => Ok(Some(c)),
            Err(why) => {
                progress(format!(
                    "warning: {}: {}: {why}; using the default",
                    self.path.display(),
                    op.signature()
                ));
                Ok(None)
            }
        }
    }

    /// Saves the cache if anything was tuned; returns what was done.
    pub fn finish(mut self, warn: &mut dyn FnMut(String)) -> Report {
        if self.changed {
            self.cache.prune(&build(), unix_now());
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
    let ops = ops(net, batch);
    tuner.prepare(gpu, &ops.iter().map(|(_, op)| *op).collect::<Vec<_>>(), progress);
    for (key, op) in ops {
        if let Some(c) = tuner.choice(gpu, &op, progress)? {
            plan.set(key, c.variant).map_err(GpuError::Internal)?;
        }
    }
    let report = tuner.finish(&mut |m| progress(format!("warning: {m}")));
    Ok((plan, report))
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
