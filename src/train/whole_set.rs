//! The new top's loss and its gradients over a whole set of images at once, for L-BFGS: the
//! stored feature rows are read a chunk at a time, in storage order, so memory does not grow
//! with the set, and each chunk's gradients are added up.

use anyhow::Result;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};

use super::learner::StepResult;
use crate::eval;
use crate::features::FeatureRows;
use crate::inference::rows;
use crate::model::Head;
use crate::model::resnet::FEATURE_DIM;

/// Rows read and computed at a time (32 MB of features).
const CHUNK_ROWS: usize = 4096;

/// The loss being minimised: the mean cross-entropy of the set (each image weighted by its
/// class's weight when classes are balanced by weights, against targets smoothed by
/// `smoothing`), plus `weight_decay` times half the squared weights of the top (not its
/// biases).
pub struct WholeSetLoss<'a> {
    rows: &'a FeatureRows,
    /// `(row, label)` of every image, in the order the rows are stored.
    images: Vec<(usize, usize)>,
    classes: usize,
    smoothing: f64,
    /// Each class's share of the loss per image: its weight over the set's total weight.
    image_weight: Vec<f64>,
    weight_decay: f64,
    device: Device,
}

impl<'a> WholeSetLoss<'a> {
    /// The loss over the images `indices` (rows of `rows`, labelled `labels` alike), of
    /// `classes` classes, with the loss weights `class_weights` (or none), on the autodiff
    /// device `device`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rows: &'a FeatureRows,
        indices: &[usize],
        labels: &[usize],
        classes: usize,
        smoothing: f64,
        class_weights: Option<&[f32]>,
        weight_decay: f64,
        device: &Device,
    ) -> Self {
        let mut images: Vec<(usize, usize)> =
            indices.iter().copied().zip(labels.iter().copied()).collect();
        images.sort_unstable();
        let class_weight = |label: usize| class_weights.map_or(1.0, |w| w[label] as f64);
        let total: f64 = images.iter().map(|&(_, label)| class_weight(label)).sum();
        let image_weight =
            (0..classes).map(|c| class_weight(c) / total.max(f64::MIN_POSITIVE)).collect();
        Self {
            rows,
            images,
            classes,
            smoothing,
            image_weight,
            weight_decay,
            device: device.clone(),
        }
    }

    /// The loss of `head` (with its weight decay, which L-BFGS minimises), its gradients, and
    /// what the step records: the cross-entropy alone and the images classified correctly.
    pub fn evaluate(&self, head: &Head) -> Result<(f64, GradientsParams, StepResult)> {
        let mut accumulator = GradientsAccumulator::<Head>::new();
        let (mut cross_entropy, mut correct) = (0.0, 0);
        for chunk in self.images.chunks(CHUNK_ROWS) {
            crate::support::interrupt::check()?;
            let features = self.rows.gather(chunk.iter().map(|&(row, _)| row))?;
            let input = Tensor::from_data(
                TensorData::new(features, [chunk.len(), FEATURE_DIM]),
                &self.device,
            );
            let logits = head.forward(input);
            let values = rows(logits.clone().detach())?;
            correct += values
                .chunks_exact(self.classes)
                .zip(chunk)
                .filter(|(row, (_, label))| eval::is_correct(row, *label))
                .count();
            let targets = Tensor::from_data(
                TensorData::new(self.weighted_targets(chunk), [chunk.len(), self.classes]),
                &self.device,
            );
            let loss = (log_softmax(logits, 1) * targets).sum().neg();
            cross_entropy += scalar(&loss)?;
            accumulator.accumulate(head, GradientsParams::from_grads(loss.backward(), head));
        }
        let mut value = cross_entropy;
        if self.weight_decay > 0.0 {
            let penalty = weights_squared(head).mul_scalar(0.5 * self.weight_decay);
            value += scalar(&penalty)?;
            accumulator.accumulate(head, GradientsParams::from_grads(penalty.backward(), head));
        }
        Ok((value, accumulator.grads(), StepResult { loss: cross_entropy, correct }))
    }

    /// Gradients of zero for every parameter of `head` (what L-BFGS is given for an
    /// evaluation that failed, whose error the step then reports): every parameter takes part
    /// in a forward pass whose output is multiplied by zero.
    pub fn zero_gradients(&self, head: &Head) -> GradientsParams {
        let input = Tensor::zeros([1, FEATURE_DIM], &self.device);
        let zero = head.forward(input).sum().mul_scalar(0.0);
        GradientsParams::from_grads(zero.backward(), head)
    }

    /// The targets of `chunk`, each row smoothed and scaled by its image's share of the loss.
    fn weighted_targets(&self, chunk: &[(usize, usize)]) -> Vec<f32> {
        let classes = self.classes;
        let mut targets = vec![0f32; chunk.len() * classes];
        for (row, &(_, label)) in targets.chunks_exact_mut(classes).zip(chunk) {
            let share = self.image_weight[label];
            let spread = self.smoothing / classes as f64;
            for (class, target) in row.iter_mut().enumerate() {
                let p = if class == label { 1.0 - self.smoothing + spread } else { spread };
                *target = (share * p) as f32;
            }
        }
        targets
    }
}

/// The sum of the squared weights of the top's dense layers.
fn weights_squared(head: &Head) -> Tensor<1> {
    let squared = |layer: &burn::nn::Linear| layer.weight.val().powf_scalar(2.0).sum();
    let output = squared(&head.output);
    match &head.hidden {
        Some(hidden) => output + squared(hidden),
        None => output,
    }
}

fn scalar(value: &Tensor<1>) -> Result<f64> {
    let values = rows(value.clone().detach().reshape([1, 1]))?;
    Ok(values[0] as f64)
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::tensor::Int;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::model::classifier::keras_dense;

    const CLASSES: usize = 3;

    fn device() -> Device {
        Device::flex().autodiff()
    }

    fn random_rows(n: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let labels: Vec<usize> = (0..n).map(|_| rng.random_range(0..CLASSES)).collect();
        let rows = labels
            .iter()
            .flat_map(|&label| {
                let mut row: Vec<f32> = (0..FEATURE_DIM).map(|_| rng.random::<f32>()).collect();
                row[label] += 2.0;
                row
            })
            .collect();
        (rows, labels)
    }

    fn head(device: &Device) -> Head {
        Head { hidden: None, output: keras_dense(FEATURE_DIM, CLASSES, device) }
    }

    fn value_of(loss: &WholeSetLoss, head: &Head) -> f64 {
        loss.evaluate(head).unwrap().0
    }

    #[test]
    fn the_loss_is_burns_cross_entropy_over_every_chunk_plus_the_weight_decay() {
        let device = device();
        // More rows than a chunk, so that the sum over chunks is checked.
        let n = CHUNK_ROWS + 5;
        let (data, labels) = random_rows(n, 7);
        let head = head(&device);
        let features = FeatureRows::Memory(data.clone());
        let indices: Vec<usize> = (0..n).collect();
        let decay = 0.01;
        let loss =
            WholeSetLoss::new(&features, &indices, &labels, CLASSES, 0.1, None, decay, &device);
        let (value, _, result) = loss.evaluate(&head).unwrap();

        let input = Tensor::from_data(TensorData::new(data, [n, FEATURE_DIM]), &device);
        let targets: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), &device);
        let reference = CrossEntropyLossConfig::new()
            .with_smoothing(Some(0.1))
            .init(&device)
            .forward(head.forward(input), targets);
        let reference = scalar(&reference).unwrap();
        let penalty = 0.5 * decay * scalar(&weights_squared(&head)).unwrap();
        assert!(
            (result.loss - reference).abs() < 1e-4 * reference,
            "{} vs {reference}",
            result.loss
        );
        assert!((value - reference - penalty).abs() < 1e-4 * value, "{value}");
    }

    #[test]
    fn its_gradients_are_the_slopes_of_the_loss() {
        let device = device();
        let (data, labels) = random_rows(40, 3);
        let features = FeatureRows::Memory(data);
        let indices: Vec<usize> = (0..40).collect();
        let weights = [1.0, 2.0, 0.5];
        let loss = WholeSetLoss::new(
            &features,
            &indices,
            &labels,
            CLASSES,
            0.1,
            Some(&weights),
            0.05,
            &device,
        );
        let head = head(&device);
        let (_, grads, _) = loss.evaluate(&head).unwrap();
        let weight = head.output.weight.val();
        let gradient = rows(grads.get::<2>(head.output.weight.id).unwrap()).unwrap();
        let values = rows(weight.clone().detach()).unwrap();
        let step = 1e-2f32;
        for at in [0, 1, 2, 7 * CLASSES + 1, (FEATURE_DIM - 1) * CLASSES] {
            let moved = |delta: f32| {
                let mut changed = values.clone();
                changed[at] += delta;
                let mut moved = head.clone();
                moved.output.weight = Param::from_tensor(Tensor::from_data(
                    TensorData::new(changed, [FEATURE_DIM, CLASSES]),
                    &device,
                ));
                value_of(&loss, &moved)
            };
            let slope = (moved(step) - moved(-step)) / (2.0 * step as f64);
            let tolerance = 1e-3 + 1e-2 * slope.abs();
            assert!(
                (slope - gradient[at] as f64).abs() < tolerance,
                "{at}: {slope} vs {}",
                gradient[at]
            );
        }
    }
}
