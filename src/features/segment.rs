//! One segment of a feature store: a safetensors file of up to a chunk of feature rows, the
//! content hashes of their images, the store's identity, and a checksum of the hashes and
//! the rows together. A segment is written once, atomically, and named by its checksum, so
//! processes adding to one store at once never overwrite each other's rows and need no lock,
//! and a reader sees a whole segment or none. Rows are read from the file when they are
//! needed, never all at once.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, ensure};
use sha2::{Digest, Sha256};

use crate::data::ContentHash;
use crate::model::resnet::FEATURE_DIM;
use crate::support::checksum::{read_safetensors_header, to_hex};
use crate::weights::NamedTensors;

/// The extension of a segment file.
pub const EXTENSION: &str = "safetensors";
/// Bytes of one stored row (little-endian f32).
pub const ROW_BYTES: usize = FEATURE_DIM * 4;

const ROWS_TENSOR: &str = "features";
const KEYS_KEY: &str = "images";
const CHECKSUM_KEY: &str = "sha256";
const IDENTITY_KEY: &str = "identity";

/// Segments whose checksum this process has checked: a segment never changes once written,
/// so each is read whole at most once per process, however often its store is opened.
static VERIFIED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// A segment file: which images its rows are of, and where the rows start.
pub struct Segment {
    pub path: PathBuf,
    pub keys: Vec<ContentHash>,
    data_start: u64,
}

impl Segment {
    /// Writes `rows` (one of [`FEATURE_DIM`] per key) as a new segment of the store
    /// `identity` in `folder`.
    pub fn write(
        folder: &Path,
        identity: &str,
        keys: &[ContentHash],
        rows: &[f32],
    ) -> Result<Self> {
        debug_assert_eq!(keys.len() * FEATURE_DIM, rows.len());
        let keys_text = serde_json::to_string(keys)?;
        let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        let sum = checksum(&keys_text, &bytes);
        let path = folder.join(format!("{}.{EXTENSION}", &sum[..32]));
        let mut tensors = NamedTensors::new(path.display().to_string());
        tensors.insert(ROWS_TENSOR, vec![keys.len(), FEATURE_DIM], rows.to_vec());
        tensors.metadata.insert(KEYS_KEY.into(), keys_text);
        tensors.metadata.insert(CHECKSUM_KEY.into(), sum);
        tensors.metadata.insert(IDENTITY_KEY.into(), identity.to_string());
        tensors.write_safetensors(&path)?;
        VERIFIED.lock().expect("not poisoned").insert(path.clone());
        Self::open(&path, identity)
    }

    /// Opens the segment at `path`, checking that it belongs to the store `identity`, that
    /// its rows match its image list, and (the first time this process opens it) its
    /// checksum.
    pub fn open(path: &Path, identity: &str) -> Result<Self> {
        let (header, data_start) = read_safetensors_header(path)?;
        let meta = &header["__metadata__"];
        ensure!(meta[IDENTITY_KEY].as_str() == Some(identity), "it belongs to another backbone");
        let keys_text = meta[KEYS_KEY].as_str().context("no image list")?;
        let keys: Vec<ContentHash> =
            serde_json::from_str(keys_text).context("the image list is malformed")?;
        let info = &header[ROWS_TENSOR];
        let offsets = |i: usize| info["data_offsets"][i].as_u64().context("no row offsets");
        let (start, end) = (offsets(0)?, offsets(1)?);
        ensure!(
            info["dtype"] == "F32"
                && info["shape"] == serde_json::json!([keys.len(), FEATURE_DIM])
                && end.checked_sub(start) == Some((keys.len() * ROW_BYTES) as u64),
            "its rows do not match its image list"
        );
        let length = std::fs::metadata(path)?.len();
        ensure!(data_start + end == length, "it is cut short or has trailing bytes");
        let segment = Self { path: path.to_path_buf(), keys, data_start: data_start + start };
        if !VERIFIED.lock().expect("not poisoned").contains(path) {
            let file = File::open(path)?;
            let mut bytes = vec![0u8; segment.keys.len() * ROW_BYTES];
            file.read_exact_at(&mut bytes, segment.data_start)?;
            ensure!(
                Some(checksum(keys_text, &bytes).as_str()) == meta[CHECKSUM_KEY].as_str(),
                "its checksum does not match: the file is corrupt"
            );
            VERIFIED.lock().expect("not poisoned").insert(path.to_path_buf());
        }
        Ok(segment)
    }

    /// Where row `row` starts in the file.
    pub fn row_offset(&self, row: usize) -> u64 {
        self.data_start + (row * ROW_BYTES) as u64
    }
}

/// The checksum of a segment: its image list (as stored) and its rows' bytes.
fn checksum(keys_text: &str, row_bytes: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(keys_text.as_bytes());
    hash.update(row_bytes);
    to_hex(&hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> ContentHash {
        ContentHash([i; 32])
    }

    #[test]
    fn a_written_segment_opens_with_its_rows_where_it_says() {
        let folder = tempfile::tempdir().unwrap();
        let rows: Vec<f32> = (0..2 * FEATURE_DIM).map(|i| i as f32).collect();
        let written = Segment::write(folder.path(), "id", &[key(1), key(2)], &rows).unwrap();
        VERIFIED.lock().unwrap().remove(&written.path);
        let opened = Segment::open(&written.path, "id").unwrap();
        assert_eq!(opened.keys, [key(1), key(2)]);
        let mut bytes = [0u8; 4];
        File::open(&opened.path).unwrap().read_exact_at(&mut bytes, opened.row_offset(1)).unwrap();
        assert_eq!(f32::from_le_bytes(bytes), FEATURE_DIM as f32);
        let error = Segment::open(&written.path, "another").err().unwrap();
        assert!(error.to_string().contains("another backbone"), "{error}");
    }

    #[test]
    fn a_flipped_bit_in_the_rows_is_caught() {
        let folder = tempfile::tempdir().unwrap();
        let rows = vec![0.5f32; FEATURE_DIM];
        let path = Segment::write(folder.path(), "id", &[key(3)], &rows).unwrap().path;
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        VERIFIED.lock().unwrap().remove(&path);
        let error = Segment::open(&path, "id").err().unwrap();
        assert!(error.to_string().contains("checksum"), "{error}");
    }
}
