//! ResNet-50 (v1), one backend-generic implementation with two weight layouts.
//!
//! Keras (`keras.applications.ResNet50`, the layout of the ImageNet weights we ship) and
//! torchvision differ in three details; everything else is the same network:
//!
//! | detail                         | Keras       | torchvision |
//! | ------------------------------ | ----------- | ----------- |
//! | stride of a downsampling block | first 1x1   | the 3x3     |
//! | convolution bias               | yes         | no          |
//! | BatchNorm epsilon              | 1e-3        | 1e-5        |

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::{Device, Tensor, activation};
use serde::{Deserialize, Serialize};

use super::fused;

/// Output channels of the backbone: the width of the pooled feature vector.
pub const FEATURE_DIM: usize = 2048;

/// Blocks per stage of ResNet-50 (stages are numbered 2..=5, as Keras names them).
pub const STAGE_BLOCKS: [usize; 4] = [3, 4, 6, 3];

/// Which framework's variant of the architecture (and therefore of the weights) to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Keras,
    Torchvision,
}

impl Layout {
    fn conv_bias(self) -> bool {
        self == Layout::Keras
    }

    fn batchnorm_epsilon(self) -> f64 {
        match self {
            Layout::Keras => 1e-3,
            Layout::Torchvision => 1e-5,
        }
    }
}

/// Where fine-tuning starts: the parts of the backbone before it keep their weights and
/// statistics, and no gradient is computed through them (less work per image).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainFrom {
    /// Every layer trains.
    #[default]
    Stem,
    /// Keras' stage numbers: conv2_x .. conv5_x.
    Stage2,
    Stage3,
    Stage4,
    Stage5,
}

impl TrainFrom {
    /// How many of the backbone's parts (stem, then the four stages) stay fixed.
    fn fixed_parts(self) -> usize {
        self as usize
    }
}

/// How batch normalisation behaves while the backbone trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchNormMode {
    /// Normalise with batch statistics and update the running ones (needed from scratch).
    Train,
    /// Keep the pretrained running statistics (gamma and beta still train): stable with small
    /// batches and the usual choice when fine-tuning a pretrained network.
    Frozen,
    /// Frozen statistics folded, with gamma and beta, into the convolutions before training:
    /// the same function at the start and ~10% faster steps, but the optimizer then moves the
    /// folded weights directly, which learns more slowly from pretrained weights (see
    /// BENCHMARKS.md).
    Fold,
}

/// A convolution followed by batch normalisation, the unit every ResNet layer is made of.
/// After [`ResNet50::fold_batchnorm`] the normalisation lives in the convolution and `bn` is
/// `None`.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: Option<BatchNorm>,
}

impl ConvBn {
    fn new(
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        layout: Layout,
        device: &Device,
    ) -> Self {
        let pad = kernel / 2;
        let conv = Conv2dConfig::new(channels, [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(layout.conv_bias())
            // He (Kaiming) normal, fan-in: the initialiser Keras uses for ResNet convolutions.
            .with_initializer(Initializer::KaimingNormal { gain: 2f64.sqrt(), fan_out_only: false })
            .init(device);
        // Keras momentum 0.99 on the old value is burn/PyTorch momentum 0.01 on the new one.
        let bn = BatchNormConfig::new(channels[1])
            .with_epsilon(layout.batchnorm_epsilon())
            .with_momentum(0.01)
            .init(device);
        Self { conv, bn: Some(bn) }
    }

    /// `relu(bn(conv(x)) + residual)` (the ReLU when `relu`) on NHWC activations.
    ///
    /// Batch norm with fixed statistics (inference, frozen fine-tuning) is an affine map per
    /// channel, so it is folded into the convolution's weight and bias on the fly: the same
    /// function and the same gradients for gamma and beta, without a pass over the
    /// activations. Batch statistics (training from scratch) need the real normalisation.
    pub fn forward(&self, x: Tensor<4>, residual: Option<Tensor<4>>, relu: bool) -> Tensor<4> {
        let geometry = [self.conv.stride[0], self.conv.kernel_size[0] / 2];
        let (weight, bias) = (self.conv.weight.val(), self.conv.bias.as_ref().map(Param::val));
        match &self.bn {
            None => fused::conv(x, weight, bias, residual, geometry, relu),
            Some(bn) if x.device().is_autodiff() && bn.training.is_enabled() => {
                let y = fused::conv(x, weight, bias, None, geometry, false);
                let [n, h, w, c] = y.dims();
                // Channels last: the activations are rows of `c` channels.
                let y = bn.forward(y.reshape([n * h * w, c])).reshape([n, h, w, c]);
                let y = match residual {
                    Some(residual) => y + residual,
                    None => y,
                };
                if relu { activation::relu(y) } else { y }
            }
            Some(bn) => {
                let (weight, bias) = fold(weight, bias, bn);
                fused::conv(x, weight, Some(bias), residual, geometry, relu)
            }
        }
    }

    /// Folds the batch norm into the convolution for good: the inference network, or
    /// `--batchnorm fold` training.
    pub fn fold_batchnorm(mut self) -> Self {
        let Some(bn) = self.bn.take() else { return self };
        let (weight, bias) =
            fold(self.conv.weight.val(), self.conv.bias.as_ref().map(Param::val), &bn);
        // Detached: the folded values are new leaves, trainable on an autodiff device.
        self.conv.weight = Param::from_tensor(weight.detach());
        self.conv.bias = Some(Param::from_tensor(bias.detach()));
        self
    }
}

/// Weight and bias of a convolution followed by batch norm with fixed statistics:
/// `bn(conv(x)) = conv'(x)` with `W' = W * s`, `b' = (b - mean) * s + beta`,
/// `s = gamma / sqrt(var + eps)`.
fn fold(weight: Tensor<4>, bias: Option<Tensor<1>>, bn: &BatchNorm) -> (Tensor<4>, Tensor<1>) {
    let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
    let [out_channels] = scale.dims();
    let weight = weight * scale.clone().reshape([out_channels, 1, 1, 1]);
    let bias = bias.unwrap_or_else(|| Tensor::zeros([out_channels], &scale.device()));
    (weight, (bias - bn.running_mean.value()) * scale + bn.beta.val())
}

/// Keras' names of a unit's convolution and batch-norm layers, e.g. `res3a_branch2b` /
/// `bn3a_branch2b`, or `conv1` / `bn_conv1` for the stem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitName {
    pub conv: String,
    pub bn: String,
}

impl UnitName {
    fn stem() -> Self {
        Self { conv: "conv1".into(), bn: "bn_conv1".into() }
    }

    /// Stage index 0..4 (Keras stages 2..5), block index, branch (`branch2a`, ..., `branch1`).
    fn block(stage: usize, block: usize, branch: &str) -> Self {
        let name = format!("{}{}", stage + 2, (b'a' + block as u8) as char);
        Self { conv: format!("res{name}_{branch}"), bn: format!("bn{name}_{branch}") }
    }
}

/// The bottleneck residual block: 1x1 reduce, 3x3, 1x1 expand (x4), plus a shortcut.
#[derive(Module, Debug)]
pub struct Bottleneck {
    pub reduce: ConvBn,
    pub spatial: ConvBn,
    pub expand: ConvBn,
    /// Projection shortcut on the first block of each stage; identity otherwise.
    pub shortcut: Option<ConvBn>,
}

impl Bottleneck {
    fn new(
        in_channels: usize,
        width: usize,
        stride: usize,
        first: bool,
        layout: Layout,
        device: &Device,
    ) -> Self {
        let out_channels = width * 4;
        let (reduce_stride, spatial_stride) = match layout {
            Layout::Keras => (stride, 1),
            Layout::Torchvision => (1, stride),
        };
        Self {
            reduce: ConvBn::new([in_channels, width], 1, reduce_stride, layout, device),
            spatial: ConvBn::new([width, width], 3, spatial_stride, layout, device),
            expand: ConvBn::new([width, out_channels], 1, 1, layout, device),
            shortcut: first
                .then(|| ConvBn::new([in_channels, out_channels], 1, stride, layout, device)),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.shortcut {
            Some(projection) => projection.forward(x.clone(), None, false),
            None => x.clone(),
        };
        let y = self.reduce.forward(x, None, true);
        let y = self.spatial.forward(y, None, true);
        self.expand.forward(y, Some(shortcut), true)
    }
}

/// One stage: blocks sharing an output width.
#[derive(Module, Debug)]
pub struct Stage {
    pub blocks: Vec<Bottleneck>,
}

/// ResNet-50 without its top (`include_top=False`): image in, 2048-channel feature map out.
/// Activations are NHWC (channels last) throughout, the layout our CPU kernels are fast in.
#[derive(Module, Debug)]
pub struct ResNet50 {
    pub stem: ConvBn,
    pub stages: Vec<Stage>,
}

/// The stem's max pool: 3x3 window, stride 2, padding 1.
const STEM_POOL: [usize; 3] = [3, 2, 1];

impl ResNet50 {
    /// A randomly initialised network (He-normal convolutions, unit BatchNorm).
    pub fn new(layout: Layout, device: &Device) -> Self {
        // Keras: ZeroPadding(3) + 7x7/2 valid conv; ZeroPadding(1) + 3x3/2 valid max-pool.
        // Symmetric padding inside the ops is the same thing; padding the pool with zeros or
        // with -inf gives the same result because its input has just been through a ReLU.
        let stem = ConvBn::new([3, 64], 7, 2, layout, device);
        let mut in_channels = 64;
        let stages = STAGE_BLOCKS
            .iter()
            .enumerate()
            .map(|(index, &blocks)| {
                let width = 64 << index;
                let stride = if index == 0 { 1 } else { 2 };
                let blocks = (0..blocks)
                    .map(|block| {
                        let first = block == 0;
                        let unit = Bottleneck::new(
                            in_channels,
                            width,
                            if first { stride } else { 1 },
                            first,
                            layout,
                            device,
                        );
                        in_channels = width * 4;
                        unit
                    })
                    .collect();
                Stage { blocks }
            })
            .collect();
        Self { stem, stages }
    }

    /// Rebuilds the network with `f` applied to every conv+BN unit, in Keras' layer order.
    pub fn try_map_units<E>(
        mut self,
        mut f: impl FnMut(&UnitName, ConvBn) -> Result<ConvBn, E>,
    ) -> Result<Self, E> {
        self.stem = f(&UnitName::stem(), self.stem)?;
        for (s, stage) in self.stages.iter_mut().enumerate() {
            for (b, block) in stage.blocks.iter_mut().enumerate() {
                let mut apply = |unit: &mut ConvBn, branch: &str| -> Result<(), E> {
                    let taken = std::mem::replace(unit, placeholder_unit(unit));
                    *unit = f(&UnitName::block(s, b, branch), taken)?;
                    Ok(())
                };
                apply(&mut block.reduce, "branch2a")?;
                apply(&mut block.spatial, "branch2b")?;
                apply(&mut block.expand, "branch2c")?;
                if let Some(shortcut) = &mut block.shortcut {
                    apply(shortcut, "branch1")?;
                }
            }
        }
        Ok(self)
    }

    /// Rebuilds the network with `f` applied to every conv+BN unit.
    pub fn map_units(self, mut f: impl FnMut(ConvBn) -> ConvBn) -> Self {
        self.try_map_units(|_, unit| Ok::<_, std::convert::Infallible>(f(unit)))
            .unwrap_or_else(|never| match never {})
    }

    /// The inference network with every batch norm folded into its convolution.
    pub fn fold_batchnorm(self) -> Self {
        self.map_units(ConvBn::fold_batchnorm)
    }

    /// The network with its batch norms set up for training in `mode`: batch statistics
    /// (`Train`, on an autodiff device), running statistics (`Frozen`: gamma and beta still
    /// train), or folded into the convolutions (`Fold`).
    pub fn with_batchnorm(self, mode: BatchNormMode) -> Self {
        if mode == BatchNormMode::Fold {
            return self.fold_batchnorm();
        }
        let training = mode == BatchNormMode::Train;
        self.map_units(|mut unit| {
            unit.bn = unit.bn.map(|mut bn| {
                bn.training = bn.training.with_value(training);
                bn
            });
            unit
        })
    }

    /// The network with the parts before `start` fixed: their weights do not train, their
    /// batch norms use their running statistics, and no backward pass runs through them.
    pub fn train_from(mut self, start: TrainFrom) -> Self {
        let fixed = start.fixed_parts();
        if fixed == 0 {
            return self;
        }
        let fix = |unit: ConvBn| {
            let mut unit = unit.freeze();
            if let Some(bn) = &mut unit.bn {
                bn.training = bn.training.clone().with_value(false);
            }
            unit
        };
        self.stem = fix(self.stem);
        for stage in self.stages.iter_mut().take(fixed - 1) {
            for block in &mut stage.blocks {
                let taken = std::mem::replace(block, placeholder_block(block));
                *block = Bottleneck {
                    reduce: fix(taken.reduce),
                    spatial: fix(taken.spatial),
                    expand: fix(taken.expand),
                    shortcut: taken.shortcut.map(fix),
                };
            }
        }
        self
    }

    /// The inference network: no autodiff, batch norms folded into the convolutions.
    pub fn inference(&self) -> Self {
        self.valid().fold_batchnorm()
    }

    /// The stem's output (convolution and max pool), `[batch, h/4, w/4, 64]`: the first
    /// residual stage's input.
    pub fn stem_map(&self, images: Tensor<4>) -> Tensor<4> {
        fused::max_pool(self.stem.forward(images, None, true), STEM_POOL)
    }

    /// The last residual stage's feature map, `[batch, h/32, w/32, 2048]`, of NHWC images.
    pub fn feature_map(&self, images: Tensor<4>) -> Tensor<4> {
        let x = self.stem_map(images);
        self.stages.iter().flat_map(|stage| &stage.blocks).fold(x, |x, block| block.forward(x))
    }

    /// Global-average-pooled features, `[batch, 2048]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        global_average_pool(self.feature_map(images))
    }
}

/// A cheap stand-in that holds a unit's place while it is being rebuilt (shares its tensors).
fn placeholder_unit(unit: &ConvBn) -> ConvBn {
    ConvBn { conv: unit.conv.clone(), bn: None }
}

/// The same for a whole block.
fn placeholder_block(block: &Bottleneck) -> Bottleneck {
    Bottleneck {
        reduce: placeholder_unit(&block.reduce),
        spatial: placeholder_unit(&block.spatial),
        expand: placeholder_unit(&block.expand),
        shortcut: None,
    }
}

/// Mean over the spatial dimensions: `[b, h, w, c]` -> `[b, c]`.
pub fn global_average_pool(map: Tensor<4>) -> Tensor<2> {
    let [batch, height, width, channels] = map.dims();
    map.reshape([batch, height * width, channels]).mean_dim(1).reshape([batch, channels])
}
