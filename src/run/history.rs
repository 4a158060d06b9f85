//! Per-epoch training history, saved as `history.json` and `history.csv`.

use serde::{Deserialize, Serialize};

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
    pub head_warmup_seconds: f64,
}

impl History {
    /// The problems of a history that no run writes (a hand edit, a corrupt file), in words:
    /// epochs out of order, accuracies outside 0..1, losses or rates that are negative or not
    /// finite, image counts that fall.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut images_seen = 0;
        for (i, e) in self.epochs.iter().enumerate() {
            if e.epoch != i + 1 {
                problems.push(format!("epoch {} is record {} of the list", e.epoch, i + 1));
            }
            for (name, value) in [
                ("train_accuracy", e.train_accuracy),
                ("val_accuracy", e.val_accuracy),
                ("val_top5_accuracy", e.val_top5_accuracy),
            ] {
                if !(0.0..=1.0).contains(&value) {
                    problems.push(format!("epoch {}: {name} is {value}, outside 0..1", e.epoch));
                }
            }
            for (name, value) in
                [("train_loss", e.train_loss), ("val_loss", e.val_loss), ("lr", e.lr)]
            {
                if !(value.is_finite() && value >= 0.0) {
                    problems.push(format!("epoch {}: {name} is {value}", e.epoch));
                }
            }
            if e.images_seen < images_seen {
                problems.push(format!("epoch {}: images_seen falls to {}", e.epoch, e.images_seen));
            }
            images_seen = e.images_seen;
        }
        problems
    }

    /// The first epoch with the highest validation accuracy (the one `model-best` holds).
    pub fn best(&self) -> Option<&EpochRecord> {
        self.epochs.iter().fold(None, |best, epoch| match best {
            Some(best) if best.val_accuracy >= epoch.val_accuracy => Some(best),
            _ => Some(epoch),
        })
    }
}

#[cfg(test)]
impl EpochRecord {
    /// An epoch with these validation figures (and placeholders for the rest), for tests.
    pub fn validated(epoch: usize, val_loss: f64, val_accuracy: f64) -> Self {
        EpochRecord {
            epoch,
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_no_run_writes_are_problems() {
        let good =
            History { epochs: vec![EpochRecord::validated(1, 0.5, 0.9)], ..History::default() };
        assert!(good.problems().is_empty());
        for (change, named) in [
            ((|e: &mut EpochRecord| e.val_accuracy = 5.0) as fn(&mut EpochRecord), "val_accuracy"),
            (|e| e.val_loss = f64::NAN, "val_loss"),
            (|e| e.train_accuracy = -0.1, "train_accuracy"),
            (|e| e.epoch = 7, "epoch 7"),
        ] {
            let mut bad = good.clone();
            change(&mut bad.epochs[0]);
            let problems = bad.problems().join("; ");
            assert!(problems.contains(named), "{problems}");
        }
    }

    #[test]
    fn the_best_epoch_is_the_first_with_the_highest_accuracy() {
        let epochs = [(0.5, 0.90), (0.3, 0.96), (0.4, 0.96), (0.35, 0.94)]
            .iter()
            .enumerate()
            .map(|(i, &(loss, accuracy))| EpochRecord::validated(i + 1, loss, accuracy))
            .collect();
        assert_eq!(History { epochs, ..History::default() }.best().unwrap().epoch, 2);
        assert!(History::default().best().is_none());
    }
}
