//! The weight gradient: `dW = G^T * patches`, a GEMM whose inner dimension is every output
//! pixel of the batch, split across threads into private partial sums when that is cheaper than
//! letting gemm split the (small) output.

use rayon::prelude::*;

use crate::matmul::{Gemm, Parallelism, Rhs, View, ViewMut, product};
use crate::patches::patch_matrix;
use crate::scratch;
use crate::shape::ConvShape;
use crate::tiling::{TILE_PIXELS, Tiles};
use crate::weights::sum_into_oihw;

/// `dw = conv2d_forward`'s gradient with respect to `w`, given the forward input `x` and `g`,
/// the gradient at the convolution's output (after [`crate::activation_backward`]), the GEMMs
/// in the arithmetic `gemm`.
///
/// `x` is NHWC `[batch, in_h, in_w, in_c]`, `g` is NHWC `[batch, out_h, out_w, out_c]`, and
/// `dw` is `[out_c, in_c, kernel_h, kernel_w]` (overwritten). Runs on the current rayon pool.
///
/// # Panics
/// If the shape is invalid or a slice length does not match it.
pub fn conv2d_backward_weight(gemm: Gemm, s: &ConvShape, x: &[f32], g: &[f32], dw: &mut [f32]) {
    s.assert_lens(&[
        ("x", x.len(), s.input_len()),
        ("g", g.len(), s.output_len()),
        ("dw", dw.len(), s.weight_len()),
    ]);
    let threads = rayon::current_num_threads();
    // Pointwise patches are the input rows themselves: no buffer, so no reason for small tiles.
    let tile_pixels = if s.is_pointwise() { usize::MAX } else { TILE_PIXELS };
    let tiles = Tiles::plan(s, tile_pixels, threads, 1);
    // Private partials add a reduction of `threads` [out_c, patch_len] matrices. Measured on
    // ResNet-50 they pay off while the batch has more than threads * out_c pixels; below that
    // (deep layers, large weights) letting gemm split the output is faster.
    let split = threads > 1 && tiles.count() >= threads && s.out_pixels() > threads * s.out_c;
    let partials: Vec<Vec<f32>> = if split {
        (0..threads)
            .into_par_iter()
            .map(|part| {
                let share = part * tiles.count() / threads..(part + 1) * tiles.count() / threads;
                accumulate(gemm, s, x, g, &tiles, share, Parallelism::None)
            })
            .collect()
    } else {
        vec![accumulate(gemm, s, x, g, &tiles, 0..tiles.count(), Parallelism::Rayon(0))]
    };
    sum_into_oihw(s, &partials, dw);
}

/// Sums `G_tile^T * patches_tile` over the tiles `share`, into a fresh `[out_c, kh, kw, in_c]`.
fn accumulate(
    gemm: Gemm,
    s: &ConvShape,
    x: &[f32],
    g: &[f32],
    tiles: &Tiles,
    share: std::ops::Range<usize>,
    parallelism: Parallelism,
) -> Vec<f32> {
    let mut acc = vec![0.0; s.out_c * s.patch_len()];
    let col_len = if s.is_pointwise() { 0 } else { tiles.max_pixels() * s.patch_len() };
    let parallel = matches!(parallelism, Parallelism::Rayon(_));
    scratch::with_f32(col_len, |col| {
        for t in share {
            let pixels = tiles.pixels(t);
            let patches = patch_matrix(s, x, tiles.rows(t), col, parallel);
            let g_t = View::row_major(&g[pixels.start * s.out_c..], pixels.len(), s.out_c).t();
            let dst = ViewMut::row_major(&mut acc, s.out_c, s.patch_len());
            product(dst, true, g_t, &Rhs::new(gemm, patches), parallelism);
        }
    });
    acc
}
