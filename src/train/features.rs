//! Backbone features (the 2048-d pooled output), computed once per image and cached on disk,
//! so that training only the new top costs seconds per epoch, and a second run (or a resumed
//! one) on the same images and weights costs nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use anyhow::Result;
use burn::tensor::Device;
use sha2::{Digest, Sha256};

use crate::data::{DecodedImages, LabeledImage};
use crate::inference::map_images;
use crate::model::ResNet50;
use crate::model::resnet::FEATURE_DIM;
use crate::preprocess::Normalization;
use crate::progress::Progress;
use crate::weights::{NamedTensors, fetch};

/// Identifies a feature set: the backbone weights, the preprocessing and the exact files.
pub struct FeatureKey {
    digest: String,
}

impl FeatureKey {
    /// `backbone_id` names the backbone weights (file and its size/mtime, or seed for random).
    pub fn new(
        backbone_id: &str,
        size: usize,
        normalization: Normalization,
        images: &[LabeledImage],
    ) -> Self {
        let mut hash = Sha256::new();
        hash.update(format!("v1|{backbone_id}|{size}|{normalization:?}|").as_bytes());
        for image in images {
            hash.update(image.path.to_string_lossy().as_bytes());
            if let Ok(meta) = std::fs::metadata(&image.path) {
                let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
                hash.update(format!("|{}|{:?}|{}\n", meta.len(), modified, image.label).as_bytes());
            }
        }
        let digest = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Self { digest }
    }

    fn path(&self) -> Result<PathBuf> {
        Ok(fetch::cache_dir()?.join("features").join(format!("{}.safetensors", self.digest)))
    }
}

/// A description of a weights file that changes when the file does.
pub fn file_identity(path: &std::path::Path) -> String {
    let meta = std::fs::metadata(path).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
    format!("{}|{:?}|{:?}", path.display(), meta.map(|m| m.len()), modified)
}

/// Features of every image of `data` (rows of 2048), from the disk cache when `key` is given
/// and present, else computed with `backbone` (an inference network) and stored under `key`.
pub fn features(
    backbone: &ResNet50,
    data: &Arc<DecodedImages>,
    normalization: Normalization,
    device: &Device,
    key: Option<&FeatureKey>,
    label: &str,
) -> Result<Vec<f32>> {
    let path = key.map(FeatureKey::path).transpose()?;
    if let Some(path) = path.as_ref().filter(|p| p.exists())
        && let Ok(mut cached) = NamedTensors::read_safetensors(path)
        && let Ok(values) = cached.take("features", &[data.len(), FEATURE_DIM])
    {
        return Ok(values);
    }
    let progress = Progress::new(label, data.len() as u64);
    let values =
        map_images(data, normalization, device, &progress, |images| backbone.features(images))?;
    progress.finish();
    if let Some(path) = path {
        std::fs::create_dir_all(path.parent().expect("cache file has a folder"))?;
        let mut tensors = NamedTensors::new(path.display().to_string());
        tensors.insert("features", vec![data.len(), FEATURE_DIM], values.clone());
        // A cache: failing to write it (full disk) must not fail the run.
        if let Err(error) = tensors.write_safetensors(&path) {
            eprintln!("warning: cannot cache features: {error:#}");
        }
    }
    Ok(values)
}
