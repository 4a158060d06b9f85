//! The epoch loop: optimizer steps over the epoch's batches, validation after each epoch,
//! the best model and the resume checkpoint kept up to date, and a clean stop on Ctrl-C.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Tensor, TensorData};

use super::batches::{EpochBatches, StepInput, stream_seed};
use super::checkpoint::{self, Optimizers};
use super::prepare::PreparedData;
use super::record::{describe_epoch, epoch_record, summarise_epoch};
use super::steps::{finetune_step, gather_features, head_step};
use super::{Outcome, optim};
use crate::config::{Mode, TrainConfig};
use crate::data::{BatchRecipe, SampleStream};
use crate::eval;
use crate::features::{FeatureStore, feature_identity, head_logits};
use crate::inference::{self, map_images};
use crate::model::Classifier;
use crate::model::resnet::FEATURE_DIM;
use crate::progress::Progress;
use crate::run::{PartialEpoch, ResumeState, RunDir, write_json};

/// Where the training inputs of the new top come from.
enum Inputs {
    /// Images through the backbone (fine-tuning, or frozen without a feature cache).
    Images,
    /// Cached backbone features: train and validation rows of 2048.
    Features { train: Arc<Vec<f32>>, val: Arc<Vec<f32>> },
}

/// Everything one training run works with.
pub struct Trainer<'a> {
    pub config: &'a TrainConfig,
    pub run: &'a RunDir,
    pub device: Device,
    pub ad: Device,
    pub data: PreparedData,
    pub model: Classifier,
    pub optimizers: Optimizers,
    pub loss: CrossEntropyLossConfig,
}

impl Trainer<'_> {
    /// Trains until the configured epochs are done, the target accuracy is reached, or Ctrl-C
    /// (then a resumable checkpoint is saved, whatever the phase).
    pub fn train(&mut self, state: &mut ResumeState) -> Result<Outcome> {
        match self.phases(state) {
            Err(error) if crate::interrupt::is_interruption(&error) => {
                checkpoint::save_resume(self.run, &self.model, &self.optimizers, state)?;
                self.run.log(&format!(
                    "interrupted in epoch {} after step {}; checkpoint saved",
                    state.epochs_done + 1,
                    state.step_in_epoch
                ))?;
                Ok(Outcome { history: state.history.clone(), interrupted: true })
            }
            outcome => outcome,
        }
    }

    fn phases(&mut self, state: &mut ResumeState) -> Result<Outcome> {
        let config = self.config;
        if config.mode == Mode::Finetune && config.head_warmup_epochs > 0 && !state.head_warmup_done
        {
            self.warm_up_head(state)?;
        }
        let inputs = if config.mode == Mode::Frozen && config.feature_cache {
            let train = self.features_of(true, "features train", state)?;
            let val = self.features_of(false, "features val", state)?;
            Inputs::Features { train: Arc::new(train), val: Arc::new(val) }
        } else {
            Inputs::Images
        };
        let mut best = state.history.best().map_or(f64::NEG_INFINITY, |b| b.val_accuracy);
        while state.epochs_done < config.epochs {
            self.train_epoch(&inputs, state)?;
            self.finish_epoch(&inputs, state, &mut best)?;
            if state.finished {
                break;
            }
        }
        Ok(Outcome { history: state.history.clone(), interrupted: false })
    }

    /// The optimizer steps of the current epoch; Ctrl-C stops it after a step.
    fn train_epoch(&mut self, inputs: &Inputs, state: &mut ResumeState) -> Result<()> {
        let config = self.config;
        let train_len = self.data.train.len();
        let steps_per_epoch = config.steps_in_epoch(train_len);
        let total_steps = (config.epochs * steps_per_epoch) as u64;
        let images_per_epoch = config.images_per_epoch(train_len);
        let done_images = (state.step_in_epoch * config.batch_size).min(images_per_epoch);
        let start = (state.epochs_done * images_per_epoch + done_images) as u64;
        let samples =
            SampleStream::new(train_len, config.seed).slice(start, images_per_epoch - done_images);
        let progress = Progress::steps(
            &format!("epoch {}/{}", state.epochs_done + 1, config.epochs),
            steps_per_epoch as u64,
        )
        .starting_at(state.step_in_epoch as u64);
        let mut batches = self.batches(inputs, samples);
        let sums = &mut state.partial_epoch;
        let started = Instant::now();
        let seconds_before = sums.seconds;
        let labels = self.data.train.labels.clone();
        while let Some((input, batch_labels)) = batches.next_batch(&labels) {
            let lr = optim::learning_rate(
                config.schedule,
                config.lr,
                config.warmup_steps,
                state.step,
                total_steps,
            );
            let (loss, correct) = self.step(input, &batch_labels, lr)?;
            sums.loss_sum += loss * batch_labels.len() as f64;
            sums.correct += correct as u64;
            sums.images += batch_labels.len() as u64;
            sums.seconds = seconds_before + started.elapsed().as_secs_f64();
            state.step += 1;
            state.step_in_epoch += 1;
            progress.update(state.step_in_epoch as u64, || {
                format!(
                    "{:.0} img/s, loss {:.3}, acc {:.1}%",
                    sums.images as f64 / sums.seconds.max(1e-9),
                    sums.loss_sum / sums.images as f64,
                    100.0 * sums.correct as f64 / sums.images as f64,
                )
            });
            if crate::interrupt::requested() {
                break;
            }
        }
        sums.waited_seconds += batches.waited();
        progress.finish();
        crate::interrupt::check()
    }

    /// Validation, the epoch's record, the best model, and the checkpoint at an epoch's end.
    fn finish_epoch(
        &mut self,
        inputs: &Inputs,
        state: &mut ResumeState,
        best: &mut f64,
    ) -> Result<()> {
        let config = self.config;
        let epoch = state.epochs_done + 1;
        let train_len = self.data.train.len();
        let lr = optim::epoch_end_rate(config, epoch, config.steps_in_epoch(train_len));
        let val_started = Instant::now();
        let val_logits = self.validation_logits(inputs)?;
        let val = eval::metrics(&val_logits, &self.data.val.labels)?;
        let images_seen = (epoch * config.images_per_epoch(train_len)) as u64;
        let record = epoch_record(
            epoch,
            images_seen,
            &state.partial_epoch,
            &val,
            val_started.elapsed().as_secs_f64(),
            lr,
        );
        eprintln!("{}", summarise_epoch(&record, config.epochs));
        self.run.log(&describe_epoch(&record, config.epochs))?;
        state.history.epochs.push(record.clone());
        state.epochs_done = epoch;
        state.step_in_epoch = 0;
        state.partial_epoch = PartialEpoch::default();
        state.finished = epoch == config.epochs;
        if record.val_accuracy > *best {
            *best = record.val_accuracy;
            self.run.save_best(&self.model, &checkpoint::model_metadata(config, &record))?;
            self.save_evaluation(&val_logits, epoch)?;
        }
        if config.stop_at_accuracy.is_some_and(|target| record.val_accuracy >= target) {
            let line =
                format!("reached the target validation accuracy after epoch {epoch}; stopping");
            eprintln!("{line}");
            self.run.log(&line)?;
            state.finished = true;
        }
        let stale = state.history.epochs_without_improvement(config.patience_on);
        if config.patience.is_some_and(|patience| stale >= patience) && !state.finished {
            let line = format!(
                "validation {} has not improved for {stale} epochs; stopping early",
                if config.patience_on == crate::config::Monitor::Loss {
                    "loss"
                } else {
                    "accuracy"
                }
            );
            eprintln!("{line}");
            self.run.log(&line)?;
            state.finished = true;
        }
        state.history.write(&self.run.path)?;
        checkpoint::save_resume(self.run, &self.model, &self.optimizers, state)
    }

    /// Features of `data` (the training or the validation images) through the inference
    /// backbone, from the feature store where it has them.
    fn features_of(&self, train: bool, label: &str, state: &mut ResumeState) -> Result<Vec<f32>> {
        let started = Instant::now();
        let (data, files) = if train {
            (&self.data.train, &self.data.train_files)
        } else {
            (&self.data.val, &self.data.val_files)
        };
        let mut store = FeatureStore::open(&feature_identity(self.config)?)?;
        let values = store.features(
            &self.model.backbone.inference(),
            data,
            files,
            self.config.normalization,
            &self.device,
            label,
        )?;
        state.history.feature_seconds += started.elapsed().as_secs_f64();
        Ok(values)
    }

    /// Linear probing before fine-tuning: trains the new top alone on cached features so
    /// the backbone's first updates follow useful gradients, not a random head's.
    fn warm_up_head(&mut self, state: &mut ResumeState) -> Result<()> {
        let features = Arc::new(self.features_of(true, "features train", state)?);
        let labels = self.data.train.labels.clone();
        let stream = SampleStream::new(labels.len(), stream_seed(self.config.seed, "head warm-up"));
        let mut optim = optim::build(self.config);
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
                    self.config.lr,
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
            Inputs::Features { train, .. } => {
                EpochBatches::features(train.clone(), samples, self.config.batch_size, &self.ad)
            }
            Inputs::Images => EpochBatches::images(
                self.data.train.clone(),
                samples,
                BatchRecipe {
                    batch_size: self.config.batch_size,
                    normalization: self.config.normalization,
                    augment: Some((
                        self.config.augment.clone(),
                        stream_seed(self.config.seed, "augment"),
                    )),
                },
                &self.ad,
            ),
        }
    }

    /// One optimizer step; returns the batch's mean loss and number of correct predictions.
    fn step(&mut self, input: StepInput, labels: &[usize], lr: f64) -> Result<(f64, usize)> {
        match input {
            StepInput::Features(features) => {
                let (head, loss, correct) = head_step(
                    self.model.head.clone(),
                    &mut self.optimizers.head,
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
                let backbone = self.model.backbone.inference();
                let features = inference::rows(backbone.features(images.to_device(&self.device)))?;
                let features = Tensor::from_data(
                    TensorData::new(features, [labels.len(), FEATURE_DIM]),
                    &self.ad,
                );
                self.step(StepInput::Features(features), labels, lr)
            }
            StepInput::Images(images) => {
                let backbone_optim = self
                    .optimizers
                    .backbone
                    .as_mut()
                    .expect("fine-tuning has a backbone optimizer");
                let (model, loss, correct) = finetune_step(
                    self.model.clone(),
                    backbone_optim,
                    &mut self.optimizers.head,
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

    /// The best model's evaluation on the validation images, from the validation pass that
    /// made it the best: the report then need not run the model over them again.
    fn save_evaluation(&self, val_logits: &[f32], epoch: usize) -> Result<()> {
        let mut evaluation = eval::evaluate(val_logits, &self.data.val.labels, &self.data.classes)?;
        evaluation.name_files(&self.data.val_files, &self.config.data);
        evaluation.epoch = Some(epoch);
        let dir = eval::run::validation_evaluation_dir(self.run);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        write_json(&dir.join("evaluation.json"), &evaluation)
    }

    /// The model's outputs for the validation images with the current weights.
    fn validation_logits(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        Ok(match inputs {
            Inputs::Features { val, .. } => {
                head_logits(&self.model.head.valid(), val, &self.device)?
            }
            Inputs::Images => {
                let model = self.model.inference();
                let progress = Progress::new("validate", self.data.val.len() as u64);
                map_images(
                    &self.data.val,
                    self.config.normalization,
                    &self.device,
                    |n| progress.update(n as u64, String::new),
                    |x| model.forward(x),
                )?
            }
        })
    }
}
