//! The training data of a run: the split, checked to fit in memory, decoded once.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, ensure};

use crate::config::{Mode, TrainConfig};
use crate::data::{self, DecodedImages, LabeledImage};
use crate::run::DatasetSummary;

/// Decoded training and validation images.
pub struct PreparedData {
    pub classes: Vec<String>,
    pub train: Arc<DecodedImages>,
    pub val: Arc<DecodedImages>,
    pub train_files: Vec<LabeledImage>,
    pub val_files: Vec<LabeledImage>,
    pub summary: DatasetSummary,
    pub decode_seconds: f64,
}

/// Reads and decodes the dataset of `config`.
pub fn prepare_data(config: &TrainConfig) -> Result<PreparedData> {
    let started = Instant::now();
    let mut splits = data::load_splits(&config.data, config.val_split)?;
    splits.train = data::dataset::every_nth_frame(splits.train, config.frame_stride);
    data::split::ensure_usable(&splits)?;
    ensure!(!splits.val.is_empty(), "no validation images: use a larger --val-split");
    ensure_fits(config, splits.train.len() + splits.val.len())?;
    let train = data::decode_labeled(&splits.train, config.image_size, "decode train")?;
    let val = data::decode_labeled(&splits.val, config.image_size, "decode val")?;
    let bad: Vec<data::BadImage> = train.bad.into_iter().chain(val.bad).collect();
    data::decoded::ensure_none_bad(&bad, config.skip_bad_images)?;
    Ok(PreparedData {
        classes: splits.classes.clone(),
        summary: DatasetSummary {
            classes: splits.classes.len(),
            train_images: train.images.len(),
            val_images: val.images.len(),
            validation: splits.validation,
            skipped_images: bad,
            ignored_files: splits.ignored,
            nested_images: splits.nested,
        },
        train_files: train.files,
        val_files: val.files,
        train: Arc::new(train.images),
        val: Arc::new(val.images),
        decode_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Refuses what cannot fit before spending minutes decoding: the decoded images, plus the
/// activations of a training batch when the backbone trains.
fn ensure_fits(config: &TrainConfig, images: usize) -> Result<()> {
    let mut needed = images as u64 * (config.image_size * config.image_size * 3) as u64;
    let mut what = format!("holding {images} decoded images of {0}x{0} px", config.image_size);
    if config.mode == Mode::Finetune {
        needed += crate::memory::training_estimate(config.batch_size, config.image_size);
        what += &format!(" and fine-tuning with batch {}", config.batch_size);
    }
    crate::memory::ensure_fits(needed, &what)
}
