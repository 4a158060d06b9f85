//! Inference: one way to load a model for prediction (a trained run or the ImageNet network),
//! run it over images, and turn its outputs into ranked classes. `predict`, `evaluate`,
//! training's validation, the report, the server and the exporter all go through here.

pub mod stream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use burn::tensor::{Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::{Batches, DecodedImages};
use crate::model::Classifier;
use crate::preprocess::{self, InputSpec, Normalization};
use crate::run::{Checkpoint, RunDir};
use crate::trust::{Judgement, Trust};

/// Images per forward pass: inference throughput on the CPU peaks around 32 (BENCHMARKS.md).
pub const BATCH: usize = 32;

/// Reads a 2-D tensor back as row-major values.
pub fn rows(tensor: Tensor<2>) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|error| anyhow::anyhow!("cannot read tensor values: {error:?}"))
}

/// Runs `forward` over all decoded images in order, [`BATCH`] at a time, and concatenates the
/// output rows (logits or features). `progress` hears the number of images done; Ctrl-C
/// stops between batches with [`crate::support::interrupt::Interrupted`].
pub fn map_images(
    data: &Arc<DecodedImages>,
    normalization: Normalization,
    device: &Device,
    progress: impl Fn(usize),
    forward: impl Fn(Tensor<4>) -> Tensor<2>,
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    let mut done = 0;
    for batch in Batches::in_order(data.clone(), BATCH, normalization) {
        crate::support::interrupt::check()?;
        let batch = batch?;
        let n = batch.len();
        out.extend(rows(forward(batch.into_tensor(data.size, device)))?);
        done += n;
        progress(done);
    }
    Ok(out)
}

/// A classifier ready to predict: the inference network, its classes and its input.
pub struct Predictor {
    pub model: Classifier,
    pub classes: Vec<String>,
    pub input: InputSpec,
    pub device: Device,
    /// Which weights these are, `sha256:` and the start of their checksum: what each line of
    /// `predict --jsonl` records, so that outputs of different models are never mixed.
    pub identity: String,
    /// The calibration and "none of these" of this model, when its run has them.
    pub trust: Option<Trust>,
    /// Whether "none of these" answers (with `trust`); off with `--no-reject`.
    pub reject: bool,
    /// Why this model's answers are not calibrated, when they could have been.
    pub note: Option<String>,
}

/// One image's answer: calibrated class probabilities and, where the model can tell, whether
/// the image is of none of its classes.
#[derive(Clone, Debug)]
pub struct Answer {
    pub probabilities: Vec<f32>,
    pub judgement: Option<Judgement>,
}

/// A model's identity from the SHA-256 of its weights.
fn identity(sha256: &str) -> String {
    format!("sha256:{}", &sha256[..sha256.len().min(16)])
}

/// The identity of a saved model: from the checksum its file records (or its bytes').
pub fn model_identity(path: &Path) -> Result<String> {
    let sha256 = match crate::support::checksum::sealed_sha256(path)? {
        Some(sha256) => sha256,
        None => crate::support::checksum::sha256_hex(&std::fs::read(path)?),
    };
    Ok(identity(&sha256))
}

/// One class of a prediction.
#[derive(Clone, Debug, Serialize)]
pub struct Guess {
    pub index: usize,
    pub class: String,
    pub probability: f32,
}

/// The ranked classes of one image.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub image: PathBuf,
    /// Not one of the model's classes (then `top` holds the closest ones); absent when the
    /// model cannot tell (no calibration, or `--no-reject`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<bool>,
    pub top: Vec<Guess>,
}

impl Predictor {
    /// A trained run's best or last model.
    pub fn from_run(run: &RunDir, which: Checkpoint, device: &Device) -> Result<Self> {
        let trained = run.load_model(which, device)?;
        let images = &trained.config.images;
        let identity = model_identity(&run.model_path(which))?;
        let fitted = Trust::load(&run.trust_files())?;
        let (trust, note) = match (which, fitted) {
            (Checkpoint::Best, Some(trust)) if trust.record.model == identity => (Some(trust), None),
            (Checkpoint::Best, Some(_)) => (None, Some("the run's calibration is of an earlier best model (it is fitted again when the run finishes): these probabilities are not calibrated".to_string())),
            (Checkpoint::Best, None) => (None, Some("the run has no calibration yet (it is fitted when the run finishes): these probabilities are not calibrated".to_string())),
            (Checkpoint::Last, _) => (None, Some("the calibration is of the run's best model, not of its last: these probabilities are not calibrated".to_string())),
        };
        Ok(Self {
            model: trained.model,
            classes: trained.classes,
            input: images.input(),
            device: device.clone(),
            identity,
            trust,
            reject: true,
            note,
        })
    }

    /// The ImageNet ResNet-50 (the cached weights, or the file at `weights`).
    pub fn imagenet(weights: Option<&Path>, device: &Device) -> Result<Self> {
        let (model, classes) = crate::weights::imagenet_model(weights, device)?;
        let sha256 = match weights {
            Some(file) => crate::support::checksum::sha256_hex(&std::fs::read(file)?),
            None => crate::weights::fetch::DATA_SHA256.to_string(),
        };
        Ok(Self {
            model: model.inference(),
            classes,
            input: InputSpec::IMAGENET,
            device: device.clone(),
            identity: identity(&sha256),
            trust: None,
            reject: true,
            note: None,
        })
    }

    /// The same model, answering every image with its closest classes (`--no-reject`).
    pub fn without_rejection(mut self) -> Self {
        self.reject = false;
        self
    }

    /// The temperature of the calibrated probabilities (1 without calibration).
    pub fn temperature(&self) -> f64 {
        self.trust.as_ref().map_or(1.0, |t| t.record.temperature)
    }

    /// The answers for square RGB images of the input size, one per image.
    pub fn answers(&self, images: &[RgbImage]) -> Result<Vec<Answer>> {
        let (logits, features) = self.outputs(images)?;
        let classes = self.classes.len();
        let judgements: Vec<Option<Judgement>> = match &self.trust {
            Some(trust) if self.reject => {
                trust.judge(&logits, &features, classes).into_iter().map(Some).collect()
            }
            _ => vec![None; images.len()],
        };
        let temperature = self.temperature() as f32;
        Ok(logits
            .chunks_exact(classes)
            .zip(judgements)
            .map(|(row, judgement)| {
                let scaled: Vec<f32> = row.iter().map(|l| l / temperature).collect();
                Answer { probabilities: softmax(&scaled), judgement }
            })
            .collect())
    }

    /// The logits and the pooled backbone features of square RGB images of the input size,
    /// a row per image.
    pub fn outputs(&self, images: &[RgbImage]) -> Result<(Vec<f32>, Vec<f32>)> {
        let raw: Vec<&[u8]> = images.iter().map(|image| image.as_raw().as_slice()).collect();
        let (mut logits, mut features) = (Vec::new(), Vec::new());
        for chunk in raw.chunks(BATCH) {
            let batch = preprocess::batch_tensor(
                chunk,
                self.input.size,
                self.input.normalization,
                &self.device,
            );
            let pooled = self.model.backbone.features(batch);
            features.extend(rows(pooled.clone())?);
            logits.extend(rows(self.model.head.forward(pooled))?);
        }
        ensure_finite(&logits, self.classes.len())?;
        Ok((logits, features))
    }

    /// Decodes image files into network-sized squares, in parallel; each file has its own
    /// result, so one unreadable file does not stop the others.
    pub fn load_all(&self, paths: &[PathBuf]) -> Vec<Result<RgbImage>> {
        paths.par_iter().map(|path| self.input.load(path)).collect()
    }

    /// The `top_k` classes of each image file, in order; a file that cannot be read gets its
    /// error and the others are still classified. An error of the model itself (non-finite
    /// outputs) fails the whole call.
    pub fn classify_files(
        &self,
        paths: &[PathBuf],
        top_k: usize,
    ) -> Result<Vec<Result<Prediction>>> {
        let loaded = self.load_all(paths);
        let good: Vec<RgbImage> = loaded.iter().filter_map(|r| r.as_ref().ok()).cloned().collect();
        let mut answers = self.answers(&good)?.into_iter();
        Ok(paths
            .iter()
            .zip(loaded)
            .map(|(path, image)| {
                image.map(|_| {
                    let answer = answers.next().expect("one answer per readable image");
                    Prediction {
                        image: path.clone(),
                        unknown: answer.judgement.map(|j| j.unknown),
                        top: top_classes(&answer.probabilities, &self.classes, top_k),
                    }
                })
            })
            .collect())
    }
}

/// The predicted class of a row (highest score).
pub fn argmax(row: &[f32]) -> usize {
    (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap_or(0)
}

/// Fails when any output is not finite: such a model has diverged, and counting its NaNs as
/// predictions would report an accuracy that is not there.
pub fn ensure_finite(logits: &[f32], classes: usize) -> anyhow::Result<()> {
    let bad = logits
        .chunks_exact(classes.max(1))
        .filter(|row| row.iter().any(|v| !v.is_finite()))
        .count();
    anyhow::ensure!(
        bad == 0,
        "the model's outputs are not finite (NaN or infinite) for {bad} of {} images: its weights have diverged",
        logits.len() / classes.max(1)
    );
    Ok(())
}

/// Softmax of one row of logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// The `k` most probable classes, most probable first.
pub fn top_classes(probabilities: &[f32], classes: &[String], k: usize) -> Vec<Guess> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    order
        .into_iter()
        .take(k)
        .map(|index| Guess {
            index,
            class: classes[index].clone(),
            probability: probabilities[index],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_classes_are_sorted_by_probability() {
        let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let top = top_classes(&[0.2, 0.5, 0.3], &classes, 2);
        assert_eq!(top.iter().map(|g| g.index).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(top[0].class, "b");
    }
}
