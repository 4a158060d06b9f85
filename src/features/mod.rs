//! Backbone features (the 2048-d pooled output), computed once per image and kept in a store
//! on disk, so that training only the new top costs seconds per epoch, and any later run or
//! evaluation that sees the same images through the same backbone costs nothing: another
//! validation split, a resumed run, `evaluate` of a frozen run.
//!
//! One store per backbone and preprocessing (`$FRUITLAB_CACHE/features/KEY/`): a folder of
//! segments (see [`segment`]), each a chunk of feature rows with the content hashes of their
//! images (an edited image, or two swapped ones, are other content) and a checksum, verified
//! when the store is opened. A corrupt segment is reported, removed and its rows computed
//! again, never trusted. What a run computes is added as new segments, chunk by chunk, so an
//! interrupted run keeps what it computed and processes adding to one store at once keep
//! each other's rows. Training reads the rows it needs a batch at a time
//! ([`FeatureRows`]): memory does not grow with the store or the dataset.

mod segment;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use self::segment::{ROW_BYTES, Segment};
use crate::config::{Init, TrainConfig};
use crate::data::{ContentHash, DecodedImages};
use crate::inference::{map_images, rows};
use crate::model::resnet::FEATURE_DIM;
use crate::model::{Head, Layout, ResNet50};
use crate::preprocess::Normalization;
use crate::support::checksum::sha256_hex;
use crate::support::progress::Progress;
use crate::weights::{self, fetch};

/// Images computed, and stored as one segment, at a time.
const STORE_CHUNK: usize = 1024;

/// The feature rows of a list of images, in its order: read from the store's segment files
/// when asked for (a batch at a time), or held in memory (rows that were never stored).
pub enum FeatureRows {
    Memory(Vec<f32>),
    Stored {
        files: Vec<(File, PathBuf)>,
        /// Each image's file (an index into `files`) and the offset of its row there.
        rows: Vec<(usize, u64)>,
    },
}

impl FeatureRows {
    /// How many images there are rows of.
    pub fn len(&self) -> usize {
        match self {
            FeatureRows::Memory(values) => values.len() / FEATURE_DIM,
            FeatureRows::Stored { rows, .. } => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows of the images `indices`, one after another.
    pub fn gather(&self, indices: impl IntoIterator<Item = usize>) -> Result<Vec<f32>> {
        let indices = indices.into_iter();
        let mut out = Vec::with_capacity(indices.size_hint().0 * FEATURE_DIM);
        match self {
            FeatureRows::Memory(values) => {
                for i in indices {
                    out.extend_from_slice(&values[i * FEATURE_DIM..(i + 1) * FEATURE_DIM]);
                }
            }
            FeatureRows::Stored { files, rows } => {
                // Rows that follow one another in one file are read at once.
                let mut run: Option<(usize, u64, usize)> = None;
                let mut bytes = Vec::new();
                let mut read_run = |(file, offset, count): (usize, u64, usize)| -> Result<()> {
                    let (file, path) = &files[file];
                    bytes.resize(count * ROW_BYTES, 0);
                    file.read_exact_at(&mut bytes, offset).with_context(|| {
                        format!("cannot read stored features from {}", path.display())
                    })?;
                    out.extend(
                        bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    );
                    Ok(())
                };
                for i in indices {
                    let (file, offset) = rows[i];
                    run = match run {
                        Some((f, start, count))
                            if f == file && start + (count * ROW_BYTES) as u64 == offset =>
                        {
                            Some((f, start, count + 1))
                        }
                        Some(previous) => {
                            read_run(previous)?;
                            Some((file, offset, 1))
                        }
                        None => Some((file, offset, 1)),
                    };
                }
                if let Some(last) = run {
                    read_run(last)?;
                }
            }
        }
        Ok(out)
    }

    /// Every row, in order.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match self {
            FeatureRows::Memory(values) => Ok(values.clone()),
            FeatureRows::Stored { .. } => self.gather(0..self.len()),
        }
    }
}

/// The features of one backbone and preprocessing, by image content.
pub struct FeatureStore {
    folder: PathBuf,
    identity: String,
    segments: Vec<Segment>,
    /// Where each image's row is: its segment and its row there.
    index: HashMap<ContentHash, (usize, usize)>,
}

impl FeatureStore {
    /// Opens (or starts) the store of `identity` (the backbone's weights and the
    /// preprocessing), verifying its segments.
    pub fn open(identity: &str) -> Result<Self> {
        let digest = sha256_hex(identity.as_bytes())[..32].to_string();
        let root = fetch::cache_dir()?.join("features");
        remove_earlier_format(&root);
        let folder = root.join(digest);
        let mut store = Self {
            folder,
            identity: identity.to_string(),
            segments: Vec::new(),
            index: HashMap::new(),
        };
        for path in store.segment_files()? {
            match Segment::open(&path, identity) {
                Ok(segment) => store.add(segment),
                Err(error) => {
                    eprintln!(
                        "warning: the feature cache segment {} is unusable ({error:#}); removing it, its features will be computed again",
                        path.display()
                    );
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(store)
    }

    /// The store's segment files, in name order (so that every process that opens the same
    /// files finds the same row for an image stored twice).
    fn segment_files(&self) -> Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(&self.folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot read {}", self.folder.display()));
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == segment::EXTENSION))
            .collect();
        paths.sort();
        Ok(paths)
    }

    fn add(&mut self, segment: Segment) {
        let at = self.segments.len();
        for (row, key) in segment.keys.iter().enumerate() {
            self.index.entry(*key).or_insert((at, row));
        }
        self.segments.push(segment);
    }

    /// Features of every image of `data` (in order): from the store where it has them,
    /// computed with `backbone` (an inference network) for the rest, which are added to the
    /// store as they are computed. Ctrl-C stops the computation between batches; what was
    /// computed is kept for the next run.
    pub fn features(
        &mut self,
        backbone: &ResNet50,
        data: &Arc<DecodedImages>,
        normalization: Normalization,
        device: &Device,
        label: &str,
    ) -> Result<FeatureRows> {
        let mut missing: Vec<usize> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, key) in data.hashes.iter().enumerate() {
            if !self.index.contains_key(key) && seen.insert(*key) {
                missing.push(i);
            }
        }
        let progress = Progress::new(label, missing.len() as u64);
        if !missing.is_empty() {
            std::fs::create_dir_all(&self.folder)
                .with_context(|| format!("cannot create {}", self.folder.display()))?;
        }
        // In chunks, each stored as it completes, so that Ctrl-C (checked between batches)
        // loses at most one chunk.
        for (done, chunk) in missing.chunks(STORE_CHUNK).enumerate() {
            let subset = Arc::new(data.subset(chunk)?);
            let offset = done * STORE_CHUNK;
            let computed = map_images(
                &subset,
                normalization,
                device,
                |n| progress.update((offset + n) as u64, String::new),
                |images| backbone.features(images),
            )?;
            let keys: Vec<ContentHash> = chunk.iter().map(|&i| data.hashes[i]).collect();
            let segment = Segment::write(&self.folder, &self.identity, &keys, &computed)
                .with_context(|| {
                    format!(
                        "cannot add to the feature cache in {} (free some space there, or set FRUITLAB_CACHE to another folder)",
                        self.folder.display()
                    )
                })?;
            self.add(segment);
        }
        progress.finish();
        self.rows_of(&data.hashes)
    }

    /// The stored rows of images `keys`, every one of which the store has.
    fn rows_of(&self, keys: &[ContentHash]) -> Result<FeatureRows> {
        let mut files = Vec::new();
        let mut file_of_segment: HashMap<usize, usize> = HashMap::new();
        let mut rows = Vec::with_capacity(keys.len());
        for key in keys {
            let (at, row) = self.index[key];
            let segment = &self.segments[at];
            let file = match file_of_segment.get(&at) {
                Some(&file) => file,
                None => {
                    let opened = File::open(&segment.path)
                        .with_context(|| format!("cannot read {}", segment.path.display()))?;
                    files.push((opened, segment.path.clone()));
                    file_of_segment.insert(at, files.len() - 1);
                    files.len() - 1
                }
            };
            rows.push((file, segment.row_offset(row)));
        }
        Ok(FeatureRows::Stored { files, rows })
    }
}

/// Removes the stores of the earlier format (one file per store, and its lock, directly in
/// `root`), which this version never reads, so that they do not keep their disk space.
fn remove_earlier_format(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for path in entries.filter_map(|entry| entry.ok().map(|e| e.path())) {
        if path.is_file() && path.extension().is_some_and(|e| e == "safetensors" || e == "lock") {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Logits of the head over rows of cached features, in chunks.
pub fn head_logits(head: &Head, features: &[f32], device: &Device) -> Result<Vec<f32>> {
    let mut logits = Vec::new();
    for chunk in features.chunks(1024 * FEATURE_DIM) {
        let n = chunk.len() / FEATURE_DIM;
        let input = Tensor::from_data(TensorData::new(chunk.to_vec(), [n, FEATURE_DIM]), device);
        logits.extend(rows(head.forward(input))?);
    }
    Ok(logits)
}

/// Which images a row of features is of: the image as it is, or its mirror image (test-time
/// augmentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureVariant {
    Plain,
    Mirrored,
}

/// The stored features of `images` (read from `files`) through a run's frozen backbone
/// (`backbone`, an inference network, as `config` starts it): from the store where it has
/// them, computed for the rest. Every feature-store lookup goes through here.
pub fn lookup(
    config: &TrainConfig,
    variant: FeatureVariant,
    backbone: &ResNet50,
    images: &Arc<DecodedImages>,
    device: &Device,
    label: &str,
) -> Result<FeatureRows> {
    let mut store = FeatureStore::open(&identity(config, variant)?)?;
    store.features(backbone, images, config.images.normalization, device, label)
}

/// What a row of features depends on: the starting backbone, the preprocessing, the variant.
#[derive(Serialize)]
struct StoreIdentity {
    version: u32,
    backbone: BackboneIdentity,
    image_size: usize,
    crop: f32,
    normalization: Normalization,
    variant: FeatureVariant,
    /// bf16 convolutions give other features than fp32 ones.
    precision: crate::compute::Precision,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum BackboneIdentity {
    /// ImageNet weights: the file, as it is now.
    Imagenet { layout: Layout, weights: String },
    /// A random backbone is defined by its seed.
    Random { layout: Layout, seed: u64 },
}

/// Identifies the starting backbone and the preprocessing, for the feature store.
fn identity(config: &TrainConfig, variant: FeatureVariant) -> Result<String> {
    let layout = config.model.layout;
    let backbone = match config.init {
        Init::Imagenet => {
            let path = match &config.model.weights {
                Some(path) => path.clone(),
                None => weights::fetch::cached_weights_path()?,
            };
            BackboneIdentity::Imagenet { layout, weights: file_identity(&path) }
        }
        Init::Random => BackboneIdentity::Random { layout, seed: config.optimization.seed },
    };
    let identity = StoreIdentity {
        version: 5,
        backbone,
        image_size: config.images.size(),
        crop: config.images.crop_fraction(),
        normalization: config.images.normalization,
        variant,
        precision: crate::compute::arithmetic().precision(),
    };
    Ok(serde_json::to_string(&identity)?)
}

/// A description of a weights file that changes when the file does.
fn file_identity(path: &Path) -> String {
    let meta = std::fs::metadata(path).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("{}|{}|{modified}", path.display(), meta.map_or(0, |m| m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> ContentHash {
        ContentHash([i; 32])
    }

    fn row(value: f32) -> Vec<f32> {
        vec![value; FEATURE_DIM]
    }

    #[test]
    fn stored_rows_are_read_from_their_segments_in_the_order_asked() {
        let folder = tempfile::tempdir().unwrap();
        let mut store = FeatureStore {
            folder: folder.path().to_path_buf(),
            identity: "id".into(),
            segments: Vec::new(),
            index: HashMap::new(),
        };
        let write = |keys: &[ContentHash], rows: &[Vec<f32>]| {
            Segment::write(folder.path(), "id", keys, &rows.concat()).unwrap()
        };
        store.add(write(&[key(1), key(2)], &[row(1.0), row(2.0)]));
        // An image stored twice (two processes computed it): the first row found is used.
        store.add(write(&[key(3), key(1)], &[row(3.0), row(9.0)]));
        let rows = store.rows_of(&[key(3), key(1), key(2)]).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.to_vec().unwrap(), [row(3.0), row(1.0), row(2.0)].concat());
        assert_eq!(rows.gather([2, 0]).unwrap(), [row(2.0), row(3.0)].concat());
        // Rows next to each other in a file are read at once; a repeated row is read again.
        assert_eq!(
            rows.gather([1, 2, 2, 0]).unwrap(),
            [row(1.0), row(2.0), row(2.0), row(3.0)].concat()
        );
        let in_memory = FeatureRows::Memory([row(3.0), row(1.0)].concat());
        assert_eq!(in_memory.gather([1]).unwrap(), row(1.0));
    }

    #[test]
    fn stores_of_the_earlier_format_are_removed_and_segments_kept() {
        let root = tempfile::tempdir().unwrap();
        let store = root.path().join("0123");
        std::fs::create_dir(&store).unwrap();
        let segment = Segment::write(&store, "id", &[key(1)], &row(1.0)).unwrap().path;
        for old in ["4567.safetensors", "4567.lock"] {
            std::fs::write(root.path().join(old), b"old").unwrap();
        }
        remove_earlier_format(root.path());
        let left: Vec<_> =
            std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(left, [store]);
        assert!(segment.exists());
    }
}
