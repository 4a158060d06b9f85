//! The batches of one epoch: images (decoded, augmented and normalised by a background
//! thread) for fine-tuning, or rows of cached backbone features for a frozen backbone.

use std::sync::Arc;

use burn::tensor::{Device, Tensor};

use super::steps::gather_features;
use crate::data::{BatchRecipe, Batches, DecodedImages};

/// The inputs of one optimizer step.
pub enum StepInput {
    Images(Tensor<4>),
    Features(Tensor<2>),
}

/// Batches of one epoch.
pub enum EpochBatches {
    Images {
        batches: Batches,
        size: usize,
        ad: Device,
    },
    Features {
        features: Arc<Vec<f32>>,
        samples: Vec<(usize, u64)>,
        batch_size: usize,
        next: usize,
        ad: Device,
    },
}

impl EpochBatches {
    /// Images of `samples` (`(image, stream position)` pairs), assembled ahead of the model.
    pub fn images(
        data: Arc<DecodedImages>,
        samples: Vec<(usize, u64)>,
        recipe: BatchRecipe,
        ad: &Device,
    ) -> Self {
        let size = data.size;
        Self::Images { batches: Batches::spawn(data, samples, recipe), size, ad: ad.clone() }
    }

    /// Rows of `features` (one per training image) for `samples`.
    pub fn features(
        features: Arc<Vec<f32>>,
        samples: Vec<(usize, u64)>,
        batch_size: usize,
        ad: &Device,
    ) -> Self {
        Self::Features { features, samples, batch_size, next: 0, ad: ad.clone() }
    }

    /// The next batch and its labels (`labels` of the training images), or `None` at the end.
    pub fn next_batch(&mut self, labels: &[usize]) -> Option<(StepInput, Vec<usize>)> {
        match self {
            EpochBatches::Images { batches, size, ad } => {
                let batch = batches.next()?;
                let labels = batch.labels.clone();
                Some((StepInput::Images(batch.into_tensor(*size, ad)), labels))
            }
            EpochBatches::Features { features, samples, batch_size, next, ad } => {
                if *next >= samples.len() {
                    return None;
                }
                let end = (*next + *batch_size).min(samples.len());
                let (input, labels) = gather_features(features, labels, &samples[*next..end], ad);
                *next = end;
                Some((StepInput::Features(input), labels))
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

/// Distinct, seed-derived streams for the data order, augmentation, and so on.
pub fn stream_seed(seed: u64, purpose: &str) -> u64 {
    purpose.bytes().fold(seed, |acc, b| crate::data::loader::mix(acc, b as u64))
}
