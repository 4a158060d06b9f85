//! JSON files of a run folder: written atomically, read with the file named in every error.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::support::atomic_file;

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    atomic_file::write(path, serde_json::to_string_pretty(value)?.as_bytes())
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is malformed", path.display()))
}
