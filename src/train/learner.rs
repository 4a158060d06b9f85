//! The model being trained with its optimizers and loss, and the one optimizer step every
//! loop takes (the epoch loop, the head warm-up, `lr-find`, `bench`): fine-tuning the whole
//! network on images, or training the new top alone on backbone features.

use std::sync::Arc;

use anyhow::{Result, bail, ensure};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::optim::{self, Optimizer};
use super::whole_set::WholeSetLoss;
use crate::config::{FITTED_TOP_WEIGHT_DECAY, TrainConfig};
use crate::eval;
use crate::features::FeatureRows;
use crate::inference::rows;
use crate::model::Classifier;
use crate::model::resnet::FEATURE_DIM;
use crate::run::{OptimizerPart, ResumeState, TrainingRun};

/// The inputs of one optimizer step.
pub enum StepInput {
    Images(Tensor<4>),
    /// Pooled backbone features, `[batch, 2048]`.
    Features(Tensor<2>),
    /// The stored features of a whole set of images (the rows `indices`), for a step that
    /// takes them all at once (L-BFGS), read as the step needs them.
    FeatureSet {
        rows: Arc<FeatureRows>,
        indices: Vec<usize>,
    },
}

/// What one step measured on its batch.
pub struct StepResult {
    /// The batch's mean loss.
    pub loss: f64,
    /// Correct predictions in the batch (before the update).
    pub correct: usize,
}

/// The optimizers of a run: the new top's, and the backbone's when it trains.
struct Optimizers {
    head: Optimizer,
    backbone: Option<Optimizer>,
}

/// A model in training.
pub struct Learner {
    pub model: Classifier,
    optimizers: Optimizers,
    loss: CrossEntropyLossConfig,
    /// The weight decay of a step over a whole set, a term of the loss it minimises.
    whole_set_weight_decay: f64,
    backbone_lr_scale: f64,
    /// The inference device (for a frozen backbone's features).
    device: Device,
    /// The autodiff device the model trains on.
    ad: Device,
}

impl Learner {
    /// `model` (on the autodiff device of `device`) with fresh optimizers for `config`.
    pub fn new(config: &TrainConfig, model: Classifier, device: &Device) -> Self {
        let smoothing = config.optimization.smoothing();
        Self {
            model,
            optimizers: Optimizers {
                head: optim::build(config),
                backbone: config.trains_backbone().then(|| optim::build(config)),
            },
            loss: CrossEntropyLossConfig::new()
                .with_smoothing((smoothing > 0.0).then_some(smoothing as f32)),
            // A run of batched steps fits its top over the whole set only in the head
            // warm-up, and regularises it there as the frozen default does.
            whole_set_weight_decay: if config.steps_on_whole_set() {
                config.optimization.weight_decay
            } else {
                FITTED_TOP_WEIGHT_DECAY
            },
            backbone_lr_scale: config.optimization.backbone_lr_scale,
            device: device.clone(),
            ad: device.clone().autodiff(),
        }
    }

    /// The learner with its loss weighting each class by `weights` (see
    /// [`class_weights`]).
    pub fn with_class_weights(mut self, weights: Option<Vec<f32>>) -> Self {
        self.loss = self.loss.with_weights(weights);
        self
    }

    /// The autodiff device batches go to.
    pub fn autodiff_device(&self) -> &Device {
        &self.ad
    }

    /// One optimizer step at learning rate `lr` (the top's; the backbone's is scaled).
    pub fn step(&mut self, input: StepInput, labels: &[usize], lr: f64) -> Result<StepResult> {
        match input {
            StepInput::Features(features) => self.head_step(features, labels, lr),
            StepInput::FeatureSet { rows, indices } => self.whole_set_step(&rows, &indices, labels),
            StepInput::Images(images) if self.optimizers.backbone.is_some() => {
                let logits = self.model.forward(images);
                let (loss, result) = self.loss_and_result(logits, labels)?;
                let mut grads = loss.backward();
                let backbone_grads = GradientsParams::from_module(&mut grads, &self.model.backbone);
                let head_grads = GradientsParams::from_module(&mut grads, &self.model.head);
                let Classifier { backbone, head } = self.model.clone();
                let backbone_optim =
                    self.optimizers.backbone.as_mut().expect("checked by the match guard");
                let backbone = backbone_optim.gradient_step(
                    lr * self.backbone_lr_scale,
                    backbone,
                    backbone_grads,
                )?;
                let head = self.optimizers.head.gradient_step(lr, head, head_grads)?;
                self.model = Classifier { backbone, head };
                Ok(result)
            }
            StepInput::Images(images) => {
                // A frozen backbone without stored features: its inference features of these
                // (augmented) images.
                let backbone = self.model.backbone.inference();
                let features = rows(backbone.features(images.to_device(&self.device)))?;
                let features = Tensor::from_data(
                    TensorData::new(features, [labels.len(), FEATURE_DIM]),
                    &self.ad,
                );
                self.head_step(features, labels, lr)
            }
        }
    }

    /// One step of the new top alone on a batch of features.
    fn head_step(&mut self, features: Tensor<2>, labels: &[usize], lr: f64) -> Result<StepResult> {
        let logits = self.model.head.forward(features);
        let (loss, result) = self.loss_and_result(logits, labels)?;
        let grads = GradientsParams::from_grads(loss.backward(), &self.model.head);
        self.model.head = self.optimizers.head.gradient_step(lr, self.model.head.clone(), grads)?;
        Ok(result)
    }

    /// One L-BFGS step of the new top over the whole set `indices` of `rows` (labelled
    /// `labels`). Interrupted or failed, the step leaves the top and the optimizer as they
    /// were, so that a resumed run repeats it exactly.
    fn whole_set_step(
        &mut self,
        rows: &FeatureRows,
        indices: &[usize],
        labels: &[usize],
    ) -> Result<StepResult> {
        let Optimizer::Lbfgs(lbfgs) = &mut self.optimizers.head else {
            bail!("a step over the whole set of stored features needs --optimizer lbfgs");
        };
        let classes = self.model.head.num_classes();
        let loss = WholeSetLoss::new(
            rows,
            indices,
            labels,
            classes,
            self.loss.smoothing.map_or(0.0, f64::from),
            self.loss.weights.as_deref(),
            self.whole_set_weight_decay,
            &self.ad,
        );
        let before = lbfgs.clone();
        let mut failure = None;
        let mut result = StepResult { loss: f64::NAN, correct: 0 };
        // The line search starts from a step of 1 (the Newton step) and finds its own length.
        let (head, _) = lbfgs.step(1.0, self.model.head.clone(), |head| {
            if failure.is_none() {
                match loss.evaluate(&head) {
                    Ok((value, grads, evaluated)) => {
                        result = evaluated;
                        return (value, grads);
                    }
                    Err(error) => failure = Some(error),
                }
            }
            (f64::NAN, loss.zero_gradients(&head))
        });
        if let Some(error) = failure {
            *lbfgs = before;
            return Err(error);
        }
        self.model.head = head;
        result.loss = check_loss(result.loss, classes)?;
        Ok(result)
    }

    /// Trains with `optimizer` for the new top during `phase` (the head warm-up has its own),
    /// then puts the run's back, whatever the phase returned.
    pub fn with_head_optimizer<T>(
        &mut self,
        optimizer: Optimizer,
        phase: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let main = std::mem::replace(&mut self.optimizers.head, optimizer);
        let result = phase(self);
        self.optimizers.head = main;
        result
    }

    /// The batch's cross-entropy (to differentiate), with its value and correct count.
    fn loss_and_result(
        &self,
        logits: Tensor<2>,
        labels: &[usize],
    ) -> Result<(Tensor<1>, StepResult)> {
        let classes = logits.dims()[1];
        let correct = count_correct(&logits, labels)?;
        let loss = self.loss.init(&self.ad).forward(logits, targets(labels, &self.ad));
        let value = check_loss(scalar(&loss)?, classes)?;
        Ok((loss, StepResult { loss: value, correct }))
    }

    /// The learner with the model and optimizers of `state`'s resume checkpoint in `run`.
    pub fn restored(mut self, run: &TrainingRun, state: &ResumeState) -> Result<Self> {
        self.model = run.restore_model(self.model, state)?;
        let load = |optim: Optimizer, part: OptimizerPart| -> Result<Optimizer> {
            optim.load(&run.optimizer_state(state, part)?)
        };
        let Optimizers { head, backbone } = self.optimizers;
        self.optimizers = Optimizers {
            head: load(head, OptimizerPart::Head)?,
            backbone: backbone.map(|optim| load(optim, OptimizerPart::Backbone)).transpose()?,
        };
        Ok(self)
    }

    /// Writes the resume checkpoint of `state` into `run`.
    pub fn save_checkpoint(&self, run: &TrainingRun, state: &ResumeState) -> Result<()> {
        let mut parts = vec![(OptimizerPart::Head, self.optimizers.head.to_bytes()?)];
        if let Some(optim) = &self.optimizers.backbone {
            parts.push((OptimizerPart::Backbone, optim.to_bytes()?));
        }
        run.save_checkpoint(&self.model, &parts, state)
    }
}

/// The loss weights of `config`'s class balance for training labels `labels` of `classes`
/// classes: `n / (classes * n_c)` for a class of `n_c` of the `n` images (1 for every class
/// when they are even), `None` unless the balance is by weights.
pub fn class_weights(config: &TrainConfig, labels: &[usize], classes: usize) -> Option<Vec<f32>> {
    if config.optimization.class_balance != crate::config::ClassBalance::Weights {
        return None;
    }
    let mut counts = vec![0usize; classes];
    for &label in labels {
        counts[label] += 1;
    }
    let n = labels.len() as f64;
    // A class without training images never appears as a target; its weight only has to be
    // positive.
    Some(counts.iter().map(|&c| (n / (classes as f64 * c.max(1) as f64)) as f32).collect())
}

fn targets(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(values, [labels.len()]), device)
}

fn count_correct(logits: &Tensor<2>, labels: &[usize]) -> Result<usize> {
    let values = rows(logits.clone().detach())?;
    let classes = values.len() / labels.len();
    Ok(values
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, label)| eval::is_correct(row, **label))
        .count())
}

fn scalar(loss: &Tensor<1>) -> Result<f64> {
    let values = loss
        .clone()
        .detach()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|error| anyhow::anyhow!("cannot read the loss: {error:?}"))?;
    Ok(values[0] as f64)
}

/// A cross-entropy this many times a uniform guess's (ln classes) means logits off by hundreds:
/// the run has diverged even while its numbers are still finite (at `--lr 10` the loss reaches
/// 1e34 before it overflows).
const DIVERGED_LOSS_FACTOR: f64 = 100.0;

/// `value`, or an error when the loss has diverged.
fn check_loss(value: f64, classes: usize) -> Result<f64> {
    let uniform_guess = (classes.max(2) as f64).ln();
    ensure!(
        value.is_finite() && value <= DIVERGED_LOSS_FACTOR * uniform_guess,
        "the loss diverged (got {value}; a uniform guess scores {uniform_guess:.2}): lower --lr"
    );
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_weights_make_every_class_weigh_alike() {
        let mut config = crate::config::Recipe::Default.config(
            crate::config::Mode::Frozen,
            crate::config::Init::Imagenet,
            "d".into(),
        );
        let labels = [0, 0, 0, 1];
        assert_eq!(class_weights(&config, &labels, 2), None);
        config.optimization.class_balance = crate::config::ClassBalance::Weights;
        let weights = class_weights(&config, &labels, 3).unwrap();
        // Class 0 (3 images) and class 1 (1) then weigh 3 x 4/9 = 1 x 4/3 alike.
        for (weight, expected) in weights.iter().zip([4.0 / 9.0, 4.0 / 3.0, 4.0 / 3.0]) {
            assert!((weight - expected).abs() < 1e-6, "{weights:?}");
        }
    }

    #[test]
    fn an_lbfgs_step_resumes_exactly_from_its_saved_state() {
        use crate::config::{Init, Mode, Recipe};
        use crate::model::{HeadKind, Layout};
        let device = Device::flex();
        let config = Recipe::Default.config(Mode::Frozen, Init::Imagenet, "d".into());
        // Three classes, each lifting one feature.
        let labels: Vec<usize> = (0..30).map(|i| i % 3).collect();
        let values: Vec<f32> = labels
            .iter()
            .enumerate()
            .flat_map(|(i, &label)| {
                (0..FEATURE_DIM)
                    .map(move |d| ((i * 31 + d * 7) % 13) as f32 / 13.0 + (d == label) as u8 as f32)
            })
            .collect();
        let features = Arc::new(FeatureRows::Memory(values));
        // Every learner starts from the same top (the device's random numbers are shared
        // with tests running beside this one, so seeding it would not be enough).
        let new_model =
            || Classifier::new(Layout::Keras, HeadKind::Linear, 3, &device.clone().autodiff());
        let start = new_model().head;
        let learner = || {
            let mut model = new_model();
            model.head = start.clone();
            Learner::new(&config, model, &device)
        };
        let step = |learner: &mut Learner| {
            let input =
                StepInput::FeatureSet { rows: features.clone(), indices: (0..30).collect() };
            learner.step(input, &labels, config.optimization.lr).unwrap()
        };
        let weights =
            |learner: &Learner| rows(learner.model.head.output.weight.val().detach()).unwrap();

        let mut straight = learner();
        let first = step(&mut straight);
        let second = step(&mut straight);
        assert!(second.loss < first.loss, "{} then {}", first.loss, second.loss);
        assert_eq!(second.correct, 30);

        let mut interrupted = learner();
        step(&mut interrupted);
        let saved = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(saved.path(), interrupted.optimizers.head.to_bytes().unwrap()).unwrap();
        let mut resumed = learner();
        resumed.model.head = interrupted.model.head.clone();
        resumed.optimizers.head = resumed.optimizers.head.load(saved.path()).unwrap();
        let again = step(&mut resumed);
        assert_eq!(again.loss, second.loss);
        assert_eq!(weights(&resumed), weights(&straight));
    }

    #[test]
    fn a_huge_or_non_finite_loss_is_divergence() {
        assert_eq!(check_loss(2.5, 10).unwrap(), 2.5);
        assert_eq!(check_loss(150.0, 10).unwrap(), 150.0);
        for diverged in [3.2e34, f64::INFINITY, f64::NAN] {
            let error = check_loss(diverged, 10).unwrap_err().to_string();
            assert!(error.contains("diverged"), "{error}");
        }
    }
}
