//! The network's two heavy operations on NHWC activations: a convolution with its bias,
//! residual addition and ReLU fused in, and max pooling. On the flex backend they run our own
//! kernels (the `fruitlab-kernels` crate), forward and backward, wired into burn as a backend
//! extension with a handwritten backward pass; on other backends (LibTorch, CUDA) they are
//! composed from burn's stock operations (here). The flex side is `flex.rs`; `tests.rs`
//! checks one against the other, forward and backward.

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
mod flex;

#[cfg(all(test, feature = "flex"))]
mod tests;
