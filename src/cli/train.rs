//! `fruitlab train`: the training flags (shared with `compare`) and what is printed around a
//! training run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use super::ComputeArgs;
use crate::config::{
    self, Init, Mode, Monitor, OptimizerKind, Overrides, Recipe, Schedule, TrainConfig,
};
use crate::data::{Augment, ValSplit};
use crate::interrupt::{self, EXIT_INTERRUPTED};
use crate::model::{BatchNormMode, HeadKind, Layout, TrainFrom};
use crate::preprocess::Normalization;
use crate::run::{RunDir, RunRecord, read_json};
use crate::train;

#[derive(Args)]
pub struct TrainArgs {
    /// Dataset root: `Training/` (and optionally `Test/`, used for validation), or a folder of
    /// class folders.
    #[arg(long, required_unless_present_any = ["resume", "config"])]
    pub data: Option<PathBuf>,
    /// Run folder to create.
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in this folder.
    #[arg(long, conflicts_with_all = ["data", "out", "config"])]
    pub resume: Option<PathBuf>,
    /// Rerun with the configuration of a run's config.json (other flags are ignored).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: TrainFlags,
}

/// Training flags, shared by `train` and `compare`. Unset flags take the recipe's value.
#[derive(Args, Clone, Debug)]
pub struct TrainFlags {
    /// Starting point for every flag below: our measured defaults, or the notebook's recipe.
    #[arg(long, value_enum, default_value_t = Recipe::Default)]
    pub recipe: Recipe,
    /// Backbone initialisation.
    #[arg(long, value_enum, default_value_t = Init::Imagenet)]
    pub init: Init,
    /// Fine-tune every layer, or train only the new top on a frozen backbone.
    #[arg(long, value_enum, default_value_t = Mode::Finetune)]
    pub mode: Mode,
    /// The new top [default: mlp fine-tuning, linear frozen; notebook recipe: mlp].
    #[arg(long, value_enum)]
    pub head: Option<HeadKind>,
    /// Architecture variant (the ImageNet weights are Keras') [default: keras].
    #[arg(long, value_enum)]
    pub layout: Option<Layout>,
    /// ImageNet weights file (TF.js model.json or converted .safetensors) [default: the cache].
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Validation images: `blocks:F` (a contiguous run of frames, fraction F, of every
    /// recording), `recordings` (one whole recording per class), `tail:F` (the last frames of
    /// each class) or `test` (the dataset's `Test/` folder) [default: blocks:0.2].
    #[arg(long)]
    pub val_split: Option<ValSplit>,
    /// Epochs [default: 2 fine-tuning, 10 frozen (with early stopping); notebook recipe: 2].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per optimizer step [default: 16 fine-tuning, 64 frozen; notebook recipe: 16].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Optimizer steps per epoch [default: 495 (the notebook's epoch) fine-tuning, a full pass
    /// frozen; notebook recipe: 495].
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    /// Optimizer [default: adam; notebook recipe: sgd].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Learning rate of the new top, the schedule's peak [default: 1e-3; notebook recipe: 1e-4].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Backbone learning rate as a fraction of --lr, when fine-tuning [default: 0.1 from
    /// ImageNet weights, 1 from scratch; notebook recipe: 1].
    #[arg(long)]
    pub backbone_lr_scale: Option<f64>,
    /// SGD momentum [default: 0.9].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay (L2 for sgd/adam, decoupled for adamw) [default: 0].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Learning-rate schedule [default: cosine fine-tuning, constant frozen; notebook recipe:
    /// constant].
    #[arg(long, value_enum)]
    pub schedule: Option<Schedule>,
    /// Warm-up steps of the cosine schedule [default: 50; notebook recipe: 0].
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// Batch norm while fine-tuning [default: frozen from ImageNet weights, train from
    /// scratch; notebook recipe: train].
    #[arg(long, value_enum)]
    pub batchnorm: Option<BatchNormMode>,
    /// Fine-tuning: the first part of the backbone that trains; earlier parts keep their
    /// weights and no gradient is computed through them [default: stage3 fine-tuning from
    /// ImageNet weights, stem (every layer) from scratch; notebook recipe: stem].
    #[arg(long, value_enum)]
    pub train_from: Option<TrainFrom>,
    /// Fine-tuning: epochs training only the new top on cached features first [default: 0].
    #[arg(long)]
    pub head_warmup_epochs: Option<usize>,
    /// Input size in pixels [default: 100].
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Train on every Nth video frame of each class; validation keeps all its images
    /// [default: 1].
    #[arg(long)]
    pub frame_stride: Option<usize>,
    /// Stop as soon as the validation accuracy reaches this fraction, e.g. 0.99 [default: off].
    #[arg(long)]
    pub stop_at_accuracy: Option<f64>,
    /// Early stopping: stop after this many epochs without improvement of --patience-on
    /// [default: off fine-tuning, 3 frozen; notebook recipe: off].
    #[arg(long)]
    pub patience: Option<usize>,
    /// What early stopping watches [default: loss].
    #[arg(long, value_enum)]
    pub patience_on: Option<Monitor>,
    /// Label smoothing of the cross-entropy [default: 0.1; notebook recipe: 0].
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// Input normalisation [default: caffe; notebook recipe: rescale].
    #[arg(long, value_enum)]
    pub normalization: Option<Normalization>,
    /// Training augmentation: `none`, `notebook` (shear 0.2, zoom 0.2, flip), or a list like
    /// `flip,zoom=0.2,shear=0.2,rotation=10,shift=0.1,brightness=0.8:1.2` [default: notebook
    /// fine-tuning, none frozen; notebook recipe: notebook].
    #[arg(long)]
    pub augment: Option<Augment>,
    /// Frozen mode: run the backbone on augmented images every epoch instead of caching its
    /// features once (slower; the only way to augment in frozen mode).
    #[arg(long)]
    pub no_feature_cache: bool,
    /// Seed of the initialisation, data order and augmentation [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Leave out unreadable images (each is reported in train.log and config.json) instead of
    /// refusing the dataset.
    #[arg(long)]
    pub skip_bad_images: bool,
    /// Keep the resume checkpoint (about 300 MB when fine-tuning) once the run has finished;
    /// by default it is removed then.
    #[arg(long)]
    pub keep_resume: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

impl TrainFlags {
    /// The full configuration of a run on `data`: the recipe's values, then the given flags.
    pub fn config(&self, data: PathBuf) -> TrainConfig {
        config::resolve(self.recipe, self.mode, self.init, data, self.overrides())
    }

    fn overrides(&self) -> Overrides {
        Overrides {
            val_split: self.val_split,
            head: self.head,
            layout: self.layout,
            weights: self.weights.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            steps_per_epoch: self.steps_per_epoch,
            optimizer: self.optimizer,
            lr: self.lr,
            backbone_lr_scale: self.backbone_lr_scale,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            schedule: self.schedule,
            warmup_steps: self.warmup_steps,
            batchnorm: self.batchnorm,
            train_from: self.train_from,
            head_warmup_epochs: self.head_warmup_epochs,
            image_size: self.image_size,
            frame_stride: self.frame_stride,
            stop_at_accuracy: self.stop_at_accuracy,
            patience: self.patience,
            patience_on: self.patience_on,
            label_smoothing: self.label_smoothing,
            normalization: self.normalization,
            augment: self.augment.clone(),
            feature_cache: self.no_feature_cache.then_some(false),
            seed: self.seed,
            skip_bad_images: self.skip_bad_images.then_some(true),
            keep_resume: self.keep_resume.then_some(true),
            backend: Some(self.compute.backend),
            device: self.compute.device.clone(),
            threads: self.compute.threads.map(usize::from),
        }
    }
}

pub fn execute(args: TrainArgs) -> Result<ExitCode> {
    interrupt::install();
    // The configuration of a new run, and the folder; `None` continues the run in the folder.
    let (new, out) = match (&args.resume, &args.config, &args.data, &args.out) {
        (Some(run), ..) => (None, run.clone()),
        (None, Some(path), _, Some(out)) => {
            let record: RunRecord = read_json(path)?;
            (Some(record.config), out.clone())
        }
        (None, None, Some(data), Some(out)) => (Some(args.flags.config(data.clone())), out.clone()),
        _ => bail!("give --data and --out (or --config and --out, or --resume)"),
    };
    let config = match &new {
        Some(config) => config.clone(),
        None => RunDir::open(&out)?.read_record()?.config,
    };
    config.validate()?;
    let device = config.compute().setup()?;
    let outcome = train::start_or_resume(new, &out, &device)?;
    if outcome.interrupted {
        eprintln!("stopped; continue with: fruitlab train --resume {}", out.display());
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    match outcome.history.best() {
        Some(best) => println!(
            "best validation accuracy {:.2}% (epoch {}); model: {}; run folder: {:.0} MB",
            100.0 * best.val_accuracy,
            best.epoch,
            out.join("model-best.safetensors").display(),
            crate::report::summary::folder_size(&out) as f64 / 1e6
        ),
        None => bail!("the run trained no epoch"),
    }
    Ok(ExitCode::SUCCESS)
}
