//! The training data of a run: the split, decoded once (into the image cache).

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
    /// Whether every image was read from the image cache (decoded by an earlier run).
    pub from_cache: bool,
}

/// Reads and decodes the dataset of `config`.
pub fn prepare_data(config: &TrainConfig) -> Result<PreparedData> {
    let started = Instant::now();
    let mut splits = data::load_splits(&config.data, config.images.split())?;
    splits.train = data::dataset::every_nth_frame(splits.train, config.images.frame_stride);
    data::split::ensure_usable(&splits)?;
    ensure!(!splits.val.is_empty(), "no validation images: use a larger --val-split");
    ensure_fits(config)?;
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
            long_sittings: splits.long_sittings,
        },
        from_cache: train.cached && val.cached,
        train_files: train.files,
        val_files: val.files,
        train: Arc::new(train.images),
        val: Arc::new(val.images),
        decode_seconds: started.elapsed().as_secs_f64(),
    })
}

impl PreparedData {
    /// Where the decoded images are, in words.
    pub fn describe_storage(&self) -> String {
        let bytes = (self.train.len() + self.val.len()) * self.train.bytes_per_image();
        let size = format!("{:.0} MB", bytes as f64 / 1e6);
        match (self.train.on_disk_cache(), self.from_cache) {
            (true, true) => format!("read from the image cache ({size} on disk, decoded earlier)"),
            (true, false) => format!("decoded into the image cache ({size} on disk)"),
            (false, _) => format!("decoded into memory ({size})"),
        }
    }
}

/// Refuses a fine-tuning batch that cannot fit before spending minutes decoding (the decoded
/// images stay in the image cache on disk; where they go to memory instead, decoding checks
/// that they fit).
fn ensure_fits(config: &TrainConfig) -> Result<()> {
    if !config.trains_backbone() {
        return Ok(());
    }
    let (size, batch) = (config.images.size(), config.optimization.batch_size);
    let needed = crate::support::memory::training_estimate(batch, size);
    let what = format!("fine-tuning with batch {batch} at {size}x{size} px");
    crate::support::memory::ensure_fits(needed, &what, "lower --batch-size (or --image-size)")
}
