//! Ctrl-C (SIGINT): the first asks long work to stop at its next safe point (a training step,
//! a batch of images) and leave a resumable state; a second exits at once. The flag is
//! process-wide, so every long loop can look at it without it being passed down.

use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status of a process stopped by Ctrl-C (128 + SIGINT), by shell convention.
pub const EXIT_INTERRUPTED: u8 = 130;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process; later calls change nothing).
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted again: exiting without a checkpoint");
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
        eprintln!("interrupt: stopping at the next safe point (Ctrl-C again to quit now)");
    });
}

/// Whether Ctrl-C was pressed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Asks the process to stop as Ctrl-C does (a server shutting down).
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// The error a long phase returns when it stopped for Ctrl-C; callers that can save a
/// resumable state look for it (`error.is::<Interrupted>()`).
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// `Err(Interrupted)` once Ctrl-C was pressed: the check between two units of work.
pub fn check() -> anyhow::Result<()> {
    if requested() { Err(Interrupted.into()) } else { Ok(()) }
}

/// Whether `error` is an interruption rather than a failure.
pub fn is_interruption(error: &anyhow::Error) -> bool {
    error.is::<Interrupted>()
}
