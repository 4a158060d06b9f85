//! The data's own mistakes (`fruitlab audit`): images whose folder (label) is likely wrong,
//! images that are the same photo (within a split, and across training, validation and test:
//! leakage), and outliers, so that a person can fix the folders.
//!
//! Label errors: every training and validation image gets out-of-sample class probabilities
//! from a linear top cross-fitted over K folds of the backbone's pooled features (each fold's
//! images scored by a top that never saw them); an image is a suspect when its most likely
//! class out of sample is not its folder's, ranked by how much more likely that class is, and
//! a *confident* one when the other class is also as likely as that class's own images are on
//! average (confident learning, Northcutt et al., 2021). Confident learning alone misses
//! mislabeled images that come in twos and threes (the others teach the top their wrong
//! label: measured in BENCHMARKS.md), so both are listed, the confident count beside. For a frozen run the features are the fixed backbone's (from the
//! feature store); for a fine-tuned run they are its trained backbone's, which has seen the
//! training images, so only the top is out of sample.

mod page;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, ensure};
use burn::tensor::Device;
use serde::Serialize;

use crate::config::{Init, Mode, OptimizerKind, Recipe, TrainConfig};
use crate::data::{self, ContentHash, DecodedImages, ImageFolder, LabeledImage};
use crate::inference::softmax;
use crate::model::HeadKind;
use crate::run::{Checkpoint, RunDir};

pub use page::write_page;

/// How the audit runs.
#[derive(Clone, Copy, Debug)]
pub struct AuditOptions {
    /// Folds of the cross-fitting.
    pub folds: usize,
    /// Suspects, duplicate groups and outliers listed (the most likely first).
    pub listed: usize,
}

/// Epochs of each fold's top over the features: more let it learn the wrong labels of a
/// few mislabeled images from each other (10 found one of three bananas filed as kiwis, 5 all
/// three, with fewer false alarms than 3).
const FOLD_EPOCHS: usize = 5;

/// Which part of the dataset an image is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Training,
    Validation,
    Test,
}

/// An image whose label is likely wrong.
#[derive(Clone, Debug, Serialize)]
pub struct Suspect {
    pub split: Split,
    /// Relative to the dataset root.
    pub path: PathBuf,
    pub given: String,
    pub suggested: String,
    /// Out-of-sample probabilities of the given and the suggested class.
    pub given_probability: f32,
    pub suggested_probability: f32,
    /// Whether confident learning flags it: the suggested class is as likely as that class's
    /// own images are on average.
    pub confident: bool,
}

/// Images that are the same photo.
#[derive(Clone, Debug, Serialize)]
pub struct DuplicateGroup {
    /// `identical bytes`, or `same picture` (the same 64-bit difference hash of the pixels).
    pub kind: &'static str,
    /// Whether it spans splits: the same photo trains and validates (or tests).
    pub leakage: bool,
    pub images: Vec<(Split, PathBuf, String)>,
}

/// An image far from the rest of its class.
#[derive(Clone, Debug, Serialize)]
pub struct Outlier {
    pub split: Split,
    pub path: PathBuf,
    pub class: String,
    /// Cosine distance of its features to its class's mean direction.
    pub distance: f32,
}

/// What an audit found.
#[derive(Clone, Debug, Serialize)]
pub struct Audit {
    pub dataset: PathBuf,
    pub images: usize,
    pub folds: usize,
    pub features: String,
    /// Suspects found in all (the list holds the first `listed`), and how many of them are
    /// confident.
    pub suspects_found: usize,
    pub confident_found: usize,
    pub suspects: Vec<Suspect>,
    pub duplicate_groups_found: usize,
    pub leaking_groups_found: usize,
    pub duplicates: Vec<DuplicateGroup>,
    pub outliers: Vec<Outlier>,
}

/// One image of the audit.
struct Entry {
    split: Split,
    file: LabeledImage,
}

/// Audits the dataset of `run` with its best model's backbone.
pub fn audit(run: &RunDir, options: AuditOptions, device: &Device) -> Result<Audit> {
    ensure!(options.folds >= 2, "--folds must be at least 2, got {}", options.folds);
    let config = run.read_config()?;
    let classes = run.read_classes()?;
    let trained = run.load_model(Checkpoint::Best, device)?;
    let splits = data::load_splits(&config.data, config.images.split())?;
    let test_folder = config.data.join("Test");
    let test = if test_folder.is_dir() && !config.images.split().uses_test() {
        ImageFolder::scan(&test_folder)?.images
    } else {
        Vec::new()
    };
    let entries: Vec<Entry> =
        [(Split::Training, splits.train), (Split::Validation, splits.val), (Split::Test, test)]
            .into_iter()
            .flat_map(|(split, files)| files.into_iter().map(move |file| Entry { split, file }))
            .collect();
    let files: Vec<LabeledImage> = entries.iter().map(|e| e.file.clone()).collect();
    let decoded = data::decode_labeled(&files, &config.images.input(), "decode")?;
    data::decoded::ensure_none_bad(&decoded.bad, true)?;
    let kept: Vec<&Entry> =
        entries.iter().filter(|e| !decoded.bad.iter().any(|b| b.path == e.file.path)).collect();
    let images = Arc::new(decoded.images);
    let features = crate::train::trust::pooled_features(
        &config,
        &trained.model,
        &images,
        device,
        "audit: features",
    )?;
    let labelled: Vec<usize> = (0..kept.len()).filter(|&i| kept[i].split != Split::Test).collect();
    let probabilities = cross_fit(
        &config,
        &features,
        &images.labels,
        &labelled,
        classes.len(),
        options.folds,
        device,
    )?;
    let relative = |path: &Path| path.strip_prefix(&config.data).unwrap_or(path).to_path_buf();
    let mut suspects: Vec<(f32, Suspect)> =
        disagreements(&probabilities, &labelled, &images.labels, classes.len())
            .into_iter()
            .map(|Disagreement { row: i, suggested, margin, confident }| {
                let row = &probabilities[i * classes.len()..(i + 1) * classes.len()];
                let label = images.labels[labelled[i]];
                let entry = kept[labelled[i]];
                (
                    margin,
                    Suspect {
                        split: entry.split,
                        path: relative(&entry.file.path),
                        given: classes[label].clone(),
                        suggested: classes[suggested].clone(),
                        given_probability: row[label],
                        suggested_probability: row[suggested],
                        confident,
                    },
                )
            })
            .collect();
    suspects.sort_by(|a, b| b.0.total_cmp(&a.0));
    let suspects_found = suspects.len();
    let confident_found = suspects.iter().filter(|(_, s)| s.confident).count();
    let groups = duplicate_groups(&images, &kept, &classes, &relative)?;
    let leaking = groups.iter().filter(|g| g.leakage).count();
    let found = groups.len();
    let mut groups = groups;
    groups.sort_by_key(|g| (!g.leakage, std::cmp::Reverse(g.images.len())));
    let outliers = outliers(&features, &images.labels, &kept, &classes, options.listed, &relative);
    Ok(Audit {
        dataset: config.data.clone(),
        images: kept.len(),
        folds: options.folds,
        features: if config.uses_feature_store() {
            "the frozen ImageNet backbone's (all out of sample)".into()
        } else {
            "the run's fine-tuned backbone's (it has seen the training images; the top is out of sample)".into()
        },
        suspects_found,
        confident_found,
        suspects: suspects.into_iter().take(options.listed).map(|(_, s)| s).collect(),
        duplicate_groups_found: found,
        leaking_groups_found: leaking,
        duplicates: groups.into_iter().take(options.listed).collect(),
        outliers,
    })
}

/// Out-of-sample class probabilities of the images `labelled` (indices into `features` rows
/// and `labels`), rows in that order: each of `folds` folds scored by a linear top trained on
/// the others.
fn cross_fit(
    run_config: &TrainConfig,
    features: &[f32],
    labels: &[usize],
    labelled: &[usize],
    classes: usize,
    folds: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    use crate::model::resnet::FEATURE_DIM;
    // A linear top trained by Adam's few passes, without label smoothing (its probabilities
    // are what is read). Not fitted to its optimum as the frozen default is: on a few images a
    // class that top grows so sure of every training image that a mislabelled one's true
    // class no longer looks as likely as that class's own images (the mini set's moved
    // bananas: 0.71 against near 1), and confident learning finds none of them.
    let mut config = Recipe::Default.config(Mode::Frozen, Init::Imagenet, run_config.data.clone());
    config.model.head = HeadKind::Linear;
    config.optimization.optimizer = OptimizerKind::Adam;
    config.optimization.weight_decay = 0.0;
    config.optimization.label_smoothing = Some(0.0);
    config.optimization.seed = run_config.optimization.seed;
    let rows: Vec<f32> = labelled
        .iter()
        .flat_map(|&i| &features[i * FEATURE_DIM..(i + 1) * FEATURE_DIM])
        .copied()
        .collect();
    let labelled_labels: Vec<usize> = labelled.iter().map(|&i| labels[i]).collect();
    let fold_of = stratified_folds(labelled_labels.iter().copied(), folds);
    let logits = crate::train::folds::out_of_fold(
        &config,
        &rows,
        &labelled_labels,
        &fold_of,
        folds,
        classes,
        FOLD_EPOCHS,
        device,
    )?;
    Ok(logits.chunks_exact(classes).flat_map(softmax).collect())
}

/// A fold for each image (labels in order), each class's images spread evenly over the folds.
fn stratified_folds(labels: impl Iterator<Item = usize>, folds: usize) -> Vec<usize> {
    let mut seen: HashMap<usize, usize> = HashMap::new();
    labels
        .map(|label| {
            let n = seen.entry(label).or_default();
            *n += 1;
            (*n - 1) % folds
        })
        .collect()
}

/// An image whose out-of-sample prediction is not its folder's class.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Disagreement {
    /// Its row in the probabilities.
    row: usize,
    suggested: usize,
    /// How much more likely the suggested class is than the given one.
    margin: f32,
    confident: bool,
}

/// The rows of `probabilities` (images `labelled`, labels `labels`) whose most likely class is
/// not their given one.
fn disagreements(
    probabilities: &[f32],
    labelled: &[usize],
    labels: &[usize],
    classes: usize,
) -> Vec<Disagreement> {
    // A class's confidence threshold: the mean probability its own images get for it.
    let mut sums = vec![(0f64, 0usize); classes];
    for (j, &i) in labelled.iter().enumerate() {
        let label = labels[i];
        sums[label].0 += probabilities[j * classes + label] as f64;
        sums[label].1 += 1;
    }
    let thresholds: Vec<f32> = sums.iter().map(|&(s, n)| (s / n.max(1) as f64) as f32).collect();
    labelled
        .iter()
        .enumerate()
        .filter_map(|(j, &i)| {
            let row = &probabilities[j * classes..(j + 1) * classes];
            let label = labels[i];
            let suggested = crate::inference::argmax(row);
            (suggested != label).then(|| Disagreement {
                row: j,
                suggested,
                margin: row[suggested] - row[label],
                confident: row[suggested] >= thresholds[suggested],
            })
        })
        .collect()
}

/// Groups of images with identical bytes, and of images with the same difference hash.
fn duplicate_groups(
    images: &DecodedImages,
    kept: &[&Entry],
    classes: &[String],
    relative: &dyn Fn(&Path) -> PathBuf,
) -> Result<Vec<DuplicateGroup>> {
    let describe =
        |i: usize| (kept[i].split, relative(&kept[i].file.path), classes[images.labels[i]].clone());
    let mut by_bytes: HashMap<ContentHash, Vec<usize>> = HashMap::new();
    let mut by_picture: HashMap<u64, Vec<usize>> = HashMap::new();
    for i in 0..images.len() {
        by_bytes.entry(images.hashes[i]).or_default().push(i);
        by_picture.entry(data::groups::difference_hash(&images.rgb(i)?)).or_default().push(i);
    }
    let group = |kind: &'static str, members: &Vec<usize>| {
        let leakage = members.iter().any(|&i| kept[i].split != kept[members[0]].split);
        DuplicateGroup { kind, leakage, images: members.iter().map(|&i| describe(i)).collect() }
    };
    let identical: Vec<DuplicateGroup> =
        by_bytes.values().filter(|m| m.len() > 1).map(|m| group("identical bytes", m)).collect();
    // A same-picture group that is a group of identical files is said once.
    let same_picture = by_picture
        .values()
        .filter(|m| m.len() > 1 && !m.iter().all(|&i| images.hashes[i] == images.hashes[m[0]]))
        .map(|m| group("same picture", m));
    Ok(identical.into_iter().chain(same_picture).collect())
}

/// The `count` images farthest (in direction) from their class's mean features.
fn outliers(
    features: &[f32],
    labels: &[usize],
    kept: &[&Entry],
    classes: &[String],
    count: usize,
    relative: &dyn Fn(&Path) -> PathBuf,
) -> Vec<Outlier> {
    use crate::model::resnet::FEATURE_DIM;
    let unit = |row: &[f32]| -> Vec<f32> {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter().map(|v| v / norm).collect()
    };
    let mut means = vec![vec![0f32; FEATURE_DIM]; classes.len()];
    for (row, &label) in features.chunks_exact(FEATURE_DIM).zip(labels) {
        for (m, v) in means[label].iter_mut().zip(unit(row)) {
            *m += v;
        }
    }
    let means: Vec<Vec<f32>> = means.iter().map(|m| unit(m)).collect();
    let mut far: Vec<Outlier> = features
        .chunks_exact(FEATURE_DIM)
        .zip(labels)
        .enumerate()
        .map(|(i, (row, &label))| {
            let cosine: f32 = unit(row).iter().zip(&means[label]).map(|(a, b)| a * b).sum();
            Outlier {
                split: kept[i].split,
                path: relative(&kept[i].file.path),
                class: classes[label].clone(),
                distance: 1.0 - cosine,
            }
        })
        .collect();
    far.sort_by(|a, b| b.distance.total_cmp(&a.distance));
    far.truncate(count);
    far
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_likelier_class_makes_a_suspect_and_a_usual_one_a_confident_suspect() {
        // Four images of class 0, two of class 1 (its own images: 0.9 and 0.7 on average
        // 0.8); image 2 looks like class 1 as much as class 1 does, image 3 less so.
        let probabilities = [0.9, 0.1, 0.8, 0.2, 0.1, 0.9, 0.4, 0.6, 0.1, 0.9, 0.3, 0.7];
        let labels = [0, 0, 0, 0, 1, 1];
        let labelled = [0, 1, 2, 3, 4, 5];
        let found = disagreements(&probabilities, &labelled, &labels, 2);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].row, found[0].suggested, found[0].confident), (2, 1, true));
        assert!((found[0].margin - 0.8).abs() < 1e-6);
        assert_eq!((found[1].row, found[1].suggested, found[1].confident), (3, 1, false));
    }

    #[test]
    fn folds_spread_every_class() {
        let folds = stratified_folds([0, 0, 0, 1, 1, 1, 1].into_iter(), 3);
        assert_eq!(folds, [0, 1, 2, 0, 1, 2, 0]);
    }
}
