//! Evaluation: the metrics of a model's predictions, and evaluating a trained run.

pub mod run;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::LabeledImage;
use crate::inference::{ensure_finite, softmax};

/// Loss and accuracy of a set of predictions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub images: usize,
    /// Mean cross-entropy.
    pub loss: f64,
    pub accuracy: f64,
    pub top5_accuracy: f64,
}

/// The rank of the true class among the scores: 0 when it is strictly the highest, 1 when
/// one other class scores at least as high, and so on. A tie counts against the true class,
/// so a model whose scores all tie is never right. `None` when a score is not finite (NaN or
/// infinite outputs are no prediction at all).
pub fn rank_of(row: &[f32], label: usize) -> Option<usize> {
    if !row.iter().all(|score| score.is_finite()) {
        return None;
    }
    Some(row.iter().enumerate().filter(|&(c, &score)| c != label && score >= row[label]).count())
}

/// Whether the prediction of a row is right: the true class strictly ahead of every other.
pub fn is_correct(row: &[f32], label: usize) -> bool {
    rank_of(row, label) == Some(0)
}

/// The class a row predicts, as the confusion matrix counts it: the true class when it is
/// right, else the highest-scoring other class (ties go against the true class).
fn predicted_class(row: &[f32], label: usize) -> usize {
    if is_correct(row, label) {
        return label;
    }
    (0..row.len())
        .filter(|&c| c != label)
        .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
        .unwrap_or(label)
}

/// Loss, top-1 and top-5 accuracy of `logits` (`labels.len()` rows); an error when any
/// output is not finite (see [`ensure_finite`]).
pub fn metrics(logits: &[f32], labels: &[usize]) -> anyhow::Result<Metrics> {
    let classes = logits.len() / labels.len().max(1);
    ensure_finite(logits, classes)?;
    let (mut loss, mut top1, mut top5) = (0.0f64, 0usize, 0usize);
    for (row, &label) in logits.chunks_exact(classes).zip(labels) {
        let probabilities = softmax(row);
        loss -= (probabilities[label].max(1e-12) as f64).ln();
        let rank = rank_of(row, label).expect("checked finite");
        top1 += (rank == 0) as usize;
        top5 += (rank < 5) as usize;
    }
    let n = labels.len().max(1) as f64;
    Ok(Metrics {
        images: labels.len(),
        loss: loss / n,
        accuracy: top1 as f64 / n,
        top5_accuracy: top5 as f64 / n,
    })
}

/// How one class fares.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassAccuracy {
    pub class: String,
    pub images: usize,
    pub correct: usize,
    /// The share of the class's images predicted as it (its recall).
    pub accuracy: f64,
    /// The share of the images predicted as the class that are of it (0 when none is).
    #[serde(default)]
    pub precision: f64,
    /// The harmonic mean of precision and recall.
    #[serde(default)]
    pub f1: f64,
}

/// The mean over the classes that have images of their recall (balanced accuracy) and of
/// their F1 (macro-F1): figures in which a small class counts as much as a large one.
fn class_means(per_class: &[ClassAccuracy]) -> (f64, f64) {
    let present: Vec<&ClassAccuracy> = per_class.iter().filter(|c| c.images > 0).collect();
    let n = present.len().max(1) as f64;
    let mean = |f: fn(&ClassAccuracy) -> f64| present.iter().map(|c| f(c)).sum::<f64>() / n;
    (mean(|c| c.accuracy), mean(|c| c.f1))
}

/// A (true, predicted) class pair and how often it happened.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Confusion {
    pub true_class: String,
    pub predicted_class: String,
    pub count: usize,
}

/// One misclassified image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mistake {
    /// Index of the image in the evaluated set.
    pub index: usize,
    /// The image's file, relative to the dataset root when it lies under it.
    pub path: PathBuf,
    pub true_class: String,
    pub predicted_class: String,
    /// Probability given to the wrong prediction.
    pub confidence: f32,
}

/// The calibration of a model's probabilities on a set of images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationSummary {
    pub temperature: f64,
    /// Expected calibration error (15 equal-width bins) of `softmax(logits)` and of
    /// `softmax(logits / temperature)`.
    pub ece_before: f64,
    pub ece_after: f64,
    pub reliability_before: Vec<crate::trust::calibration::ReliabilityBin>,
    pub reliability_after: Vec<crate::trust::calibration::ReliabilityBin>,
}

impl CalibrationSummary {
    pub fn of(logits: &[f32], labels: &[usize], classes: usize, temperature: f64) -> Self {
        use crate::trust::calibration::{expected_calibration_error, reliability, scaled};
        let before = reliability(logits, labels, classes);
        let after = reliability(&scaled(logits, temperature), labels, classes);
        Self {
            temperature,
            ece_before: expected_calibration_error(&before),
            ece_after: expected_calibration_error(&after),
            reliability_before: before,
            reliability_after: after,
        }
    }
}

/// Images of an evaluated folder that are also images of the run (same content).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlap {
    pub training: usize,
    pub validation: usize,
}

impl Overlap {
    pub fn is_empty(&self) -> bool {
        self.training + self.validation == 0
    }
}

/// The full evaluation of a model on a set of images.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    /// The folder evaluated on; `None` for the run's own validation images.
    pub data: Option<PathBuf>,
    /// Whether each prediction averaged the image's and its mirror image's.
    pub mirrored_too: bool,
    /// The epoch whose model was evaluated, when training wrote this evaluation from that
    /// epoch's validation pass (`None` from `evaluate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<usize>,
    /// For a folder (`evaluate --data`): how many of its images the run trained or validated
    /// on. Not zero means the figure is not one on unseen images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    /// How well the probabilities say how often the model is right, before and after the
    /// run's temperature (when the model has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationSummary>,
    /// The share of these images judged "none of these" (when the model can tell).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<f64>,
    #[serde(flatten)]
    pub metrics: Metrics,
    /// The mean recall of the classes (each class counts alike, whatever its size).
    #[serde(default)]
    pub balanced_accuracy: f64,
    /// The mean F1 of the classes.
    #[serde(default)]
    pub macro_f1: f64,
    pub per_class: Vec<ClassAccuracy>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    pub most_confused: Vec<Confusion>,
    /// Misclassified images, most confident first.
    pub mistakes: Vec<Mistake>,
}

pub fn evaluate(
    logits: &[f32],
    labels: &[usize],
    classes: &[String],
) -> anyhow::Result<Evaluation> {
    let n = classes.len();
    let metrics = metrics(logits, labels)?;
    let mut confusion = vec![vec![0usize; n]; n];
    let mut mistakes = Vec::new();
    for (index, (row, &label)) in logits.chunks_exact(n).zip(labels).enumerate() {
        let predicted = predicted_class(row, label);
        confusion[label][predicted] += 1;
        if predicted != label {
            mistakes.push(Mistake {
                index,
                path: PathBuf::new(),
                true_class: classes[label].clone(),
                predicted_class: classes[predicted].clone(),
                confidence: softmax(row)[predicted],
            });
        }
    }
    mistakes.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let per_class: Vec<ClassAccuracy> = classes
        .iter()
        .enumerate()
        .map(|(c, class)| {
            let images: usize = confusion[c].iter().sum();
            let predicted: usize = confusion.iter().map(|row| row[c]).sum();
            let recall = confusion[c][c] as f64 / images.max(1) as f64;
            let precision = confusion[c][c] as f64 / predicted.max(1) as f64;
            let f1 = if recall + precision > 0.0 {
                2.0 * recall * precision / (recall + precision)
            } else {
                0.0
            };
            ClassAccuracy {
                class: class.clone(),
                images,
                correct: confusion[c][c],
                accuracy: recall,
                precision,
                f1,
            }
        })
        .collect();
    let (balanced_accuracy, macro_f1) = class_means(&per_class);
    let mut most_confused: Vec<Confusion> = (0..n)
        .flat_map(|t| (0..n).map(move |p| (t, p)))
        .filter(|&(t, p)| t != p && confusion[t][p] > 0)
        .map(|(t, p)| Confusion {
            true_class: classes[t].clone(),
            predicted_class: classes[p].clone(),
            count: confusion[t][p],
        })
        .collect();
    most_confused.sort_by_key(|pair| std::cmp::Reverse(pair.count));
    most_confused.truncate(10);
    Ok(Evaluation {
        data: None,
        mirrored_too: false,
        epoch: None,
        overlap: None,
        calibration: None,
        rejected: None,
        metrics,
        balanced_accuracy,
        macro_f1,
        per_class,
        confusion,
        most_confused,
        mistakes,
    })
}

impl Evaluation {
    /// Names each mistake's file (`files` are the evaluated images, in order), relative to
    /// `root` when under it, so that every mistake can be found.
    pub fn name_files(&mut self, files: &[LabeledImage], root: &Path) {
        for mistake in &mut self.mistakes {
            let path = &files[mistake.index].path;
            mistake.path = path.strip_prefix(root).unwrap_or(path).to_path_buf();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_count_top1_top5_and_loss() {
        // 6 classes, 2 images: the first right, the second's label ranked 6th (out of top-5).
        let logits = [5.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, -1.0];
        let m = metrics(&logits, &[0, 5]).unwrap();
        assert_eq!(m.accuracy, 0.5);
        assert_eq!(m.top5_accuracy, 0.5);
        let p0 = softmax(&logits[..6])[0] as f64;
        let p1 = softmax(&logits[6..])[5] as f64;
        assert!((m.loss - (-(p0.ln()) - p1.ln()) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn ties_are_wrong_and_non_finite_outputs_are_an_error() {
        // All scores equal: no class is predicted, so nothing is right.
        let tied = metrics(&[1.0, 1.0, 1.0, 0.5, 0.5, 0.5], &[0, 2]).unwrap();
        assert_eq!(tied.accuracy, 0.0);
        assert!(!is_correct(&[2.0, 2.0], 1) && !is_correct(&[2.0, 2.0], 0));
        assert!(is_correct(&[2.0, 3.0], 1));
        // A diverged model: NaN or infinite outputs are never counted.
        for bad in [f32::NAN, f32::INFINITY] {
            assert_eq!(rank_of(&[bad, 0.0], 0), None);
            let error = metrics(&[bad, 0.0, 1.0, 0.0], &[0, 0]).unwrap_err();
            assert!(error.to_string().contains("1 of 2 images"), "{error}");
        }
        let evaluation = evaluate(&[1.0, 1.0], &[0], &["a".into(), "b".into()]).unwrap();
        assert_eq!(evaluation.confusion, vec![vec![0, 1], vec![0, 0]], "a tie is a mistake");
    }

    #[test]
    fn balanced_accuracy_weighs_a_small_class_like_a_large_one() {
        // Class a: 9 images, all right; class b: 1 image, wrong; class c: no images.
        let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut logits = Vec::new();
        for _ in 0..10 {
            logits.extend([1.0, 0.0, 0.0]);
        }
        let labels = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let e = evaluate(&logits, &labels, &classes).unwrap();
        assert_eq!(e.metrics.accuracy, 0.9);
        assert_eq!(e.balanced_accuracy, 0.5, "c has no images and does not count");
        assert!((e.macro_f1 - (2.0 * 0.9 / 1.9) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn evaluation_builds_confusion_and_mistakes() {
        let classes: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let logits = [2.0, 0.0, 0.0, 2.0, 3.0, 0.0];
        let e = evaluate(&logits, &[0, 1, 1], &classes).unwrap();
        assert_eq!(e.confusion, vec![vec![1, 0], vec![1, 1]]);
        assert_eq!(e.per_class[1].accuracy, 0.5);
        // a: recall 1, precision 1/2, F1 2/3; b: recall 1/2, precision 1, F1 2/3.
        assert_eq!((e.per_class[0].precision, e.per_class[1].precision), (0.5, 1.0));
        assert!((e.macro_f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(e.balanced_accuracy, 0.75);
        assert_eq!(e.most_confused[0].true_class, "b");
        assert_eq!(e.mistakes.len(), 1);
        assert_eq!(e.mistakes[0].index, 2);
    }
}
