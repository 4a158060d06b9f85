//! Plumbing every feature leans on: crash-safe writes, checksums, Ctrl-C, memory, progress
//! bars, the names of settings' values, and the table macros that declare settings once.

pub mod atomic_file;
pub mod checksum;
pub mod interrupt;
pub mod memory;
pub mod progress;
pub mod settings;

/// The name a value has in the run's files (`config.json`, model metadata) and on the command
/// line: its serde form, e.g. `finetune` for `Mode::Finetune`.
pub fn spelling(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}
