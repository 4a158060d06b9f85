//! Saving and loading whole trained models as safetensors (tensor names are module paths,
//! e.g. `backbone.stages.0.blocks.0.reduce.conv.weight`), written atomically.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::store::{ModuleSnapshot, SafetensorsStore};

use crate::atomic_file;
use crate::model::Classifier;

/// Metadata keys describing the architecture, checked before loading.
const NUM_CLASSES: &str = "num_classes";

/// Saves `model` (unfolded) with extra `metadata`.
pub fn save(model: &Classifier, path: &Path, metadata: &HashMap<String, String>) -> Result<()> {
    let mut store = SafetensorsStore::from_bytes(None)
        .metadata(NUM_CLASSES, model.head.num_classes().to_string());
    for (key, value) in metadata {
        store = store.metadata(key.clone(), value.clone());
    }
    model
        .save_into(&mut store)
        .map_err(|error| anyhow::anyhow!("cannot serialise the model: {error}"))?;
    let bytes = store
        .get_bytes()
        .map_err(|error| anyhow::anyhow!("cannot serialise the model: {error}"))?;
    atomic_file::write(path, &bytes)
}

/// Loads weights saved by [`save`] into `model`, which must have the same architecture.
pub fn load(model: Classifier, path: &Path) -> Result<Classifier> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let expected_classes = model.head.num_classes();
    let stored_classes = read_metadata(&bytes, path)?
        .get(NUM_CLASSES)
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(stored) = stored_classes.filter(|&n| n != expected_classes) {
        bail!(
            "{} is a model for {stored} classes, but this one has {expected_classes}",
            path.display()
        );
    }
    let mut model = model;
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result = model
        .load_from(&mut store)
        .map_err(|error| anyhow::anyhow!("{} does not fit this model: {error}", path.display()))?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        let mut problems: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        problems.extend(result.missing.iter().map(|(path, _)| format!("missing tensor {path}")));
        problems.extend(result.unused.iter().map(|path| format!("unexpected tensor {path}")));
        bail!(
            "{} does not fit this model ({} problems), e.g.:\n  {}",
            path.display(),
            problems.len(),
            problems[..problems.len().min(5)].join("\n  ")
        );
    }
    Ok(model)
}

/// The string metadata of a safetensors file.
pub fn read_metadata(bytes: &[u8], path: &Path) -> Result<HashMap<String, String>> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|error| anyhow::anyhow!("{} is not a safetensors file: {error}", path.display()))?;
    Ok(header.metadata().clone().unwrap_or_default())
}
