//! The network's two heavy operations on NHWC activations: a convolution with its bias,
//! residual addition and ReLU fused in, and max pooling. On the flex backend they run our own
//! kernels (the `fruitlab-kernels` crate), forward and backward, wired into burn as a backend
//! extension with a handwritten backward pass; on other backends (LibTorch, CUDA) they are
//! composed from burn's stock operations. One file on purpose (over 400 lines): each op's
//! forward, backward and stock-op version must agree, and are read side by side.

use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};

/// `act(conv(x, weight) + bias + residual)` on NHWC tensors: `x` is `[n, h, w, c_in]`,
/// `weight` `[c_out, c_in, k, k]` (burn's layout), the result `[n, h', w', c_out]`; square
/// kernel, stride and zero padding.
pub fn conv(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    residual: Option<Tensor<4>>,
    [stride, padding]: [usize; 2],
    apply_relu: bool,
) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if flex::runs_on_flex(&x) {
        return flex::conv(x, weight, bias, residual, [stride, padding], apply_relu);
    }
    stock_conv(x, weight, bias, residual, [stride, padding], apply_relu)
}

/// [`conv`] composed from burn's stock operations. The NHWC tensor seen as NCHW is a
/// channels-last view, which LibTorch convolves without copying.
fn stock_conv(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    residual: Option<Tensor<4>>,
    [stride, padding]: [usize; 2],
    apply_relu: bool,
) -> Tensor<4> {
    let y = conv2d(
        x.permute([0, 3, 1, 2]),
        weight,
        bias,
        ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1),
    )
    .permute([0, 2, 3, 1]);
    let y = match residual {
        Some(residual) => y + residual,
        None => y,
    };
    if apply_relu { relu(y) } else { y }
}

/// Max pooling of NHWC activations with a square window; padding never wins.
pub fn max_pool(x: Tensor<4>, [kernel, stride, padding]: [usize; 3]) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if flex::runs_on_flex(&x) {
        return flex::max_pool(x, [kernel, stride, padding]);
    }
    stock_max_pool(x, [kernel, stride, padding])
}

/// [`max_pool`] composed from burn's stock operations.
fn stock_max_pool(x: Tensor<4>, [kernel, stride, padding]: [usize; 3]) -> Tensor<4> {
    let options =
        MaxPoolOptions::new([kernel; 2]).with_stride([stride; 2]).with_padding([padding; 2]);
    max_pool2d(x.permute([0, 3, 1, 2]), options).permute([0, 2, 3, 1])
}

#[cfg(feature = "flex")]
mod flex {
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
        if let Some(node) = bias_node {
            let db = fruitlab_kernels::bias_backward(&g, shape.out_c);
            grads.register::<Flex>(node, flex_tensor(db, [shape.out_c]));
        }
        if let Some(node) = x_node {
            let mut dx = vec![0f32; shape.input_len()];
            fruitlab_kernels::conv2d_backward_input(&shape, &g, slice(&weight), &mut dx);
            grads.register::<Flex>(
                node,
                flex_tensor(dx, [shape.batch, shape.in_h, shape.in_w, shape.in_c]),
            );
        }
        if let Some(node) = weight_node {
            let mut dw = vec![0f32; shape.weight_len()];
            fruitlab_kernels::conv2d_backward_weight(&shape, slice(&x), &g, &mut dw);
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
    fn pool_forward(
        x: FlexTensor,
        [kernel, stride, padding]: [usize; 3],
    ) -> (FlexTensor, PoolState) {
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
}

/// Our kernels against burn's stock operations on the same autodiff device: outputs and the
/// gradients of every input, for every kind of convolution ResNet-50 has (7x7/2 stem with 3
/// channels, 1x1 at strides 1 and 2, 3x3 at strides 1 and 2), odd sizes, with and without
/// bias, residual and ReLU; and max pooling.
#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::*;

    /// Largest relative L2 difference allowed: both compute in f32, in different orders.
    const TOLERANCE: f64 = 1e-4;

    fn relative(a: Tensor<4>, b: Tensor<4>) -> f64 {
        let a: Vec<f32> = a.into_data().try_into_vec().unwrap();
        let b: Vec<f32> = b.into_data().try_into_vec().unwrap();
        let diff: f64 = a.iter().zip(&b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
        (diff / norm.max(1e-30)).sqrt()
    }

    fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    #[test]
    fn convolutions_match_burns_forward_and_backward() {
        let device = Device::flex().autodiff();
        // (batch, size, in, out, kernel, stride, bias, residual, relu)
        let cases = [
            (2, 13, 3, 8, 7, 2, true, false, true),
            (2, 7, 16, 24, 1, 1, true, true, true),
            (3, 9, 16, 8, 1, 2, true, false, false),
            (2, 7, 8, 8, 3, 1, false, false, true),
            (1, 9, 8, 12, 3, 2, true, false, true),
            (2, 4, 32, 16, 3, 1, true, true, false),
        ];
        for (batch, size, c_in, c_out, kernel, stride, with_bias, with_residual, apply_relu) in
            cases
        {
            let x = random([batch, size, size, c_in], &device).require_grad();
            let w = random([c_out, c_in, kernel, kernel], &device).mul_scalar(0.3).require_grad();
            let b = with_bias.then(|| random([c_out], &device).require_grad());
            let out = (size + 2 * (kernel / 2) - kernel) / stride + 1;
            let r = with_residual.then(|| random([batch, out, out, c_out], &device).require_grad());
            let geometry = [stride, kernel / 2];
            let probe = random([batch, out, out, c_out], &device);
            let run = |ours: bool| {
                let y = if ours {
                    conv(x.clone(), w.clone(), b.clone(), r.clone(), geometry, apply_relu)
                } else {
                    stock_conv(x.clone(), w.clone(), b.clone(), r.clone(), geometry, apply_relu)
                };
                let grads = (y.clone() * probe.clone()).sum().backward();
                let dx = x.grad(&grads).unwrap();
                let dw = w.grad(&grads).unwrap();
                let db = b.as_ref().map(|b| b.grad(&grads).unwrap().reshape([1, 1, 1, c_out]));
                let dr = r.as_ref().map(|r| r.grad(&grads).unwrap());
                (y.detach(), dx, dw, db, dr)
            };
            let (ours, theirs) = (run(true), run(false));
            let case = format!("{kernel}x{kernel}/{stride}, {c_in}->{c_out}, {size}px");
            for (name, a, b) in
                [("output", ours.0, theirs.0), ("dx", ours.1, theirs.1), ("dw", ours.2, theirs.2)]
            {
                let error = relative(a, b);
                assert!(error < TOLERANCE, "{case}: {name} differs by {error:e}");
            }
            for (name, a, b) in [("dbias", ours.3, theirs.3), ("dresidual", ours.4, theirs.4)] {
                if let (Some(a), Some(b)) = (a, b) {
                    let error = relative(a, b);
                    assert!(error < TOLERANCE, "{case}: {name} differs by {error:e}");
                }
            }
        }
    }

    #[test]
    fn max_pooling_matches_burns_forward_and_backward() {
        let device = Device::flex().autodiff();
        for size in [7, 8, 25] {
            let x = random([2, size, size, 5], &device).require_grad();
            let run = |ours: bool| {
                let y = if ours {
                    max_pool(x.clone(), [3, 2, 1])
                } else {
                    stock_max_pool(x.clone(), [3, 2, 1])
                };
                let grads = y.clone().sum().backward();
                (y.detach(), x.grad(&grads).unwrap())
            };
            let (ours, theirs) = (run(true), run(false));
            assert!(relative(ours.0, theirs.0) < TOLERANCE, "{size}px output");
            assert!(relative(ours.1, theirs.1) < TOLERANCE, "{size}px gradient");
        }
    }
}
