//! `serve --save-uncertain DIR`: uploads the model rejected as "none of these", or was unsure
//! of, kept for a person to label (each image beside a JSON of its prediction), bounded in
//! count and bytes so that a busy server never fills its disk.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::Serialize;

/// Where and how many uploads are kept.
pub struct UncertainStore {
    dir: PathBuf,
    /// Uploads whose top probability is under this are kept (besides rejected ones).
    below: f32,
    max_files: usize,
    max_bytes: u64,
    /// Files and bytes kept so far (counting what the folder held at start).
    kept: Mutex<(usize, u64)>,
}

/// What is written beside a kept image.
#[derive(Serialize)]
struct Record<'a, P: Serialize> {
    /// The upload's file name, when it had one.
    filename: Option<&'a str>,
    saved: String,
    prediction: &'a P,
}

impl UncertainStore {
    /// The store in `dir` (created), counting the images an earlier server kept there.
    pub fn open(dir: PathBuf, below: f32, max_files: usize, max_bytes: u64) -> Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let (mut files, mut bytes) = (0, 0);
        for entry in std::fs::read_dir(&dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(PREFIX) {
                files += 1;
                bytes += entry.metadata().map_or(0, |m| m.len());
            }
        }
        Ok(Self { dir, below, max_files, max_bytes, kept: Mutex::new((files, bytes)) })
    }

    /// Whether an answer with this top probability and judgement is to be kept.
    pub fn wants(&self, top_probability: f32, unknown: Option<bool>) -> bool {
        unknown == Some(true) || top_probability < self.below
    }

    /// Keeps `bytes` (an upload) and its `prediction`, unless the store is full; whether it did.
    pub fn keep(&self, bytes: &[u8], filename: Option<&str>, prediction: &impl Serialize) -> bool {
        let record = Record { filename, saved: chrono::Local::now().to_rfc3339(), prediction };
        let Ok(json) = serde_json::to_vec_pretty(&record) else { return false };
        let size = (bytes.len() + json.len()) as u64;
        let mut kept = self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if kept.0 + 2 > self.max_files || kept.1 + size > self.max_bytes {
            return false;
        }
        let stem =
            format!("{PREFIX}{}-{:06}", chrono::Local::now().format("%Y%m%d-%H%M%S"), kept.0 / 2);
        let extension = match image::guess_format(bytes) {
            Ok(image::ImageFormat::Png) => "png",
            Ok(image::ImageFormat::WebP) => "webp",
            _ => "jpg",
        };
        let image = self.dir.join(format!("{stem}.{extension}"));
        let written = crate::support::atomic_file::write(&image, bytes).and_then(|()| {
            crate::support::atomic_file::write(&self.dir.join(format!("{stem}.json")), &json)
        });
        if written.is_err() {
            return false;
        }
        kept.0 += 2;
        kept.1 += size;
        true
    }
}

/// How the files of kept uploads begin.
const PREFIX: &str = "uncertain-";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_kept_until_the_store_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = UncertainStore::open(dir.path().join("kept"), 0.5, 4, 1 << 20).unwrap();
        assert!(
            store.wants(0.3, Some(false))
                && store.wants(0.9, Some(true))
                && !store.wants(0.9, None)
        );
        assert!(store.keep(b"\xff\xd8 a jpeg", Some("a.jpg"), &"kiwi"));
        assert!(store.keep(b"\xff\xd8 b jpeg", None, &"kiwi"));
        assert!(
            !store.keep(b"\xff\xd8 c jpeg", None, &"kiwi"),
            "two images and their JSON fill 4 files"
        );
        assert_eq!(std::fs::read_dir(dir.path().join("kept")).unwrap().count(), 4);
        let again = UncertainStore::open(dir.path().join("kept"), 0.5, 4, 1 << 20).unwrap();
        assert!(
            !again.keep(b"\xff\xd8 d jpeg", None, &"kiwi"),
            "what an earlier server kept counts"
        );
    }
}
