//! The flex backend's side of [`super::conv`] and [`super::max_pool`]: our kernels as burn
//! backend-extension operations, each with its handwritten backward pass.

use std::sync::Arc;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, DType, Dispatch, DispatchDevice, ExtensionType, Flex, TensorData,
    TensorMetadata, backend_extension,
};
use burn::tensor::Tensor;
use fruitlab_kernels::{Activation, ConvShape, PoolShape};

/// Whether `x` lives on the flex backend as f32, where our kernels apply.
pub fn runs_on_flex(x: &Tensor<4>) -> bool {
    matches!(x.device().without_autodiff().as_dispatch(), DispatchDevice::Flex(_))
        && x.dtype() == DType::F32
}

/// A tensor argument that may be absent (the residual of a convolution without one).
#[derive(ExtensionType)]
pub enum Optional<B: Backend> {
    Given(FloatTensor<B>),
    Absent,
}

#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    fn fused_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        #[extension_type] residual: Optional<Self>,
        geometry: [usize; 2],
        apply_relu: bool,
    ) -> FloatTensor<Self>;

    fn nhwc_max_pool(x: FloatTensor<Self>, geometry: [usize; 3]) -> FloatTensor<Self>;
}

pub fn conv(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    residual: Option<Tensor<4>>,
    geometry: [usize; 2],
    apply_relu: bool,
) -> Tensor<4> {
    // No bias is a zero bias: an untracked constant, so no gradient is computed for it.
    let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[0]], &weight.device()));
    let residual = match residual {
        Some(residual) => Optional::Given(residual.into_dispatch()),
        None => Optional::Absent,
    };
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_conv(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        residual,
        geometry,
        apply_relu,
    ))
}

pub fn max_pool(x: Tensor<4>, geometry: [usize; 3]) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::nhwc_max_pool(x.into_dispatch(), geometry))
}

/// The f32 values of a flex tensor, in logical order.
fn values(tensor: &FlexTensor) -> FlexTensor {
    tensor.to_contiguous()
}

fn slice(tensor: &FlexTensor) -> &[f32] {
    tensor.as_slice::<f32>().expect("a contiguous f32 tensor")
}

fn flex_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn activation(apply_relu: bool) -> Activation {
    if apply_relu { Activation::Relu } else { Activation::Identity }
}

/// The geometry of convolving `x` (NHWC) with `weight` (`[c_out, c_in, k, k]`).
fn conv_shape(x: &FlexTensor, weight: &FlexTensor, [stride, padding]: [usize; 2]) -> ConvShape {
    let [batch, in_h, in_w, in_c] = x.shape().dims::<4>();
    let [out_c, weight_in, kernel_h, kernel_w] = weight.shape().dims::<4>();
    assert_eq!(
        in_c, weight_in,
        "the convolution's input has {in_c} channels, its weight {weight_in}"
    );
    let shape = ConvShape {
        batch,
        in_h,
        in_w,
        in_c,
        out_c,
        kernel_h,
        kernel_w,
        stride_h: stride,
        stride_w: stride,
        pad_h: padding,
        pad_w: padding,
    };
    if let Err(error) = shape.validate() {
        panic!("invalid convolution: {error}");
    }
    shape
}

/// The forward pass: the output and the contiguous inputs the backward pass needs.
fn conv_forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    residual: Option<FlexTensor>,
    geometry: [usize; 2],
    apply_relu: bool,
) -> ConvState {
    let (x, weight, bias) = (values(&x), values(&weight), values(&bias));
    let residual = residual.map(|r| values(&r));
    let shape = conv_shape(&x, &weight, geometry);
    let mut y = vec![0f32; shape.output_len()];
    fruitlab_kernels::conv2d_forward(
        crate::compute::arithmetic().gemm,
        &shape,
        slice(&x),
        slice(&weight),
        Some(slice(&bias)),
        residual.as_ref().map(slice),
        activation(apply_relu),
        &mut y,
    );
    let y = flex_tensor(y, [shape.batch, shape.out_h(), shape.out_w(), shape.out_c]);
    ConvState { x, weight, y, shape, apply_relu }
}

impl FusedOps for Flex {
    fn fused_conv(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        residual: Optional<Self>,
        geometry: [usize; 2],
        apply_relu: bool,
    ) -> FlexTensor {
        let residual = match residual {
            Optional::Given(r) => Some(r),
            Optional::Absent => None,
        };
        conv_forward(x, weight, bias, residual, geometry, apply_relu).y
    }

    fn nhwc_max_pool(x: FlexTensor, geometry: [usize; 3]) -> FlexTensor {
        pool_forward(x, geometry).0
    }
}

/// What a convolution's backward pass needs: its inputs, its output (for the ReLU mask)
/// and its geometry.
#[derive(Clone, Debug)]
struct ConvState {
    x: FlexTensor,
    weight: FlexTensor,
    y: FlexTensor,
    shape: ConvShape,
    apply_relu: bool,
}

/// The gradients of a fused convolution from the gradient `dy` of its output; registers
/// those of the tracked inputs: `[x, weight, bias, residual]`.
fn conv_backward(
    state: ConvState,
    parents: [Option<NodeId>; 4],
    dy: FlexTensor,
    grads: &mut Gradients,
) {
    let ConvState { x, weight, y, shape, apply_relu } = state;
    let [x_node, weight_node, bias_node, residual_node] = parents;
    // The gradient at the convolution's output, before the ReLU.
    let mut g = slice(&values(&dy)).to_vec();
    fruitlab_kernels::activation_backward(activation(apply_relu), slice(&y), &mut g);
    let output_dims = [shape.batch, shape.out_h(), shape.out_w(), shape.out_c];
    let gemm = crate::compute::arithmetic().gemm;
    if let Some(node) = bias_node {
        let db = fruitlab_kernels::bias_backward(&g, shape.out_c);
        grads.register::<Flex>(node, flex_tensor(db, [shape.out_c]));
    }
    if let Some(node) = x_node {
        let mut dx = vec![0f32; shape.input_len()];
        fruitlab_kernels::conv2d_backward_input(gemm, &shape, &g, slice(&weight), &mut dx);
        grads.register::<Flex>(
            node,
            flex_tensor(dx, [shape.batch, shape.in_h, shape.in_w, shape.in_c]),
        );
    }
    if let Some(node) = weight_node {
        let mut dw = vec![0f32; shape.weight_len()];
        fruitlab_kernels::conv2d_backward_weight(gemm, &shape, slice(&x), &g, &mut dw);
        let dims = [shape.out_c, shape.in_c, shape.kernel_h, shape.kernel_w];
        grads.register::<Flex>(node, flex_tensor(dw, dims));
    }
    if let Some(node) = residual_node {
        grads.register::<Flex>(node, flex_tensor(g, output_dims));
    }
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<ConvState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let [x, w, b] = ops.parents.map(|p| p.map(|node| node.id));
        conv_backward(ops.state, [x, w, b, None], dy, grads);
    }
}

#[derive(Debug)]
struct ConvAddBackward;

impl Backward<Flex, 4> for ConvAddBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<ConvState, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        conv_backward(ops.state, parents, dy, grads);
    }
}

/// Max pooling's output and the input index of each maximum.
fn pool_forward(x: FlexTensor, [kernel, stride, padding]: [usize; 3]) -> (FlexTensor, PoolState) {
    let x = values(&x);
    let [batch, in_h, in_w, channels] = x.shape().dims::<4>();
    let shape = PoolShape {
        batch,
        in_h,
        in_w,
        channels,
        kernel_h: kernel,
        kernel_w: kernel,
        stride_h: stride,
        stride_w: stride,
        pad_h: padding,
        pad_w: padding,
    };
    if let Err(error) = shape.validate() {
        panic!("invalid max pooling: {error}");
    }
    let mut y = vec![0f32; shape.output_len()];
    let mut argmax = vec![0u32; shape.output_len()];
    fruitlab_kernels::max_pool2d_forward(&shape, slice(&x), &mut y, &mut argmax);
    let y = flex_tensor(y, [batch, shape.out_h(), shape.out_w(), channels]);
    (y, PoolState { shape, argmax: Arc::new(argmax) })
}

#[derive(Clone, Debug)]
struct PoolState {
    shape: PoolShape,
    argmax: Arc<Vec<u32>>,
}

#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = PoolState;

    fn backward(self, ops: Ops<PoolState, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = values(&grads.consume::<Flex>(&ops.node));
        let [Some(node)] = ops.parents else { return };
        let PoolState { shape, argmax } = ops.state;
        let mut dx = vec![0f32; shape.input_len()];
        fruitlab_kernels::max_pool2d_backward(&shape, &argmax, slice(&dy), &mut dx);
        let dims = [shape.batch, shape.in_h, shape.in_w, shape.channels];
        grads.register::<Flex>(node.id, flex_tensor(dx, dims));
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn fused_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: Optional<Self>,
        geometry: [usize; 2],
        apply_relu: bool,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        let forward = |residual| {
            let state = conv_forward(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                residual,
                geometry,
                apply_relu,
            );
            (state.y.clone(), state)
        };
        match residual {
            Optional::Absent => {
                let kind = ConvBackward.prepare::<C>(nodes).compute_bound().stateful();
                record(kind, || forward(None))
            }
            Optional::Given(residual) => {
                let [x, weight, bias] = nodes;
                let nodes = [x, weight, bias, residual.node()];
                let kind = ConvAddBackward.prepare::<C>(nodes).compute_bound().stateful();
                record(kind, || forward(Some(residual.into_primitive())))
            }
        }
    }

    fn nhwc_max_pool(x: FloatTensor<Self>, geometry: [usize; 3]) -> FloatTensor<Self> {
        let kind = PoolBackward.prepare::<C>([x.node()]).compute_bound().stateful();
        record(kind, || pool_forward(x.into_primitive(), geometry))
    }
}

/// Registers an operation with autodiff: `forward` gives its output and the state its
/// backward pass needs, which is kept only when a gradient will be asked for.
fn record<BO, S, C, const N: usize>(
    kind: OpsKind<BO, Flex, S, C, N>,
    forward: impl FnOnce() -> (FlexTensor, S),
) -> FloatTensor<Autodiff<Flex, C>>
where
    BO: Backward<Flex, N, State = S>,
    S: Clone + Send + std::fmt::Debug + 'static,
    C: CheckpointStrategy,
{
    match kind {
        OpsKind::Tracked(prep) => {
            let (y, state) = forward();
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward().0),
    }
}
