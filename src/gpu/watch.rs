//! The watchdog of a device opened for checking ([`super::Gpu::enable_checks`]): every wait for
//! the device is bounded, and a thread watches the calls into the driver that can block.
//!
//! What happens to a kernel that never finishes, on lavapipe: `Queue::submit` returns and a CPU
//! thread runs the kernel for ever. A wait with a timeout (`PollType::Wait { timeout }`) returns
//! `PollError::Timeout`, after which the device is stuck: the next submission blocks inside the
//! driver for ever (holding wgpu's locks, so that another thread's wait blocks too and never times
//! out), and dropping the queue waits for the device to go idle, for ever. So on the first
//! timeout the device is marked stuck: nothing more is submitted, every later wait fails at once,
//! and one reference to the queue and the device is leaked so that dropping the `Gpu` cannot
//! block. Where a thread is already blocked inside the driver (tests on several threads) no
//! timeout can fire: the watchdog thread sees a call that has run for twice the limit and calls
//! the hook of [`super::Gpu::on_hang`] (which ends the process).

use super::GpuError;
use std::collections::HashMap;
use std::sync::Mutex;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::{Arc, Weak};
use std::time::Duration;
use web_time::Instant;

/// The submissions, and how long a wait for one may take.
#[derive(Default)]
pub(super) struct Watch {
    /// The longest wait for the device before it counts as stuck; `None` waits for ever.
    pub limit: Option<Duration>,
    /// The kernels of the latest submission, described.
    pub last: String,
    pub last_index: Option<wgpu::SubmissionIndex>,
    /// Set once a wait timed out: what the device was busy with. Nothing is submitted after it.
    pub stuck: Option<String>,
    /// Called once when the watchdog finds a call blocked for twice the limit.
    pub hook: Option<fn(&GpuError)>,
    /// The calls into the driver in progress (submissions, waits): when each began.
    busy: HashMap<u64, Instant>,
    next_call: u64,
}

/// Locks `watch` (a panic elsewhere leaves the data usable).
pub(super) fn lock(watch: &Mutex<Watch>) -> std::sync::MutexGuard<'_, Watch> {
    watch.lock().unwrap_or_else(|e| e.into_inner())
}

impl Watch {
    /// The error of a wait that timed out (or of any wait after one).
    pub fn hung(&self) -> GpuError {
        GpuError::Hung {
            waiting_for: self.stuck.clone().unwrap_or_else(|| self.last.clone()),
            limit_s: self.limit.map_or(0.0, |d| d.as_secs_f64()),
        }
    }
}

/// A call into the driver in progress, for the watchdog; ends when dropped.
pub(super) struct Busy<'a> {
    watch: &'a Mutex<Watch>,
    id: u64,
}

impl<'a> Busy<'a> {
    pub fn new(watch: &'a Mutex<Watch>) -> Busy<'a> {
        let mut w = lock(watch);
        let id = w.next_call;
        w.next_call += 1;
        w.busy.insert(id, Instant::now());
        Busy { watch, id }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        lock(self.watch).busy.remove(&self.id);
    }
}

/// Starts the watchdog of `watch`: it ends with the last strong reference to `watch`, or after
/// calling the hook.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn spawn(watch: &Arc<Mutex<Watch>>, limit: Duration) {
    let weak: Weak<Mutex<Watch>> = Arc::downgrade(watch);
    let tick = (limit / 8).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let spawned = std::thread::Builder::new().name("dlsvm watchdog".into()).spawn(move || loop {
        std::thread::sleep(tick);
        let Some(watch) = weak.upgrade() else { return };
        let w = lock(&watch);
        let overdue = w.busy.values().any(|t| t.elapsed() > 2 * limit);
        if let (true, Some(hook)) = (overdue, w.hook) {
            let err = w.hung();
            drop(w);
            hook(&err);
            return;
        }
    });
    if let Err(e) = spawned {
        eprintln!("dlsvm: warning: no watchdog thread ({e}): a kernel that never finishes may hang");
    }
}
