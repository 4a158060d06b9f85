//! The training loop: both transfer-learning scenarios (fine-tune everything, or train a new
//! top on a frozen backbone), validation every epoch, checkpoints and resumption.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor, TensorData};

use super::config::{BatchNormMode, Init, Mode, TrainConfig};
use super::features::{self, FeatureKey};
use super::history::{EpochRecord, History};
use super::optim;
use super::run_dir::{DatasetSummary, PartialEpoch, ResumeState, RunDir};
use super::steps::{finetune_step, gather_features, head_logits, head_step};
use crate::data::{self, BatchRecipe, Batches, DecodedImages, SampleStream};
use crate::eval::{self, Metrics};
use crate::model::Classifier;
use crate::model::resnet::FEATURE_DIM;
use crate::progress::Progress;
use crate::weights::{self, checkpoint, keras};

/// Batch size for validation forward passes.
const EVAL_BATCH: usize = 32;

/// How a run ended.
pub struct Outcome {
    pub history: History,
    /// Stopped early by Ctrl-C; the resume checkpoint is saved.
    pub interrupted: bool,
}

/// Decoded training and validation images.
pub struct PreparedData {
    pub classes: Vec<String>,
    pub train: Arc<DecodedImages>,
    pub val: Arc<DecodedImages>,
    pub train_files: Vec<data::LabeledImage>,
    pub val_files: Vec<data::LabeledImage>,
    pub summary: DatasetSummary,
    pub decode_seconds: f64,
}

/// Reads and decodes the dataset of `config`.
pub fn prepare_data(config: &TrainConfig) -> Result<PreparedData> {
    let started = Instant::now();
    let mut splits = data::load_splits(&config.data, config.val_split)?;
    splits.train = data::dataset::every_nth_frame(splits.train, config.frame_stride);
    ensure!(!splits.val.is_empty(), "no validation images: use a larger --val-split");
    // Refuse what cannot fit before spending minutes decoding: the decoded images, plus the
    // activations of a training batch when the backbone trains.
    let images = (splits.train.len() + splits.val.len()) as u64;
    let mut needed = images * (config.image_size * config.image_size * 3) as u64;
    let mut what = format!("holding {images} decoded images of {0}x{0} px", config.image_size);
    if config.mode == Mode::Finetune {
        needed += crate::memory::training_estimate(config.batch_size, config.image_size);
        what += &format!(" and fine-tuning with batch {}", config.batch_size);
    }
    crate::memory::ensure_fits(needed, &what)?;
    let decode = |images: &[data::LabeledImage], label: &str| {
        let progress = Progress::new(label, images.len() as u64);
        let result = data::decode_all(images, config.image_size, &|done| {
            progress.update(done as u64, String::new)
        });
        progress.finish();
        result
    };
    let (train, bad_train) = decode(&splits.train, "decode train");
    let (val, bad_val) = decode(&splits.val, "decode val");
    let skipped: Vec<data::BadImage> = bad_train.into_iter().chain(bad_val).collect();
    data::decoded::ensure_none_bad(&skipped, config.skip_bad_images)?;
    let keep = |files: &[data::LabeledImage]| -> Vec<data::LabeledImage> {
        files.iter().filter(|f| !skipped.iter().any(|b| b.path == f.path)).cloned().collect()
    };
    Ok(PreparedData {
        classes: splits.classes.clone(),
        train_files: keep(&splits.train),
        val_files: keep(&splits.val),
        summary: DatasetSummary {
            classes: splits.classes.len(),
            train_images: train.len(),
            val_images: val.len(),
            validation: splits.validation,
            skipped_images: skipped,
            ignored_files: splits.ignored,
        },
        train: Arc::new(train),
        val: Arc::new(val),
        decode_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The model as configured: backbone from ImageNet weights or random, a new head, batch
/// norms set for the mode, on the autodiff device `ad`.
pub fn build_model(config: &TrainConfig, num_classes: usize, ad: &Device) -> Result<Classifier> {
    let mut model = Classifier::new(config.layout, config.head, num_classes, ad);
    if config.init == Init::Imagenet {
        let mut tensors = weights::read_imagenet(config.weights.as_deref())?;
        model.backbone = keras::load_backbone(model.backbone, &mut tensors, ad)?;
    }
    let bn_training = config.mode == Mode::Finetune && config.batchnorm == BatchNormMode::Train;
    model.backbone = model.backbone.with_batchnorm_training(bn_training);
    if config.folds_batchnorm() {
        model.backbone = model.backbone.fold_batchnorm();
    }
    if config.mode == Mode::Frozen {
        model.backbone = model.backbone.freeze();
    }
    Ok(model)
}

/// Identifies the starting backbone for the feature cache.
fn backbone_identity(config: &TrainConfig) -> Result<String> {
    Ok(match config.init {
        Init::Imagenet => {
            let path = match &config.weights {
                Some(path) => path.clone(),
                None => weights::fetch::cached_weights_path()?,
            };
            format!("imagenet|{:?}|{}", config.layout, features::file_identity(&path))
        }
        Init::Random => format!("random|{:?}|seed {}", config.layout, config.seed),
    })
}

/// Trains (or continues) the run in `run` until its epochs are done or `stop` is raised.
pub fn train(
    config: &TrainConfig,
    run: &RunDir,
    resume: Option<ResumeState>,
    stop: &AtomicBool,
) -> Result<Outcome> {
    let device = crate::device::select(config.backend, config.device.as_ref())?;
    let ad = device.clone().autodiff();
    // Model initialisation draws from the device's generator: seed it for reproducible runs.
    device.seed(config.seed);

    let data = prepare_data(config)?;
    if resume.is_some() {
        let saved = run.read_classes()?;
        ensure!(
            saved == data.classes,
            "the classes of {} changed since this run started",
            config.data.display()
        );
    } else {
        run.write_classes(&data.classes)?;
    }
    let mut record = run.read_record()?;
    record.dataset = Some(data.summary.clone());
    run.write_record(&record)?;
    for bad in &data.summary.skipped_images {
        run.log(&format!("skipped unreadable image: {}", bad.error))?;
    }
    if !data.summary.ignored_files.is_empty() {
        run.log(&format!(
            "ignored {} non-image file(s) in class folders, e.g. {}",
            data.summary.ignored_files.len(),
            data.summary.ignored_files[0].display()
        ))?;
    }

    let mut model = build_model(config, data.classes.len(), &ad)?;
    let mut head_optim = optim::build(config);
    let mut backbone_optim = config.trains_backbone().then(|| optim::build(config));
    let mut state = match resume {
        Some(state) => {
            model = checkpoint::load(model, &run.resume_file(&state.model_file))?;
            head_optim = load_optimizer(head_optim, run, &state, "head")?;
            if let Some(optim) = backbone_optim.take() {
                backbone_optim = Some(load_optimizer(optim, run, &state, "backbone")?);
            }
            run.log(&format!(
                "resumed at epoch {} step {}",
                state.epochs_done + 1,
                state.step_in_epoch
            ))?;
            state
        }
        None => ResumeState {
            step: 0,
            epochs_done: 0,
            step_in_epoch: 0,
            partial_epoch: PartialEpoch::default(),
            head_warmup_done: false,
            history: History { decode_seconds: data.decode_seconds, ..History::default() },
            model_file: String::new(),
            optimizer_files: HashMap::new(),
            finished: false,
        },
    };

    let mut session = Session {
        config,
        run,
        device,
        ad,
        data,
        model,
        head_optim,
        backbone_optim,
        stop,
        loss: CrossEntropyLossConfig::new(),
    };
    session.run(&mut state)
}

fn load_optimizer(
    optim: ModuleOptimizer,
    run: &RunDir,
    state: &ResumeState,
    name: &str,
) -> Result<ModuleOptimizer> {
    let file = state.optimizer_files.get(name).with_context(|| {
        format!("the resume checkpoint of {} has no {name} optimizer state", run.path.display())
    })?;
    optim
        .load(run.resume_file(file))
        .map_err(|error| anyhow::anyhow!("cannot load optimizer state {file}: {error}"))
}

/// Where the training inputs of the new top come from.
enum Inputs {
    /// Images through the backbone (fine-tuning, or frozen without a feature cache).
    Images,
    /// Cached backbone features: train and validation rows of 2048.
    Features { train: Arc<Vec<f32>>, val: Arc<Vec<f32>> },
}

struct Session<'a> {
    config: &'a TrainConfig,
    run: &'a RunDir,
    device: Device,
    ad: Device,
    data: PreparedData,
    model: Classifier,
    head_optim: ModuleOptimizer,
    backbone_optim: Option<ModuleOptimizer>,
    stop: &'a AtomicBool,
    loss: CrossEntropyLossConfig,
}

impl Session<'_> {
    fn run(&mut self, state: &mut ResumeState) -> Result<Outcome> {
        let config = self.config;
        if config.mode == Mode::Finetune && config.head_warmup_epochs > 0 && !state.head_warmup_done
        {
            self.warm_up_head(state)?;
        }
        let inputs = if config.mode == Mode::Frozen && config.feature_cache {
            let train =
                self.features_of(&self.data.train.clone(), true, "features train", state)?;
            let val = self.features_of(&self.data.val.clone(), false, "features val", state)?;
            Inputs::Features { train: Arc::new(train), val: Arc::new(val) }
        } else {
            Inputs::Images
        };
        let train_len = self.data.train.len();
        let steps_per_epoch = config.steps_in_epoch(train_len);
        let total_steps = (config.epochs * steps_per_epoch) as u64;
        let stream = SampleStream::new(train_len, config.seed);
        let mut best = state.history.best().map_or(f64::NEG_INFINITY, |b| b.val_accuracy);

        while state.epochs_done < config.epochs {
            let epoch = state.epochs_done;
            let images_per_epoch = config.images_per_epoch(train_len);
            let done_images = (state.step_in_epoch * config.batch_size).min(images_per_epoch);
            let start = (epoch * images_per_epoch + done_images) as u64;
            let samples = stream.slice(start, images_per_epoch - done_images);
            let progress = Progress::new(
                &format!("epoch {}/{}", epoch + 1, config.epochs),
                steps_per_epoch as u64,
            )
            .starting_at(state.step_in_epoch as u64);
            let mut batches = self.batches(&inputs, samples);
            let mut sums = state.partial_epoch.clone();
            let started = Instant::now();
            let seconds_before = sums.seconds;
            let mut lr = 0.0;
            while let Some((input, labels)) = batches.next_batch(&self.data.train) {
                lr = optim::learning_rate(
                    config.schedule,
                    config.lr,
                    config.warmup_steps,
                    state.step,
                    total_steps,
                );
                let (loss, correct) = self.step(input, &labels, lr)?;
                sums.loss_sum += loss * labels.len() as f64;
                sums.correct += correct as u64;
                sums.images += labels.len() as u64;
                sums.seconds = seconds_before + started.elapsed().as_secs_f64();
                state.step += 1;
                state.step_in_epoch += 1;
                progress.update(state.step_in_epoch as u64, || {
                    format!(
                        "loss {:.4} acc {:.2}% {:.1} img/s",
                        sums.loss_sum / sums.images as f64,
                        100.0 * sums.correct as f64 / sums.images as f64,
                        sums.images as f64 / sums.seconds.max(1e-9)
                    )
                });
                if self.stop.load(Ordering::SeqCst) {
                    sums.waited_seconds += batches.waited();
                    state.partial_epoch = sums;
                    progress.finish();
                    self.save_resume(state)?;
                    self.run.log(&format!(
                        "interrupted in epoch {} after step {}; checkpoint saved",
                        epoch + 1,
                        state.step_in_epoch
                    ))?;
                    return Ok(Outcome { history: state.history.clone(), interrupted: true });
                }
            }
            sums.waited_seconds += batches.waited();
            progress.finish();

            let val_started = Instant::now();
            let val = self.validate(&inputs)?;
            let record = EpochRecord {
                epoch: epoch + 1,
                images_seen: (epoch as u64 + 1) * images_per_epoch as u64,
                train_loss: sums.loss_sum / sums.images.max(1) as f64,
                train_accuracy: sums.correct as f64 / sums.images.max(1) as f64,
                val_loss: val.loss,
                val_accuracy: val.accuracy,
                val_top5_accuracy: val.top5_accuracy,
                lr,
                train_seconds: sums.seconds,
                val_seconds: val_started.elapsed().as_secs_f64(),
                train_images_per_second: sums.images as f64 / sums.seconds.max(1e-9),
                data_wait_fraction: sums.waited_seconds / sums.seconds.max(1e-9),
                peak_rss_mib: crate::memory::peak_rss_bytes()
                    .map_or(0.0, |b| b as f64 / (1 << 20) as f64),
            };
            let line = describe_epoch(&record, config.epochs);
            eprintln!("{line}");
            self.run.log(&line)?;
            state.history.epochs.push(record.clone());
            state.epochs_done += 1;
            state.step_in_epoch = 0;
            state.partial_epoch = PartialEpoch::default();
            state.finished = state.epochs_done == config.epochs;
            if record.val_accuracy > best {
                best = record.val_accuracy;
                self.run.save_best(&self.model, &self.model_metadata(&record))?;
            }
            if config.stop_at_accuracy.is_some_and(|target| record.val_accuracy >= target) {
                let line = format!(
                    "reached the target validation accuracy after epoch {}; stopping",
                    epoch + 1
                );
                eprintln!("{line}");
                self.run.log(&line)?;
                state.finished = true;
            }
            state.history.write(&self.run.path)?;
            self.save_resume(state)?;
            if state.finished {
                break;
            }
        }
        Ok(Outcome { history: state.history.clone(), interrupted: false })
    }

    /// Features of `data` through the (inference-mode, BN-folded) backbone, via the disk cache.
    fn features_of(
        &self,
        data: &Arc<DecodedImages>,
        train: bool,
        label: &str,
        state: &mut ResumeState,
    ) -> Result<Vec<f32>> {
        let started = Instant::now();
        let files = if train { &self.data.train_files } else { &self.data.val_files };
        let key = FeatureKey::new(
            &backbone_identity(self.config)?,
            self.config.image_size,
            self.config.normalization,
            files,
        );
        let backbone = self.model.backbone.valid().fold_batchnorm();
        let values = features::features(
            &backbone,
            data,
            self.config.normalization,
            &self.device,
            Some(&key),
            label,
        )?;
        state.history.feature_seconds += started.elapsed().as_secs_f64();
        Ok(values)
    }

    /// Linear probing before fine-tuning: trains the new top alone on cached features so
    /// the backbone's first updates follow useful gradients, not a random head's.
    fn warm_up_head(&mut self, state: &mut ResumeState) -> Result<()> {
        let features =
            Arc::new(self.features_of(&self.data.train.clone(), true, "features train", state)?);
        let labels = self.data.train.labels.clone();
        let stream = SampleStream::new(labels.len(), loader_seed(self.config.seed, "head warm-up"));
        let mut optim = optim::build(self.config);
        let warmup_lr = self.config.lr;
        for epoch in 0..self.config.head_warmup_epochs {
            let started = Instant::now();
            let samples = stream.slice((epoch * labels.len()) as u64, labels.len());
            let (mut loss_sum, mut correct) = (0.0, 0usize);
            for chunk in samples.chunks(self.config.batch_size.max(64)) {
                let (input, batch_labels) = gather_features(&features, &labels, chunk, &self.ad);
                let (head, loss, right) = head_step(
                    self.model.head.clone(),
                    &mut optim,
                    input,
                    &batch_labels,
                    warmup_lr,
                    &self.loss,
                    &self.ad,
                )?;
                self.model.head = head;
                loss_sum += loss * batch_labels.len() as f64;
                correct += right;
            }
            let line = format!(
                "head warm-up {}/{}: loss {:.4} acc {:.2}% ({:.1}s)",
                epoch + 1,
                self.config.head_warmup_epochs,
                loss_sum / labels.len() as f64,
                100.0 * correct as f64 / labels.len() as f64,
                started.elapsed().as_secs_f64()
            );
            eprintln!("{line}");
            self.run.log(&line)?;
            state.history.head_warmup_seconds += started.elapsed().as_secs_f64();
        }
        state.head_warmup_done = true;
        Ok(())
    }

    fn batches(&self, inputs: &Inputs, samples: Vec<(usize, u64)>) -> EpochBatches {
        match inputs {
            Inputs::Features { train, .. } => EpochBatches::Features {
                features: train.clone(),
                samples,
                batch_size: self.config.batch_size,
                next: 0,
                ad: self.ad.clone(),
            },
            Inputs::Images => EpochBatches::Images {
                batches: Batches::spawn(
                    self.data.train.clone(),
                    samples,
                    BatchRecipe {
                        batch_size: self.config.batch_size,
                        normalization: self.config.normalization,
                        augment: Some((
                            self.config.augment.clone(),
                            loader_seed(self.config.seed, "augment"),
                        )),
                    },
                ),
                size: self.data.train.size,
                ad: self.ad.clone(),
            },
        }
    }

    /// One optimizer step; returns the batch's mean loss and number of correct predictions.
    fn step(&mut self, input: StepInput, labels: &[usize], lr: f64) -> Result<(f64, usize)> {
        match input {
            StepInput::Features(features) => {
                let (head, loss, correct) = head_step(
                    self.model.head.clone(),
                    &mut self.head_optim,
                    features,
                    labels,
                    lr,
                    &self.loss,
                    &self.ad,
                )?;
                self.model.head = head;
                Ok((loss, correct))
            }
            StepInput::Images(images) if self.config.mode == Mode::Frozen => {
                // Frozen backbone without a feature cache: inference features of augmented images.
                let backbone = self.model.backbone.valid();
                let features = eval::rows(backbone.features(images.to_device(&self.device)))?;
                let n = labels.len();
                let features =
                    Tensor::from_data(TensorData::new(features, [n, FEATURE_DIM]), &self.ad);
                self.step(StepInput::Features(features), labels, lr)
            }
            StepInput::Images(images) => {
                let backbone_optim =
                    self.backbone_optim.as_mut().expect("fine-tuning has a backbone optimizer");
                let (model, loss, correct) = finetune_step(
                    self.model.clone(),
                    backbone_optim,
                    &mut self.head_optim,
                    images,
                    labels,
                    [lr * self.config.backbone_lr_scale, lr],
                    &self.loss,
                    &self.ad,
                )?;
                self.model = model;
                Ok((loss, correct))
            }
        }
    }

    /// Validation loss and accuracy with the current weights.
    fn validate(&self, inputs: &Inputs) -> Result<Metrics> {
        let head = self.model.head.valid();
        let logits = match inputs {
            Inputs::Features { val, .. } => head_logits(&head, val, &self.device)?,
            Inputs::Images => {
                let model =
                    Classifier { backbone: self.model.backbone.valid().fold_batchnorm(), head };
                let progress = Progress::new("validate", self.data.val.len() as u64);
                eval::map_images(
                    &self.data.val,
                    EVAL_BATCH,
                    self.config.normalization,
                    &self.device,
                    &progress,
                    |x| model.forward(x),
                )?
            }
        };
        Ok(eval::metrics(&logits, &self.data.val.labels))
    }

    fn model_metadata(&self, record: &EpochRecord) -> HashMap<String, String> {
        HashMap::from([
            ("epoch".to_string(), record.epoch.to_string()),
            ("val_accuracy".to_string(), record.val_accuracy.to_string()),
            ("head".to_string(), format!("{:?}", self.config.head).to_lowercase()),
            ("layout".to_string(), format!("{:?}", self.config.layout).to_lowercase()),
        ])
    }

    fn save_resume(&self, state: &ResumeState) -> Result<()> {
        let mut optimizers = vec![("head", self.head_optim_bytes(&self.head_optim)?)];
        if let Some(optim) = &self.backbone_optim {
            optimizers.push(("backbone", self.head_optim_bytes(optim)?));
        }
        let metadata = HashMap::from([("step".to_string(), state.step.to_string())]);
        self.run.save_resume(&self.model, &metadata, &optimizers, state.clone())
    }

    fn head_optim_bytes(&self, optim: &ModuleOptimizer) -> Result<Vec<u8>> {
        let bytes = optim
            .into_bytes()
            .map_err(|error| anyhow::anyhow!("cannot serialise the optimizer state: {error}"))?;
        Ok(bytes.to_vec())
    }
}

/// Distinct, seed-derived streams for the data order, augmentation, and so on.
fn loader_seed(seed: u64, purpose: &str) -> u64 {
    purpose.bytes().fold(seed, |acc, b| crate::data::loader::mix(acc, b as u64))
}

/// The inputs of one optimizer step.
enum StepInput {
    Images(Tensor<4>),
    Features(Tensor<2>),
}

/// Batches of one epoch, from images (background thread) or from cached features.
enum EpochBatches {
    Images {
        batches: Batches,
        size: usize,
        ad: Device,
    },
    Features {
        features: Arc<Vec<f32>>,
        samples: Vec<(usize, u64)>,
        batch_size: usize,
        next: usize,
        ad: Device,
    },
}

impl EpochBatches {
    fn next_batch(&mut self, train: &DecodedImages) -> Option<(StepInput, Vec<usize>)> {
        match self {
            EpochBatches::Images { batches, size, ad } => {
                let batch = batches.next()?;
                let n = batch.len();
                let input =
                    Tensor::from_data(TensorData::new(batch.images, [n, 3, *size, *size]), &*ad);
                Some((StepInput::Images(input), batch.labels))
            }
            EpochBatches::Features { features, samples, batch_size, next, ad } => {
                if *next >= samples.len() {
                    return None;
                }
                let end = (*next + *batch_size).min(samples.len());
                let (input, labels) =
                    gather_features(features, &train.labels, &samples[*next..end], ad);
                *next = end;
                Some((StepInput::Features(input), labels))
            }
        }
    }

    fn waited(&self) -> f64 {
        match self {
            EpochBatches::Images { batches, .. } => batches.waited.as_secs_f64(),
            EpochBatches::Features { .. } => 0.0,
        }
    }
}

fn describe_epoch(record: &EpochRecord, epochs: usize) -> String {
    format!(
        "epoch {}/{}: train loss {:.4} acc {:.2}% | val loss {:.4} acc {:.2}% top-5 {:.2}% | {:.0}s train ({:.1} img/s, data wait {:.1}%), {:.0}s val, peak memory {:.2} GiB",
        record.epoch,
        epochs,
        record.train_loss,
        100.0 * record.train_accuracy,
        record.val_loss,
        100.0 * record.val_accuracy,
        100.0 * record.val_top5_accuracy,
        record.train_seconds,
        record.train_images_per_second,
        100.0 * record.data_wait_fraction,
        record.val_seconds,
        record.peak_rss_mib / 1024.0
    )
}
