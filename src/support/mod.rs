//! Plumbing every feature leans on: crash-safe writes, checksums, Ctrl-C, memory, progress
//! bars, the names of settings' values, and the table macros that declare settings once.

pub mod atomic_file;
pub mod checksum;
pub mod interrupt;
pub mod memory;
pub mod progress;
pub mod settings;

/// `path` made absolute with its symbolic links resolved, as far as it exists (the rest is
/// appended as given), so that two spellings of one place compare equal.
pub fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(resolved) = std::fs::canonicalize(&existing) {
            return rest.iter().rev().fold(resolved, |p, part| p.join(part));
        }
        match (existing.file_name().map(|n| n.to_os_string()), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing =
                    if parent.as_os_str().is_empty() { ".".into() } else { parent.to_path_buf() };
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Whether `path` is `folder` or lies inside it (after [`absolute`]).
pub fn is_within(path: &std::path::Path, folder: &std::path::Path) -> bool {
    absolute(path).starts_with(absolute(folder))
}

/// The name a value has in the run's files (`config.json`, model metadata) and on the command
/// line: its serde form, e.g. `finetune` for `Mode::Finetune`.
pub fn spelling(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// `text` safe inside HTML (element text and attribute values).
pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
