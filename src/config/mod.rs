//! Everything that defines a training run, saved as the run's `config.json`: the settings
//! (declared once, in [`settings`]), the named recipes that fill them in ([`recipe`]), and
//! their checks ([`validate`]).

pub mod from_data;
pub mod recipe;
pub mod settings;
pub mod validate;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::compute::{Compute, ComputeOverrides};
use crate::model::{BatchNormMode, HeadKind};

pub use recipe::{Recipe, resolve};

crate::training_settings!(crate::settings_sections);

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

/// The optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with (heavy-ball, undampened: Keras/PyTorch) momentum.
    Sgd,
    /// Adam.
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
    /// L-BFGS with a strong-Wolfe line search, each step over every training image at once
    /// (frozen mode, stored features): fits the top to the minimum of the loss plus
    /// --weight-decay times half the squared weights.
    Lbfgs,
}

/// The weight decay of a linear top fitted to its optimum by L-BFGS (the frozen default, and
/// the head warm-up of fine-tuning): without it the optimum of separable features lies at
/// infinitely confident weights.
pub const FITTED_TOP_WEIGHT_DECAY: f64 = 1e-3;

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

/// How uneven classes are weighed in training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassBalance {
    /// Every image counts alike (large classes count more).
    None,
    /// Each image's loss weighted inversely to its class's share of the training images, so
    /// that every class counts alike.
    Weights,
    /// Every class drawn equally often: small classes' images repeat within an epoch.
    Sampler,
}

crate::spelled_setting!(Init, Mode, OptimizerKind, Schedule, Monitor, ClassBalance);

impl ImageConfig {
    /// The input size: chosen from the data before a run starts (see [`from_data`]); a
    /// configuration that never was falls back to the small-image default.
    pub fn size(&self) -> usize {
        self.image_size.unwrap_or(100)
    }

    /// The share of the shorter side kept (see [`from_data`] as for [`ImageConfig::size`]).
    pub fn crop_fraction(&self) -> f32 {
        self.crop.unwrap_or(1.0) as f32
    }

    /// The validation split (see [`from_data`] as for [`ImageConfig::size`]).
    pub fn split(&self) -> crate::data::ValSplit {
        self.val_split.unwrap_or(crate::data::ValSplit::Blocks(0.2))
    }

    /// The training augmentation (see [`from_data`] as for [`ImageConfig::size`]).
    pub fn augmentation(&self) -> crate::data::Augment {
        self.augment.clone().unwrap_or_else(crate::data::Augment::notebook)
    }

    /// How an image file becomes the network's input.
    pub fn input(&self) -> crate::preprocess::InputSpec {
        crate::preprocess::InputSpec::trained(self.size(), self.crop_fraction(), self.normalization)
    }
}

impl OptimizationConfig {
    /// The label smoothing (chosen from the data before a run starts where the recipe leaves
    /// it, see [`from_data`]; a configuration that never was has none).
    pub fn smoothing(&self) -> f64 {
        self.label_smoothing.unwrap_or(0.0)
    }
}

/// The complete, resolved configuration of a training run: what it is (recipe, mode,
/// initialisation, dataset) and its settings by section. `config.json` holds it flat, one key
/// per setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub recipe: Recipe,
    pub init: Init,
    pub mode: Mode,
    /// The dataset root.
    pub data: PathBuf,
    #[serde(flatten)]
    pub images: ImageConfig,
    #[serde(flatten)]
    pub model: ModelConfig,
    #[serde(flatten)]
    pub optimization: OptimizationConfig,
    #[serde(flatten)]
    pub schedule: ScheduleConfig,
    #[serde(flatten)]
    pub stopping: StoppingConfig,
    #[serde(flatten)]
    pub compute: Compute,
}

/// Settings given explicitly (by flags), by section; unset ones keep the recipe's value.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub images: ImageOverrides,
    pub model: ModelOverrides,
    pub optimization: OptimizationOverrides,
    pub schedule: ScheduleOverrides,
    pub stopping: StoppingOverrides,
    pub compute: ComputeOverrides,
}

impl Overrides {
    /// `config` with every given setting replaced.
    pub fn apply(self, mut config: TrainConfig) -> TrainConfig {
        self.images.apply(&mut config.images);
        self.model.apply(&mut config.model);
        self.optimization.apply(&mut config.optimization);
        self.schedule.apply(&mut config.schedule);
        self.stopping.apply(&mut config.stopping);
        self.compute.apply(&mut config.compute);
        config
    }
}

impl TrainConfig {
    /// The value of the setting `name` (its `config.json` key), as help texts show it.
    pub fn text(&self, name: &str) -> Option<String> {
        self.images
            .text(name)
            .or_else(|| self.model.text(name))
            .or_else(|| self.optimization.text(name))
            .or_else(|| self.schedule.text(name))
            .or_else(|| self.stopping.text(name))
            .or_else(|| self.compute.text(name))
    }

    /// Whether the backbone's weights change during the run.
    pub fn trains_backbone(&self) -> bool {
        self.mode == Mode::Finetune
    }

    /// Whether the head warm-up (`--head-warmup-epochs`) fits the top by L-BFGS over every
    /// training image at once (a linear top: a convex problem), rather than by the run's
    /// optimizer over batches (an MLP top).
    pub fn warms_up_by_lbfgs(&self) -> bool {
        self.model.head == HeadKind::Linear
    }

    /// Whether the new top trains on the frozen backbone's stored features (computed once and
    /// kept in the feature store) rather than on images through the network.
    pub fn uses_feature_store(&self) -> bool {
        self.mode == Mode::Frozen && self.images.feature_cache
    }

    /// How the backbone's batch norms behave while this run trains.
    pub fn training_batchnorm(&self) -> BatchNormMode {
        match self.mode {
            Mode::Finetune => self.model.batchnorm,
            // A frozen backbone is an inference network.
            Mode::Frozen => BatchNormMode::Frozen,
        }
    }

    /// Whether the trained network has its batch norms folded into the convolutions.
    pub fn folds_batchnorm(&self) -> bool {
        self.training_batchnorm() == BatchNormMode::Fold
    }

    /// Whether each optimizer step takes every training image at once (L-BFGS).
    pub fn steps_on_whole_set(&self) -> bool {
        self.optimization.optimizer == OptimizerKind::Lbfgs
    }

    /// Images per optimizer step, given the training-set size: the batch, or every image.
    pub fn step_images(&self, train_len: usize) -> usize {
        if self.steps_on_whole_set() { train_len.max(1) } else { self.optimization.batch_size }
    }

    /// Images seen per epoch, given the training-set size.
    pub fn images_per_epoch(&self, train_len: usize) -> usize {
        self.schedule.steps_per_epoch.map_or(train_len, |steps| steps * self.step_images(train_len))
    }

    /// Optimizer steps per epoch, given the training-set size.
    pub fn steps_in_epoch(&self, train_len: usize) -> usize {
        self.schedule
            .steps_per_epoch
            .unwrap_or_else(|| train_len.div_ceil(self.step_images(train_len)))
    }
}
