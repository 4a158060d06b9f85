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

    /// The epoch since which `monitor` has not improved, and how many epochs ago that was.
    pub fn epochs_without_improvement(&self, monitor: crate::config::Monitor) -> usize {
        let value = |e: &EpochRecord| match monitor {
            crate::config::Monitor::Loss => -e.val_loss,
            crate::config::Monitor::Accuracy => e.val_accuracy,
        };
        let mut best = f64::NEG_INFINITY;
        let mut since = 0;
        for epoch in &self.epochs {
            if value(epoch) > best {
                best = value(epoch);
                since = 0;
            } else {
                since += 1;
            }
        }
        since
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Monitor;

    fn history(values: &[(f64, f64)]) -> History {
        let epochs = values
            .iter()
            .enumerate()
            .map(|(i, &(val_loss, val_accuracy))| EpochRecord {
                epoch: i + 1,
                images_seen: 0,
                train_loss: 0.0,
                train_accuracy: 0.0,
                val_loss,
                val_accuracy,
                val_top5_accuracy: 1.0,
                lr: 1e-3,
                train_seconds: 1.0,
                val_seconds: 1.0,
                train_images_per_second: 1.0,
                data_wait_fraction: 0.0,
                peak_rss_mib: 0.0,
            })
            .collect();
        History { epochs, ..History::default() }
    }

    #[test]
    fn patience_counts_epochs_since_the_best() {
        let h = history(&[(0.5, 0.90), (0.3, 0.95), (0.4, 0.96), (0.35, 0.94)]);
        assert_eq!(h.epochs_without_improvement(Monitor::Loss), 2);
        assert_eq!(h.epochs_without_improvement(Monitor::Accuracy), 1);
        assert_eq!(h.best().unwrap().epoch, 3);
    }
}
