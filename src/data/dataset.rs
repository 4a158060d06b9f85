//! Image folders (one sub-folder per class) and the train/validation split.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

/// File extensions read as images (case-insensitive).
const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// Extensions of images in formats that are not read (an iPhone's HEIC first): such files are
/// taken as images, so that each gets the error that names it and the fix, never a silent skip.
const UNREAD_IMAGE_EXTENSIONS: [&str; 7] = ["heic", "heif", "avif", "bmp", "gif", "tif", "tiff"];

/// Whether the file is an image by its name (case-insensitive extension); other files in a
/// class folder are listed as ignored, and a folder walk passes them by.
pub fn is_image_name(path: &Path) -> bool {
    path.extension().is_some_and(|extension| {
        let extension = extension.to_string_lossy().to_lowercase();
        let extension = extension.as_str();
        IMAGE_EXTENSIONS.contains(&extension) || UNREAD_IMAGE_EXTENSIONS.contains(&extension)
    })
}

/// One image file and the index of its class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabeledImage {
    pub path: PathBuf,
    pub label: usize,
}

/// A folder of class folders, read in a fixed order: classes sorted by name, images of a class
/// sorted by video frame (see [`frame_key`]).
#[derive(Clone, Debug)]
pub struct ImageFolder {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub images: Vec<LabeledImage>,
    /// Files in class folders that are not images by extension (not used).
    pub ignored: Vec<PathBuf>,
    /// Class folders without a single image.
    pub empty_classes: Vec<PathBuf>,
    /// Images inside sub-folders of class folders: not used (a class is one folder). Each
    /// file once, however many symbolic links lead to it.
    pub nested: Vec<PathBuf>,
    /// Image files whose names are not UTF-8 (shown lossily): they cannot be recorded, so they
    /// are unreadable images.
    pub bad_names: Vec<PathBuf>,
}

impl ImageFolder {
    /// Scans `root`, whose sub-folders are the classes. Fails on a root without class folders;
    /// empty class folders are listed (see [`ImageFolder::ensure_trainable`]).
    pub fn scan(root: &Path) -> Result<Self> {
        let mut classes = Vec::new();
        let entries = std::fs::read_dir(root)
            .with_context(|| format!("cannot read the dataset folder {}", root.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", root.display()))?;
            // Follows symlinks: a linked class folder is a class folder.
            if entry.path().is_dir() && !is_hidden(&entry.path()) {
                classes.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        ensure!(
            !classes.is_empty(),
            "{} has no class folders: expected one sub-folder of images per class",
            root.display()
        );
        classes.sort();
        let mut images = Vec::new();
        let mut ignored = Vec::new();
        let mut empty = Vec::new();
        let mut nested = Below::default();
        let mut bad_names = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let folder = root.join(class);
            let listing = list_images(&folder)?;
            let (files, others) = (listing.images, listing.others);
            ignored.extend(others.iter().map(|p| lossy(p)));
            nested.visit(&folder);
            for sub_folder in listing.folders {
                nested.walk(&sub_folder, NESTING_LIMIT);
            }
            let (mut files, bad): (Vec<PathBuf>, Vec<PathBuf>) =
                files.into_iter().partition(|path| path.to_str().is_some());
            bad_names.extend(bad.iter().map(|p| lossy(p)));
            if files.is_empty() {
                empty.push(folder.clone());
            }
            files.sort_by_cached_key(|path| frame_key(path));
            images.extend(files.into_iter().map(|path| LabeledImage { path, label }));
        }
        Ok(Self {
            root: root.to_path_buf(),
            classes,
            images,
            ignored,
            empty_classes: empty,
            nested: nested.images,
            bad_names,
        })
    }

    /// Every class needs images to learn (and a label no image has would skew the metrics).
    pub fn ensure_trainable(&self) -> Result<()> {
        if self.empty_classes.is_empty() {
            return Ok(());
        }
        let names: Vec<String> =
            self.empty_classes.iter().map(|p| p.display().to_string()).collect();
        bail!("class folders without images ({}): {}", IMAGE_EXTENSIONS.join("/"), names.join(", "))
    }

    pub fn count_per_class(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for image in &self.images {
            counts[image.label] += 1;
        }
        counts
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// How deep below a class folder images are looked for, to report them.
const NESTING_LIMIT: usize = 8;

/// What a class folder holds.
struct Listing {
    images: Vec<PathBuf>,
    /// Files that are not images by extension.
    others: Vec<PathBuf>,
    /// Sub-folders.
    folders: Vec<PathBuf>,
}

/// `path` printed as text (a name that is not UTF-8 lossily), so that it can be recorded.
fn lossy(path: &Path) -> PathBuf {
    PathBuf::from(path.to_string_lossy().into_owned())
}

/// The image files below class folders, each counted once: folders already walked (reached
/// again through a symbolic link, or a link loop) and files already seen are skipped.
#[derive(Default)]
struct Below {
    folders: std::collections::HashSet<(u64, u64)>,
    files: std::collections::HashSet<(u64, u64)>,
    images: Vec<PathBuf>,
}

/// The device and inode of what `path` leads to.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Below {
    /// Marks `folder` as walked; whether it had not been.
    fn visit(&mut self, folder: &Path) -> bool {
        identity(folder).is_none_or(|id| self.folders.insert(id))
    }

    /// Records the images below `folder` (at most `depth` levels down).
    fn walk(&mut self, folder: &Path, depth: usize) {
        if !self.visit(folder) {
            return;
        }
        let Ok(listing) = list_images(folder) else { return };
        for image in listing.images {
            if identity(&image).is_none_or(|id| self.files.insert(id)) {
                self.images.push(lossy(&image));
            }
        }
        if depth > 0 {
            for sub_folder in listing.folders {
                self.walk(&sub_folder, depth - 1);
            }
        }
    }
}

/// Image files, other (non-hidden) files and sub-folders of a class folder.
fn list_images(folder: &Path) -> Result<Listing> {
    let mut images = Vec::new();
    let mut others = Vec::new();
    let mut folders = Vec::new();
    let entries =
        std::fs::read_dir(folder).with_context(|| format!("cannot read {}", folder.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("cannot list {}", folder.display()))?.path();
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            folders.push(path);
            continue;
        }
        if is_image_name(&path) { images.push(path) } else { others.push(path) }
    }
    Ok(Listing { images, others, folders })
}

/// The training folder of a dataset root: `ROOT/Training` if it exists, else ROOT itself.
pub fn training_folder(root: &Path) -> PathBuf {
    let training = root.join("Training");
    if training.is_dir() { training } else { root.to_path_buf() }
}

/// A Fruits-360 file name split into its recording and frame: `[r_|r2_|r3_]INDEX_100.jpg`
/// names frame INDEX of the recording named by the prefix (none for the first recording);
/// other names are one recording without frame numbers.
pub fn video_frame(path: &Path) -> (String, Option<u64>) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.split('.').next().unwrap_or_default();
    let (recording, rest) = match stem.split_once('_') {
        Some((prefix, rest))
            if prefix.starts_with('r') && prefix[1..].chars().all(|c| c.is_ascii_digit()) =>
        {
            (prefix.to_string(), rest)
        }
        _ => (String::new(), stem),
    };
    (recording, rest.split('_').next().and_then(|digits| digits.parse().ok()))
}

/// Sort key putting Fruits-360 files in video-frame order: by frame index across recordings,
/// then by name; names without a frame index sort after them, by name.
pub fn frame_key(path: &Path) -> (u64, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    (video_frame(path).1.unwrap_or(u64::MAX), name)
}

/// Keeps every `stride`-th video frame: Fruits-360 images whose frame index is a multiple of
/// `stride`, so that each of a class's videos (`N_100`, `r_N_100`, ...) keeps its share; other
/// names are thinned by their position within the class.
pub fn every_nth_frame(images: Vec<LabeledImage>, stride: usize) -> Vec<LabeledImage> {
    let stride = stride.max(1) as u64;
    let mut position_in_class = 0u64;
    let mut previous_label = None;
    images
        .into_iter()
        .filter(|image| {
            if previous_label != Some(image.label) {
                previous_label = Some(image.label);
                position_in_class = 0;
            }
            position_in_class += 1;
            match frame_key(&image.path).0 {
                u64::MAX => (position_in_class - 1).is_multiple_of(stride),
                index => index % stride == 0,
            }
        })
        .collect()
}

/// Training and test folders must name the same classes, or labels would not line up.
pub fn ensure_same_classes(training: &ImageFolder, test: &ImageFolder) -> Result<()> {
    if training.classes == test.classes {
        return Ok(());
    }
    let train: BTreeSet<&String> = training.classes.iter().collect();
    let test_set: BTreeSet<&String> = test.classes.iter().collect();
    let only_train: Vec<_> = train.difference(&test_set).collect();
    let only_test: Vec<_> = test_set.difference(&train).collect();
    bail!(
        "the classes of {} and {} differ: only in training {:?}, only in test {:?}",
        training.root.display(),
        test.root.display(),
        only_train,
        only_test
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_key_orders_by_index_across_prefixes() {
        let mut names = ["r_10_100.jpg", "2_100.jpg", "r2_3_100.jpg", "zz.jpg", "100_100.jpg"]
            .map(PathBuf::from)
            .to_vec();
        names.sort_by_cached_key(|p| frame_key(p));
        let names: Vec<_> = names.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["2_100.jpg", "r2_3_100.jpg", "r_10_100.jpg", "100_100.jpg", "zz.jpg"]);
    }

    #[test]
    fn every_nth_frame_keeps_every_video_of_a_class() {
        // Two interleaved videos, as frame order sorts them, then a class of unindexed names.
        let names =
            ["0_100.jpg", "r_0_100.jpg", "1_100.jpg", "r_1_100.jpg", "2_100.jpg", "r_2_100.jpg"];
        let mut images: Vec<LabeledImage> =
            names.iter().map(|n| LabeledImage { path: n.into(), label: 0 }).collect();
        images.extend(
            ["a.jpg", "b.jpg", "c.jpg"].iter().map(|n| LabeledImage { path: n.into(), label: 1 }),
        );
        let kept: Vec<String> =
            every_nth_frame(images, 2).iter().map(|i| i.path.display().to_string()).collect();
        assert_eq!(
            kept,
            ["0_100.jpg", "r_0_100.jpg", "2_100.jpg", "r_2_100.jpg", "a.jpg", "c.jpg"]
        );
    }
}
