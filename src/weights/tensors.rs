//! A set of named float32 tensors, read from and written to safetensors files.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::support::atomic_file;

/// One tensor: its shape and row-major float32 values.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Tensors by name, plus free-form string metadata (stored in the safetensors header).
#[derive(Clone, Debug, Default)]
pub struct NamedTensors {
    pub tensors: BTreeMap<String, NamedTensor>,
    pub metadata: HashMap<String, String>,
    /// Where the tensors came from, for error messages.
    pub source: String,
}

impl NamedTensors {
    pub fn new(source: impl Into<String>) -> Self {
        Self { source: source.into(), ..Self::default() }
    }

    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, values: Vec<f32>) {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        self.tensors.insert(name.into(), NamedTensor { shape, values });
    }

    /// Removes and returns a tensor, checking it has exactly the expected shape.
    pub fn take(&mut self, name: &str, expected_shape: &[usize]) -> Result<Vec<f32>> {
        let Some(tensor) = self.tensors.remove(name) else {
            bail!(
                "weight tensor `{name}` (expected shape {expected_shape:?}) is missing from {}",
                self.source
            );
        };
        ensure!(
            tensor.shape == expected_shape,
            "weight tensor `{name}` in {} has shape {:?}, expected {expected_shape:?}",
            self.source,
            tensor.shape
        );
        Ok(tensor.values)
    }

    /// Reads a safetensors file holding float32 tensors.
    pub fn read_safetensors(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_safetensors_bytes(&bytes, &path.display().to_string())
    }

    pub fn from_safetensors_bytes(bytes: &[u8], source: &str) -> Result<Self> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|error| {
            anyhow::anyhow!("{source} is not a valid safetensors file: {error}")
        })?;
        let file = SafeTensors::deserialize(bytes).map_err(|error| {
            anyhow::anyhow!("{source} is not a valid safetensors file: {error}")
        })?;
        let mut out = Self::new(source);
        out.metadata = header.metadata().clone().unwrap_or_default();
        for (name, view) in file.iter() {
            ensure!(
                view.dtype() == Dtype::F32,
                "tensor `{name}` in {source} is {:?}; only float32 is supported",
                view.dtype()
            );
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            out.insert(name, view.shape().to_vec(), values);
        }
        Ok(out)
    }

    /// Writes all tensors to a safetensors file, atomically.
    pub fn write_safetensors(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(&String, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(name, t)| (name, t.values.iter().flat_map(|v| v.to_le_bytes()).collect()))
            .collect();
        let views = bytes
            .iter()
            .zip(self.tensors.values())
            .map(|((name, data), t)| {
                TensorView::new(Dtype::F32, t.shape.clone(), data)
                    .map(|view| (name.as_str(), view))
                    .map_err(|error| anyhow::anyhow!("tensor `{name}`: {error}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        let encoded = safetensors::serialize(views, metadata)
            .map_err(|error| anyhow::anyhow!("cannot encode safetensors: {error}"))?;
        atomic_file::write(path, &encoded)
    }
}
