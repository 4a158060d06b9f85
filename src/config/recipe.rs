//! Named recipes: the values of every training setting for a mode and initialisation, and the
//! resolution of a configuration as "the recipe, then what the user set".

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Init, Mode, Monitor, OptimizerKind, Schedule, TrainConfig};
use crate::data::{Augment, ValSplit};
use crate::device::{Backend, DeviceSpec};
use crate::model::{BatchNormMode, HeadKind, Layout, TrainFrom};
use crate::preprocess::Normalization;

/// Named starting points for the training settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// Our measured defaults for the mode (see README).
    Default,
    /// The notebook exactly: SGD lr 1e-4 momentum 0.9, batch 16, shear/zoom/flip, rescale
    /// normalisation, BatchNorm in training mode, 2 epochs of 495 steps.
    Notebook,
}

/// The notebook's epoch: 495 batches of 16.
pub const NOTEBOOK_STEPS: usize = 495;

/// Settings given explicitly (by flags); `None` takes the recipe's value.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub val_split: Option<ValSplit>,
    pub head: Option<HeadKind>,
    pub layout: Option<Layout>,
    pub weights: Option<PathBuf>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub steps_per_epoch: Option<usize>,
    pub optimizer: Option<OptimizerKind>,
    pub lr: Option<f64>,
    pub backbone_lr_scale: Option<f64>,
    pub momentum: Option<f64>,
    pub weight_decay: Option<f64>,
    pub schedule: Option<Schedule>,
    pub warmup_steps: Option<usize>,
    pub batchnorm: Option<BatchNormMode>,
    pub train_from: Option<TrainFrom>,
    pub head_warmup_epochs: Option<usize>,
    pub image_size: Option<usize>,
    pub frame_stride: Option<usize>,
    pub stop_at_accuracy: Option<f64>,
    pub patience: Option<usize>,
    pub patience_on: Option<Monitor>,
    pub label_smoothing: Option<f64>,
    pub normalization: Option<Normalization>,
    pub augment: Option<Augment>,
    /// `Some(false)` turns the frozen-mode feature cache off.
    pub feature_cache: Option<bool>,
    pub seed: Option<u64>,
    pub skip_bad_images: Option<bool>,
    pub keep_resume: Option<bool>,
    pub backend: Option<Backend>,
    pub device: Option<DeviceSpec>,
    pub threads: Option<usize>,
}

/// The configuration of a run on `data`: the recipe's values for this mode and
/// initialisation, then every setting given in `overrides`.
pub fn resolve(
    recipe: Recipe,
    mode: Mode,
    init: Init,
    data: PathBuf,
    overrides: Overrides,
) -> TrainConfig {
    let config = recipe.config(mode, init, data);
    overrides.apply(config)
}

impl Recipe {
    /// Every setting as this recipe has it for `mode` and `init`.
    pub fn config(self, mode: Mode, init: Init, data: PathBuf) -> TrainConfig {
        let notebook = self == Recipe::Notebook;
        let frozen = mode == Mode::Frozen;
        // A pretrained backbone needs only small corrections with statistics it already has;
        // a random one trains at full rate and must learn its batch-norm statistics.
        let pretrained = init == Init::Imagenet && !notebook;
        let (optimizer, lr, batch_size) = match (notebook, frozen) {
            (true, _) => (OptimizerKind::Sgd, 1e-4, 16),
            (false, true) => (OptimizerKind::Adam, 1e-3, 64),
            (false, false) => (OptimizerKind::Adam, 1e-3, 16),
        };
        // On stored features an epoch costs seconds: the top trains until the honest
        // validation stops improving. A linear top with label smoothing generalises best to
        // unseen views (BENCHMARKS.md: 99.85% against the notebook's top's 99.17%).
        let converge = frozen && !notebook;
        TrainConfig {
            recipe: self,
            data,
            val_split: ValSplit::Blocks(0.2),
            init,
            mode,
            head: if converge { HeadKind::Linear } else { HeadKind::Mlp },
            layout: Layout::Keras,
            weights: None,
            epochs: if converge { 10 } else { 2 },
            batch_size,
            // Fine-tuning and the notebook train the notebook's epochs of 495 steps; a frozen
            // backbone makes full passes cheap.
            steps_per_epoch: (notebook || !frozen).then_some(NOTEBOOK_STEPS),
            optimizer,
            lr,
            backbone_lr_scale: if pretrained { 0.1 } else { 1.0 },
            momentum: 0.9,
            weight_decay: 0.0,
            schedule: if notebook || frozen { Schedule::Constant } else { Schedule::Cosine },
            warmup_steps: if notebook { 0 } else { 50 },
            batchnorm: if pretrained { BatchNormMode::Frozen } else { BatchNormMode::Train },
            // The stem and stage 2 compute generic edges and textures that ImageNet taught
            // well; keeping them fixed regularises and skips their backward pass. With label
            // smoothing: 99.94% mean of three seeds against 99.39% (BENCHMARKS.md).
            train_from: if pretrained && !frozen { TrainFrom::Stage3 } else { TrainFrom::Stem },
            head_warmup_epochs: 0,
            image_size: 100,
            frame_stride: 1,
            stop_at_accuracy: None,
            patience: converge.then_some(3),
            patience_on: Monitor::Loss,
            // Near-copies of the training frames otherwise make the top overconfident.
            label_smoothing: if notebook { 0.0 } else { 0.1 },
            normalization: if notebook { Normalization::Rescale } else { Normalization::Caffe },
            augment: if notebook || !frozen { Augment::notebook() } else { Augment::default() },
            // The notebook ran the backbone on augmented images every epoch.
            feature_cache: !notebook,
            seed: 42,
            skip_bad_images: false,
            keep_resume: false,
            backend: Backend::Flex,
            device: None,
            threads: None,
        }
    }
}

impl Overrides {
    /// `config` with every given setting replaced.
    pub fn apply(self, mut config: TrainConfig) -> TrainConfig {
        fn set<T>(target: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *target = value;
            }
        }
        set(&mut config.val_split, self.val_split);
        set(&mut config.head, self.head);
        set(&mut config.layout, self.layout);
        config.weights = self.weights.or(config.weights);
        set(&mut config.epochs, self.epochs);
        set(&mut config.batch_size, self.batch_size);
        config.steps_per_epoch = self.steps_per_epoch.or(config.steps_per_epoch);
        set(&mut config.optimizer, self.optimizer);
        set(&mut config.lr, self.lr);
        set(&mut config.backbone_lr_scale, self.backbone_lr_scale);
        set(&mut config.momentum, self.momentum);
        set(&mut config.weight_decay, self.weight_decay);
        set(&mut config.schedule, self.schedule);
        set(&mut config.warmup_steps, self.warmup_steps);
        set(&mut config.batchnorm, self.batchnorm);
        set(&mut config.train_from, self.train_from);
        set(&mut config.head_warmup_epochs, self.head_warmup_epochs);
        set(&mut config.image_size, self.image_size);
        set(&mut config.frame_stride, self.frame_stride);
        config.stop_at_accuracy = self.stop_at_accuracy.or(config.stop_at_accuracy);
        config.patience = self.patience.or(config.patience);
        set(&mut config.patience_on, self.patience_on);
        set(&mut config.label_smoothing, self.label_smoothing);
        set(&mut config.normalization, self.normalization);
        set(&mut config.augment, self.augment);
        set(&mut config.feature_cache, self.feature_cache);
        set(&mut config.seed, self.seed);
        set(&mut config.skip_bad_images, self.skip_bad_images);
        set(&mut config.keep_resume, self.keep_resume);
        set(&mut config.backend, self.backend);
        config.device = self.device.or(config.device);
        config.threads = self.threads.or(config.threads);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(recipe: Recipe, mode: Mode, init: Init) -> TrainConfig {
        resolve(recipe, mode, init, "data".into(), Overrides::default())
    }

    #[test]
    fn default_fine_tuning_is_adam_with_a_slower_pretrained_backbone() {
        let c = recipe(Recipe::Default, Mode::Finetune, Init::Imagenet);
        assert_eq!((c.optimizer, c.lr, c.backbone_lr_scale), (OptimizerKind::Adam, 1e-3, 0.1));
        assert_eq!((c.schedule, c.warmup_steps), (Schedule::Cosine, 50));
        assert_eq!((c.batch_size, c.epochs, c.steps_per_epoch), (16, 2, Some(NOTEBOOK_STEPS)));
        assert_eq!(c.batchnorm, BatchNormMode::Frozen);
        assert_eq!(
            (c.normalization, c.augment.clone()),
            (Normalization::Caffe, Augment::notebook())
        );
        assert_eq!((c.head, c.image_size, c.seed), (HeadKind::Mlp, 100, 42));
        assert_eq!((c.train_from, c.label_smoothing), (TrainFrom::Stage3, 0.1));
    }

    #[test]
    fn default_from_scratch_trains_batch_norm_at_full_rate() {
        let c = recipe(Recipe::Default, Mode::Finetune, Init::Random);
        assert_eq!((c.backbone_lr_scale, c.batchnorm), (1.0, BatchNormMode::Train));
        assert_eq!((c.train_from, c.label_smoothing), (TrainFrom::Stem, 0.1));
    }

    #[test]
    fn default_frozen_trains_a_linear_top_to_convergence_on_stored_features() {
        let c = recipe(Recipe::Default, Mode::Frozen, Init::Imagenet);
        assert_eq!((c.optimizer, c.lr, c.batch_size), (OptimizerKind::Adam, 1e-3, 64));
        assert_eq!((c.steps_per_epoch, c.schedule), (None, Schedule::Constant));
        assert!(c.feature_cache && c.augment.is_identity());
        assert_eq!((c.head, c.label_smoothing), (HeadKind::Linear, 0.1));
        assert_eq!((c.epochs, c.patience, c.patience_on), (10, Some(3), Monitor::Loss));
    }

    #[test]
    fn notebook_is_the_notebook() {
        for mode in [Mode::Finetune, Mode::Frozen] {
            let c = recipe(Recipe::Notebook, mode, Init::Imagenet);
            assert_eq!((c.optimizer, c.lr, c.momentum), (OptimizerKind::Sgd, 1e-4, 0.9));
            assert_eq!((c.batch_size, c.steps_per_epoch), (16, Some(NOTEBOOK_STEPS)));
            assert_eq!((c.schedule, c.warmup_steps), (Schedule::Constant, 0));
            assert_eq!((c.batchnorm, c.backbone_lr_scale), (BatchNormMode::Train, 1.0));
            assert_eq!(c.normalization, Normalization::Rescale);
            assert_eq!(c.augment, Augment::notebook());
            assert!(!c.feature_cache);
            assert_eq!((c.train_from, c.label_smoothing), (TrainFrom::Stem, 0.0));
        }
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let overrides = Overrides { lr: Some(0.5), epochs: Some(7), ..Overrides::default() };
        let c = resolve(Recipe::Default, Mode::Frozen, Init::Imagenet, "d".into(), overrides);
        assert_eq!((c.lr, c.epochs, c.batch_size), (0.5, 7, 64));
    }
}
