//! `fruitlab train`: flags, recipes, and the run folder around the training loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use clap::Args;

use super::ComputeArgs;
use crate::data::Augment;
use crate::model::{HeadKind, Layout};
use crate::preprocess::Normalization;
use crate::train::config::{
    BatchNormMode, Init, Mode, OptimizerKind, Recipe, Schedule, TrainConfig,
};
use crate::train::run_dir::{Environment, RunDir, RunRecord};
use crate::train::trainer::{self, Outcome};

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
    /// The new top [default: mlp, the notebook's Dense(512)-Dense(classes)].
    #[arg(long, value_enum)]
    pub head: Option<HeadKind>,
    /// Architecture variant (the ImageNet weights are Keras').
    #[arg(long, value_enum, default_value_t = Layout::Keras)]
    pub layout: Layout,
    /// ImageNet weights file (TF.js model.json or converted .safetensors) [default: the cache].
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Hold out the last fraction of each class (by frame index) for validation, instead of
    /// `Test/` [default: 0.2 when there is no `Test/`].
    #[arg(long)]
    pub val_split: Option<f64>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Optimizer steps per epoch [default: a full pass; capped at 495, the notebook's epoch,
    /// when fine-tuning].
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Learning rate (of the new top; the schedule's peak).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Backbone learning rate as a fraction of --lr, when fine-tuning [default: 0.1 from
    /// ImageNet weights, 1 from scratch].
    #[arg(long)]
    pub backbone_lr_scale: Option<f64>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long, value_enum)]
    pub schedule: Option<Schedule>,
    /// Warm-up steps of the cosine schedule.
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// Batch norm while fine-tuning [default: frozen from ImageNet weights, train from scratch].
    #[arg(long, value_enum)]
    pub batchnorm: Option<BatchNormMode>,
    /// Fine-tuning: epochs training only the new top on cached features first.
    #[arg(long)]
    pub head_warmup_epochs: Option<usize>,
    /// Input size in pixels.
    #[arg(long, default_value_t = 100)]
    pub image_size: usize,
    /// Train on every Nth video frame of each class (validation keeps all its images).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub frame_stride: u64,
    /// Stop as soon as the validation accuracy reaches this fraction (e.g. 0.99).
    #[arg(long)]
    pub stop_at_accuracy: Option<f64>,
    #[arg(long, value_enum)]
    pub normalization: Option<Normalization>,
    /// Training augmentation: `none`, `notebook` (shear 0.2, zoom 0.2, flip), or a list like
    /// `flip,zoom=0.2,shear=0.2,rotation=10,shift=0.1,brightness=0.8:1.2`.
    #[arg(long)]
    pub augment: Option<Augment>,
    /// Frozen mode: run the backbone on augmented images every epoch instead of caching its
    /// features once (slower; the only way to augment in frozen mode).
    #[arg(long)]
    pub no_feature_cache: bool,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Leave out unreadable images (each is reported in train.log and config.json) instead of
    /// refusing the dataset.
    #[arg(long)]
    pub skip_bad_images: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// The notebook's epoch: 495 batches of 16.
pub const NOTEBOOK_STEPS: usize = 495;

impl TrainFlags {
    /// The full configuration: the recipe's values for this mode, overridden by given flags.
    pub fn resolve(&self, data: &Path) -> TrainConfig {
        let notebook = self.recipe == Recipe::Notebook;
        let frozen = self.mode == Mode::Frozen;
        let fine_tune = !frozen;
        let (optimizer, lr, batch_size) = match (notebook, frozen) {
            (true, _) => (OptimizerKind::Sgd, 1e-4, 16),
            (false, true) => (OptimizerKind::Adam, 1e-3, 64),
            (false, false) => (OptimizerKind::Adam, 1e-3, 16),
        };
        let pretrained_default = self.init == Init::Imagenet && !notebook;
        let default_bn =
            if pretrained_default { BatchNormMode::Frozen } else { BatchNormMode::Train };
        TrainConfig {
            recipe: self.recipe,
            data: data.to_path_buf(),
            val_split: self.val_split,
            init: self.init,
            mode: self.mode,
            head: self.head.unwrap_or(HeadKind::Mlp),
            layout: self.layout,
            weights: self.weights.clone(),
            epochs: self.epochs.unwrap_or(2),
            batch_size: self.batch_size.unwrap_or(batch_size),
            steps_per_epoch: self
                .steps_per_epoch
                .or((notebook || fine_tune).then_some(NOTEBOOK_STEPS)),
            optimizer: self.optimizer.unwrap_or(optimizer),
            lr: self.lr.unwrap_or(lr),
            // A pretrained backbone needs only small corrections; a random one trains at full rate.
            backbone_lr_scale: self.backbone_lr_scale.unwrap_or(if pretrained_default {
                0.1
            } else {
                1.0
            }),
            momentum: self.momentum.unwrap_or(0.9),
            weight_decay: self.weight_decay.unwrap_or(0.0),
            schedule: self.schedule.unwrap_or(if notebook || frozen {
                Schedule::Constant
            } else {
                Schedule::Cosine
            }),
            warmup_steps: self.warmup_steps.unwrap_or(if notebook { 0 } else { 50 }),
            batchnorm: self.batchnorm.unwrap_or(default_bn),
            head_warmup_epochs: self.head_warmup_epochs.unwrap_or(0),
            image_size: self.image_size,
            frame_stride: self.frame_stride as usize,
            stop_at_accuracy: self.stop_at_accuracy,
            normalization: self.normalization.unwrap_or(if notebook {
                Normalization::Rescale
            } else {
                Normalization::Caffe
            }),
            augment: self.augment.clone().unwrap_or(if notebook || fine_tune {
                Augment::notebook()
            } else {
                Augment::default()
            }),
            feature_cache: !self.no_feature_cache && !notebook,
            seed: self.seed,
            skip_bad_images: self.skip_bad_images,
            backend: self.compute.backend,
            device: self.compute.device.clone(),
            threads: self.compute.threads,
        }
    }
}

/// Ctrl-C asks the run to stop after the current step (a checkpoint is then written); a
/// second Ctrl-C exits at once.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted again: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!(
            "interrupt: finishing the current step and writing a checkpoint (Ctrl-C again to quit now)"
        );
    });
    stop
}

/// Creates (or reopens, for `--resume`) the run folder and trains.
pub fn start_or_resume(
    config: Option<TrainConfig>,
    out: &Path,
    stop: &AtomicBool,
) -> Result<Outcome> {
    let (run, config, state) = match config {
        Some(config) => {
            let run = RunDir::create(out)?;
            let record = RunRecord {
                config: config.clone(),
                environment: Environment::capture(config.backend.name()),
                dataset: None,
            };
            run.write_record(&record)?;
            (run, config, None)
        }
        None => {
            let run = RunDir::open(out)?;
            let config = run.read_record()?.config;
            let state =
                run.resume_file("state.json").exists().then(|| run.read_resume()).transpose()?;
            if state.as_ref().is_some_and(|s| s.finished) {
                eprintln!("{} has already finished all its epochs", out.display());
                return Ok(Outcome {
                    history: state.expect("checked").history,
                    interrupted: false,
                });
            }
            (run, config, state)
        }
    };
    if let Some(threads) = config.threads {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().ok();
    }
    if config.mode == Mode::Frozen && config.feature_cache && !config.augment.is_identity() {
        eprintln!(
            "note: frozen mode caches backbone features of the plain images, so --augment is not applied; pass --no-feature-cache to augment (the backbone then runs every epoch)"
        );
    }
    trainer::train(&config, &run, state, stop)
}

pub fn run(args: TrainArgs) -> Result<()> {
    let stop = interrupt_flag();
    let (config, out) = match (&args.resume, &args.config) {
        (Some(run), _) => (None, run.clone()),
        (None, Some(path)) => {
            let record: RunRecord = crate::train::run_dir::read_json(path)?;
            (Some(record.config), args.out.clone().expect("clap requires --out"))
        }
        (None, None) => {
            let data = args.data.clone().expect("clap requires --data");
            let config = args.flags.resolve(&data);
            (Some(config), args.out.clone().expect("clap requires --out"))
        }
    };
    let outcome = start_or_resume(config, &out, &stop)?;
    if outcome.interrupted {
        eprintln!("stopped; continue with: fruitlab train --resume {}", out.display());
        std::process::exit(130);
    }
    match outcome.history.best() {
        Some(best) => println!(
            "best validation accuracy {:.2}% (epoch {}); model: {}",
            100.0 * best.val_accuracy,
            best.epoch,
            out.join("model-best.safetensors").display()
        ),
        None => bail!("the run trained no epoch"),
    }
    Ok(())
}
