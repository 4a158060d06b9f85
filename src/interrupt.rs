//! Ctrl-C (SIGINT): the first asks long work to stop at its next safe point (a training step,
//! a batch of features) and leave a resumable state; a second exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status of a process stopped by Ctrl-C (128 + SIGINT), by shell convention.
pub const EXIT_INTERRUPTED: u8 = 130;

/// A flag raised by Ctrl-C.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Installs the Ctrl-C handler (once per process) and returns its flag.
    pub fn install() -> Self {
        let interrupt = Self::default();
        let flag = interrupt.0.clone();
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                eprintln!("interrupted again: exiting without a checkpoint");
                std::process::exit(EXIT_INTERRUPTED as i32);
            }
            eprintln!(
                "interrupt: finishing the current step and writing a checkpoint (Ctrl-C again to quit now)"
            );
        });
        interrupt
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Raises the flag (for tests and for servers shutting down).
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
