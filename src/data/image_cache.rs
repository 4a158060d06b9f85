//! Decoded images on disk, so that memory does not grow with the dataset: at 224 px an image
//! is 150 KB decoded, 30 GB for 200,000 photos, which stay in
//! `$FRUITLAB_CACHE/images/KEY.pixels` and are read back one at a time as batches need them.
//! A later run over the same files (another seed, a resumed run, `evaluate` again) skips
//! decoding.
//!
//! KEY names the decoding (its version, the size and the crop) and every file of the list in
//! order (path, length, modification time): an edited, added or removed file makes another
//! list. Its index, `KEY.json`, written after the pixels, holds each image's content hash and
//! CRC-32 and the files that could not be decoded. Every image is checked against its CRC-32
//! when a run opens the cache (which then decodes anew where one fails) and as it is read; a
//! cache that fails is removed and reported, never trusted. The least
//! recently used caches beyond `FRUITLAB_IMAGE_CACHE_GIB` (default 50) are removed; 0 keeps
//! decoded images in memory instead, as does a disk without room for them.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::dataset::LabeledImage;
use super::decoded::{BadImage, ContentHash, DecodedImages};
use crate::preprocess::InputSpec;
use crate::support::atomic_file;

/// Bump when decoding gives other pixels for the same file and spec.
const DECODE_VERSION: u32 = 1;
/// The size limit's variable and its default.
const LIMIT_VARIABLE: &str = "FRUITLAB_IMAGE_CACHE_GIB";
const DEFAULT_LIMIT_GIB: f64 = 50.0;
/// Disk space left free beyond a new cache.
const DISK_MARGIN: u64 = 1 << 30;
const PIXELS_EXTENSION: &str = "pixels";
const INDEX_EXTENSION: &str = "json";

/// Caches this process uses: never removed to make room for another.
static IN_USE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// What the index of a cache records.
#[derive(Serialize, Deserialize)]
struct Index {
    version: u32,
    size: usize,
    /// Per decoded image, in order.
    hashes: Vec<ContentHash>,
    checksums: Vec<u32>,
    /// Files of the list that could not be decoded (left out of the pixels).
    bad: Vec<BadImage>,
}

/// The pixels of a cache, read an image at a time.
pub struct PixelFile {
    path: PathBuf,
    file: File,
    per_image: usize,
    checksums: Vec<u32>,
}

impl PixelFile {
    /// Reads image `index` into `out`, checked against its CRC-32. A mismatch removes the cache
    /// (the next run decodes again) and is an error naming it.
    pub fn read(&self, index: usize, out: &mut [u8]) -> Result<()> {
        self.read_checked(index, out).inspect_err(|_| remove(&self.path)).with_context(|| {
            format!(
                "the image cache {} is unusable: it has been removed; run again to decode the images anew",
                self.path.display()
            )
        })
    }

    fn read_checked(&self, index: usize, out: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(out, (index * self.per_image) as u64)?;
        anyhow::ensure!(
            crc32fast::hash(out) == self.checksums[index],
            "image {index} does not match its checksum: the file is corrupt"
        );
        Ok(())
    }

    /// Checks every image against its checksum (reading the whole file once, on all cores).
    fn verify(&self) -> Result<()> {
        use rayon::prelude::*;
        (0..self.checksums.len()).into_par_iter().try_for_each_init(
            || vec![0u8; self.per_image],
            |image, index| self.read_checked(index, image),
        )
    }
}

/// A cache for one list of files decoded one way.
pub struct ImageCache {
    pixels: PathBuf,
    index: PathBuf,
    size: usize,
    /// The folder's size limit in bytes.
    limit: u64,
}

/// A cache found complete: its pixels and what its index says.
pub struct CachedImages {
    pub images: DecodedImages,
    pub bad: Vec<BadImage>,
}

impl ImageCache {
    /// The cache of `files` decoded as `spec` says, or `None` where decoded images stay in
    /// memory: the limit is 0, or the disk has no room for them (said in a warning).
    pub fn for_files(files: &[LabeledImage], spec: &InputSpec) -> Result<Option<Self>> {
        let limit = limit_bytes()?;
        if limit == 0 {
            return Ok(None);
        }
        let folder = crate::weights::fetch::cache_dir()?.join("images");
        Self::in_folder(&folder, limit, files, spec)
    }

    /// As [`ImageCache::for_files`], in `folder` with a size limit of `limit` bytes.
    fn in_folder(
        folder: &Path,
        limit: u64,
        files: &[LabeledImage],
        spec: &InputSpec,
    ) -> Result<Option<Self>> {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create the image cache {}", folder.display()))?;
        let key = key(files, spec);
        let cache = Self {
            pixels: folder.join(format!("{key}.{PIXELS_EXTENSION}")),
            index: folder.join(format!("{key}.{INDEX_EXTENSION}")),
            size: spec.size,
            limit,
        };
        let needed = (files.len() * spec.size * spec.size * 3) as u64;
        if !cache.index.exists() && free_bytes(folder).is_some_and(|f| f < needed + DISK_MARGIN) {
            eprintln!(
                "warning: {} has no room for the {:.1} GiB of decoded images; keeping them in memory",
                folder.display(),
                crate::support::memory::gib(needed)
            );
            return Ok(None);
        }
        IN_USE.lock().expect("not poisoned").insert(cache.pixels.clone());
        Ok(Some(cache))
    }

    /// The cached images of `files` when the cache is complete and sound, else `None` (an
    /// unusable cache is removed, with a warning).
    pub fn open(&self, files: &[LabeledImage]) -> Option<CachedImages> {
        if !self.index.exists() {
            return None;
        }
        match self.read(files) {
            Ok(images) => Some(images),
            Err(error) => {
                eprintln!(
                    "warning: the image cache {} is unusable ({error:#}); decoding again",
                    self.pixels.display()
                );
                remove(&self.pixels);
                None
            }
        }
    }

    fn read(&self, files: &[LabeledImage]) -> Result<CachedImages> {
        let index: Index = serde_json::from_slice(&std::fs::read(&self.index)?)
            .context("its index is malformed")?;
        let per_image = self.size * self.size * 3;
        let count = index.hashes.len();
        anyhow::ensure!(
            index.version == DECODE_VERSION
                && index.size == self.size
                && index.checksums.len() == count
                && count + index.bad.len() == files.len(),
            "its index does not describe these images"
        );
        let file = File::open(&self.pixels)?;
        anyhow::ensure!(
            file.metadata()?.len() == (count * per_image) as u64,
            "its pixels are cut short"
        );
        // Marks it recently used, for the size limit.
        let _ = File::options().append(true).open(&self.index)?.set_modified(SystemTime::now());
        let pixels =
            PixelFile { path: self.pixels.clone(), file, per_image, checksums: index.checksums };
        pixels.verify()?;
        let labels = good_files(files, &index.bad).map(|f| f.label).collect();
        let images = DecodedImages::on_disk(self.size, pixels, labels, index.hashes);
        Ok(CachedImages { images, bad: index.bad })
    }

    /// Writes the decoded images `fill` produces (it is given a sink to append each decoded
    /// chunk to, and returns the files it could not decode), then the index; prunes older
    /// caches beyond the limit; and returns the cache as read back.
    pub fn write(
        &self,
        files: &[LabeledImage],
        fill: impl FnOnce(&mut dyn FnMut(&DecodedImages) -> Result<()>) -> Result<Vec<BadImage>>,
    ) -> Result<CachedImages> {
        let mut hashes = Vec::new();
        let mut checksums = Vec::new();
        let mut bad = Vec::new();
        atomic_file::write_with(&self.pixels, |file| {
            let mut sink = std::io::BufWriter::with_capacity(1 << 20, file);
            bad = fill(&mut |chunk: &DecodedImages| {
                for i in 0..chunk.len() {
                    let image = chunk.image(i)?;
                    checksums.push(crc32fast::hash(&image));
                    sink.write_all(&image)?;
                }
                hashes.extend_from_slice(&chunk.hashes);
                Ok(())
            })?;
            sink.flush()?;
            Ok(())
        })?;
        let index = Index { version: DECODE_VERSION, size: self.size, hashes, checksums, bad };
        atomic_file::write(&self.index, &serde_json::to_vec(&index)?)?;
        prune(self.pixels.parent().expect("a cache file has a folder"), self.limit);
        self.read(files)
    }
}

/// `files` without the `bad` ones.
pub fn good_files<'a>(
    files: &'a [LabeledImage],
    bad: &'a [BadImage],
) -> impl Iterator<Item = &'a LabeledImage> {
    let bad: HashSet<&Path> = bad.iter().map(|b| b.path.as_path()).collect();
    files.iter().filter(move |f| !bad.contains(f.path.as_path()))
}

/// The cache key: the decoding and each file's path, length and modification time.
fn key(files: &[LabeledImage], spec: &InputSpec) -> String {
    let mut identity =
        format!("{DECODE_VERSION} {} {}\n", spec.size, spec.crop.to_bits()).into_bytes();
    for file in files {
        // A file that cannot be read (a dangling link) is keyed as missing; decoding names it.
        let meta = std::fs::metadata(&file.path).ok();
        let length = meta.as_ref().map_or(0, |m| m.len());
        let modified = meta.and_then(|m| m.modified().ok());
        let nanos = modified
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        identity.extend_from_slice(file.path.as_os_str().as_encoded_bytes());
        identity.extend(format!("\0{length} {nanos}\n").bytes());
    }
    crate::support::checksum::sha256_hex(&identity)
}

/// The size limit in bytes, from [`LIMIT_VARIABLE`].
fn limit_bytes() -> Result<u64> {
    let Some(text) = std::env::var_os(LIMIT_VARIABLE) else {
        return Ok((DEFAULT_LIMIT_GIB * (1u64 << 30) as f64) as u64);
    };
    let gib = text.to_str().and_then(|t| t.trim().parse::<f64>().ok()).filter(|g| *g >= 0.0);
    match gib {
        Some(gib) => Ok((gib * (1u64 << 30) as f64) as u64),
        None => bail!(
            "{LIMIT_VARIABLE}={text:?} is not a size in GiB (0 keeps decoded images in memory)"
        ),
    }
}

/// Removes the least recently used caches until the folder is under the limit, never one this
/// process uses. A cache: what cannot be removed is left.
fn prune(folder: &Path, limit: u64) {
    let Ok(entries) = std::fs::read_dir(folder) else { return };
    let mut caches: Vec<(SystemTime, u64, PathBuf)> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            if path.extension()? != PIXELS_EXTENSION {
                return None;
            }
            let used =
                std::fs::metadata(path.with_extension(INDEX_EXTENSION)).ok()?.modified().ok()?;
            Some((used, std::fs::metadata(&path).ok()?.len(), path))
        })
        .collect();
    caches.sort();
    let mut total: u64 = caches.iter().map(|c| c.1).sum();
    let in_use = IN_USE.lock().expect("not poisoned").clone();
    for (_, bytes, path) in caches {
        if total <= limit {
            break;
        }
        if !in_use.contains(&path) {
            remove(&path);
            total -= bytes;
        }
    }
}

/// Removes a cache's pixels and index.
fn remove(pixels: &Path) {
    let _ = std::fs::remove_file(pixels.with_extension(INDEX_EXTENSION));
    let _ = std::fs::remove_file(pixels);
}

/// Bytes free for this user on the disk of `folder`, if known.
fn free_bytes(folder: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(folder.as_os_str().as_bytes()).ok()?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stats` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    Some(stats.f_bavail as u64 * stats.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::decode_all;
    use crate::preprocess::Normalization;

    const SPEC: InputSpec = InputSpec { size: 8, crop: 1.0, normalization: Normalization::Rescale };

    /// Two PNG photos of different colours and a file that is not an image, in `folder`.
    fn files(folder: &Path) -> Vec<LabeledImage> {
        let mut files = Vec::new();
        for (label, shade) in [(0, 40u8), (1, 200)] {
            let path = folder.join(format!("{label}.png"));
            image::RgbImage::from_fn(12, 10, |x, y| image::Rgb([shade, x as u8 * 9, y as u8 * 9]))
                .save(&path)
                .unwrap();
            files.push(LabeledImage { path, label });
        }
        let broken = folder.join("broken.jpg");
        std::fs::write(&broken, b"not a jpeg").unwrap();
        files.insert(1, LabeledImage { path: broken, label: 0 });
        files
    }

    fn cache(folder: &Path, files: &[LabeledImage]) -> ImageCache {
        ImageCache::in_folder(&folder.join("cache"), u64::MAX, files, &SPEC).unwrap().unwrap()
    }

    fn write(cache: &ImageCache, files: &[LabeledImage]) -> CachedImages {
        cache
            .write(files, |sink| {
                let (images, bad) = decode_all(files, &SPEC, &|_| {});
                sink(&images)?;
                Ok(bad)
            })
            .unwrap()
    }

    #[test]
    fn decoded_images_come_back_from_disk_as_decoded() {
        let folder = tempfile::tempdir().unwrap();
        let files = files(folder.path());
        let (direct, _) = decode_all(&files, &SPEC, &|_| {});
        assert!(cache(folder.path(), &files).open(&files).is_none(), "nothing cached yet");
        let written = write(&cache(folder.path(), &files), &files);
        let again = cache(folder.path(), &files).open(&files).expect("a complete cache");
        for cached in [&written, &again] {
            assert!(cached.images.on_disk_cache());
            assert_eq!(cached.images.labels, [0, 1], "the unreadable file is left out");
            assert_eq!(cached.images.hashes, direct.hashes);
            assert_eq!(cached.bad.len(), 1);
            assert!(cached.bad[0].path.ends_with("broken.jpg"));
            for i in 0..2 {
                assert_eq!(cached.images.image(i).unwrap(), direct.image(i).unwrap());
            }
        }
        assert_eq!(again.images.mirrored().image(1).unwrap(), direct.mirrored().image(1).unwrap());
    }

    #[test]
    fn an_edited_file_is_another_list() {
        let folder = tempfile::tempdir().unwrap();
        let files = files(folder.path());
        let before = cache(folder.path(), &files).pixels;
        image::RgbImage::new(30, 30).save(&files[0].path).unwrap();
        assert_ne!(cache(folder.path(), &files).pixels, before);
        assert_ne!(cache(folder.path(), &files[..2]).pixels, before);
    }

    #[test]
    fn a_corrupt_cache_is_reported_removed_and_rebuilt() {
        let folder = tempfile::tempdir().unwrap();
        let files = files(folder.path());
        let cached = write(&cache(folder.path(), &files), &files);
        let pixels = cache(folder.path(), &files).pixels;
        let mut bytes = std::fs::read(&pixels).unwrap();
        bytes[SPEC.size * SPEC.size * 3 + 5] ^= 0x40;
        std::fs::write(&pixels, &bytes).unwrap();
        assert!(cached.images.image(0).is_ok(), "the first image is intact");
        let error = format!("{:#}", cached.images.image(1).unwrap_err());
        assert!(error.contains("is corrupt") && error.contains("run again"), "{error}");
        assert!(!pixels.exists() && !pixels.with_extension(INDEX_EXTENSION).exists());
        assert!(cache(folder.path(), &files).open(&files).is_none(), "decoded again next time");
        // Opening checks every image: a flipped bit, or a cache cut short, is never used.
        for corrupt in [&bytes[..], &bytes[..10]] {
            write(&cache(folder.path(), &files), &files);
            std::fs::write(&pixels, corrupt).unwrap();
            assert!(cache(folder.path(), &files).open(&files).is_none());
            assert!(!pixels.exists());
        }
    }

    #[test]
    fn the_least_recently_used_caches_go_beyond_the_limit() {
        let folder = tempfile::tempdir().unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let mut paths = Vec::new();
        for (name, age) in [("old", 3), ("mid", 2), ("new", 1)] {
            let pixels = folder.path().join(format!("{name}.{PIXELS_EXTENSION}"));
            std::fs::write(&pixels, vec![0u8; 100]).unwrap();
            let index = pixels.with_extension(INDEX_EXTENSION);
            std::fs::write(&index, b"{}").unwrap();
            File::options()
                .append(true)
                .open(&index)
                .unwrap()
                .set_modified(SystemTime::now() - day * age)
                .unwrap();
            paths.push(pixels);
        }
        prune(folder.path(), 250);
        assert_eq!(paths.iter().map(|p| p.exists()).collect::<Vec<_>>(), [false, true, true]);
        prune(folder.path(), 0);
        assert!(paths.iter().all(|p| !p.exists() && !p.with_extension(INDEX_EXTENSION).exists()));
    }
}
