//! Reader for the TensorFlow.js "layers-model" format: a `model.json` whose `weightsManifest`
//! lists every tensor (name, shape, dtype), and binary shards holding their float32 values
//! back to back, in manifest order.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;

use super::NamedTensors;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelJson {
    weights_manifest: Vec<ManifestGroup>,
}

#[derive(Deserialize)]
struct ManifestGroup {
    paths: Vec<String>,
    weights: Vec<ManifestEntry>,
}

#[derive(Deserialize)]
struct ManifestEntry {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    #[serde(default)]
    quantization: Option<serde_json::Value>,
}

/// Parses a TF.js layers model. `read_shard` returns the bytes of a shard given its path as
/// written in the manifest (relative to `model.json`).
///
/// Convolution kernels are converted from TensorFlow's HWIO to burn's OIHW on the way; dense
/// kernels are `[inputs, outputs]` in both and are kept as they are.
pub fn parse(
    model_json: &[u8],
    source: &str,
    mut read_shard: impl FnMut(&str) -> Result<Vec<u8>>,
) -> Result<NamedTensors> {
    let model: ModelJson = serde_json::from_slice(model_json)
        .with_context(|| format!("{source} is not a TF.js layers model.json"))?;
    let mut tensors = NamedTensors::new(source);
    for group in &model.weights_manifest {
        let mut bytes = Vec::new();
        for path in &group.paths {
            bytes.extend(read_shard(path).with_context(|| format!("weight shard {path}"))?);
        }
        let mut offset = 0;
        for entry in &group.weights {
            ensure!(
                entry.dtype == "float32" && entry.quantization.is_none(),
                "tensor `{}` in {source} is {} (quantized: {}); only float32 is supported",
                entry.name,
                entry.dtype,
                entry.quantization.is_some()
            );
            let end = entry
                .shape
                .iter()
                .try_fold(4usize, |bytes, &dim| bytes.checked_mul(dim))
                .and_then(|size| size.checked_add(offset));
            let Some(end) = end.filter(|&end| end <= bytes.len()) else {
                bail!(
                    "weight shards of {source} are truncated: tensor `{}` {:?} needs bytes from \
                     {offset} on but the shards {:?} hold only {}",
                    entry.name,
                    entry.shape,
                    group.paths,
                    bytes.len()
                );
            };
            let values: Vec<f32> = bytes[offset..end]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            offset = end;
            let (shape, values) = match entry.shape[..] {
                [h, w, i, o] => (vec![o, i, h, w], hwio_to_oihw(&values, [h, w, i, o])),
                _ => (entry.shape.clone(), values),
            };
            tensors.insert(&entry.name, shape, values);
        }
        ensure!(
            offset == bytes.len(),
            "weight shards {:?} of {source} hold {} bytes but the manifest describes {offset}",
            group.paths,
            bytes.len()
        );
    }
    Ok(tensors)
}

/// Reads `model.json` and its shards from a folder on disk.
pub fn read(model_json_path: &Path) -> Result<NamedTensors> {
    let folder = model_json_path.parent().unwrap_or(Path::new("."));
    let json = std::fs::read(model_json_path)
        .with_context(|| format!("cannot read {}", model_json_path.display()))?;
    parse(&json, &model_json_path.display().to_string(), |shard| {
        let path = folder.join(shard);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    })
}

/// Transposes a `[h, w, in, out]` kernel to `[out, in, h, w]`.
fn hwio_to_oihw(values: &[f32], [h, w, i, o]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for y in 0..h {
        for x in 0..w {
            for c_in in 0..i {
                for c_out in 0..o {
                    out[((c_out * i + c_in) * h + y) * w + x] =
                        values[((y * w + x) * i + c_in) * o + c_out];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(shape: &str) -> Vec<u8> {
        format!(
            r#"{{"format":"layers-model","weightsManifest":[{{"paths":["s1.bin","s2.bin"],
            "weights":[{{"name":"k","shape":{shape},"dtype":"float32"}},
                       {{"name":"b","shape":[2],"dtype":"float32"}}]}}]}}"#
        )
        .into_bytes()
    }

    fn floats(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn reads_tensors_across_shards_and_transposes_kernels() {
        // A 1x2 kernel, 1 input channel, 2 output channels: HWIO values [y][x][i][o].
        let all = floats(&[1.0, 2.0, 3.0, 4.0, 10.0, 20.0]);
        let (first, second) = all.split_at(10); // a shard boundary inside a value
        let tensors = parse(&manifest("[1,2,1,2]"), "test", |path| {
            Ok(if path == "s1.bin" { first.to_vec() } else { second.to_vec() })
        })
        .unwrap();
        let kernel = &tensors.tensors["k"];
        assert_eq!(kernel.shape, vec![2, 1, 1, 2]);
        // Output channel 0 sees x=0 -> 1.0, x=1 -> 3.0.
        assert_eq!(kernel.values, vec![1.0, 3.0, 2.0, 4.0]);
        assert_eq!(tensors.tensors["b"].values, vec![10.0, 20.0]);
    }

    #[test]
    fn truncated_shard_names_the_tensor() {
        let bytes = floats(&[1.0, 2.0, 3.0, 4.0, 10.0]);
        let error = parse(&manifest("[1,2,1,2]"), "test", |path| {
            Ok(if path == "s1.bin" { bytes.clone() } else { Vec::new() })
        })
        .unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("truncated") && message.contains("`b`"), "{message}");
    }

    #[test]
    fn extra_bytes_are_an_error() {
        let bytes = floats(&[1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0]);
        let error = parse(&manifest("[1,2,1,2]"), "test", |path| {
            Ok(if path == "s1.bin" { bytes.clone() } else { Vec::new() })
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("manifest describes"));
    }
}
