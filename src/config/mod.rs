//! Everything that defines a training run, saved as the run's `config.json`, and the named
//! recipes that fill it in (see [`recipe`]).

pub mod recipe;
pub mod validate;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::{Augment, ValSplit};
use crate::device::{Backend, Compute, DeviceSpec};
use crate::model::{BatchNormMode, HeadKind, Layout, TrainFrom};
use crate::preprocess::Normalization;

pub use recipe::{Overrides, Recipe, resolve};

/// Where the backbone's weights start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// ImageNet weights ("pretrained").
    Imagenet,
    /// He/Glorot random initialisation ("vanilla": trained from scratch).
    Random,
}

/// Which layers train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every layer trains (the notebook's scenario 1).
    Finetune,
    /// The backbone is a fixed feature extractor; only the new top trains (scenario 2).
    Frozen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with (heavy-ball, undampened: Keras/PyTorch) momentum.
    Sgd,
    /// Adam.
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
}

/// Learning-rate schedule over the run's optimizer steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The same rate throughout (the notebook).
    Constant,
    /// Linear warm-up, then cosine decay to zero.
    Cosine,
}

/// What early stopping watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Monitor {
    /// Validation loss (stop when it has not fallen for the patience).
    Loss,
    /// Validation accuracy (stop when it has not risen).
    Accuracy,
}

/// The complete, resolved configuration of a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub recipe: Recipe,
    pub data: PathBuf,
    /// How the validation images are chosen.
    pub val_split: ValSplit,
    pub init: Init,
    pub mode: Mode,
    pub head: HeadKind,
    pub layout: Layout,
    /// Weights file for `init = imagenet`; `None` means the fetched cache.
    pub weights: Option<PathBuf>,
    pub epochs: usize,
    pub batch_size: usize,
    /// Optimizer steps per epoch; `None` means one full pass over the training images.
    pub steps_per_epoch: Option<usize>,
    pub optimizer: OptimizerKind,
    /// Learning rate of the new top (and peak rate of the schedule).
    pub lr: f64,
    /// Backbone learning rate as a fraction of `lr` (fine-tuning).
    pub backbone_lr_scale: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub schedule: Schedule,
    /// Warm-up optimizer steps of the cosine schedule.
    pub warmup_steps: usize,
    pub batchnorm: BatchNormMode,
    /// Fine-tuning: the first part of the backbone that trains (earlier parts stay fixed).
    #[serde(default)]
    pub train_from: TrainFrom,
    /// Fine-tuning: epochs of training only the new top on cached backbone features before
    /// unfreezing everything (linear probing then fine-tuning).
    pub head_warmup_epochs: usize,
    pub image_size: usize,
    /// Train on every Nth video frame of each class (neighbouring frames are near-copies);
    /// validation always uses all its images.
    #[serde(default = "one")]
    pub frame_stride: usize,
    /// Stop once the validation accuracy reaches this fraction.
    #[serde(default)]
    pub stop_at_accuracy: Option<f64>,
    /// Stop after this many epochs without improvement of `patience_on` (early stopping).
    #[serde(default)]
    pub patience: Option<usize>,
    #[serde(default = "loss")]
    pub patience_on: Monitor,
    /// Label smoothing of the cross-entropy (0: none).
    #[serde(default)]
    pub label_smoothing: f64,
    pub normalization: Normalization,
    pub augment: Augment,
    /// Frozen mode: compute backbone features once and train on the cache (augmentation is then
    /// not applied); `false` runs the backbone on augmented images every epoch.
    pub feature_cache: bool,
    pub seed: u64,
    pub skip_bad_images: bool,
    /// Keep the resume checkpoint (model and optimizer states) once the run has finished.
    #[serde(default)]
    pub keep_resume: bool,
    pub backend: Backend,
    pub device: Option<DeviceSpec>,
    pub threads: Option<usize>,
}

fn one() -> usize {
    1
}

fn loss() -> Monitor {
    Monitor::Loss
}

impl TrainConfig {
    /// Where the run computes.
    pub fn compute(&self) -> Compute {
        Compute { backend: self.backend, device: self.device.clone(), threads: self.threads }
    }

    /// Whether the backbone's weights change during the run.
    pub fn trains_backbone(&self) -> bool {
        self.mode == Mode::Finetune
    }

    /// How the backbone's batch norms behave while this run trains.
    pub fn training_batchnorm(&self) -> BatchNormMode {
        match self.mode {
            Mode::Finetune => self.batchnorm,
            // A frozen backbone is an inference network.
            Mode::Frozen => BatchNormMode::Frozen,
        }
    }

    /// Whether the trained network has its batch norms folded into the convolutions.
    pub fn folds_batchnorm(&self) -> bool {
        self.training_batchnorm() == BatchNormMode::Fold
    }

    /// Images seen per epoch, given the training-set size.
    pub fn images_per_epoch(&self, train_len: usize) -> usize {
        self.steps_per_epoch.map_or(train_len, |steps| steps * self.batch_size)
    }

    /// Optimizer steps per epoch, given the training-set size.
    pub fn steps_in_epoch(&self, train_len: usize) -> usize {
        self.steps_per_epoch.unwrap_or_else(|| train_len.div_ceil(self.batch_size))
    }
}
