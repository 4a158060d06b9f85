//! The activations fused into the forward epilogue, and their backward masks.

use rayon::prelude::*;

/// Floats per parallel job in element-wise passes: large enough to amortise scheduling.
const CHUNK: usize = 1 << 16;

/// Activation applied after bias and residual in [`crate::conv2d_forward`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Relu,
}

impl Activation {
    /// Applies the activation in place (called on a tile while it is still in cache).
    pub(crate) fn apply(self, values: &mut [f32]) {
        match self {
            Activation::Identity => {}
            // A select on `v < 0` rather than `max`: vectorises, and NaN propagates as in PyTorch.
            Activation::Relu => {
                values.iter_mut().for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v })
            }
        }
    }
}

/// Turns `dy` (the gradient at the activation's output) into the gradient at its input, in
/// place, using the saved forward output `y`: for Relu, `dy` where `y > 0`, else 0.
///
/// # Panics
/// If `y` and `dy` differ in length.
pub fn activation_backward(act: Activation, y: &[f32], dy: &mut [f32]) {
    assert_eq!(y.len(), dy.len(), "y and dy differ in length");
    match act {
        Activation::Identity => {}
        Activation::Relu => {
            dy.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).for_each(|(dy, y)| {
                for (d, &y) in dy.iter_mut().zip(y) {
                    *d = if y > 0.0 { *d } else { 0.0 };
                }
            });
        }
    }
}
