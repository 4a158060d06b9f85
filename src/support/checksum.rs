//! Checksums that tell a file is still the bytes that were written: saved models (the
//! checksum of their tensor data, inside their own safetensors header), resume checkpoints
//! (listed in `state.json`) and the cached ImageNet weights (pinned in the code, see
//! `weights::fetch`). A file that changed is reported by name, never used.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

/// Metadata key of a safetensors file's tensor-data checksum.
pub const DATA_SHA256: &str = "data_sha256";

/// The SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// `bytes` as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The header (as JSON) and the offset of the tensor data of safetensors `bytes`.
fn safetensors_header(bytes: &[u8]) -> Result<(serde_json::Map<String, serde_json::Value>, usize)> {
    ensure!(bytes.len() >= 8, "too short for a safetensors file");
    let length = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    ensure!(length <= bytes.len() - 8, "the safetensors header is cut short");
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + length])
            .context("the safetensors header is not JSON")?;
    Ok((header, 8 + length))
}

/// Safetensors `bytes` with the checksum of their tensor data added to their metadata (the
/// data itself is unchanged; only the header grows).
pub fn seal_safetensors(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let (mut header, data_start) = safetensors_header(&bytes)?;
    let checksum = sha256_hex(&bytes[data_start..]);
    let metadata = header
        .entry("__metadata__")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    let Some(metadata) = metadata.as_object_mut() else {
        bail!("the safetensors metadata is not a map")
    };
    metadata.insert(DATA_SHA256.into(), checksum.into());
    let mut text = serde_json::to_vec(&header)?;
    // The format pads the header with spaces so that the data stays 8-byte aligned.
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut sealed = Vec::with_capacity(8 + text.len() + bytes.len() - data_start);
    sealed.extend_from_slice(&(text.len() as u64).to_le_bytes());
    sealed.extend_from_slice(&text);
    sealed.extend_from_slice(&bytes[data_start..]);
    Ok(sealed)
}

/// The SHA-256 (hex) of the tensor data of safetensors `bytes`, what [`seal_safetensors`]
/// records: it does not depend on the order of the header's metadata.
pub fn tensor_data_sha256(bytes: &[u8]) -> Result<String> {
    let (_, data_start) = safetensors_header(bytes)?;
    Ok(sha256_hex(&bytes[data_start..]))
}

/// The tensor-data checksum a sealed safetensors file records in its header (read from the
/// header alone), if any.
pub fn sealed_sha256(path: &Path) -> Result<Option<String>> {
    let (header, _) = read_safetensors_header(path)?;
    Ok(header["__metadata__"][DATA_SHA256].as_str().map(str::to_string))
}

/// The header of the safetensors file at `path` (as JSON) and the offset of its tensor data,
/// read without reading the data.
pub fn read_safetensors_header(path: &Path) -> Result<(serde_json::Value, u64)> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let length = u64::from_le_bytes(length);
    ensure!(length <= 100 << 20, "{} has an implausible safetensors header", path.display());
    let mut header = vec![0u8; length as usize];
    file.read_exact(&mut header).with_context(|| format!("{} is cut short", path.display()))?;
    let header = serde_json::from_slice(&header)
        .with_context(|| format!("the safetensors header of {} is not JSON", path.display()))?;
    Ok((header, 8 + length))
}

/// Checks sealed safetensors `bytes` (read from `path`); files saved before checksums were
/// kept carry none and pass.
pub fn check_safetensors(bytes: &[u8], path: &Path) -> Result<()> {
    let (header, data_start) = safetensors_header(bytes)
        .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
    let expected =
        header.get("__metadata__").and_then(|m| m.get(DATA_SHA256)).and_then(|v| v.as_str());
    if let Some(expected) = expected {
        ensure!(
            sha256_hex(&bytes[data_start..]) == expected,
            "{} has changed since it was saved (checksum mismatch): the file is corrupt",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny safetensors file: one f32 tensor of two values.
    fn safetensors() -> Vec<u8> {
        let header = br#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0, 0, 128, 63, 0, 0, 0, 64]);
        bytes
    }

    #[test]
    fn sealed_files_pass_and_flipped_bits_are_caught() {
        let path = Path::new("model.safetensors");
        let sealed = seal_safetensors(safetensors()).unwrap();
        check_safetensors(&sealed, path).unwrap();
        let parsed = safetensors::SafeTensors::deserialize(&sealed).unwrap();
        assert_eq!(parsed.tensor("t").unwrap().data(), &[0, 0, 128, 63, 0, 0, 0, 64]);
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let error = check_safetensors(&flipped, path).unwrap_err();
        assert!(error.to_string().contains("checksum mismatch"), "{error}");
        check_safetensors(&safetensors(), path).expect("unsealed files pass");
        assert_eq!(tensor_data_sha256(&sealed).unwrap(), sha256_hex(&[0, 0, 128, 63, 0, 0, 0, 64]));
    }
}
