//! Checking a configuration before any work starts: every number a user can type (on the
//! command line or in a `config.json`) within a range that makes sense, each problem named by
//! its flag.

use anyhow::{Result, bail};

use super::TrainConfig;
use crate::data::ValSplit;

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
        p.whole("--epochs", self.epochs, 1, 100_000);
        p.whole("--batch-size", self.batch_size, 1, 4096);
        if let Some(steps) = self.steps_per_epoch {
            p.whole("--steps-per-epoch", steps, 1, 100_000_000);
            let images = self.epochs as u128 * steps as u128 * self.batch_size as u128;
            p.require(images <= MAX_TRAINING_IMAGES, || {
                format!("--epochs x --steps-per-epoch x --batch-size is {images} images: too many to train")
            });
        }
        p.whole("--image-size", self.image_size, 32, 1024);
        p.whole("--frame-stride", self.frame_stride, 1, 100_000);
        p.whole("--warmup-steps", self.warmup_steps, 0, 100_000_000);
        p.whole("--head-warmup-epochs", self.head_warmup_epochs, 0, 10_000);
        if let Some(threads) = self.threads {
            p.whole("--threads", threads, 1, 4096);
        }
        p.number("--lr", self.lr, 0.0, 10.0, true);
        p.number("--backbone-lr-scale", self.backbone_lr_scale, 0.0, 100.0, false);
        p.number("--momentum", self.momentum, 0.0, 0.999, false);
        p.number("--weight-decay", self.weight_decay, 0.0, 1.0, false);
        if let Some(patience) = self.patience {
            p.whole("--patience", patience, 1, 100_000);
        }
        p.number("--label-smoothing", self.label_smoothing, 0.0, 0.5, false);
        if let Some(target) = self.stop_at_accuracy {
            p.number("--stop-at-accuracy", target, 0.0, 1.0, true);
        }
        if let ValSplit::Tail(f) | ValSplit::Blocks(f) = self.val_split {
            p.number("--val-split", f, 0.0, 0.99, true);
        }
        for problem in self.augment.problems() {
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
    use crate::config::{Init, Mode, Overrides, Recipe, resolve};

    fn with(overrides: Overrides) -> anyhow::Result<()> {
        resolve(Recipe::Default, Mode::Finetune, Init::Imagenet, "d".into(), overrides).validate()
    }

    #[test]
    fn every_recipe_is_valid() {
        for recipe in [Recipe::Default, Recipe::Notebook] {
            for mode in [Mode::Finetune, Mode::Frozen] {
                for init in [Init::Imagenet, Init::Random] {
                    resolve(recipe, mode, init, "d".into(), Overrides::default())
                        .validate()
                        .unwrap();
                }
            }
        }
    }

    #[test]
    fn bad_values_are_named_by_their_flag() {
        let cases: [(Overrides, &str); 8] = [
            (Overrides { batch_size: Some(0), ..Default::default() }, "--batch-size"),
            (Overrides { lr: Some(f64::NAN), ..Default::default() }, "--lr"),
            (Overrides { lr: Some(-1.0), ..Default::default() }, "--lr"),
            (Overrides { momentum: Some(1.5), ..Default::default() }, "--momentum"),
            (Overrides { image_size: Some(8), ..Default::default() }, "--image-size"),
            (Overrides { stop_at_accuracy: Some(0.0), ..Default::default() }, "--stop-at-accuracy"),
            (
                Overrides {
                    steps_per_epoch: Some(usize::MAX),
                    epochs: Some(usize::MAX),
                    ..Default::default()
                },
                "--steps-per-epoch",
            ),
            (
                Overrides { augment: Some("zoom=1.5".parse().unwrap()), ..Default::default() },
                "--augment",
            ),
        ];
        for (overrides, flag) in cases {
            let error = with(overrides).unwrap_err().to_string();
            assert!(error.contains(flag), "{flag} not named in: {error}");
        }
    }
}
