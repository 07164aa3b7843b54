//! SIGTERM asks a worker to stop: the coordinator stopping, a trial timeout, Slurm's warning
//! before a time limit (relayed by the job), preemption. Inside a training loop that writes
//! checkpoints, the built-in workers first save where they are and report it, so the trial's
//! next attempt loses nothing; anywhere else, and at a second SIGTERM, they die of it at once
//! as they always did.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static ARMED: AtomicBool = AtomicBool::new(false);
static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

extern "C" fn on_sigterm(_: libc::c_int) {
    if ARMED.load(Ordering::SeqCst) && !REQUESTED.swap(true, Ordering::SeqCst) {
        return;
    }
    // SAFETY: signal and raise are async-signal-safe; SIGTERM is blocked inside this handler,
    // so the raised one is delivered, with the default action, as the handler returns.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::raise(libc::SIGTERM);
    }
}

/// While this lives, SIGTERM only sets `requested()`.
pub struct Armed(());

/// Catches SIGTERM until the guard is dropped. Call where the loop checks `requested()` and can
/// save a checkpoint.
pub fn arm() -> Armed {
    INSTALL.call_once(|| {
        // SAFETY: installs a handler that touches atomics only (and the async-signal-safe calls above).
        unsafe {
            libc::signal(libc::SIGTERM, on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t);
        }
    });
    ARMED.store(true, Ordering::SeqCst);
    Armed(())
}

impl Drop for Armed {
    fn drop(&mut self) {
        ARMED.store(false, Ordering::SeqCst);
    }
}

/// Whether SIGTERM came while armed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
