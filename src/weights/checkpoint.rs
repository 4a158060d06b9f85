//! Saving and loading whole trained models, written atomically. Tensor names are module
//! paths, e.g. `backbone.stages.0.blocks.0.reduce.conv.weight`.
//!
//! `.safetensors` is the portable format of the models a run hands out; `.bpk` (burnpack) is
//! used for resume checkpoints because it also keeps each parameter's identity, which the
//! saved optimizer state is keyed by.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::store::{ApplyResult, BurnpackStore, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Bytes;

use crate::model::Classifier;
use crate::support::{atomic_file, checksum};

/// Metadata key with the number of classes, checked before loading.
const NUM_CLASSES: &str = "num_classes";

fn is_burnpack(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "bpk")
}

fn failure(path: &Path, error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot serialise the model for {}: {error}", path.display())
}

/// Saves `model` with extra `metadata`, as safetensors (sealed with the checksum of its
/// data) or (`.bpk`) burnpack; returns the SHA-256 of the file written.
pub fn save(model: &Classifier, path: &Path, metadata: &HashMap<String, String>) -> Result<String> {
    let mut metadata = metadata.clone();
    metadata.insert(NUM_CLASSES.into(), model.head.num_classes().to_string());
    let bytes = if is_burnpack(path) {
        let mut store = BurnpackStore::from_bytes(None);
        for (key, value) in metadata {
            store = store.metadata(key, value);
        }
        model.save_into(&mut store).map_err(|e| failure(path, e))?;
        store.get_bytes().map_err(|e| failure(path, e))?.to_vec()
    } else {
        let mut store = SafetensorsStore::from_bytes(None);
        for (key, value) in metadata {
            store = store.metadata(key, value);
        }
        model.save_into(&mut store).map_err(|e| failure(path, e))?;
        checksum::seal_safetensors(store.get_bytes().map_err(|e| failure(path, e))?)?
    };
    atomic_file::write(path, &bytes)?;
    Ok(checksum::sha256_hex(&bytes))
}

/// Loads weights saved by [`save`] into `model`, which must have the same architecture.
pub fn load(mut model: Classifier, path: &Path) -> Result<Classifier> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let expected = model.head.num_classes();
    let misfit = |error: &dyn std::fmt::Display| {
        anyhow::anyhow!("{} does not fit this model: {error}", path.display())
    };
    let result = if is_burnpack(path) {
        let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
        model.load_from(&mut store).map_err(|e| misfit(&e))?
    } else {
        checksum::check_safetensors(&bytes, path)?;
        let stored =
            read_metadata(&bytes, path)?.get(NUM_CLASSES).and_then(|n| n.parse::<usize>().ok());
        if let Some(stored) = stored.filter(|&n| n != expected) {
            bail!(
                "{} is a model for {stored} classes, but this one has {expected}",
                path.display()
            );
        }
        let mut store = SafetensorsStore::from_bytes(Some(bytes));
        model.load_from(&mut store).map_err(|e| misfit(&e))?
    };
    ensure_complete(&result, path)?;
    Ok(model)
}

fn ensure_complete(result: &ApplyResult, path: &Path) -> Result<()> {
    if result.errors.is_empty() && result.missing.is_empty() && result.unused.is_empty() {
        return Ok(());
    }
    let mut problems: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    problems.extend(result.missing.iter().map(|(path, _)| format!("missing tensor {path}")));
    problems.extend(result.unused.iter().map(|path| format!("unexpected tensor {path}")));
    bail!(
        "{} does not fit this model ({} problems), e.g.:\n  {}",
        path.display(),
        problems.len(),
        problems[..problems.len().min(5)].join("\n  ")
    )
}

/// The string metadata of a safetensors file.
pub fn read_metadata(bytes: &[u8], path: &Path) -> Result<HashMap<String, String>> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|error| {
        anyhow::anyhow!("{} is not a safetensors file: {error}", path.display())
    })?;
    Ok(header.metadata().clone().unwrap_or_default())
}
