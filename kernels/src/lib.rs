//! Fast CPU kernels for training ResNet-50 on NHWC f32 activations: convolutions (forward with
//! fused bias, residual and ReLU; input and weight gradients) and max pooling.
//!
//! Every convolution is a GEMM: pointwise convolutions directly, others through im2col on
//! cache-sized tiles of output rows. In f32 the GEMMs are the `gemm` crate's run-time
//! dispatched (AVX-512 / AVX2 / scalar) ones; in bf16 ([`Gemm::Bf16`]) they are ours, on AMX
//! tiles or AVX512-BF16 vectors ([`bf16`]). All functions run on the current rayon pool,
//! whose size the caller chooses.

mod activation;
mod backward_input;
mod backward_weight;
pub mod bf16;
mod bias;
mod forward;
mod matmul;
mod patches;
mod pool;
mod scratch;
mod shape;
mod tiling;
mod weights;

pub use activation::{Activation, activation_backward};
pub use backward_input::conv2d_backward_input;
pub use backward_weight::conv2d_backward_weight;
pub use bias::bias_backward;
pub use forward::conv2d_forward;
pub use matmul::Gemm;
pub use pool::{PoolShape, max_pool2d_backward, max_pool2d_forward};
pub use shape::{ConvShape, ShapeError};
