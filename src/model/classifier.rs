//! The transfer-learning model: a ResNet-50 backbone and a new top for our classes (the
//! original ImageNet network is the same with a linear 1000-way top).

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::resnet::{FEATURE_DIM, Layout, ResNet50};

/// Width of the notebook's hidden dense layer.
pub const HIDDEN_UNITS: usize = 512;

/// The shape of the new top on the pooled 2048-d features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// The notebook's top: Dense(512, ReLU) -> Dense(classes).
    Mlp,
    /// A single Dense(classes): logistic regression on the features.
    Linear,
}

/// Dense layer initialised the Keras way: Glorot-uniform kernel, zero bias.
pub fn keras_dense(inputs: usize, outputs: usize, device: &Device) -> Linear {
    let mut layer = LinearConfig::new(inputs, outputs)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device);
    layer.bias = Some(Param::from_tensor(Tensor::zeros([outputs], device)));
    layer
}

/// The classification top. Softmax is left to the loss and to prediction.
#[derive(Module, Debug)]
pub struct Head {
    pub hidden: Option<Linear>,
    pub output: Linear,
}

impl Head {
    pub fn new(kind: HeadKind, num_classes: usize, device: &Device) -> Self {
        match kind {
            HeadKind::Mlp => Self {
                hidden: Some(keras_dense(FEATURE_DIM, HIDDEN_UNITS, device)),
                output: keras_dense(HIDDEN_UNITS, num_classes, device),
            },
            HeadKind::Linear => {
                Self { hidden: None, output: keras_dense(FEATURE_DIM, num_classes, device) }
            }
        }
    }

    /// Logits from pooled features, `[batch, 2048]` -> `[batch, classes]`.
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        let x = match &self.hidden {
            Some(hidden) => relu(hidden.forward(features)),
            None => features,
        };
        self.output.forward(x)
    }

    pub fn num_classes(&self) -> usize {
        self.output.weight.shape().dims::<2>()[1]
    }
}

/// Backbone plus head: images in, class logits out.
#[derive(Module, Debug)]
pub struct Classifier {
    pub backbone: ResNet50,
    pub head: Head,
}

impl Classifier {
    /// A randomly initialised classifier (the "vanilla" model until weights are loaded).
    pub fn new(layout: Layout, head: HeadKind, num_classes: usize, device: &Device) -> Self {
        Self { backbone: ResNet50::new(layout, device), head: Head::new(head, num_classes, device) }
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.backbone.features(images))
    }

    /// The inference network: no autodiff, batch norms folded into the convolutions.
    pub fn inference(&self) -> Self {
        Self { backbone: self.backbone.inference(), head: self.head.valid() }
    }
}
