//! One writer per run folder: training takes an exclusive lock on `RUN/.lock` (holding its
//! process id, for the message a second writer gets). The operating system releases the lock
//! when the process ends, however it ends, so a killed run never leaves a stale lock.
//! Readers (`predict`, `serve`) do not lock; `evaluate` and `report` lock a run only to write
//! into it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Held while a process writes a run folder.
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Locks the folder of the lock file `path` for writing, or explains who holds it and
    /// what to do (`advice`).
    pub fn acquire(path: &Path, advice: &str) -> Result<Self> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                bail!(
                    "{} is being written by another fruitlab process (pid {}): {advice}",
                    dir.display(),
                    owner.trim()
                );
            }
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        write!(file, "{}", std::process::id())?;
        Ok(Self { _file: file })
    }
}
