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
}

/// A model's identity from the SHA-256 of its weights.
fn identity(sha256: &str) -> String {
    format!("sha256:{}", &sha256[..sha256.len().min(16)])
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
    pub top: Vec<Guess>,
}

impl Predictor {
    /// A trained run's best or last model.
    pub fn from_run(run: &RunDir, which: Checkpoint, device: &Device) -> Result<Self> {
        let trained = run.load_model(which, device)?;
        let images = &trained.config.images;
        let path = run.model_path(which);
        let sha256 = match crate::support::checksum::sealed_sha256(&path)? {
            Some(sha256) => sha256,
            None => crate::support::checksum::sha256_hex(&std::fs::read(&path)?),
        };
        Ok(Self {
            model: trained.model,
            classes: trained.classes,
            input: InputSpec::trained(images.image_size, images.normalization),
            device: device.clone(),
            identity: identity(&sha256),
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
        })
    }

    /// Class probabilities of square RGB images of the input size, one row per image.
    pub fn probabilities(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let raw: Vec<&[u8]> = images.iter().map(|image| image.as_raw().as_slice()).collect();
        let mut out = Vec::with_capacity(images.len());
        for chunk in raw.chunks(BATCH) {
            let batch = preprocess::batch_tensor(
                chunk,
                self.input.size,
                self.input.normalization,
                &self.device,
            );
            let logits = rows(self.model.forward(batch))?;
            ensure_finite(&logits, self.classes.len())?;
            out.extend(logits.chunks_exact(self.classes.len()).map(softmax));
        }
        Ok(out)
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
        let mut probabilities = self.probabilities(&good)?.into_iter();
        Ok(paths
            .iter()
            .zip(loaded)
            .map(|(path, image)| {
                image.map(|_| {
                    let row = probabilities.next().expect("one row per readable image");
                    Prediction { image: path.clone(), top: top_classes(&row, &self.classes, top_k) }
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
