//! Backbone features (the 2048-d pooled output), computed once per image and kept in a store
//! on disk, so that training only the new top costs seconds per epoch, and any later run or
//! evaluation that sees the same images through the same backbone costs nothing: another
//! validation split, a resumed run, `evaluate` of a frozen run.
//!
//! One store per backbone and preprocessing (`$FRUITLAB_CACHE/features/KEY.safetensors`): a
//! matrix of feature rows, the content hash of the image each row belongs to (an edited image,
//! or two swapped ones, are other content), and a checksum of the rows, verified when the
//! store is opened. A corrupt store is reported and rebuilt, never trusted. Processes that add
//! to one store at once merge their rows: each takes the store's lock, reads what is there
//! now, adds its own and writes the union.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Init, TrainConfig};
use crate::data::{ContentHash, DecodedImages};
use crate::inference::{map_images, rows};
use crate::model::resnet::FEATURE_DIM;
use crate::model::{Head, Layout, ResNet50};
use crate::preprocess::Normalization;
use crate::support::progress::Progress;
use crate::weights::{self, NamedTensors, fetch};

/// Images computed between two additions to the store.
const STORE_CHUNK: usize = 1024;

/// Metadata keys of a store file.
const KEYS_KEY: &str = "images";
const CHECKSUM_KEY: &str = "sha256";
const IDENTITY_KEY: &str = "identity";

/// The rows of a store.
#[derive(Default)]
struct Rows {
    keys: Vec<ContentHash>,
    index: HashMap<ContentHash, usize>,
    values: Vec<f32>,
}

impl Rows {
    fn add(&mut self, key: ContentHash, row: &[f32]) -> bool {
        if self.index.contains_key(&key) {
            return false;
        }
        self.index.insert(key, self.keys.len());
        self.keys.push(key);
        self.values.extend_from_slice(row);
        true
    }

    fn row(&self, key: &ContentHash) -> Option<&[f32]> {
        let i = *self.index.get(key)?;
        Some(&self.values[i * FEATURE_DIM..(i + 1) * FEATURE_DIM])
    }

    /// The rows of the store file at `path`, checked (its identity and its checksum).
    fn read(path: &Path, identity: &str) -> Result<Self> {
        let mut tensors = NamedTensors::read_safetensors(path)?;
        let meta = tensors.metadata.clone();
        anyhow::ensure!(
            meta.get(IDENTITY_KEY).map(String::as_str) == Some(identity),
            "it belongs to another backbone"
        );
        let keys: Vec<ContentHash> =
            serde_json::from_str(meta.get(KEYS_KEY).context("no image list")?)
                .context("the image list is malformed")?;
        let values = tensors.take("features", &[keys.len(), FEATURE_DIM])?;
        let expected = meta.get(CHECKSUM_KEY).context("no checksum")?;
        anyhow::ensure!(
            checksum(&values) == *expected,
            "its checksum does not match: the file is corrupt"
        );
        let index = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        Ok(Self { keys, index, values })
    }

    fn write(&self, path: &Path, identity: &str) -> Result<()> {
        let mut tensors = NamedTensors::new(path.display().to_string());
        tensors.insert("features", vec![self.keys.len(), FEATURE_DIM], self.values.clone());
        tensors.metadata.insert(KEYS_KEY.into(), serde_json::to_string(&self.keys)?);
        tensors.metadata.insert(CHECKSUM_KEY.into(), checksum(&self.values));
        tensors.metadata.insert(IDENTITY_KEY.into(), identity.to_string());
        tensors.write_safetensors(path)
    }
}

/// The features of one backbone and preprocessing, by image content.
pub struct FeatureStore {
    path: PathBuf,
    identity: String,
    rows: Rows,
    /// Rows computed by this process and not yet saved.
    added: Rows,
}

impl FeatureStore {
    /// Opens (or starts) the store of `identity` (the backbone's weights and the
    /// preprocessing), verifying its checksum.
    pub fn open(identity: &str) -> Result<Self> {
        let digest = hex(&Sha256::digest(identity.as_bytes()))[..32].to_string();
        let path = fetch::cache_dir()?.join("features").join(format!("{digest}.safetensors"));
        let rows = if path.exists() {
            Rows::read(&path, identity).unwrap_or_else(|error| {
                eprintln!(
                    "warning: the feature cache {} is unusable ({error:#}); computing the features again",
                    path.display()
                );
                Rows::default()
            })
        } else {
            Rows::default()
        };
        Ok(Self { path, identity: identity.to_string(), rows, added: Rows::default() })
    }

    /// Features of every image of `data` (rows of 2048, in order): from the store where it
    /// has them, computed with `backbone` (an inference network) for the rest, which are then
    /// added. Ctrl-C stops the computation between batches; what was computed is kept for
    /// the next run.
    pub fn features(
        &mut self,
        backbone: &ResNet50,
        data: &Arc<DecodedImages>,
        normalization: Normalization,
        device: &Device,
        label: &str,
    ) -> Result<Vec<f32>> {
        let mut missing: Vec<usize> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, key) in data.hashes.iter().enumerate() {
            if self.rows.row(key).is_none() && seen.insert(*key) {
                missing.push(i);
            }
        }
        let progress = Progress::new(label, missing.len() as u64);
        // In chunks, each added to the store as it completes, so that Ctrl-C (checked between
        // batches) loses at most one chunk.
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
            for (row, &i) in computed.chunks_exact(FEATURE_DIM).zip(chunk) {
                self.rows.add(data.hashes[i], row);
                self.added.add(data.hashes[i], row);
            }
        }
        progress.finish();
        let mut out = Vec::with_capacity(data.len() * FEATURE_DIM);
        for key in &data.hashes {
            out.extend_from_slice(self.rows.row(key).expect("every image has its row now"));
        }
        Ok(out)
    }

    /// Adds what this process computed to the store on disk, merged with what other
    /// processes have added since it was read. A cache: failing to write it (a full disk)
    /// costs only the recomputation next time, so it is a warning.
    pub fn save(&mut self) {
        if self.added.keys.is_empty() {
            return;
        }
        if let Err(error) = self.merge_into_file() {
            eprintln!("warning: cannot save the feature cache: {error:#}");
        }
        self.added = Rows::default();
    }

    fn merge_into_file(&self) -> Result<()> {
        let folder = self.path.parent().expect("a cache file has a folder");
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let lock_path = self.path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        // Waits for another process adding to the same store.
        lock.lock().with_context(|| format!("cannot lock {}", lock_path.display()))?;
        let mut merged = if self.path.exists() {
            Rows::read(&self.path, &self.identity).unwrap_or_default()
        } else {
            Rows::default()
        };
        for (i, key) in self.added.keys.iter().enumerate() {
            merged.add(*key, &self.added.values[i * FEATURE_DIM..(i + 1) * FEATURE_DIM]);
        }
        merged.write(&self.path, &self.identity)
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
    device: &Device,
    label: &str,
) -> Result<Vec<f32>> {
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
        version: 4,
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
