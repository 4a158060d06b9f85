//! `fruitlab data inspect`: what a dataset holds and what is wrong with it: unreadable and
//! misplaced files, the same picture more than once (within a split, and across `Training/`
//! and `Test/`: leakage), classes too small to learn or to validate, very uneven classes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use super::dataset::{ImageFolder, ensure_same_classes, training_folder};
use super::decoded::BadImage;
use crate::preprocess;

/// One split (folder) of a dataset.
#[derive(Serialize)]
pub struct SplitReport {
    pub folder: PathBuf,
    pub images: usize,
    pub images_per_class: BTreeMap<String, usize>,
    /// `"WxH"` -> number of images.
    pub image_sizes: BTreeMap<String, usize>,
    pub unreadable: Vec<BadImage>,
    /// Files in class folders without an image extension (not used).
    pub ignored_files: Vec<PathBuf>,
    /// Images in sub-folders of class folders (not used).
    pub nested_images: Vec<PathBuf>,
}

/// Images that are the same picture (the same 64-bit difference hash of their pixels).
#[derive(Serialize)]
pub struct SamePicture {
    /// Whether it spans `Training/` and `Test/`: the test would measure seen images.
    pub across_splits: bool,
    pub images: Vec<PathBuf>,
}

#[derive(Serialize)]
pub struct InspectReport {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub splits: Vec<SplitReport>,
    /// Groups of the same picture found, how many span splits, and the first of them
    /// (spanning ones first, then the largest).
    pub same_picture_groups: usize,
    pub leaking_groups: usize,
    pub same_pictures: Vec<SamePicture>,
    /// Everything that would stop or change training, in words.
    pub problems: Vec<String>,
    /// What is allowed but deserves a look (small or uneven classes, repeated pictures).
    pub warnings: Vec<String>,
}

/// Groups of the same picture listed in the report.
const LISTED_GROUPS: usize = 50;
/// A class with fewer training images than this can hardly be learned or validated.
const FEW_IMAGES: usize = 10;
/// Classes this many times larger than the smallest make accuracy a poor summary.
const UNEVEN_RATIO: usize = 10;

/// Scans the dataset's `Training/` (or the root itself) and `Test/`, decoding every image.
pub fn inspect(root: &Path) -> Result<InspectReport> {
    let training = ImageFolder::scan(&training_folder(root))?;
    let mut folders = vec![training];
    let test = root.join("Test");
    if test.is_dir() && folders[0].root != root {
        folders.push(ImageFolder::scan(&test)?);
    }
    let mut problems = Vec::new();
    if let [training, test] = &folders[..]
        && let Err(error) = ensure_same_classes(training, test)
    {
        problems.push(format!("{error:#}"));
    }
    let (splits, pictures): (Vec<SplitReport>, Vec<Vec<(PathBuf, u64)>>) =
        folders.iter().map(inspect_split).unzip();
    let groups = same_pictures(&pictures);
    let leaking_groups = groups.iter().filter(|g| g.across_splits).count();
    let warnings = warnings(&splits[0], groups.len(), leaking_groups);
    for folder in &folders {
        for empty in &folder.empty_classes {
            problems.push(format!("class folder without images: {}", empty.display()));
        }
    }
    for split in &splits {
        for bad in &split.unreadable {
            problems.push(format!("unreadable: {}", bad.error));
        }
        if let Some(first) = split.nested_images.first() {
            problems.push(format!(
                "{} image(s) in sub-folders of class folders of {} are not used (a class is one folder), e.g. {}",
                split.nested_images.len(),
                split.folder.display(),
                first.display()
            ));
        }
        if !split.ignored_files.is_empty() {
            problems.push(format!(
                "{} non-image file(s) in class folders of {} are ignored, e.g. {}",
                split.ignored_files.len(),
                split.folder.display(),
                split.ignored_files[0].display()
            ));
        }
    }
    Ok(InspectReport {
        root: root.to_path_buf(),
        classes: folders[0].classes.clone(),
        splits,
        same_picture_groups: groups.len(),
        leaking_groups,
        same_pictures: groups.into_iter().take(LISTED_GROUPS).collect(),
        problems,
        warnings,
    })
}

/// The groups of images (of every split, `(path, picture hash)`) with the same picture,
/// spanning ones first, then the largest.
fn same_pictures(splits: &[Vec<(PathBuf, u64)>]) -> Vec<SamePicture> {
    let mut by_hash: HashMap<u64, Vec<(usize, &PathBuf)>> = HashMap::new();
    for (split, pictures) in splits.iter().enumerate() {
        for (path, hash) in pictures {
            by_hash.entry(*hash).or_default().push((split, path));
        }
    }
    let mut groups: Vec<SamePicture> = by_hash
        .into_values()
        .filter(|members| members.len() > 1)
        .map(|mut members| {
            members.sort();
            SamePicture {
                across_splits: members.iter().any(|(split, _)| *split != members[0].0),
                images: members.into_iter().map(|(_, path)| path.clone()).collect(),
            }
        })
        .collect();
    groups.sort_by(|a, b| {
        (!a.across_splits, std::cmp::Reverse(a.images.len()), &a.images).cmp(&(
            !b.across_splits,
            std::cmp::Reverse(b.images.len()),
            &b.images,
        ))
    });
    groups
}

/// What deserves a look in the training split and the groups of the same picture.
fn warnings(training: &SplitReport, groups: usize, leaking: usize) -> Vec<String> {
    let mut warnings = Vec::new();
    let small: Vec<String> = training
        .images_per_class
        .iter()
        .filter(|&(_, &n)| n < FEW_IMAGES)
        .map(|(class, n)| format!("{class} ({n})"))
        .collect();
    if !small.is_empty() {
        warnings.push(format!(
            "{} class(es) with fewer than {FEW_IMAGES} training images, too few to learn and validate: {}",
            small.len(),
            small.join(", ")
        ));
    }
    let counts = training.images_per_class.values().copied();
    if let (Some(least), Some(most)) = (counts.clone().filter(|&n| n > 0).min(), counts.max())
        && most >= UNEVEN_RATIO * least
    {
        warnings.push(format!(
            "uneven classes: {most} images in the largest, {least} in the smallest; read the balanced accuracy and per-class figures of `evaluate`, not the accuracy alone"
        ));
    }
    if groups > 0 {
        warnings.push(format!(
            "{groups} group(s) of the same picture ({leaking} across Training/ and Test/, where the test would measure seen images): see same_pictures in --json"
        ));
    }
    warnings
}

/// A split's report and each readable image's picture hash.
fn inspect_split(folder: &ImageFolder) -> (SplitReport, Vec<(PathBuf, u64)>) {
    // Each image's dimensions and picture hash, or why it cannot be read.
    type Outcome = Result<((u32, u32), u64), BadImage>;
    let decoded: Vec<Outcome> = folder
        .images
        .par_iter()
        .map(|image| {
            preprocess::decode(&image.path)
                .map(|rgb| (rgb.dimensions(), super::groups::difference_hash(&rgb)))
                .map_err(|error| BadImage { path: image.path.clone(), error: format!("{error:#}") })
        })
        .collect();
    let mut pictures = Vec::new();
    let mut image_sizes = BTreeMap::new();
    let mut unreadable: Vec<BadImage> = folder
        .bad_names
        .iter()
        .map(|path| BadImage {
            path: path.clone(),
            error: format!("{}: the file name is not valid UTF-8", path.display()),
        })
        .collect();
    for (image, outcome) in folder.images.iter().zip(decoded) {
        match outcome {
            Ok(((w, h), hash)) => {
                *image_sizes.entry(format!("{w}x{h}")).or_insert(0) += 1;
                pictures.push((image.path.clone(), hash));
            }
            Err(bad) => unreadable.push(bad),
        }
    }
    let report = SplitReport {
        folder: folder.root.clone(),
        images: folder.images.len(),
        images_per_class: folder.classes.iter().cloned().zip(folder.count_per_class()).collect(),
        image_sizes,
        unreadable,
        ignored_files: folder.ignored.clone(),
        nested_images: folder.nested.clone(),
    };
    (report, pictures)
}

impl std::fmt::Display for InspectReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "dataset {}: {} classes", self.root.display(), self.classes.len())?;
        let width = self.classes.iter().map(|c| c.chars().count()).max().unwrap_or(5).max(5);
        write!(f, "  {:width$}", "class")?;
        for split in &self.splits {
            let name = split.folder.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
            write!(f, " {name:>10}")?;
        }
        writeln!(f)?;
        for class in &self.classes {
            write!(f, "  {class:width$}")?;
            for split in &self.splits {
                write!(f, " {:>10}", split.images_per_class.get(class).copied().unwrap_or(0))?;
            }
            writeln!(f)?;
        }
        for split in &self.splits {
            let sizes: Vec<String> =
                split.image_sizes.iter().map(|(size, n)| format!("{size}: {n}")).collect();
            writeln!(
                f,
                "{}: {} images, sizes {}",
                split.folder.display(),
                split.images,
                sizes.join(", ")
            )?;
        }
        for warning in &self.warnings {
            writeln!(f, "note: {warning}")?;
        }
        if self.problems.is_empty() {
            writeln!(f, "no problems found")?;
        } else {
            writeln!(f, "{} problem(s):", self.problems.len())?;
            for problem in &self.problems {
                writeln!(f, "  - {problem}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(counts: &[(&str, usize)]) -> SplitReport {
        SplitReport {
            folder: "Training".into(),
            images: counts.iter().map(|c| c.1).sum(),
            images_per_class: counts.iter().map(|&(c, n)| (c.to_string(), n)).collect(),
            image_sizes: BTreeMap::new(),
            unreadable: Vec::new(),
            ignored_files: Vec::new(),
            nested_images: Vec::new(),
        }
    }

    #[test]
    fn the_same_picture_across_splits_is_leakage_and_comes_first() {
        let training = vec![("a1".into(), 7), ("a2".into(), 7), ("a3".into(), 7), ("b1".into(), 9)];
        let test = vec![("t1".into(), 9), ("t2".into(), 3)];
        let groups = same_pictures(&[training, test]);
        assert_eq!(groups.len(), 2);
        assert!(groups[0].across_splits);
        assert_eq!(groups[0].images, [PathBuf::from("b1"), PathBuf::from("t1")]);
        assert!(!groups[1].across_splits);
        assert_eq!(groups[1].images.len(), 3);
    }

    #[test]
    fn small_and_uneven_classes_are_named() {
        let found = warnings(&split(&[("big", 200), ("small", 4), ("mid", 40)]), 0, 0);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("small (4)"), "{found:?}");
        assert!(found[1].contains("200 images in the largest, 4"), "{found:?}");
        assert!(warnings(&split(&[("a", 30), ("b", 50)]), 0, 0).is_empty());
    }
}
