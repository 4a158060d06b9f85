//! The record of a finished epoch, as `history.json` keeps it and the screen shows it.

use crate::eval::Metrics;
use crate::run::{EpochRecord, PartialEpoch};

/// What the epoch did: its training sums, its validation, and the time validation took.
pub fn epoch_record(
    epoch: usize,
    images_seen: u64,
    sums: &PartialEpoch,
    val: &Metrics,
    val_seconds: f64,
    lr: f64,
) -> EpochRecord {
    let images = sums.images.max(1) as f64;
    let seconds = sums.seconds.max(1e-9);
    EpochRecord {
        epoch,
        images_seen,
        train_loss: sums.loss_sum / images,
        train_accuracy: sums.correct as f64 / images,
        val_loss: val.loss,
        val_accuracy: val.accuracy,
        val_top5_accuracy: val.top5_accuracy,
        lr,
        train_seconds: sums.seconds,
        val_seconds,
        train_images_per_second: sums.images as f64 / seconds,
        data_wait_fraction: sums.waited_seconds / seconds,
        peak_rss_mib: crate::support::memory::peak_rss_bytes()
            .map_or(0.0, |b| b as f64 / (1 << 20) as f64),
    }
}

/// The epoch in one line of at most 100 columns, for the screen.
pub fn summarise_epoch(record: &EpochRecord, epochs: usize) -> String {
    format!(
        "epoch {}/{}: train {:.4} / {:.2}% | val {:.4} / {:.2}% (top-5 {:.2}%) | {:.0}s, {:.1} img/s",
        record.epoch,
        epochs,
        record.train_loss,
        100.0 * record.train_accuracy,
        record.val_loss,
        100.0 * record.val_accuracy,
        100.0 * record.val_top5_accuracy,
        record.train_seconds + record.val_seconds,
        record.train_images_per_second,
    )
}

/// The epoch with every measurement, for the log.
pub fn describe_epoch(record: &EpochRecord, epochs: usize) -> String {
    format!(
        "epoch {}/{}: train loss {:.4} acc {:.2}% | val loss {:.4} acc {:.2}% top-5 {:.2}% | {:.0}s train ({:.1} img/s, data wait {:.1}%), {:.0}s val, peak memory {:.2} GiB",
        record.epoch,
        epochs,
        record.train_loss,
        100.0 * record.train_accuracy,
        record.val_loss,
        100.0 * record.val_accuracy,
        100.0 * record.val_top5_accuracy,
        record.train_seconds,
        record.train_images_per_second,
        100.0 * record.data_wait_fraction,
        record.val_seconds,
        record.peak_rss_mib / 1024.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_screen_line_fits_100_columns() {
        let sums = PartialEpoch {
            loss_sum: 1e6,
            correct: 99_999,
            images: 100_000,
            seconds: 99_999.0,
            waited_seconds: 1.0,
        };
        let val = Metrics { images: 10_000, loss: 123.4567, accuracy: 1.0, top5_accuracy: 1.0 };
        let record = epoch_record(100, 10_000_000, &sums, &val, 99_999.0, 1e-3);
        let line = summarise_epoch(&record, 100);
        assert!(line.chars().count() <= 100, "{} columns: {line}", line.chars().count());
    }
}
