//! Named recipes: the value of every training setting for a mode and initialisation (the
//! values themselves are in the settings table, [`super::settings`]), the resolution of a
//! configuration as "the recipe, then what the user set", and the `[default: ...]` text of a
//! setting, derived from the recipes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{
    ImageConfig, Init, Mode, ModelConfig, OptimizationConfig, Overrides, ScheduleConfig,
    StoppingConfig, TrainConfig,
};
use crate::compute::Compute;

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

/// What the settings table's default expressions look at: which recipe, for which mode and
/// initialisation.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub notebook: bool,
    pub frozen: bool,
    pub imagenet: bool,
}

impl Case {
    pub fn new(recipe: Recipe, mode: Mode, init: Init) -> Self {
        Self {
            notebook: recipe == Recipe::Notebook,
            frozen: mode == Mode::Frozen,
            imagenet: init == Init::Imagenet,
        }
    }

    /// Our defaults from ImageNet weights (the notebook treats both initialisations alike).
    pub fn pretrained(&self) -> bool {
        self.imagenet && !self.notebook
    }

    /// Our frozen defaults: the top trains on stored features until validation stops
    /// improving.
    pub fn converges(&self) -> bool {
        self.frozen && !self.notebook
    }
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
    overrides.apply(recipe.config(mode, init, data))
}

impl Recipe {
    /// Every setting as this recipe has it for `mode` and `init`.
    pub fn config(self, mode: Mode, init: Init, data: PathBuf) -> TrainConfig {
        let case = Case::new(self, mode, init);
        TrainConfig {
            recipe: self,
            init,
            mode,
            data,
            images: ImageConfig::defaults(&case),
            model: ModelConfig::defaults(&case),
            optimization: OptimizationConfig::defaults(&case),
            schedule: ScheduleConfig::defaults(&case),
            stopping: StoppingConfig::defaults(&case),
            compute: Compute::default(),
        }
    }
}

/// The cases a default can depend on, with how each is said.
const MODES: [(Mode, &str); 2] = [(Mode::Finetune, "fine-tuning"), (Mode::Frozen, "frozen")];
const INITS: [(Init, &str); 2] =
    [(Init::Imagenet, "from ImageNet weights"), (Init::Random, "from scratch")];

/// The `[default: ...]` text of the setting `name`: its value in the default recipe (and by
/// mode and initialisation where they differ), then the notebook recipe's where it differs.
pub fn describe_default(name: &str) -> String {
    let default = describe_recipe(Recipe::Default, name);
    let notebook = describe_recipe(Recipe::Notebook, name);
    if notebook == default { default } else { format!("{default}; notebook recipe: {notebook}") }
}

/// The value of `name` in `recipe`, by mode and initialisation where they matter.
fn describe_recipe(recipe: Recipe, name: &str) -> String {
    let value = |mode, init| {
        recipe.config(mode, init, PathBuf::new()).text(name).unwrap_or_else(|| "?".into())
    };
    let cases: Vec<(String, String)> = MODES
        .iter()
        .flat_map(|&(mode, mode_words)| {
            INITS.iter().map(move |&(init, init_words)| {
                (value(mode, init), format!("{mode_words} {init_words}"))
            })
        })
        .collect();
    let [fi, fr, zi, zr] = [0, 1, 2, 3].map(|i| cases[i].0.clone());
    if fi == fr && fi == zi && fi == zr {
        return fi;
    }
    if fi == fr && zi == zr {
        return format!("{fi} {}, {zi} {}", MODES[0].1, MODES[1].1);
    }
    if fi == zi && fr == zr {
        return format!("{fi} {}, {fr} {}", INITS[0].1, INITS[1].1);
    }
    // One case stands out: it, then the value everywhere else.
    for (i, (odd, words)) in cases.iter().enumerate() {
        let others: Vec<&String> =
            cases.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, c)| &c.0).collect();
        if others.iter().all(|v| *v == others[0]) {
            return format!("{odd} {words}, {} otherwise", others[0]);
        }
    }
    cases.iter().map(|(value, words)| format!("{value} {words}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Monitor, OptimizerKind, Schedule};
    use crate::data::Augment;
    use crate::model::{BatchNormMode, HeadKind, TrainFrom};
    use crate::preprocess::Normalization;

    fn recipe(recipe: Recipe, mode: Mode, init: Init) -> TrainConfig {
        resolve(recipe, mode, init, "data".into(), Overrides::default())
    }

    #[test]
    fn default_fine_tuning_is_adam_with_a_slower_pretrained_backbone() {
        let c = recipe(Recipe::Default, Mode::Finetune, Init::Imagenet);
        let o = &c.optimization;
        assert_eq!((o.optimizer, o.lr, o.backbone_lr_scale), (OptimizerKind::Adam, 1e-3, 0.1));
        assert_eq!((o.schedule, o.warmup_steps), (Schedule::Cosine, 50));
        assert_eq!(
            (o.batch_size, c.schedule.epochs, c.schedule.steps_per_epoch),
            (16, 2, Some(NOTEBOOK_STEPS))
        );
        assert_eq!(c.model.batchnorm, BatchNormMode::Frozen);
        assert_eq!(
            (c.images.normalization, c.images.augment.clone()),
            (Normalization::Caffe, None)
        );
        assert_eq!((c.model.head, c.images.image_size, o.seed), (HeadKind::Mlp, None, 42));
        assert_eq!((c.model.train_from, o.label_smoothing), (TrainFrom::Stage3, Some(0.1)));
    }

    #[test]
    fn default_from_scratch_trains_batch_norm_at_full_rate() {
        let c = recipe(Recipe::Default, Mode::Finetune, Init::Random);
        assert_eq!(
            (c.optimization.backbone_lr_scale, c.model.batchnorm),
            (1.0, BatchNormMode::Train)
        );
        assert_eq!(
            (c.model.train_from, c.optimization.label_smoothing),
            (TrainFrom::Stem, Some(0.1))
        );
    }

    #[test]
    fn default_frozen_fits_a_linear_top_to_its_optimum_on_stored_features() {
        let c = recipe(Recipe::Default, Mode::Frozen, Init::Imagenet);
        let o = &c.optimization;
        assert_eq!((o.optimizer, o.weight_decay), (OptimizerKind::Lbfgs, 1e-3));
        assert!(c.steps_on_whole_set());
        assert_eq!((c.steps_in_epoch(500), c.images_per_epoch(500)), (1, 500));
        assert_eq!((c.schedule.steps_per_epoch, o.schedule), (None, Schedule::Constant));
        assert!(c.images.feature_cache && c.images.augmentation().is_identity());
        // Label smoothing: from the data (see `from_data`).
        assert_eq!((c.model.head, o.label_smoothing), (HeadKind::Linear, None));
        assert_eq!(
            (c.schedule.epochs, c.stopping.patience, c.stopping.patience_on),
            (10, Some(3), Monitor::Loss)
        );
    }

    #[test]
    fn notebook_is_the_notebook() {
        for mode in [Mode::Finetune, Mode::Frozen] {
            let c = recipe(Recipe::Notebook, mode, Init::Imagenet);
            let o = &c.optimization;
            assert_eq!((o.optimizer, o.lr, o.momentum), (OptimizerKind::Sgd, 1e-4, 0.9));
            assert_eq!((o.batch_size, c.schedule.steps_per_epoch), (16, Some(NOTEBOOK_STEPS)));
            assert_eq!((o.schedule, o.warmup_steps), (Schedule::Constant, 0));
            assert_eq!((c.model.batchnorm, o.backbone_lr_scale), (BatchNormMode::Train, 1.0));
            assert_eq!(c.images.normalization, Normalization::Rescale);
            assert_eq!(c.images.augment, Some(Augment::notebook()));
            assert!(!c.images.feature_cache);
            assert_eq!((c.model.train_from, o.label_smoothing), (TrainFrom::Stem, Some(0.0)));
        }
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let mut overrides = Overrides::default();
        overrides.optimization.lr = Some(0.5);
        overrides.schedule.epochs = Some(7);
        overrides.stopping.patience = Some(Some(9));
        let c = resolve(Recipe::Default, Mode::Frozen, Init::Imagenet, "d".into(), overrides);
        assert_eq!((c.optimization.lr, c.schedule.epochs, c.optimization.batch_size), (0.5, 7, 64));
        assert_eq!(c.stopping.patience, Some(9));
    }

    #[test]
    fn default_texts_say_the_recipes_values_by_case() {
        let cases = [
            ("lr", "0.001; notebook recipe: 0.0001"),
            ("optimizer", "adam fine-tuning, lbfgs frozen; notebook recipe: sgd"),
            ("head", "mlp fine-tuning, linear frozen; notebook recipe: mlp"),
            ("backbone_lr_scale", "0.1 from ImageNet weights, 1 from scratch; notebook recipe: 1"),
            (
                "train_from",
                "stage3 fine-tuning from ImageNet weights, stem otherwise; notebook recipe: stem",
            ),
            ("steps_per_epoch", "495 fine-tuning, a full pass frozen; notebook recipe: 495"),
            ("val_split", "from the data: blocks:0.2 for video frames, groups:0.2 otherwise"),
            ("patience", "off fine-tuning, 3 frozen; notebook recipe: off"),
            ("threads", "all cores"),
        ];
        for (name, expected) in cases {
            assert_eq!(describe_default(name), expected, "{name}");
        }
    }
}
