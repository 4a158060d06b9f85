//! The command line's choices for the domain's enums (`--mode frozen`, `--layout keras`, ...):
//! the domain types stay free of the CLI; each choice is spelled as `config.json` spells it
//! (its serde name), and its help lives here.

use clap::ValueEnum;
use clap::builder::PossibleValue;

use crate::compute::{Backend, Precision};
use crate::config::{ClassBalance, Init, Mode, Monitor, OptimizerKind, Recipe, Schedule};
use crate::model::{BatchNormMode, HeadKind, Layout, TrainFrom};
use crate::preprocess::Normalization;
use crate::support::spelling;

/// Implements [`ValueEnum`] for a domain enum: each variant, named by its spelling, and its
/// help.
macro_rules! cli_values {
    ($type:ident { $($variant:ident : $help:literal),+ $(,)? }) => {
        impl ValueEnum for $type {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($type::$variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                let help = match self {
                    $($type::$variant => $help),+
                };
                Some(PossibleValue::new(spelling(self)).help(help))
            }
        }
    };
}

cli_values!(Recipe {
    Default: "our measured defaults for the mode",
    Notebook: "the Keras notebook: SGD 1e-4, momentum 0.9, rescale, batch statistics",
});
cli_values!(Init {
    Imagenet: "ImageNet weights (pretrained)",
    Random: "random initialisation (vanilla: trained from scratch)",
});
cli_values!(Mode {
    Finetune: "train every layer",
    Frozen: "train only the new top on a fixed feature extractor",
});
cli_values!(Monitor { Loss: "validation loss", Accuracy: "validation accuracy" });
cli_values!(ClassBalance {
    None: "every image counts alike",
    Weights: "each image's loss weighted inversely to its class's size",
    Sampler: "every class drawn equally often (small classes' images repeat)",
});
cli_values!(OptimizerKind {
    Sgd: "SGD with momentum",
    Adam: "Adam",
    Adamw: "Adam with decoupled weight decay",
    Lbfgs: "L-BFGS over every training image at once (frozen mode): the linear top to its optimum",
});
cli_values!(Schedule {
    Constant: "the same rate throughout",
    Cosine: "linear warm-up, then cosine decay to zero",
});
cli_values!(BatchNormMode {
    Train: "batch statistics, running statistics updated",
    Frozen: "pretrained running statistics kept (gamma and beta train)",
    Fold: "frozen statistics folded into the convolutions",
});
cli_values!(TrainFrom {
    Stem: "every layer trains",
    Stage2: "the stem stays fixed",
    Stage3: "the stem and stage 2 stay fixed",
    Stage4: "the stem and stages 2-3 stay fixed",
    Stage5: "only stage 5 and the top train",
});
cli_values!(HeadKind {
    Mlp: "the notebook's Dense(512, ReLU) -> Dense(classes)",
    Linear: "a single Dense(classes)",
});
cli_values!(Layout {
    Keras: "Keras' ResNet-50 (the layout of the ImageNet weights)",
    Torchvision: "torchvision's ResNet-50 (stride on the 3x3, no conv bias)",
});
cli_values!(Normalization {
    Caffe: "BGR minus the ImageNet means (what the Keras weights expect)",
    Rescale: "RGB / 255 (what the notebook did)",
});
cli_values!(Backend {
    Flex: "pure-Rust CPU backend",
    Tch: "LibTorch (build with --features tch)",
    Cuda: "CubeCL CUDA (build with --features cuda)",
});
cli_values!(Precision {
    Fp32: "f32 arithmetic",
    Bf16: "bf16 inputs, f32 sums: AMX or AVX512-BF16 (an error where the CPU has neither)",
    Auto: "bf16 where it is faster than fp32 (AMX, or AVX512-BF16 on AMD), fp32 elsewhere",
});
