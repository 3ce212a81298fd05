//! How the commands meet signals: training and comparing stop after the current step with a
//! checkpoint on the first Ctrl-C or scheduler signal and quit on the second; tuning and benchmarks
//! quit at once, without leaving the tuner's record of a variant that seemed to crash.

use crate::train;
use crate::tune as tuning;

/// `dlsvm train` stopped by Ctrl-C after writing a checkpoint (128 + SIGINT, as shells report it);
/// other signals give 128 + their number ([`interrupted_code`]).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The signal that stopped a run (its number; 0 when none came): the exit code is 128 + it.
static SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The exit code of a run stopped by a signal: 128 + its number, as shells report it (130 for
/// Ctrl-C, 143 SIGTERM, 129 SIGHUP, 138 SIGUSR1).
pub fn interrupted_code() -> u8 {
    match SIGNAL.load(std::sync::atomic::Ordering::SeqCst) {
        0 => EXIT_INTERRUPTED,
        sig => (128 + sig).clamp(0, 255) as u8,
    }
}

/// Ctrl-C (SIGINT) during training, and what a scheduler sends (SIGTERM on preemption or
/// `scancel`, SIGHUP, SIGUSR1 as the warning before a time limit): the first asks the trainer to
/// stop after the current step with a checkpoint ([`train::INTERRUPT`]); a second quits at once
/// (checkpoint writes are atomic, so the one on disk stays whole).
#[cfg(unix)]
pub fn install_interrupt_handler() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dlsvm: warning: signals will stop training without a checkpoint: {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new().name("dlsvm-signals".into()).spawn(move || {
        for sig in signals.forever() {
            let name = match sig {
                SIGINT => "interrupt (SIGINT)",
                SIGTERM => "SIGTERM",
                SIGHUP => "SIGHUP",
                _ => "SIGUSR1",
            };
            if train::INTERRUPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
                tuning::forget_trying();
                std::process::exit(128 + sig);
            }
            SIGNAL.store(sig, std::sync::atomic::Ordering::SeqCst);
            eprintln!(
                "dlsvm: {name}: stopping after the current step to write a checkpoint (a second signal quits at once)"
            );
        }
    });
    if let Err(e) = spawned {
        eprintln!("dlsvm: warning: signals will stop training without a checkpoint: {e}");
    }
}

/// Ctrl-C, SIGTERM or SIGHUP during `dlsvm tune` and `dlsvm bench`: quit at once as without a
/// handler (128 + the signal), but first empty the tuner's marker of the variant it is running, so
/// the next start does not take the interruption for a driver crash ([`tuning::forget_trying`]).
#[cfg(unix)]
pub fn quit_on_signal_without_a_crash_record() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        let _ = std::thread::Builder::new().name("dlsvm-signals".into()).spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tuning::forget_trying();
                std::process::exit(128 + sig);
            }
        });
    }
}

#[cfg(not(unix))]
pub fn quit_on_signal_without_a_crash_record() {
    let _ = ctrlc::set_handler(|| {
        tuning::forget_trying();
        std::process::exit(EXIT_INTERRUPTED as i32);
    });
}

/// Ctrl-C during training (where there are no Unix signals): as on Unix, the first stops after
/// the current step with a checkpoint, a second quits at once.
#[cfg(not(unix))]
pub fn install_interrupt_handler() {
    let result = ctrlc::set_handler(|| {
        if train::INTERRUPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tuning::forget_trying();
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
        eprintln!("dlsvm: interrupt: stopping after the current step to write a checkpoint (Ctrl-C again quits at once)");
    });
    if let Err(e) = result {
        eprintln!("dlsvm: warning: Ctrl-C will stop training without a checkpoint: {e}");
    }
}
