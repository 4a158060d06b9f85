//! Backbone features (the 2048-d pooled output), computed once per image and kept in a store
//! on disk, so that training only the new top costs seconds per epoch, and any later run or
//! evaluation that sees the same images through the same backbone costs nothing: another
//! validation split, a resumed run, `evaluate` of a frozen run.
//!
//! One store per backbone and preprocessing (`$FRUITLAB_CACHE/features/KEY.safetensors`): a
//! matrix of feature rows, the file each row belongs to (path, size, modification time: an
//! edited image is computed again), and a checksum of the rows, verified when the store is
//! opened. A corrupt store is reported and rebuilt, never trusted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Init, TrainConfig};
use crate::data::{DecodedImages, LabeledImage};
use crate::inference::{map_images, rows};
use crate::model::resnet::FEATURE_DIM;
use crate::model::{Head, Layout, ResNet50};
use crate::preprocess::Normalization;
use crate::support::progress::Progress;
use crate::weights::{self, NamedTensors, fetch};

/// Images computed between two additions to the store.
const STORE_CHUNK: usize = 1024;

/// Metadata keys of a store file.
const FILES_KEY: &str = "files";
const CHECKSUM_KEY: &str = "sha256";
const IDENTITY_KEY: &str = "identity";

/// An image file as the store knows it: its features are valid while these are unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct FileStamp {
    path: PathBuf,
    len: u64,
    modified_ns: u128,
}

impl FileStamp {
    fn of(path: &Path) -> Self {
        let meta = std::fs::metadata(path).ok();
        let modified_ns = meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Self { path, len: meta.map_or(0, |m| m.len()), modified_ns }
    }
}

/// The features of one backbone and preprocessing, by image file.
pub struct FeatureStore {
    path: PathBuf,
    identity: String,
    files: Vec<FileStamp>,
    rows: HashMap<FileStamp, usize>,
    values: Vec<f32>,
    changed: bool,
}

impl FeatureStore {
    /// Opens (or starts) the store of `identity` (the backbone's weights and the
    /// preprocessing), verifying its checksum.
    pub fn open(identity: &str) -> Result<Self> {
        let digest = hex(&Sha256::digest(identity.as_bytes()))[..32].to_string();
        let path = fetch::cache_dir()?.join("features").join(format!("{digest}.safetensors"));
        let mut store = Self {
            path,
            identity: identity.to_string(),
            files: Vec::new(),
            rows: HashMap::new(),
            values: Vec::new(),
            changed: false,
        };
        if store.path.exists() {
            match store.read() {
                Ok(()) => {}
                Err(error) => {
                    eprintln!(
                        "warning: the feature cache {} is unusable ({error:#}); computing the features again",
                        store.path.display()
                    );
                    store.files.clear();
                    store.rows.clear();
                    store.values.clear();
                }
            }
        }
        Ok(store)
    }

    fn read(&mut self) -> Result<()> {
        let mut tensors = NamedTensors::read_safetensors(&self.path)?;
        let meta = tensors.metadata.clone();
        let files: Vec<FileStamp> =
            serde_json::from_str(meta.get(FILES_KEY).context("no file list")?)
                .context("the file list is malformed")?;
        anyhow::ensure!(
            meta.get(IDENTITY_KEY) == Some(&self.identity),
            "it belongs to another backbone"
        );
        let values = tensors.take("features", &[files.len(), FEATURE_DIM])?;
        let expected = meta.get(CHECKSUM_KEY).context("no checksum")?;
        anyhow::ensure!(
            checksum(&values) == *expected,
            "its checksum does not match: the file is corrupt"
        );
        self.rows = files.iter().cloned().enumerate().map(|(i, f)| (f, i)).collect();
        self.files = files;
        self.values = values;
        Ok(())
    }

    /// Features of every image of `data` (rows of 2048, in order; `files` are the images'
    /// files): from the store where it has them, computed with `backbone` (an inference
    /// network) for the rest, which are then added. Ctrl-C stops the computation between
    /// batches; what was computed is kept for the next run.
    pub fn features(
        &mut self,
        backbone: &ResNet50,
        data: &Arc<DecodedImages>,
        files: &[LabeledImage],
        normalization: Normalization,
        device: &Device,
        label: &str,
    ) -> Result<Vec<f32>> {
        let stamps: Vec<FileStamp> = files.iter().map(|f| FileStamp::of(&f.path)).collect();
        let missing: Vec<usize> =
            (0..stamps.len()).filter(|&i| !self.rows.contains_key(&stamps[i])).collect();
        let progress = Progress::new(label, missing.len() as u64);
        // In chunks, each added to the store as it completes, so that Ctrl-C (checked between
        // batches) loses at most one chunk.
        for (done, chunk) in missing.chunks(STORE_CHUNK).enumerate() {
            let subset = Arc::new(data.subset(chunk));
            let offset = done * STORE_CHUNK;
            let computed = map_images(
                &subset,
                normalization,
                device,
                |n| progress.update((offset + n) as u64, String::new),
                |images| backbone.features(images),
            )?;
            for (row, &i) in computed.chunks_exact(FEATURE_DIM).zip(chunk) {
                self.add(stamps[i].clone(), row);
            }
        }
        progress.finish();
        let mut out = Vec::with_capacity(stamps.len() * FEATURE_DIM);
        for stamp in &stamps {
            let row = self.rows[stamp];
            out.extend_from_slice(&self.values[row * FEATURE_DIM..(row + 1) * FEATURE_DIM]);
        }
        Ok(out)
    }

    fn add(&mut self, stamp: FileStamp, row: &[f32]) {
        self.rows.insert(stamp.clone(), self.files.len());
        self.files.push(stamp);
        self.values.extend_from_slice(row);
        self.changed = true;
    }

    /// Writes the store back if it gained features. A cache: failing to write it (a full
    /// disk) costs only the recomputation next time, so it is a warning.
    pub fn save(&mut self) {
        if !self.changed {
            return;
        }
        if let Err(error) = self.write() {
            eprintln!("warning: cannot save the feature cache: {error:#}");
        }
        self.changed = false;
    }

    fn write(&self) -> Result<()> {
        std::fs::create_dir_all(self.path.parent().expect("a cache file has a folder"))?;
        let mut tensors = NamedTensors::new(self.path.display().to_string());
        tensors.insert("features", vec![self.files.len(), FEATURE_DIM], self.values.clone());
        tensors.metadata.insert(FILES_KEY.into(), serde_json::to_string(&self.files)?);
        tensors.metadata.insert(CHECKSUM_KEY.into(), checksum(&self.values));
        tensors.metadata.insert(IDENTITY_KEY.into(), self.identity.clone());
        tensors.write_safetensors(&self.path)
    }
}

impl Drop for FeatureStore {
    /// Keeps what was computed when a run stops early (Ctrl-C, an error).
    fn drop(&mut self) {
        self.save();
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

/// The SHA-256 of feature values, as hex.
fn checksum(values: &[f32]) -> String {
    let mut hash = Sha256::new();
    for chunk in values.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        hash.update(&bytes);
    }
    hex(&hash.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    files: &[LabeledImage],
    device: &Device,
    label: &str,
) -> Result<Vec<f32>> {
    let mut store = FeatureStore::open(&identity(config, variant)?)?;
    store.features(backbone, images, files, config.images.normalization, device, label)
}

/// What a row of features depends on: the starting backbone, the preprocessing, the variant.
#[derive(Serialize)]
struct StoreIdentity {
    version: u32,
    backbone: BackboneIdentity,
    image_size: usize,
    normalization: Normalization,
    variant: FeatureVariant,
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
        version: 3,
        backbone,
        image_size: config.images.image_size,
        normalization: config.images.normalization,
        variant,
    };
    Ok(serde_json::to_string(&identity)?)
}

/// A description of a weights file that changes when the file does.
fn file_identity(path: &Path) -> String {
    let stamp = FileStamp::of(path);
    format!("{}|{}|{}", stamp.path.display(), stamp.len, stamp.modified_ns)
}
