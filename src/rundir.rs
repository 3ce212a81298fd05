//! Run directories: where a command writes, so that it never loses or mixes what a user ran.
//!
//! - A default directory never collides: `runs/<name>`, else `runs/<name>-2`, `-3`, … (the first
//!   that does not exist, [`fresh`]).
//! - A directory given with `--out` that holds a run is refused unless the user says what to do:
//!   `--resume` continues it, `--overwrite` replaces it ([`claim`]); one that holds anything else is
//!   refused unless it is empty.
//! - One process per run directory: a run holds an exclusive OS lock on `<dir>/.dlsvm.lock` for
//!   its whole life ([`RunLock`]), which the kernel releases when the process ends however it ends;
//!   a second process that would write there is refused with the holder's pid and host.
//! - `--overwrite` moves the old run aside first and deletes it only once the new run has written
//!   its first checkpoint ([`Claim::commit`]); a start that fails before that puts it back.

use std::fs::File;
use std::path::{Path, PathBuf};

/// The lock file every run directory holds while a process writes there.
pub const LOCK_FILE: &str = ".dlsvm.lock";

/// What a user asked to do with a directory that may hold an earlier run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Start a new run: the directory must be missing or empty.
    New,
    /// `--resume`: continue the run there (or start one where there is none).
    Resume,
    /// `--overwrite`: replace the run there.
    Overwrite,
}

/// The first of `base`, `base-2`, `base-3`, … that does not exist.
pub fn fresh(base: &Path) -> PathBuf {
    if !base.exists() {
        return base.to_path_buf();
    }
    let name = base.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    (2u64..)
        .map(|k| base.with_file_name(format!("{name}-{k}")))
        .find(|p| !p.exists())
        .expect("an unused name")
}

/// The newest of `base`, `base-2`, `base-3`, … that exists (the highest number), for `--resume`
/// without `--out`; `base` when none does.
pub fn latest(base: &Path) -> PathBuf {
    let name = base.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut best = (1u64, base.to_path_buf());
    if let Some(parent) = base.parent().filter(|p| !p.as_os_str().is_empty()).or(Some(Path::new("."))) {
        for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let k = n.strip_prefix(&format!("{name}-")).and_then(|k| k.parse::<u64>().ok());
            if let Some(k) = k.filter(|&k| k >= 2 && k > best.0) {
                best = (k, base.with_file_name(n));
            }
        }
    }
    best.1
}

/// Whether a file name is one a run (or a set of runs: folds, a grid, a comparison, a SLURM array's
/// logs) writes, or `dlsvm eval` beside a run's model (`confusion_<split>.png`).
fn run_file(name: &str) -> bool {
    matches!(
        name,
        "config.toml"
            | "model.safetensors"
            | "metrics.csv"
            | "steps.csv"
            | "summary.json"
            | "checkpoints"
            | "learning_curve.png"
            | "filters.png"
            | "confusion.png"
            | "grid.md"
            | "grid.json"
            | "compare.md"
            | "compare.json"
            | "compare.png"
            | "slurm"
            | LOCK_FILE
    ) || (name.starts_with("confusion_") && name.ends_with(".png"))
        || (name.contains(".safetensors.") && name.ends_with(".tmp"))
        || name.starts_with(".tmp")
}

/// What a directory holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Contents {
    /// It does not exist, or is empty.
    Nothing,
    /// dlsvm runs (one, or a set below it): described in a few words (finished or not, steps,
    /// when).
    Runs(String),
    /// Something else: the first entry that is not dlsvm's.
    Other(String),
}

/// What `dir` holds ([`Contents`]).
pub fn contents(dir: &Path) -> Contents {
    let Ok(entries) = std::fs::read_dir(dir) else { return Contents::Nothing };
    let mut names: Vec<(String, bool)> = entries
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path().is_dir()))
        .collect();
    names.sort();
    // A lock alone is no run (a start that wrote nothing else).
    names.retain(|(n, _)| n != LOCK_FILE);
    if names.is_empty() {
        return Contents::Nothing;
    }
    let mut runs = 0;
    for (name, is_dir) in &names {
        if run_file(name) {
            continue;
        }
        // A set of runs: every sub-folder a run or a set itself.
        if *is_dir && matches!(contents(&dir.join(name)), Contents::Runs(_) | Contents::Nothing) {
            runs += 1;
            continue;
        }
        return Contents::Other(name.clone());
    }
    Contents::Runs(describe(dir, runs))
}

/// A run directory in a few words: `a finished run of 600 steps, last written 2026-12-07 14:03 UTC`.
fn describe(dir: &Path, sub_runs: usize) -> String {
    let when = std::fs::metadata(dir.join("model.safetensors"))
        .or_else(|_| std::fs::metadata(dir.join("metrics.csv")))
        .or_else(|_| std::fs::metadata(dir))
        .and_then(|m| m.modified())
        .ok()
        .map(|t| format!(", last written {}", utc(t)))
        .unwrap_or_default();
    if sub_runs > 0 && !dir.join("config.toml").exists() {
        return format!("{sub_runs} runs{when}");
    }
    let summary = std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    if let Some(s) = summary {
        return format!("a finished run of {} steps{when}", s["steps"].as_u64().unwrap_or(0));
    }
    match crate::model::checkpoint::load(&dir.join("model.safetensors")) {
        Ok(ck) => format!("an unfinished run, {} of {} steps done{when}", ck.step, ck.total_steps),
        Err(_) => format!("a run that stopped before its first checkpoint{when}"),
    }
}

/// A UTC time as `YYYY-MM-DD HH:MM UTC` (civil-from-days).
fn utc(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// This machine's name, for the lock's holder line.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unknown host".to_string())
}

/// An exclusive lock on a run directory, held until dropped (or the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Who holds a run directory's lock, as its file says: `pid 4121 on host node7`.
pub fn holder(dir: &Path) -> Option<String> {
    let path = dir.join(LOCK_FILE);
    let file = File::open(&path).ok()?;
    match file.try_lock_shared() {
        // Nobody holds it.
        Ok(()) => None,
        Err(_) => {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            Some(text.lines().next().filter(|l| !l.is_empty()).unwrap_or("another process").to_string())
        }
    }
}

impl RunLock {
    /// Takes `dir`'s lock (creating the directory), or says who holds it: `<dir> is in use by
    /// dlsvm (pid N on host H): ...`.
    pub fn acquire(dir: &Path) -> Result<RunLock, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if file.try_lock().is_err() {
            let who = std::fs::read_to_string(&path).unwrap_or_default();
            let who = who.lines().next().filter(|l| !l.is_empty()).unwrap_or("another process");
            return Err(format!(
                "{} is in use by another dlsvm ({who}): one process writes to a run directory at a time; wait \
                 for it to end, or choose another --out",
                dir.display()
            ));
        }
        use std::io::Write;
        let _ = file.set_len(0);
        let mut f = &file;
        let _ = writeln!(
            f,
            "pid {} on host {}, since {}",
            std::process::id(),
            host(),
            utc(std::time::SystemTime::now())
        );
        Ok(RunLock { _file: file })
    }
}

/// A directory a command may write to ([`claim`]), locked for this process.
#[derive(Debug)]
pub struct Claim {
    pub dir: PathBuf,
    pub lock: Option<RunLock>,
    /// With `--overwrite`: the earlier run, moved aside until the new run's first checkpoint.
    aside: Option<PathBuf>,
    /// Whether the claim created the directory.
    created: bool,
}

impl Claim {
    /// The new run has written its first checkpoint: the run it replaces is deleted now.
    pub fn commit(&mut self) {
        if let Some(old) = self.aside.take() {
            let _ = std::fs::remove_dir_all(old);
        }
    }
}

impl Drop for Claim {
    /// The lock is released. A start that failed before its first checkpoint leaves things as they
    /// were: the replaced run comes back; a directory the claim created and nothing wrote to is
    /// removed.
    fn drop(&mut self) {
        self.lock.take();
        if let Some(old) = self.aside.take() {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::rename(&old, &self.dir);
            return;
        }
        let only_the_lock = std::fs::read_dir(&self.dir)
            .map(|entries| entries.flatten().all(|e| e.file_name() == LOCK_FILE))
            .unwrap_or(false);
        if only_the_lock {
            let _ = std::fs::remove_file(self.dir.join(LOCK_FILE));
            if self.created {
                let _ = std::fs::remove_dir(&self.dir);
            }
        }
    }
}

/// Claims `dir` for a command that writes runs there, as `intent` asks: a missing or empty
/// directory is taken; one holding runs is taken to resume them, or moved aside to replace them,
/// or refused; one holding anything else is refused. The directory is locked for this process.
/// An error is one line (the caller exits 2).
pub fn claim(dir: &Path, intent: Intent) -> Result<Claim, String> {
    let created = !dir.exists();
    let what = contents(dir);
    if let Contents::Other(entry) = &what {
        return Err(format!(
            "{} holds {entry:?}, which is not a dlsvm run: dlsvm writes runs only into a new or empty folder \
             (or one of its own runs); choose another --out",
            dir.display()
        ));
    }
    // Whoever is writing there now comes first: not even --overwrite moves a live run aside.
    if let Some(who) = holder(dir) {
        return Err(format!(
            "{} is in use by another dlsvm ({who}): one process writes to a run directory at a time; wait for it \
             to end, or choose another --out",
            dir.display()
        ));
    }
    match (what, intent) {
        (Contents::Runs(about), Intent::New) => Err(format!(
            "{} already holds {about}: add --resume to continue it, or --overwrite to replace it (or choose \
             another --out)",
            dir.display()
        )),
        (Contents::Runs(_), Intent::Overwrite) => {
            let name = dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let aside = dir.with_file_name(format!(".{name}.replaced-by-{}", std::process::id()));
            std::fs::rename(dir, &aside)
                .map_err(|e| format!("{}: cannot move it aside to replace it: {e}", dir.display()))?;
            match RunLock::acquire(dir) {
                Ok(lock) => {
                    Ok(Claim { dir: dir.to_path_buf(), lock: Some(lock), aside: Some(aside), created: true })
                }
                Err(e) => {
                    let _ = std::fs::rename(&aside, dir);
                    Err(e)
                }
            }
        }
        _ => Ok(Claim { dir: dir.to_path_buf(), lock: Some(RunLock::acquire(dir)?), aside: None, created }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dlsvm-rundir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn defaults_take_the_first_free_number_and_resume_the_newest() {
        let d = temp("fresh");
        let base = d.join("fer-small");
        assert_eq!(fresh(&base), base);
        assert_eq!(latest(&base), base);
        std::fs::create_dir(&base).unwrap();
        assert_eq!(fresh(&base), d.join("fer-small-2"));
        std::fs::create_dir(d.join("fer-small-2")).unwrap();
        std::fs::create_dir(d.join("fer-small-10")).unwrap();
        std::fs::create_dir(d.join("fer-small-x")).unwrap();
        assert_eq!(fresh(&base), d.join("fer-small-3"));
        assert_eq!(latest(&base), d.join("fer-small-10"));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn plain_names_only() {
        use crate::model::config::plain_name;
        for ok in ["fer", "fer-small", "my_net.v2", "a", &"x".repeat(64)] {
            assert!(plain_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "../x", "a/b", "a\\b", "a b", "é", &"x".repeat(65), "..", "~"] {
            assert!(!plain_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_directory_is_claimed_as_asked_and_locked() {
        let d = temp("claim");
        let run = d.join("r");
        // New: taken, locked; a second claim is refused with the holder.
        let c = claim(&run, Intent::New).unwrap();
        let e = claim(&run, Intent::Resume).unwrap_err();
        assert!(
            e.contains("in use by another dlsvm") && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(c);
        assert!(!run.exists(), "a claim that wrote nothing leaves nothing");
        // Holding a run: refused without --resume or --overwrite.
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("config.toml"), "x").unwrap();
        let e = claim(&run, Intent::New).unwrap_err();
        assert!(e.contains("already holds") && e.contains("--resume") && e.contains("--overwrite"), "{e}");
        assert!(claim(&run, Intent::Resume).is_ok());
        // Overwrite: moved aside; a failed start (no commit) puts it back, a commit deletes it.
        let c = claim(&run, Intent::Overwrite).unwrap();
        assert!(!run.join("config.toml").exists());
        drop(c);
        assert!(run.join("config.toml").exists(), "a failed start lost the old run");
        let mut c = claim(&run, Intent::Overwrite).unwrap();
        std::fs::write(run.join("model.safetensors"), "new").unwrap();
        c.commit();
        drop(c);
        assert!(!run.join("config.toml").exists() && run.join("model.safetensors").exists());
        assert!(std::fs::read_dir(&d).unwrap().count() == 1, "the old run is gone");
        // A start that wrote nothing leaves nothing behind.
        let fresh_dir = d.join("nothing");
        drop(claim(&fresh_dir, Intent::New).unwrap());
        assert!(!fresh_dir.exists());
        // Anything else: refused, even to overwrite.
        let other = d.join("o");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("thesis.tex"), "x").unwrap();
        for intent in [Intent::New, Intent::Resume, Intent::Overwrite] {
            let e = claim(&other, intent).unwrap_err();
            assert!(e.contains("\"thesis.tex\", which is not a dlsvm run"), "{e}");
        }
        assert!(other.join("thesis.tex").exists());
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn utc_times_are_civil() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_661_007);
        assert_eq!(utc(t), "2026-12-07 16:30 UTC");
        assert_eq!(utc(std::time::UNIX_EPOCH), "1970-01-01 00:00 UTC");
    }
}
