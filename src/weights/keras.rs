//! Puts the Keras ResNet-50 ImageNet weights (Keras layer names, burn tensor layout) into our
//! modules. Every tensor is checked by name and shape; leftovers are reported too, so a file
//! for another network cannot load silently.

use anyhow::{Context, Result, ensure};
use burn::module::{Param, RunningState};
use burn::nn::{BatchNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};

use super::NamedTensors;
use crate::model::resnet::{ConvBn, Layout, ResNet50, UnitName};
use crate::model::{Classifier, Head, classifier::keras_dense};

/// Number of ImageNet classes of the `fc1000` layer.
pub const IMAGENET_CLASSES: usize = 1000;

/// Loads the backbone weights (`conv1` .. `res5c_*`), consuming them from `tensors`.
pub fn load_backbone(
    backbone: ResNet50,
    tensors: &mut NamedTensors,
    device: &Device,
) -> Result<ResNet50> {
    ensure!(
        backbone.stem.conv.bias.is_some(),
        "the Keras ImageNet weights need the Keras layout of ResNet-50 (--layout keras)"
    );
    backbone.try_map_units(|name, unit| load_conv_bn(unit, name, tensors, device))
}

/// The full ImageNet network: the backbone with its linear `fc1000` top. Fails if any tensor
/// is left over.
pub fn load_imagenet(mut tensors: NamedTensors, device: &Device) -> Result<Classifier> {
    let backbone = load_backbone(ResNet50::new(Layout::Keras, device), &mut tensors, device)?;
    let fc = keras_dense(crate::model::resnet::FEATURE_DIM, IMAGENET_CLASSES, device);
    let fc = load_dense(fc, "fc1000", &mut tensors, device)?;
    ensure_consumed(&tensors)?;
    Ok(Classifier { backbone, head: Head { hidden: None, output: fc } })
}

/// Errors when tensors remain that no layer asked for (a file for another network).
pub fn ensure_consumed(tensors: &NamedTensors) -> Result<()> {
    let unused: Vec<&String> = tensors.tensors.keys().collect();
    ensure!(
        unused.is_empty(),
        "{} holds {} tensors that ResNet-50 has no place for, e.g. {:?}",
        tensors.source,
        unused.len(),
        &unused[..unused.len().min(5)]
    );
    Ok(())
}

fn load_conv_bn(
    mut unit: ConvBn,
    name: &UnitName,
    tensors: &mut NamedTensors,
    device: &Device,
) -> Result<ConvBn> {
    let shape = unit.conv.weight.shape().dims::<4>();
    let kernel = tensors.take(&format!("{}/kernel", name.conv), &shape)?;
    unit.conv.weight = Param::from_tensor(tensor(kernel, shape, device));
    let bias = tensors.take(&format!("{}/bias", name.conv), &[shape[0]])?;
    unit.conv.bias = Some(Param::from_tensor(tensor(bias, [shape[0]], device)));
    let bn =
        unit.bn.take().context("cannot load weights into a network with folded batch norms")?;
    unit.bn = Some(load_batchnorm(bn, &name.bn, tensors, device)?);
    Ok(unit)
}

fn load_batchnorm(
    mut bn: BatchNorm,
    name: &str,
    tensors: &mut NamedTensors,
    device: &Device,
) -> Result<BatchNorm> {
    let [channels] = bn.gamma.shape().dims::<1>();
    let mut take = |part: &str| -> Result<Tensor<1>> {
        let values = tensors.take(&format!("{name}/{part}"), &[channels])?;
        Ok(tensor(values, [channels], device))
    };
    bn.gamma = Param::from_tensor(take("gamma")?);
    bn.beta = Param::from_tensor(take("beta")?);
    bn.running_mean = RunningState::new(take("moving_mean")?);
    bn.running_var = RunningState::new(take("moving_variance")?);
    Ok(bn)
}

/// Loads a Keras `Dense` layer (kernel `[inputs, outputs]`, the layout of burn's `Linear`).
pub fn load_dense(
    mut layer: Linear,
    name: &str,
    tensors: &mut NamedTensors,
    device: &Device,
) -> Result<Linear> {
    let shape = layer.weight.shape().dims::<2>();
    let kernel = tensors.take(&format!("{name}/kernel"), &shape)?;
    layer.weight = Param::from_tensor(tensor(kernel, shape, device));
    let bias = tensors.take(&format!("{name}/bias"), &[shape[1]])?;
    layer.bias = Some(Param::from_tensor(tensor(bias, [shape[1]], device)));
    Ok(layer)
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}
