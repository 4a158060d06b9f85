//! The command line's names for the domain's choices (`--mode frozen`, `--layout keras`, ...):
//! the domain types stay free of the CLI; their spellings and help live here.

use clap::ValueEnum;
use clap::builder::PossibleValue;

use crate::config::{Init, Mode, Monitor, OptimizerKind, Recipe, Schedule};
use crate::device::Backend;
use crate::model::{BatchNormMode, HeadKind, Layout, TrainFrom};
use crate::preprocess::Normalization;

/// Implements [`ValueEnum`] for a domain enum: each variant's command-line name and help.
macro_rules! cli_values {
    ($type:ident { $($variant:ident => $name:literal : $help:literal),+ $(,)? }) => {
        impl ValueEnum for $type {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($type::$variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($type::$variant => PossibleValue::new($name).help($help)),+
                })
            }
        }
    };
}

cli_values!(Recipe {
    Default => "default": "our measured defaults for the mode",
    Notebook => "notebook": "the Keras notebook: SGD 1e-4, momentum 0.9, rescale, batch statistics",
});
cli_values!(Init {
    Imagenet => "imagenet": "ImageNet weights (pretrained)",
    Random => "random": "random initialisation (vanilla: trained from scratch)",
});
cli_values!(Mode {
    Finetune => "finetune": "train every layer",
    Frozen => "frozen": "train only the new top on a fixed feature extractor",
});
cli_values!(Monitor {
    Loss => "loss": "validation loss",
    Accuracy => "accuracy": "validation accuracy",
});
cli_values!(OptimizerKind {
    Sgd => "sgd": "SGD with momentum",
    Adam => "adam": "Adam",
    Adamw => "adamw": "Adam with decoupled weight decay",
});
cli_values!(Schedule {
    Constant => "constant": "the same rate throughout",
    Cosine => "cosine": "linear warm-up, then cosine decay to zero",
});
cli_values!(BatchNormMode {
    Train => "train": "batch statistics, running statistics updated",
    Frozen => "frozen": "pretrained running statistics kept (gamma and beta train)",
    Fold => "fold": "frozen statistics folded into the convolutions",
});
cli_values!(TrainFrom {
    Stem => "stem": "every layer trains",
    Stage2 => "stage2": "the stem stays fixed",
    Stage3 => "stage3": "the stem and stage 2 stay fixed",
    Stage4 => "stage4": "the stem and stages 2-3 stay fixed",
    Stage5 => "stage5": "only stage 5 and the top train",
});
cli_values!(HeadKind {
    Mlp => "mlp": "the notebook's Dense(512, ReLU) -> Dense(classes)",
    Linear => "linear": "a single Dense(classes)",
});
cli_values!(Layout {
    Keras => "keras": "Keras' ResNet-50 (the layout of the ImageNet weights)",
    Torchvision => "torchvision": "torchvision's ResNet-50 (stride on the 3x3, no conv bias)",
});
cli_values!(Normalization {
    Caffe => "caffe": "BGR minus the ImageNet means (what the Keras weights expect)",
    Rescale => "rescale": "RGB / 255 (what the notebook did)",
});
cli_values!(Backend {
    Flex => "flex": "pure-Rust CPU backend",
    Tch => "tch": "LibTorch (build with --features tch)",
    Cuda => "cuda": "CubeCL CUDA (build with --features cuda)",
});
