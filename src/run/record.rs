//! `config.json`: the run's configuration, what it ran on, and the dataset as it saw it.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::BadImage;

/// The content of `config.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub config: TrainConfig,
    pub environment: Environment,
    pub dataset: Option<DatasetSummary>,
}

/// The configuration in a `config.json` file (for `train --config FILE`).
pub fn read_config_file(path: &Path) -> Result<TrainConfig> {
    Ok(super::read_json::<RunRecord>(path)?.config)
}

/// What the run ran on, for the record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Environment {
    pub fruitlab_version: String,
    pub burn_version: String,
    pub backend: String,
    pub threads: usize,
    pub os: String,
    pub arch: String,
    pub cpu: String,
    pub started: String,
    pub command_line: Vec<String>,
}

impl Environment {
    pub fn capture(backend: &str) -> Self {
        Self {
            fruitlab_version: env!("CARGO_PKG_VERSION").into(),
            burn_version: crate::BURN_VERSION.into(),
            backend: backend.into(),
            threads: rayon::current_num_threads(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            cpu: cpu_model(),
            started: chrono::Local::now().to_rfc3339(),
            command_line: std::env::args().collect(),
        }
    }
}

/// The CPU's model name, as the kernel reports it.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The dataset as this run saw it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub classes: usize,
    pub train_images: usize,
    pub val_images: usize,
    /// Unreadable images left out (`--skip-bad-images`).
    pub skipped_images: Vec<BadImage>,
    /// Non-image files found in class folders (not used).
    pub ignored_files: Vec<PathBuf>,
    /// Images in sub-folders of class folders (not used).
    pub nested_images: Vec<PathBuf>,
}
