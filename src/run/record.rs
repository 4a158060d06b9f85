//! `config.json`: the run's configuration, what it ran on, and the dataset as it saw it.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::split::LongSitting;
use crate::data::{BadImage, ContentHash};

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
    /// The convolutions' arithmetic and kernels that ran, e.g. "bf16 on AMX".
    pub kernels: String,
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
            kernels: crate::compute::arithmetic().describe(),
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
    /// Images in sub-folders of class folders (not used): how many, and the first of them.
    pub nested_images: usize,
    pub nested_examples: Vec<PathBuf>,
    /// Sittings of photos too long to hold out whole (`--val-split groups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub long_sittings: Vec<LongSitting>,
}

/// The images a run trains and validates on, by content (`dataset.json`): what resuming
/// checks, and what tells an evaluation of seen images from one of unseen ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetFiles {
    pub train: Vec<FileRecord>,
    pub val: Vec<FileRecord>,
}

/// One image file: its path (relative to the dataset root) and the SHA-256 of its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: PathBuf,
    pub sha256: ContentHash,
}

impl DatasetFiles {
    /// What differs from `earlier`, in words, or `None` when nothing does.
    pub fn changes_since(&self, earlier: &DatasetFiles) -> Option<String> {
        use std::collections::HashMap;
        let index = |files: &DatasetFiles| -> HashMap<PathBuf, ContentHash> {
            files.train.iter().chain(&files.val).map(|f| (f.path.clone(), f.sha256)).collect()
        };
        let (now, then) = (index(self), index(earlier));
        let mut added: Vec<&PathBuf> = now.keys().filter(|p| !then.contains_key(*p)).collect();
        let mut removed: Vec<&PathBuf> = then.keys().filter(|p| !now.contains_key(*p)).collect();
        let mut changed: Vec<&PathBuf> = now
            .iter()
            .filter(|(p, h)| then.get(*p).is_some_and(|t| t != *h))
            .map(|(p, _)| p)
            .collect();
        let moved =
            self.val != earlier.val && added.is_empty() && removed.is_empty() && changed.is_empty();
        if added.is_empty() && removed.is_empty() && changed.is_empty() && !moved {
            return None;
        }
        let mut parts = Vec::new();
        for (what, files) in
            [("added", &mut added), ("removed", &mut removed), ("changed", &mut changed)]
        {
            files.sort();
            if let Some(first) = files.first() {
                parts.push(format!("{} {what} (e.g. {})", files.len(), first.display()));
            }
        }
        if moved {
            parts.push("the same files split otherwise between training and validation".into());
        }
        Some(parts.join(", "))
    }

    /// How many of `images` (content hashes) are training images, and how many validation
    /// images, of this run.
    pub fn overlap(&self, images: &[ContentHash]) -> (usize, usize) {
        use std::collections::HashSet;
        let train: HashSet<&ContentHash> = self.train.iter().map(|f| &f.sha256).collect();
        let val: HashSet<&ContentHash> = self.val.iter().map(|f| &f.sha256).collect();
        let in_train = images.iter().filter(|h| train.contains(h)).count();
        let in_val = images.iter().filter(|h| !train.contains(h) && val.contains(h)).count();
        (in_train, in_val)
    }
}
