//! The training data of a run: the split, checked to fit in memory, decoded once.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, ensure};

use crate::config::TrainConfig;
use crate::data::{self, DecodedImages, LabeledImage};
use crate::run::{DatasetFiles, DatasetSummary, FileRecord};

/// Nested images named in `config.json` (the rest are counted).
const NESTED_EXAMPLES: usize = 20;

/// Decoded training and validation images.
pub struct PreparedData {
    pub classes: Vec<String>,
    /// The images by content, as `dataset.json` records them.
    pub files: DatasetFiles,
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
    let mut splits = data::load_splits(&config.data, config.images.split())?;
    splits.train = data::dataset::every_nth_frame(splits.train, config.images.frame_stride);
    data::split::ensure_usable(&splits)?;
    ensure!(!splits.val.is_empty(), "no validation images: use a larger --val-split");
    ensure_fits(config, splits.train.len() + splits.val.len())?;
    let input = config.images.input();
    let train = data::decode_labeled(&splits.train, &input, "decode train")?;
    let val = data::decode_labeled(&splits.val, &input, "decode val")?;
    let unnamed = splits.bad_names.iter().map(|path| data::BadImage {
        path: path.clone(),
        error: format!("{}: the file name is not valid UTF-8", path.display()),
    });
    let bad: Vec<data::BadImage> = train.bad.into_iter().chain(val.bad).chain(unnamed).collect();
    data::decoded::ensure_none_bad(&bad, config.images.skip_bad_images)?;
    let records = |files: &[LabeledImage], images: &DecodedImages| -> Vec<FileRecord> {
        files
            .iter()
            .zip(&images.hashes)
            .map(|(file, hash)| FileRecord {
                path: file.path.strip_prefix(&config.data).unwrap_or(&file.path).to_path_buf(),
                sha256: *hash,
            })
            .collect()
    };
    let files = DatasetFiles {
        train: records(&train.files, &train.images),
        val: records(&val.files, &val.images),
    };
    Ok(PreparedData {
        classes: splits.classes.clone(),
        files,
        summary: DatasetSummary {
            classes: splits.classes.len(),
            train_images: train.images.len(),
            val_images: val.images.len(),
            skipped_images: bad,
            ignored_files: splits.ignored,
            nested_images: splits.nested.len(),
            nested_examples: splits.nested.into_iter().take(NESTED_EXAMPLES).collect(),
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
    let size = config.images.size();
    let batch = config.optimization.batch_size;
    let mut needed = images as u64 * (size * size * 3) as u64;
    let mut what = format!("holding {images} decoded images of {size}x{size} px");
    if config.trains_backbone() {
        needed += crate::support::memory::training_estimate(batch, size);
        what += &format!(" and fine-tuning with batch {batch}");
    }
    crate::support::memory::ensure_fits(needed, &what)
}
