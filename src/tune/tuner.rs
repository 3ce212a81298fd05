//! The command line's tuner ([`Tuner`]): the cache file, the budget, the crash records
//! ([`Trying`]), the reference checks on several devices at once ([`Tuner::prepare`]) and a
//! network's plan ([`plan`]). Native only: a page keeps its cache in the browser's storage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::*;
use crate::kernels::registry::Variant;
use crate::model::plan::ops;
use crate::model::{Net, Plan};

/// For the tests of crash recovery only: a variant name; the tuner aborts the process where it
/// would first run that variant (after recording that it is trying it), as a driver crash would.
pub const CRASH_ENV: &str = "DLSVM_TEST_TUNE_CRASH";

/// Records in `trying` (where there is a marker) that `variant` of op `op` on `device` is about
/// to run in `slot`, or with `None` that the slot's run returned. The test of crash recovery
/// ([`CRASH_ENV`]) dies here, after the record, as a driver crash in the variant's run would.
fn mark(trying: Option<&mut Trying>, slot: usize, device: &str, op: &str, variant: Option<&str>) {
    match (trying, variant) {
        (Some(t), Some(v)) => t.set(slot, device, op, v),
        (Some(t), None) => t.clear(slot),
        (None, _) => {}
    }
    if std::env::var(CRASH_ENV).is_ok_and(|v| Some(v.as_str()) == variant) {
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

/// The marker of this process's live [`Trying`], for [`forget_trying`] (`None` once forgotten).
/// Every write to the marker holds this lock and writes only while it names the marker, so that
/// nothing a thread still running a variant writes after [`forget_trying`] refills it.
static ACTIVE: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// Empties this process's marker, if it has one: for a process that is about to exit on a signal
/// (Ctrl-C, SIGTERM), so that the next start does not take the variant it was running for a
/// driver crash. (A kill that gives no chance, SIGKILL, still reads as one: the next start says so
/// in one line and how to try the variant again.)
pub fn forget_trying() {
    let Ok(mut active) = ACTIVE.lock() else { return };
    if let Some(path) = active.take() {
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
        // Forgotten (the process is exiting on a signal): the marker stays empty.
        let Ok(active) = ACTIVE.lock() else { return };
        if active.is_none() {
            return;
        }
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
                let op_name = op.signature();
                mark(trying.lock().unwrap().as_deref_mut(), slot, device, &op_name, Some(v.name()));
                let o = pollster::block_on(measure::check_op(g, op, *v));
                mark(trying.lock().unwrap().as_deref_mut(), slot, device, &op_name, None);
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
        let (trying, op_name) = (&mut self.trying, op.signature());
        let mut running = |v: Option<&str>| mark(trying.as_mut(), 0, &device, &op_name, v);
        let e = pollster::block_on(tune_op(gpu, op, &crashed, &checked, &mut running))?;
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
