//! Pretrained weights: fetching and caching them, reading TF.js and safetensors files, and
//! putting Keras-named tensors into the model.

pub mod checkpoint;
pub mod fetch;
pub mod keras;
pub mod tensors;
pub mod tfjs;

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::Device;

pub use tensors::{NamedTensor, NamedTensors};

use crate::model::{Classifier, ResNet50};

/// `backbone` with the ImageNet weights (see [`read_imagenet`] for `path`).
pub fn imagenet_backbone(
    backbone: ResNet50,
    path: Option<&Path>,
    device: &Device,
) -> Result<ResNet50> {
    let mut tensors = read_imagenet(path)?;
    keras::load_backbone(backbone, &mut tensors, device)
}

/// The whole ImageNet classifier and its 1000 class names (see [`read_imagenet`] for `path`).
pub fn imagenet_model(path: Option<&Path>, device: &Device) -> Result<(Classifier, Vec<String>)> {
    let tensors = read_imagenet(path)?;
    let classes = fetch::imagenet_classes(&tensors)
        .unwrap_or_else(|| (0..keras::IMAGENET_CLASSES).map(|i| format!("class {i}")).collect());
    Ok((keras::load_imagenet(tensors, device)?, classes))
}

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
            if let Err(error) = fetch::verify_cached_weights(&cached) {
                eprintln!("{error:#}; fetching the weights again");
                fetch::fetch_resnet50(true)?;
                fetch::verify_cached_weights(&cached)?;
            }
            NamedTensors::read_safetensors(&cached)
        }
    }
}
