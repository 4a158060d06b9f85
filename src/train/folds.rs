//! Tops trained on folds of stored features: K-fold cross-validation of a frozen run's top
//! (`--folds K`), and the cross-fitting that `audit` reads label errors from.
//!
//! On a small dataset one validation split is a noisy estimate (124 validation photos: about
//! 3.5 points of standard error); K tops, each trained on the stored features of the other
//! folds of all the run's images (training and validation) and scored on its own, score every
//! image once and give an accuracy with an error bar. The folds hold out whole sittings of
//! photos (see [`crate::data::groups`]), whatever the validation split, so that no fold is
//! scored on near-copies of images its top trained on.

use std::sync::Arc;

use anyhow::{Result, ensure};
use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::batches::{Inputs, sample_stream};
use super::learner::{Learner, class_weights};
use super::optim;
use crate::config::TrainConfig;
use crate::features::{FeatureRows, head_logits};
use crate::model::Classifier;
use crate::model::resnet::FEATURE_DIM;

/// What K-fold cross-validation measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrossValidation {
    pub folds: usize,
    /// Training and validation images, each scored once by a top that never saw it.
    pub images: usize,
    /// Full passes each fold's top trained: as many as the run's best model had.
    pub epochs: usize,
    /// Each fold's images and top-1 accuracy.
    pub fold_images: Vec<usize>,
    pub fold_accuracies: Vec<f64>,
    /// Top-1 accuracy of all the out-of-fold predictions.
    pub accuracy: f64,
    /// The standard error of the accuracy, from the spread of the folds' accuracies (their
    /// standard deviation over the square root of the number of folds).
    pub standard_error: f64,
    /// The mean recall and the mean F1 of the classes, out of fold.
    pub balanced_accuracy: f64,
    pub macro_f1: f64,
}

impl CrossValidation {
    /// The figures in one line: "78.61% ± 2.20 (standard error) over 5 folds ...".
    pub fn describe(&self) -> String {
        let folds: Vec<String> =
            self.fold_accuracies.iter().map(|a| format!("{:.1}%", 100.0 * a)).collect();
        format!(
            "{:.2}% ± {:.2} (standard error) over {} folds of whole sittings of the {} training and validation images, {} epochs each (folds {}); balanced accuracy {:.2}%, macro-F1 {:.2}%",
            100.0 * self.accuracy,
            100.0 * self.standard_error,
            self.folds,
            self.images,
            self.epochs,
            folds.join(", "),
            100.0 * self.balanced_accuracy,
            100.0 * self.macro_f1,
        )
    }
}

/// Cross-validates the top of `config` over the images whose feature rows are `features`
/// (labels `labels`, of `classes`): fold `f` of `folds` holds the images with
/// `fold_of[i] == f`; each fold's top trains `epochs` full passes on the others.
#[allow(clippy::too_many_arguments)]
pub fn cross_validate(
    config: &TrainConfig,
    features: &[f32],
    labels: &[usize],
    fold_of: &[usize],
    folds: usize,
    classes: &[String],
    epochs: usize,
    device: &Device,
) -> Result<CrossValidation> {
    let logits =
        out_of_fold(config, features, labels, fold_of, folds, classes.len(), epochs, device)?;
    let mut fold_images = vec![0usize; folds];
    let mut fold_correct = vec![0usize; folds];
    for ((row, &label), &fold) in logits.chunks_exact(classes.len()).zip(labels).zip(fold_of) {
        fold_images[fold] += 1;
        fold_correct[fold] += crate::eval::is_correct(row, label) as usize;
    }
    let fold_accuracies: Vec<f64> =
        fold_correct.iter().zip(&fold_images).map(|(&c, &n)| c as f64 / n as f64).collect();
    let evaluation = crate::eval::evaluate(&logits, labels, classes)?;
    Ok(CrossValidation {
        folds,
        images: labels.len(),
        epochs,
        fold_images,
        standard_error: standard_error(&fold_accuracies),
        fold_accuracies,
        accuracy: evaluation.metrics.accuracy,
        balanced_accuracy: evaluation.balanced_accuracy,
        macro_f1: evaluation.macro_f1,
    })
}

/// Out-of-fold logits of every image (rows in the order of `labels`): each fold's images
/// scored by a top that `config` trained `epochs` passes on the other folds, its draws seeded
/// by the run's seed and the fold.
#[allow(clippy::too_many_arguments)]
pub fn out_of_fold(
    config: &TrainConfig,
    features: &[f32],
    labels: &[usize],
    fold_of: &[usize],
    folds: usize,
    classes: usize,
    epochs: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let mut logits = vec![0f32; labels.len() * classes];
    for fold in 0..folds {
        crate::support::interrupt::check()?;
        let (train, held): (Vec<usize>, Vec<usize>) =
            (0..labels.len()).partition(|&i| fold_of[i] != fold);
        ensure!(
            !held.is_empty() && !train.is_empty(),
            "--folds {folds}: fold {} has no images (the data has too few sittings); use fewer folds",
            fold + 1
        );
        let train_labels: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
        let seed = config.optimization.seed + fold as u64;
        let learner =
            fit_top(config, rows(features, &train), &train_labels, classes, epochs, seed, device)?;
        let fold_logits = head_logits(&learner.model.head.valid(), &rows(features, &held), device)?;
        for (&i, row) in held.iter().zip(fold_logits.chunks_exact(classes)) {
            logits[i * classes..(i + 1) * classes].copy_from_slice(row);
        }
    }
    Ok(logits)
}

/// A new top trained on the feature rows `features` (labels `labels`) as `config` trains one
/// (its head, optimizer, learning-rate schedule, loss and class balance) for `epochs` full
/// passes, its initial weights and data order drawn from `seed`.
pub fn fit_top(
    config: &TrainConfig,
    features: Vec<f32>,
    labels: &[usize],
    classes: usize,
    epochs: usize,
    seed: u64,
    device: &Device,
) -> Result<Learner> {
    device.seed(seed);
    let ad = device.clone().autodiff();
    let model = Classifier::new(config.model.layout, config.model.head, classes, &ad);
    let weights = class_weights(config, labels, classes);
    let mut learner = Learner::new(config, model, device).with_class_weights(weights);
    let inputs = Inputs::Features(Arc::new(FeatureRows::Memory(features)));
    let stream = sample_stream(config, labels, seed);
    let total = (epochs * labels.len().div_ceil(config.step_images(labels.len()))) as u64;
    let mut step = 0;
    for epoch in 0..epochs {
        let samples = stream.slice((epoch * labels.len()) as u64, labels.len());
        let mut batches = inputs.batches(config, samples, learner.autodiff_device());
        while let Some((input, batch_labels)) = batches.next_batch(labels)? {
            let lr = optim::learning_rate(&config.optimization, step, total);
            learner.step(input, &batch_labels, lr)?;
            step += 1;
        }
    }
    Ok(learner)
}

/// The feature rows of the images `indices`, in that order.
fn rows(features: &[f32], indices: &[usize]) -> Vec<f32> {
    indices
        .iter()
        .flat_map(|&i| &features[i * FEATURE_DIM..(i + 1) * FEATURE_DIM])
        .copied()
        .collect()
}

/// The standard deviation of `values` (with K - 1) over the square root of their number.
fn standard_error(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (variance / n).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_error_is_the_spread_of_the_folds_over_root_k() {
        // Deviations -0.02, 0, 0.02 and 0 from the mean, over root 4.
        let values = [0.80, 0.82, 0.84, 0.82];
        let sd = ((0.02f64.powi(2) * 2.0) / 3.0).sqrt();
        assert!((standard_error(&values) - sd / 2.0).abs() < 1e-12);
        assert_eq!(standard_error(&[0.9]), 0.0);
    }
}
