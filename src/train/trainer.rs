//! The epoch loop: optimizer steps over the epoch's batches, validation after each epoch,
//! the best model and the resume checkpoint kept up to date, the stopping rules asked, and a
//! clean stop on Ctrl-C.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::tensor::Device;

use super::batches::{Inputs, gather_features, sample_stream, stream_seed};
use super::learner::{Learner, StepInput};
use super::prepare::PreparedData;
use super::record::{describe_epoch, epoch_record, summarise_epoch};
use super::stopping::{self, StoppingRule};
use super::{Outcome, optim, trust};
use crate::config::TrainConfig;
use crate::eval;
use crate::features::{self, FeatureRows, FeatureVariant, head_logits};
use crate::inference::{self, map_images};
use crate::run::{Checkpoint, PartialEpoch, ResumeState, TrainingRun};
use crate::support::progress::Progress;

/// Everything one training run works with.
pub struct Trainer<'a> {
    pub config: &'a TrainConfig,
    pub run: &'a mut TrainingRun,
    pub device: Device,
    pub data: &'a PreparedData,
    pub learner: Learner,
    pub stopping: Vec<Box<dyn StoppingRule>>,
    /// The validation pass that made the best model the best, kept for fitting its trust.
    best_validation: Option<ValidationPass>,
}

/// The model's outputs for the validation images at the end of an epoch.
struct ValidationPass {
    epoch: usize,
    logits: Vec<f32>,
    features: Vec<f32>,
}

impl Trainer<'_> {
    pub fn new<'a>(
        config: &'a TrainConfig,
        run: &'a mut TrainingRun,
        device: &Device,
        data: &'a PreparedData,
        learner: Learner,
    ) -> Trainer<'a> {
        let stopping = stopping::rules(&config.stopping);
        Trainer {
            config,
            run,
            device: device.clone(),
            data,
            learner,
            stopping,
            best_validation: None,
        }
    }

    /// Fits the trust of the best model (see [`crate::trust`]) and keeps it in the run: from
    /// the validation pass that made it the best when this process ran it, else from a new
    /// one.
    pub fn fit_trust(&mut self, state: &ResumeState) -> Result<()> {
        let Some(best) = state.history.best() else { return Ok(()) };
        let dir = self.run.dir().clone();
        let model = dir.load_model(Checkpoint::Best, &self.device)?.model;
        let identity = inference::model_identity(&dir.model_path(Checkpoint::Best))?;
        let (logits, features) = match self.best_validation.take() {
            Some(pass) if pass.epoch == best.epoch => (pass.logits, pass.features),
            _ => trust::logits_and_features(
                self.config,
                &model,
                &self.data.val,
                &self.device,
                "trust: validation",
            )?,
        };
        let fitted = trust::fit_trust(
            &model,
            &identity,
            self.config,
            &logits,
            &features,
            &self.data.val.labels,
            &self.data.train,
            &self.device,
        )?;
        fitted.save(&self.run.trust_files())?;
        let record = &fitted.record;
        let threshold = fitted.threshold();
        let rejected = record.thresholds.iter().find(|t| t.score == record.score);
        let line = format!(
            "calibrated: temperature {:.3}, calibration error {:.2}% -> {:.2}% on {} validation images; \"none of these\" below {} score {threshold:.4} (rejects {:.1}% of them)",
            record.temperature,
            100.0 * record.ece_before,
            100.0 * record.ece_after,
            record.validation_images,
            crate::support::spelling(&record.score),
            100.0 * rejected.map_or(0.0, |t| t.validation_rejected),
        );
        eprintln!("{line}");
        self.run.log(&line)
    }

    /// With `--folds K`, cross-validates the top over the training and validation images (see
    /// [`super::folds`]) for as many epochs as the best model trained, and keeps the result
    /// in the run.
    pub fn cross_validate(&mut self, state: &ResumeState) -> Result<()> {
        let (Some(folds), Some(best)) = (self.config.images.folds, state.history.best()) else {
            return Ok(());
        };
        let started = Instant::now();
        let (Inputs::Features(train), Inputs::Features(val)) =
            (self.inputs_of(true)?, self.inputs_of(false)?)
        else {
            anyhow::bail!("--folds needs the stored features of a frozen run");
        };
        let data = self.data;
        let features = [train.to_vec()?, val.to_vec()?].concat();
        let labels = [data.train.labels.as_slice(), &data.val.labels].concat();
        let files = [data.train_files.as_slice(), &data.val_files].concat();
        let fold_of = crate::data::split::sitting_folds(&files, data.classes.len(), folds);
        let result = super::folds::cross_validate(
            self.config,
            &features,
            &labels,
            &fold_of,
            folds,
            &data.classes,
            best.epoch,
            &self.device,
        )?;
        self.run.write_cross_validation(&result)?;
        let line = format!(
            "cross-validation: {} ({:.1}s)",
            result.describe(),
            started.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        self.run.log(&line)
    }

    /// Trains until the configured epochs are done, a stopping rule ends the run, or Ctrl-C
    /// (then a resumable checkpoint is saved, whatever the phase).
    pub fn train(&mut self, state: &mut ResumeState) -> Result<Outcome> {
        match self.phases(state) {
            Err(error) if crate::support::interrupt::is_interruption(&error) => {
                self.learner.save_checkpoint(self.run, state)?;
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
        if config.trains_backbone()
            && config.schedule.head_warmup_epochs > 0
            && !state.head_warmup_done
        {
            self.warm_up_head(state)?;
        }
        let started = Instant::now();
        let train = self.inputs_of(true)?;
        let val = self.inputs_of(false)?;
        if matches!(train, Inputs::Features(_)) {
            state.history.feature_seconds += started.elapsed().as_secs_f64();
        }
        while state.epochs_done < config.schedule.epochs {
            self.train_epoch(&train, state)?;
            self.finish_epoch(&val, state)?;
            if state.finished {
                break;
            }
        }
        Ok(Outcome { history: state.history.clone(), interrupted: false })
    }

    /// What the steps (`train`) or validation take of the training or the validation images.
    fn inputs_of(&self, train: bool) -> Result<Inputs> {
        let (images, label) = if train {
            (&self.data.train, "features train")
        } else {
            (&self.data.val, "features val")
        };
        Inputs::of(self.config, &self.learner.model, images, &self.device, label)
    }

    /// The optimizer steps of the current epoch; Ctrl-C stops it after a step.
    fn train_epoch(&mut self, inputs: &Inputs, state: &mut ResumeState) -> Result<()> {
        let config = self.config;
        let train_len = self.data.train.len();
        let steps_per_epoch = config.steps_in_epoch(train_len);
        let total_steps = (config.schedule.epochs * steps_per_epoch) as u64;
        let images_per_epoch = config.images_per_epoch(train_len);
        let done_images =
            (state.step_in_epoch * config.step_images(train_len)).min(images_per_epoch);
        let start = (state.epochs_done * images_per_epoch + done_images) as u64;
        let samples = sample_stream(config, &self.data.train.labels, config.optimization.seed)
            .slice(start, images_per_epoch - done_images);
        let progress = Progress::steps(
            &format!("epoch {}/{}", state.epochs_done + 1, config.schedule.epochs),
            steps_per_epoch as u64,
        )
        .starting_at(state.step_in_epoch as u64);
        let mut batches = inputs.batches(config, samples, self.learner.autodiff_device());
        let sums = &mut state.partial_epoch;
        let started = Instant::now();
        let seconds_before = sums.seconds;
        let labels = self.data.train.labels.clone();
        while let Some((input, batch_labels)) = batches.next_batch(&labels)? {
            let lr = optim::learning_rate(&config.optimization, state.step, total_steps);
            let step = self.learner.step(input, &batch_labels, lr)?;
            sums.loss_sum += step.loss * batch_labels.len() as f64;
            sums.correct += step.correct as u64;
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
            if crate::support::interrupt::requested() {
                break;
            }
        }
        sums.waited_seconds += batches.waited();
        progress.finish();
        crate::support::interrupt::check()
    }

    /// Validation, the epoch's record, the best model, the stopping rules, and the checkpoint
    /// at an epoch's end.
    fn finish_epoch(&mut self, val_inputs: &Inputs, state: &mut ResumeState) -> Result<()> {
        let config = self.config;
        let epoch = state.epochs_done + 1;
        let train_len = self.data.train.len();
        let lr = optim::epoch_end_rate(config, epoch, config.steps_in_epoch(train_len));
        let val_started = Instant::now();
        let (val_logits, val_features) = self.validation_pass(val_inputs)?;
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
        eprintln!("{}", summarise_epoch(&record, config.schedule.epochs));
        self.run.log(&describe_epoch(&record, config.schedule.epochs))?;
        state.history.epochs.push(record.clone());
        state.epochs_done = epoch;
        state.step_in_epoch = 0;
        state.partial_epoch = PartialEpoch::default();
        state.finished = epoch == config.schedule.epochs;
        let data = self.data;
        let improved = self.run.keep_if_best(&self.learner.model, &record, || {
            // The best model's evaluation on the validation images, from the validation pass
            // that made it the best: the report then need not run the model over them again.
            let mut evaluation = eval::evaluate(&val_logits, &data.val.labels, &data.classes)?;
            evaluation.name_files(&data.val_files, &config.data);
            evaluation.epoch = Some(epoch);
            Ok(evaluation)
        })?;
        if improved {
            self.best_validation =
                Some(ValidationPass { epoch, logits: val_logits, features: val_features });
        }
        if !state.finished
            && let Some(reason) = stopping::reason_to_stop(&self.stopping, &state.history)
        {
            eprintln!("{reason}");
            self.run.log(&reason)?;
            state.finished = true;
        }
        self.run.write_history(&state.history)?;
        self.learner.save_checkpoint(self.run, state)
    }

    /// Linear probing before fine-tuning: trains the new top alone on stored features (with
    /// an optimizer of its own) so the backbone's first updates follow useful gradients, not a
    /// random head's. A linear top is fitted to its optimum by L-BFGS over every training
    /// image, as the frozen default fits it; an MLP top takes the run's optimizer's steps.
    fn warm_up_head(&mut self, state: &mut ResumeState) -> Result<()> {
        let config = self.config;
        let started = Instant::now();
        let features = Arc::new(features::lookup(
            config,
            FeatureVariant::Plain,
            &self.learner.model.backbone.inference(),
            &self.data.train,
            &self.device,
            "features train",
        )?);
        state.history.feature_seconds += started.elapsed().as_secs_f64();
        let labels = self.data.train.labels.clone();
        let epochs = config.schedule.head_warmup_epochs;
        let run = &*self.run;
        let lbfgs = config.warms_up_by_lbfgs();
        let optimizer = if lbfgs { optim::lbfgs() } else { optim::build(config) };
        self.learner.with_head_optimizer(optimizer, |learner| {
            for epoch in 0..epochs {
                let started = Instant::now();
                let (loss_sum, correct) = warm_up_pass(learner, config, &features, &labels, epoch)?;
                let line = format!(
                    "head warm-up {}/{epochs}{}: loss {:.4} acc {:.2}% ({:.1}s)",
                    epoch + 1,
                    if lbfgs { " (lbfgs)" } else { "" },
                    loss_sum / labels.len() as f64,
                    100.0 * correct as f64 / labels.len() as f64,
                    started.elapsed().as_secs_f64()
                );
                eprintln!("{line}");
                run.log(&line)?;
                state.history.head_warmup_seconds += started.elapsed().as_secs_f64();
            }
            Ok(())
        })?;
        state.head_warmup_done = true;
        Ok(())
    }

    /// The model's logits and pooled features of the validation images, current weights.
    fn validation_pass(&self, inputs: &Inputs) -> Result<(Vec<f32>, Vec<f32>)> {
        let features = match inputs {
            Inputs::Features(rows) => rows.to_vec()?,
            Inputs::Images(images) => {
                let backbone = self.learner.model.backbone.inference();
                let progress = Progress::new("validate", images.len() as u64);
                map_images(
                    images,
                    self.config.images.normalization,
                    &self.device,
                    |n| progress.update(n as u64, String::new),
                    |x| backbone.features(x),
                )?
            }
        };
        let logits = head_logits(&self.learner.model.head.valid(), &features, &self.device)?;
        Ok((logits, features))
    }
}

/// One pass of the head warm-up over every training image's stored features: a linear top's
/// L-BFGS step over all of them at once, or an MLP top's optimizer steps over batches in the
/// warm-up's own seeded order. Returns the summed loss and the number correct.
fn warm_up_pass(
    learner: &mut Learner,
    config: &TrainConfig,
    features: &Arc<FeatureRows>,
    labels: &[usize],
    epoch: usize,
) -> Result<(f64, usize)> {
    let lr = config.optimization.lr;
    if config.warms_up_by_lbfgs() {
        let input =
            StepInput::FeatureSet { rows: features.clone(), indices: (0..labels.len()).collect() };
        let step = learner.step(input, labels, lr)?;
        return Ok((step.loss * labels.len() as f64, step.correct));
    }
    let seed = stream_seed(config.optimization.seed, "head warm-up");
    let samples =
        sample_stream(config, labels, seed).slice((epoch * labels.len()) as u64, labels.len());
    let (mut loss_sum, mut correct) = (0.0, 0usize);
    for chunk in samples.chunks(config.optimization.batch_size.max(64)) {
        let (input, batch_labels) =
            gather_features(features, labels, chunk, learner.autodiff_device())?;
        let step = learner.step(StepInput::Features(input), &batch_labels, lr)?;
        loss_sum += step.loss * batch_labels.len() as f64;
        correct += step.correct;
    }
    Ok((loss_sum, correct))
}
