//! `fruitlab data inspect`: what a dataset holds and what is wrong with it.

use std::collections::BTreeMap;
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

#[derive(Serialize)]
pub struct InspectReport {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub splits: Vec<SplitReport>,
    /// Everything that would stop or change training, in words.
    pub problems: Vec<String>,
}

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
    let splits: Vec<SplitReport> = folders.iter().map(inspect_split).collect();
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
        problems,
    })
}

fn inspect_split(folder: &ImageFolder) -> SplitReport {
    let decoded: Vec<Result<(u32, u32), BadImage>> = folder
        .images
        .par_iter()
        .map(|image| {
            preprocess::decode(&image.path)
                .map(|rgb| rgb.dimensions())
                .map_err(|error| BadImage { path: image.path.clone(), error: format!("{error:#}") })
        })
        .collect();
    let mut image_sizes = BTreeMap::new();
    let mut unreadable: Vec<BadImage> = folder
        .bad_names
        .iter()
        .map(|path| BadImage {
            path: path.clone(),
            error: format!("{}: the file name is not valid UTF-8", path.display()),
        })
        .collect();
    for outcome in decoded {
        match outcome {
            Ok((w, h)) => *image_sizes.entry(format!("{w}x{h}")).or_insert(0) += 1,
            Err(bad) => unreadable.push(bad),
        }
    }
    SplitReport {
        folder: folder.root.clone(),
        images: folder.images.len(),
        images_per_class: folder.classes.iter().cloned().zip(folder.count_per_class()).collect(),
        image_sizes,
        unreadable,
        ignored_files: folder.ignored.clone(),
        nested_images: folder.nested.clone(),
    }
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
