//! Pretrained weights: fetching and caching them, reading TF.js and safetensors files, and
//! putting Keras-named tensors into the model.

pub mod checkpoint;
pub mod fetch;
pub mod keras;
pub mod tensors;
pub mod tfjs;

use std::path::Path;

use anyhow::{Result, bail};

pub use tensors::{NamedTensor, NamedTensors};

/// Reads the ImageNet ResNet-50 weights: from `path` (a TF.js `model.json` or a converted
/// `.safetensors`) when given, else from the cache that `fruitlab weights fetch` fills.
pub fn read_imagenet(path: Option<&Path>) -> Result<NamedTensors> {
    match path {
        Some(path) if path.extension().is_some_and(|e| e == "json") => tfjs::read(path),
        Some(path) => NamedTensors::read_safetensors(path),
        None => {
            let cached = fetch::cached_weights_path()?;
            if !cached.exists() {
                bail!(
                    "the ImageNet weights are not in the cache ({}): run `fruitlab weights fetch resnet50` first, or pass --weights PATH",
                    cached.display()
                );
            }
            NamedTensors::read_safetensors(&cached)
        }
    }
}
