//! Checking a configuration before any work starts: every number a user can type (on the
//! command line or in a `config.json`) within a range that makes sense, each problem named by
//! its flag.

use anyhow::{Result, bail};

use super::{ClassBalance, TrainConfig};
use crate::data::ValSplit;
use crate::model::HeadKind;

/// The largest number of training images a run may go through (epochs x images per epoch):
/// far beyond any real run, and far from overflowing a counter.
const MAX_TRAINING_IMAGES: u128 = 1 << 40;

/// Problems found so far, each naming its flag.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn require(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }

    fn whole(&mut self, flag: &str, value: usize, low: usize, high: usize) {
        self.require((low..=high).contains(&value), || {
            format!("{flag} must be between {low} and {high}, got {value}")
        });
    }

    /// A finite number in `[low, high]` (`(low, high]` when `low_open`).
    fn number(&mut self, flag: &str, value: f64, low: f64, high: f64, low_open: bool) {
        let above = if low_open { value > low } else { value >= low };
        self.require(value.is_finite() && above && value <= high, || {
            let bracket = if low_open { "(" } else { "[" };
            format!("{flag} must be a number in {bracket}{low}, {high}], got {value}")
        });
    }
}

impl TrainConfig {
    /// All problems of the configuration at once, or `Ok`.
    pub fn validate(&self) -> Result<()> {
        let mut p = Problems::default();
        p.whole("--epochs", self.schedule.epochs, 1, 100_000);
        p.whole("--batch-size", self.optimization.batch_size, 1, 4096);
        if let Some(steps) = self.schedule.steps_per_epoch {
            p.whole("--steps-per-epoch", steps, 1, 100_000_000);
            let images =
                self.schedule.epochs as u128 * steps as u128 * self.optimization.batch_size as u128;
            p.require(images <= MAX_TRAINING_IMAGES, || {
                format!("--epochs x --steps-per-epoch x --batch-size is {images} images: too many to train")
            });
        }
        if let Some(folds) = self.images.folds {
            p.whole("--folds", folds, 2, 50);
            p.require(self.uses_feature_store(), || {
                "--folds cross-validates the top on stored features: it needs --mode frozen with the feature cache".into()
            });
        }
        match self.images.image_size {
            Some(size) => p.whole("--image-size", size, 32, 1024),
            None => p.require(false, || "--image-size: not chosen from the data yet".into()),
        }
        if let Some(crop) = self.images.crop {
            p.number("--crop", crop, 0.1, 1.0, false);
        }
        p.whole("--frame-stride", self.images.frame_stride, 1, 100_000);
        p.whole("--warmup-steps", self.optimization.warmup_steps, 0, 100_000_000);
        p.whole("--head-warmup-epochs", self.schedule.head_warmup_epochs, 0, 10_000);
        if let Some(threads) = self.compute.threads {
            p.whole("--threads", threads, 1, crate::compute::MAX_THREADS);
        }
        p.number("--lr", self.optimization.lr, 0.0, 10.0, true);
        p.number("--backbone-lr-scale", self.optimization.backbone_lr_scale, 0.0, 100.0, false);
        p.number("--momentum", self.optimization.momentum, 0.0, 0.999, false);
        p.number("--weight-decay", self.optimization.weight_decay, 0.0, 1.0, false);
        if let Some(patience) = self.stopping.patience {
            p.whole("--patience", patience, 1, 100_000);
        }
        if let Some(smoothing) = self.optimization.label_smoothing {
            p.number("--label-smoothing", smoothing, 0.0, 0.5, false);
        }
        p.number("--reject-rate", self.model.reject_rate, 0.0, 0.5, true);
        if let Some(target) = self.stopping.stop_at_accuracy {
            p.number("--stop-at-accuracy", target, 0.0, 1.0, true);
        }
        if let Some(ValSplit::Tail(f) | ValSplit::Blocks(f) | ValSplit::Groups(f)) =
            self.images.val_split
        {
            p.number("--val-split", f, 0.0, 0.99, true);
        }
        if self.steps_on_whole_set() {
            p.require(self.uses_feature_store(), || {
                "--optimizer lbfgs fits the top on the stored features of every training image at once: it needs --mode frozen (without --no-feature-cache)".into()
            });
            p.require(self.model.head == HeadKind::Linear, || {
                "--optimizer lbfgs fits the linear top: train the MLP top (--head mlp) with --optimizer adam".into()
            });
            p.require(self.optimization.class_balance != ClassBalance::Sampler, || {
                "--class-balance sampler draws batches, and --optimizer lbfgs takes every training image at each step: use --class-balance weights, or draw batches with --optimizer adam".into()
            });
        }
        for problem in self.images.augmentation().problems() {
            p.require(false, || format!("--augment: {problem}"));
        }
        if p.0.is_empty() {
            return Ok(());
        }
        bail!("the configuration cannot run:\n  {}", p.0.join("\n  "))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Init, Mode, Overrides, Recipe, TrainConfig, resolve};

    /// The configuration with an input size, as chosen from small images.
    fn sized(recipe: Recipe, mode: Mode, init: Init, mut overrides: Overrides) -> TrainConfig {
        overrides.images.image_size.get_or_insert(Some(100));
        resolve(recipe, mode, init, "d".into(), overrides)
    }

    fn with(change: impl FnOnce(&mut Overrides)) -> anyhow::Result<()> {
        let mut overrides = Overrides::default();
        change(&mut overrides);
        sized(Recipe::Default, Mode::Finetune, Init::Imagenet, overrides).validate()
    }

    #[test]
    fn every_recipe_is_valid() {
        for recipe in [Recipe::Default, Recipe::Notebook] {
            for mode in [Mode::Finetune, Mode::Frozen] {
                for init in [Init::Imagenet, Init::Random] {
                    sized(recipe, mode, init, Overrides::default()).validate().unwrap();
                }
            }
        }
    }

    #[test]
    fn bad_values_are_named_by_their_flag() {
        type Change = fn(&mut Overrides);
        let cases: [(Change, &str); 8] = [
            (|o| o.optimization.batch_size = Some(0), "--batch-size"),
            (|o| o.optimization.lr = Some(f64::NAN), "--lr"),
            (|o| o.optimization.lr = Some(-1.0), "--lr"),
            (|o| o.optimization.momentum = Some(1.5), "--momentum"),
            (|o| o.images.image_size = Some(Some(8)), "--image-size"),
            (|o| o.stopping.stop_at_accuracy = Some(Some(0.0)), "--stop-at-accuracy"),
            (
                |o| {
                    o.schedule.steps_per_epoch = Some(Some(usize::MAX));
                    o.schedule.epochs = Some(usize::MAX);
                },
                "--steps-per-epoch",
            ),
            (|o| o.images.augment = Some(Some("zoom=1.5".parse().unwrap())), "--augment"),
        ];
        let unchosen = resolve(
            Recipe::Default,
            Mode::Finetune,
            Init::Imagenet,
            "d".into(),
            Overrides::default(),
        );
        assert!(unchosen.validate().unwrap_err().to_string().contains("--image-size"));
        for (change, flag) in cases {
            let error = with(change).unwrap_err().to_string();
            assert!(error.contains(flag), "{flag} not named in: {error}");
        }
    }

    #[test]
    fn lbfgs_fits_only_a_frozen_linear_top_on_stored_features() {
        use crate::config::{ClassBalance, OptimizerKind};
        use crate::model::HeadKind;
        let frozen = |change: fn(&mut Overrides)| {
            let mut overrides = Overrides::default();
            change(&mut overrides);
            sized(Recipe::Default, Mode::Frozen, Init::Imagenet, overrides).validate()
        };
        type Change = fn(&mut Overrides);
        let refused: [(Change, &str); 3] = [
            (|o| o.model.head = Some(HeadKind::Mlp), "--head mlp"),
            (|o| o.images.feature_cache = Some(false), "--no-feature-cache"),
            (
                |o| o.optimization.class_balance = Some(ClassBalance::Sampler),
                "--class-balance weights",
            ),
        ];
        frozen(|_| {}).unwrap();
        for (change, fix) in refused {
            let error = frozen(change).unwrap_err().to_string();
            assert!(error.contains("--optimizer lbfgs") && error.contains(fix), "{error}");
        }
        // Any of them with a first-order optimizer is fine.
        frozen(|o| {
            o.model.head = Some(HeadKind::Mlp);
            o.optimization.optimizer = Some(OptimizerKind::Adam);
        })
        .unwrap();
        let error = with(|o| o.optimization.optimizer = Some(OptimizerKind::Lbfgs)).unwrap_err();
        assert!(error.to_string().contains("needs --mode frozen"), "{error}");
    }
}
