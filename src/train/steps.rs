//! One optimizer step: fine-tuning the whole network, or training the new top alone on
//! backbone features; and the small conversions around it.

use anyhow::{Result, ensure};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::eval;
use crate::inference::rows;
use crate::model::resnet::FEATURE_DIM;
use crate::model::{Classifier, Head};

/// A batch of cached feature rows and their labels.
pub fn gather_features(
    features: &[f32],
    labels: &[usize],
    samples: &[(usize, u64)],
    device: &Device,
) -> (Tensor<2>, Vec<usize>) {
    let mut rows = Vec::with_capacity(samples.len() * FEATURE_DIM);
    for &(index, _) in samples {
        rows.extend_from_slice(&features[index * FEATURE_DIM..(index + 1) * FEATURE_DIM]);
    }
    let tensor = Tensor::from_data(TensorData::new(rows, [samples.len(), FEATURE_DIM]), device);
    (tensor, samples.iter().map(|&(index, _)| labels[index]).collect())
}

/// One fine-tuning step of the whole model; `lrs` are the backbone's and the head's rates.
#[allow(clippy::too_many_arguments)]
pub fn finetune_step(
    model: Classifier,
    backbone_optim: &mut ModuleOptimizer,
    head_optim: &mut ModuleOptimizer,
    images: Tensor<4>,
    labels: &[usize],
    [backbone_lr, head_lr]: [f64; 2],
    loss: &CrossEntropyLossConfig,
    ad: &Device,
) -> Result<(Classifier, f64, usize)> {
    let (loss, loss_value, correct) = loss_and_correct(model.forward(images), labels, loss, ad)?;
    let mut grads = loss.backward();
    let backbone_grads = GradientsParams::from_module(&mut grads, &model.backbone);
    let head_grads = GradientsParams::from_module(&mut grads, &model.head);
    let backbone = backbone_optim.step(backbone_lr, model.backbone, backbone_grads);
    let head = head_optim.step(head_lr, model.head, head_grads);
    Ok((Classifier { backbone, head }, loss_value, correct))
}

/// One optimizer step of the head alone on a batch of features.
pub fn head_step(
    head: Head,
    optim: &mut ModuleOptimizer,
    features: Tensor<2>,
    labels: &[usize],
    lr: f64,
    loss: &CrossEntropyLossConfig,
    ad: &Device,
) -> Result<(Head, f64, usize)> {
    let (loss, loss_value, correct) = loss_and_correct(head.forward(features), labels, loss, ad)?;
    let grads = GradientsParams::from_grads(loss.backward(), &head);
    Ok((optim.step(lr, head, grads), loss_value, correct))
}

/// The batch's cross-entropy (to differentiate), its value, and the number of correct
/// predictions.
fn loss_and_correct(
    logits: Tensor<2>,
    labels: &[usize],
    loss: &CrossEntropyLossConfig,
    ad: &Device,
) -> Result<(Tensor<1>, f64, usize)> {
    let classes = logits.dims()[1];
    let correct = count_correct(&logits, labels)?;
    let loss = loss.init(ad).forward(logits, targets(labels, ad));
    let value = check_loss(scalar(&loss)?, classes)?;
    Ok((loss, value, correct))
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
    fn a_huge_or_non_finite_loss_is_divergence() {
        assert_eq!(check_loss(2.5, 10).unwrap(), 2.5);
        assert_eq!(check_loss(150.0, 10).unwrap(), 150.0);
        for diverged in [3.2e34, f64::INFINITY, f64::NAN] {
            let error = check_loss(diverged, 10).unwrap_err().to_string();
            assert!(error.contains("diverged"), "{error}");
        }
    }
}
