//! Decode every image once, in parallel, into the square uint8 RGB images that training and
//! evaluation read: kept in the image cache on disk (see [`super::image_cache`]), or in memory.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Result, bail};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::dataset::LabeledImage;
use super::image_cache::{ImageCache, PixelFile, good_files};
use crate::preprocess::InputSpec;

/// Images decoded at once before they are handed on (to the cache file or to memory): enough
/// to keep every core busy, few enough to bound memory (38 MB at 224 px).
const DECODE_CHUNK: usize = 256;

/// The SHA-256 of an image file's bytes: what an image is, whatever its name (the feature
/// store's key, the run's record of its data). Computed while decoding, which reads the bytes
/// anyway.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(bytes).into())
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::str::FromStr for ContentHash {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a SHA-256 (64 hex digits)");
        if text.len() != 64 || !text.is_ascii() {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(bytes))
    }
}

impl Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Square RGB images of one size, with their labels and content hashes: in memory, or read
/// an image at a time from the image cache on disk (see [`super::image_cache`]).
#[derive(Clone)]
pub struct DecodedImages {
    pub size: usize,
    pixels: Pixels,
    /// Whether every image is read mirrored left to right.
    mirrored: bool,
    pub labels: Vec<usize>,
    pub hashes: Vec<ContentHash>,
}

/// Where the pixels are: back to back in memory, or in a cache file.
#[derive(Clone)]
enum Pixels {
    Memory(Arc<Vec<u8>>),
    Disk(Arc<PixelFile>),
}

impl DecodedImages {
    /// Images whose interleaved RGB pixels are `pixels`, back to back.
    pub fn in_memory(
        size: usize,
        pixels: Vec<u8>,
        labels: Vec<usize>,
        hashes: Vec<ContentHash>,
    ) -> Self {
        assert_eq!(pixels.len(), labels.len() * size * size * 3, "one square image per label");
        Self { size, pixels: Pixels::Memory(Arc::new(pixels)), mirrored: false, labels, hashes }
    }

    /// Images read from a cache file as they are needed.
    pub fn on_disk(
        size: usize,
        pixels: PixelFile,
        labels: Vec<usize>,
        hashes: Vec<ContentHash>,
    ) -> Self {
        Self { size, pixels: Pixels::Disk(Arc::new(pixels)), mirrored: false, labels, hashes }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn bytes_per_image(&self) -> usize {
        self.size * self.size * 3
    }

    /// Whether the pixels are read from the disk cache.
    pub fn on_disk_cache(&self) -> bool {
        matches!(self.pixels, Pixels::Disk(_))
    }

    /// Interleaved RGB pixels of image `index`.
    pub fn image(&self, index: usize) -> Result<Cow<'_, [u8]>> {
        let n = self.bytes_per_image();
        let mut image = match &self.pixels {
            Pixels::Memory(pixels) if !self.mirrored => {
                return Ok(Cow::Borrowed(&pixels[index * n..(index + 1) * n]));
            }
            Pixels::Memory(pixels) => pixels[index * n..(index + 1) * n].to_vec(),
            Pixels::Disk(file) => {
                let mut image = vec![0u8; n];
                file.read(index, &mut image)?;
                image
            }
        };
        if self.mirrored {
            mirror(&mut image, self.size);
        }
        Ok(Cow::Owned(image))
    }

    /// Image `index` as an RGB image.
    pub fn rgb(&self, index: usize) -> Result<image::RgbImage> {
        let side = self.size as u32;
        let pixels = self.image(index)?.into_owned();
        Ok(image::RgbImage::from_raw(side, side, pixels).expect("one image's bytes"))
    }

    /// The same images mirrored left to right (read so, not copied).
    pub fn mirrored(&self) -> Self {
        Self { mirrored: !self.mirrored, ..self.clone() }
    }

    /// The images at `indices`, in that order, in memory.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let mut pixels = Vec::with_capacity(indices.len() * self.bytes_per_image());
        for &i in indices {
            pixels.extend_from_slice(&self.image(i)?);
        }
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        let hashes = indices.iter().map(|&i| self.hashes[i]).collect();
        Ok(Self::in_memory(self.size, pixels, labels, hashes))
    }
}

/// Mirrors the rows of a square RGB image of `size` pixels left to right.
fn mirror(image: &mut [u8], size: usize) {
    for line in image.chunks_exact_mut(size * 3) {
        let (mut left, mut right) = (0, size * 3 - 3);
        while left < right {
            for c in 0..3 {
                line.swap(left + c, right + c);
            }
            left += 3;
            right -= 3;
        }
    }
}

/// An image that could not be decoded, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BadImage {
    pub path: PathBuf,
    pub error: String,
}

/// Decodes `images` into the squares `spec` describes on all cores. Unreadable files are left out
/// and returned; see [`ensure_none_bad`]. `progress` is called with the number of images done
/// so far (from worker threads).
pub fn decode_all(
    images: &[LabeledImage],
    spec: &InputSpec,
    progress: &(dyn Fn(usize) + Sync),
) -> (DecodedImages, Vec<BadImage>) {
    let size = spec.size;
    let per_image = size * size * 3;
    let mut pixels = vec![0u8; images.len() * per_image];
    let done = AtomicUsize::new(0);
    let outcomes: Vec<Result<ContentHash, BadImage>> = pixels
        .par_chunks_mut(per_image)
        .zip(images.par_iter())
        .map(|(out, image)| {
            // After Ctrl-C the remaining images are left undecoded (the caller stops).
            if crate::support::interrupt::requested() {
                return Ok(ContentHash([0; 32]));
            }
            let result = spec.read(&image.path).map(|(bytes, rgb)| {
                out.copy_from_slice(rgb.as_raw());
                ContentHash::of(&bytes)
            });
            progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            result
                .map_err(|error| BadImage { path: image.path.clone(), error: format!("{error:#}") })
        })
        .collect();
    let bad: Vec<BadImage> = outcomes.iter().filter_map(|o| o.as_ref().err()).cloned().collect();
    let mut labels = Vec::with_capacity(images.len());
    let mut hashes = Vec::with_capacity(images.len());
    let mut kept = 0;
    for (index, (image, outcome)) in images.iter().zip(&outcomes).enumerate() {
        if let Ok(hash) = outcome {
            if kept != index {
                pixels.copy_within(index * per_image..(index + 1) * per_image, kept * per_image);
            }
            labels.push(image.label);
            hashes.push(*hash);
            kept += 1;
        }
    }
    pixels.truncate(kept * per_image);
    (DecodedImages::in_memory(size, pixels, labels, hashes), bad)
}

/// Labelled images decoded for a run: the decoded images, the files they came from, and the
/// unreadable ones left out (see [`ensure_none_bad`] for the policy).
pub struct Decoded {
    pub images: DecodedImages,
    pub files: Vec<LabeledImage>,
    pub bad: Vec<BadImage>,
    /// Whether an earlier run had decoded them (read from the image cache).
    pub cached: bool,
}

/// Decodes `files` as `spec` says into the image cache, or reads them from it where an earlier
/// run decoded them; into memory where the cache is off or has no room (see [`ImageCache`]).
/// Shows a progress bar labelled `label`; Ctrl-C stops it.
pub fn decode_labeled(files: &[LabeledImage], spec: &InputSpec, label: &str) -> Result<Decoded> {
    let (images, bad, cached) = match ImageCache::for_files(files, spec)? {
        Some(cache) => match cache.open(files) {
            Some(hit) => (hit.images, hit.bad, true),
            None => {
                let written = cache.write(files, |sink| decode_chunks(files, spec, label, sink))?;
                (written.images, written.bad, false)
            }
        },
        None => {
            let (size, count) = (spec.size, files.len());
            let per_image = size * size * 3;
            crate::support::memory::ensure_fits(
                (count * per_image) as u64,
                &format!("holding {count} decoded images of {size}x{size} px"),
                "let the image cache hold them (FRUITLAB_IMAGE_CACHE_GIB above 0, free disk space in $FRUITLAB_CACHE), or lower --image-size",
            )?;
            let mut pixels = Vec::with_capacity(count * per_image);
            let mut hashes = Vec::with_capacity(count);
            let bad = decode_chunks(files, spec, label, &mut |chunk| {
                for i in 0..chunk.len() {
                    pixels.extend_from_slice(&chunk.image(i)?);
                }
                hashes.extend_from_slice(&chunk.hashes);
                Ok(())
            })?;
            let labels = good_files(files, &bad).map(|f| f.label).collect();
            (DecodedImages::in_memory(size, pixels, labels, hashes), bad, false)
        }
    };
    let files = good_files(files, &bad).cloned().collect();
    Ok(Decoded { images, files, bad, cached })
}

/// Decodes `files` a chunk at a time, handing each chunk's decoded images to `sink`, and
/// returns the files that could not be decoded.
fn decode_chunks(
    files: &[LabeledImage],
    spec: &InputSpec,
    label: &str,
    sink: &mut dyn FnMut(&DecodedImages) -> Result<()>,
) -> Result<Vec<BadImage>> {
    let progress = crate::support::progress::Progress::new(label, files.len() as u64);
    let mut bad = Vec::new();
    for (n, chunk) in files.chunks(DECODE_CHUNK).enumerate() {
        let offset = n * DECODE_CHUNK;
        let (images, unreadable) = decode_all(chunk, spec, &|done| {
            progress.update((offset + done) as u64, String::new);
        });
        crate::support::interrupt::check()?;
        sink(&images)?;
        bad.extend(unreadable);
    }
    progress.finish();
    Ok(bad)
}

/// The policy for unreadable images: an error listing them, unless `skip_bad`.
pub fn ensure_none_bad(bad: &[BadImage], skip_bad: bool) -> Result<()> {
    if !bad.is_empty() && !skip_bad {
        bail!(
            "{} unreadable image(s); fix or remove them, or pass --skip-bad-images to leave them out:\n  {}",
            bad.len(),
            describe(bad, 20)
        );
    }
    Ok(())
}

/// The first `limit` bad images, one per line.
pub fn describe(bad: &[BadImage], limit: usize) -> String {
    let mut lines: Vec<String> = bad.iter().take(limit).map(|b| b.error.clone()).collect();
    if bad.len() > limit {
        lines.push(format!("... and {} more", bad.len() - limit));
    }
    lines.join("\n  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirroring_reverses_pixels_within_rows() {
        let images =
            DecodedImages::in_memory(2, (0..12).collect(), vec![3], vec![ContentHash([7; 32])]);
        let mirrored = images.mirrored();
        assert_eq!(*mirrored.image(0).unwrap(), [3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8]);
        assert_eq!(mirrored.mirrored().image(0).unwrap(), images.image(0).unwrap());
        let subset = mirrored.subset(&[0]).unwrap();
        assert_eq!((&subset.labels, &subset.hashes), (&vec![3], &images.hashes));
        assert_eq!(*subset.image(0).unwrap(), *mirrored.image(0).unwrap());
    }

    #[test]
    fn content_hashes_print_and_parse_as_hex() {
        let hash = ContentHash::of(b"abc");
        let text = hash.to_string();
        assert!(text.starts_with("ba7816bf"), "{text}");
        assert_eq!(text.parse::<ContentHash>().unwrap(), hash);
        assert!("xyz".parse::<ContentHash>().is_err());
        assert_eq!(
            serde_json::from_str::<ContentHash>(&serde_json::to_string(&hash).unwrap()).unwrap(),
            hash
        );
    }
}
