//! What the new top trains on, and the batches of one epoch: images (decoded, augmented and
//! normalised by a background thread) for fine-tuning, or rows of stored backbone features
//! for a frozen backbone.

use std::sync::Arc;

use anyhow::Result;
use burn::tensor::{Device, Tensor, TensorData};

use super::learner::StepInput;
use crate::config::{ClassBalance, TrainConfig};
use crate::data::{BatchRecipe, Batches, DecodedImages, SampleStream};
use crate::features::{self, FeatureRows, FeatureVariant};
use crate::model::Classifier;
use crate::model::resnet::FEATURE_DIM;

/// What a run's steps take for a set of images.
pub enum Inputs {
    /// The images, through the network (fine-tuning, or frozen without stored features).
    Images(Arc<DecodedImages>),
    /// Stored backbone features: one row of 2048 per image.
    Features(Arc<FeatureRows>),
}

impl Inputs {
    /// The inputs of `images` for a run of `config` training `model`:
    /// their stored features when the run uses the feature store, else the images.
    pub fn of(
        config: &TrainConfig,
        model: &Classifier,
        images: &Arc<DecodedImages>,
        device: &Device,
        label: &str,
    ) -> Result<Self> {
        if !config.uses_feature_store() {
            return Ok(Inputs::Images(images.clone()));
        }
        let backbone = model.backbone.inference();
        let rows =
            features::lookup(config, FeatureVariant::Plain, &backbone, images, device, label)?;
        Ok(Inputs::Features(Arc::new(rows)))
    }

    /// Batches of `samples` (`(image, stream position)` pairs) on the autodiff device `ad`;
    /// images are augmented as `config` says.
    pub fn batches(
        &self,
        config: &TrainConfig,
        samples: Vec<(usize, u64)>,
        ad: &Device,
    ) -> EpochBatches {
        let batch_size = config.optimization.batch_size;
        match self {
            Inputs::Features(features) => EpochBatches::Features {
                features: features.clone(),
                samples,
                batch_size: config.step_images(features.len()),
                whole_set: config.steps_on_whole_set(),
                next: 0,
                ad: ad.clone(),
            },
            Inputs::Images(images) => {
                let recipe = BatchRecipe {
                    batch_size,
                    normalization: config.images.normalization,
                    augment: Some((
                        config.images.augmentation(),
                        stream_seed(config.optimization.seed, "augment"),
                    )),
                };
                EpochBatches::Images {
                    batches: Batches::spawn(images.clone(), samples, recipe),
                    size: images.size,
                    ad: ad.clone(),
                }
            }
        }
    }
}

/// Batches of one epoch.
pub enum EpochBatches {
    Images {
        batches: Batches,
        size: usize,
        ad: Device,
    },
    Features {
        features: Arc<FeatureRows>,
        samples: Vec<(usize, u64)>,
        batch_size: usize,
        /// Each step takes its images' rows as they are stored (L-BFGS reads them as it
        /// needs them) instead of a tensor of them.
        whole_set: bool,
        next: usize,
        ad: Device,
    },
}

impl EpochBatches {
    /// The next batch and its labels (`labels` of the training images), or `None` at the end;
    /// an error when an image cannot be read.
    pub fn next_batch(&mut self, labels: &[usize]) -> Result<Option<(StepInput, Vec<usize>)>> {
        match self {
            EpochBatches::Images { batches, size, ad } => {
                let Some(batch) = batches.next().transpose()? else { return Ok(None) };
                let labels = batch.labels.clone();
                Ok(Some((StepInput::Images(batch.into_tensor(*size, ad)), labels)))
            }
            EpochBatches::Features { features, samples, batch_size, whole_set, next, ad } => {
                if *next >= samples.len() {
                    return Ok(None);
                }
                let end = (*next + *batch_size).min(samples.len());
                let batch = &samples[*next..end];
                *next = end;
                if *whole_set {
                    let indices: Vec<usize> = batch.iter().map(|&(index, _)| index).collect();
                    let labels = indices.iter().map(|&index| labels[index]).collect();
                    let rows = features.clone();
                    return Ok(Some((StepInput::FeatureSet { rows, indices }, labels)));
                }
                let (input, labels) = gather_features(features, labels, batch, ad)?;
                Ok(Some((StepInput::Features(input), labels)))
            }
        }
    }

    /// Seconds the training loop has waited for batches so far.
    pub fn waited(&self) -> f64 {
        match self {
            EpochBatches::Images { batches, .. } => batches.waited.as_secs_f64(),
            EpochBatches::Features { .. } => 0.0,
        }
    }
}

/// A batch of feature rows and their labels.
pub fn gather_features(
    features: &FeatureRows,
    labels: &[usize],
    samples: &[(usize, u64)],
    device: &Device,
) -> Result<(Tensor<2>, Vec<usize>)> {
    let rows = features.gather(samples.iter().map(|&(index, _)| index))?;
    let tensor = Tensor::from_data(TensorData::new(rows, [samples.len(), FEATURE_DIM]), device);
    Ok((tensor, samples.iter().map(|&(index, _)| labels[index]).collect()))
}

/// The order in which a run of `config` draws its training images (labelled `labels`) from
/// the stream seeded `seed`: shuffled passes, or with `--class-balance sampler` passes that
/// draw every class equally often.
pub fn sample_stream(config: &TrainConfig, labels: &[usize], seed: u64) -> SampleStream {
    match config.optimization.class_balance {
        ClassBalance::Sampler => SampleStream::balanced(labels, seed),
        ClassBalance::None | ClassBalance::Weights => SampleStream::new(labels.len(), seed),
    }
}

/// Distinct, seed-derived streams for the data order, augmentation, and so on.
pub fn stream_seed(seed: u64, purpose: &str) -> u64 {
    purpose.bytes().fold(seed, |acc, b| crate::data::loader::mix(acc, b as u64))
}
