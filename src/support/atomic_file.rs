//! Crash-safe file writes: a reader sees the old file or the new one, never half of one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Writes `bytes` to `path` through a temporary sibling file: write, fsync, rename, fsync the
/// folder. A crash (even `kill -9`) at any point leaves either the previous file or the new one.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |file| file.write_all(bytes).map_err(Into::into))
}

/// Like [`write`], with the content produced by `fill` writing into the temporary file.
pub fn write_with(path: &Path, fill: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let temporary = temporary_sibling(path);
    let result = (|| {
        let mut file = File::create(&temporary)
            .with_context(|| format!("cannot create {}", temporary.display()))?;
        fill(&mut file)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        // Best effort: never leave a stray half-written temporary behind.
        let _ = fs::remove_file(&temporary);
    }
    result.map_err(|error| {
        let cause = cause_of(&error, path);
        error.context(format!("cannot write {}{cause}", path.display()))
    })
}

/// Why a write to `path` failed, in words, when the error says it: the folder is missing, is
/// not a folder, is read-only, or the disk is full.
fn cause_of(error: &anyhow::Error, path: &Path) -> String {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let io = error.chain().find_map(|e| e.downcast_ref::<std::io::Error>());
    let kind = io.map(std::io::Error::kind);
    let raw = io.and_then(std::io::Error::raw_os_error);
    if !parent.exists() {
        return format!(": the folder {} does not exist", parent.display());
    }
    if !parent.is_dir() {
        return format!(": {} is not a folder", parent.display());
    }
    if path.is_dir() {
        return ": a folder of that name is in the way".into();
    }
    match (kind, raw) {
        (Some(std::io::ErrorKind::PermissionDenied), _) | (_, Some(libc::EROFS)) => {
            format!(": {} is read-only or not ours to write", parent.display())
        }
        (Some(std::io::ErrorKind::StorageFull), _) | (_, Some(libc::ENOSPC)) => {
            ": the disk is full".into()
        }
        (Some(std::io::ErrorKind::FileTooLarge), _) | (_, Some(libc::EFBIG)) => {
            ": the file is larger than this process may write (a file-size limit)".into()
        }
        (Some(std::io::ErrorKind::QuotaExceeded), _) => ": the disk quota is exceeded".into(),
        _ => String::new(),
    }
}

fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Whether `path` is a temporary file of [`write`] (`.NAME.PID.tmp`): left behind only when a
/// process was killed while writing, and safe to remove by the folder's next writer.
pub fn is_temporary(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    inner.rsplit_once('.').is_some_and(|(file, pid)| {
        !file.is_empty() && !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit())
    })
}

fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failed_write_names_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = write(&dir.path().join("nope/file.json"), b"x").unwrap_err();
        assert!(format!("{missing:#}").contains("does not exist"), "{missing:#}");
        std::fs::create_dir(dir.path().join("taken")).unwrap();
        let folder = write(&dir.path().join("taken"), b"x").unwrap_err();
        assert!(format!("{folder:#}").contains("folder of that name"), "{folder:#}");
        std::fs::write(dir.path().join("plain"), b"").unwrap();
        let file_parent = write(&dir.path().join("plain/file.json"), b"x").unwrap_err();
        assert!(format!("{file_parent:#}").contains("is not a folder"), "{file_parent:#}");
        for error in [missing, folder, file_parent] {
            assert!(!format!("{error:#}").contains("disk"), "{error:#}");
        }
    }

    use super::*;

    #[test]
    fn replaces_existing_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, b"old").unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the target file should remain");
    }

    #[test]
    fn temporaries_are_recognised_by_name() {
        let dir = Path::new("/run");
        assert!(is_temporary(&temporary_sibling(&dir.join("model-best.safetensors"))));
        for other in ["model-best.safetensors", ".hidden", ".x.tmp", ".x.12a.tmp", "a.123.tmp"] {
            assert!(!is_temporary(&dir.join(other)), "{other}");
        }
    }

    #[test]
    fn failed_fill_keeps_previous_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, b"old").unwrap();
        let result = write_with(&path, |_| anyhow::bail!("simulated failure"));
        assert!(result.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
