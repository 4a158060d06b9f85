//! Per-epoch training history, saved as `history.json` and `history.csv`.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::atomic_file;

/// What one epoch did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Training images seen so far in the run, this epoch included.
    pub images_seen: u64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    /// Top-5 validation accuracy.
    pub val_top5_accuracy: f64,
    /// Learning rate (of the new top) at the end of the epoch.
    pub lr: f64,
    /// Seconds spent training (optimizer steps) this epoch.
    pub train_seconds: f64,
    /// Seconds spent evaluating on the validation images.
    pub val_seconds: f64,
    /// Training images per second.
    pub train_images_per_second: f64,
    /// Fraction of the training time spent waiting for data.
    pub data_wait_fraction: f64,
    /// Peak resident memory of the process so far, in MiB.
    #[serde(default)]
    pub peak_rss_mib: f64,
}

/// All epochs so far, plus one-off costs of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub epochs: Vec<EpochRecord>,
    /// Seconds spent decoding images into memory.
    pub decode_seconds: f64,
    /// Seconds spent computing backbone features (frozen mode, head warm-up).
    pub feature_seconds: f64,
    /// Seconds spent training the new top alone before fine-tuning (head warm-up).
    #[serde(default)]
    pub head_warmup_seconds: f64,
}

impl History {
    /// The first epoch with the highest validation accuracy (the one `model-best` holds).
    pub fn best(&self) -> Option<&EpochRecord> {
        self.epochs.iter().fold(None, |best, epoch| match best {
            Some(best) if best.val_accuracy >= epoch.val_accuracy => Some(best),
            _ => Some(epoch),
        })
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a history", path.display()))
    }

    /// Writes `history.json` and `history.csv` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        atomic_file::write(
            &dir.join("history.json"),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        let mut csv = csv::Writer::from_writer(Vec::new());
        for record in &self.epochs {
            csv.serialize(record)?;
        }
        atomic_file::write(&dir.join("history.csv"), &csv.into_inner()?)
    }
}
