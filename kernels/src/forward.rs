//! The forward convolution with bias, residual and activation fused into each tile's GEMM, so
//! the output goes through memory once instead of once per element-wise pass.

use rayon::prelude::*;

use crate::activation::Activation;
use crate::matmul::{Gemm, Parallelism, Rhs, View, ViewMut, product};
use crate::patches::patch_matrix;
use crate::scratch;
use crate::shape::{ConvShape, assert_lens};
use crate::tiling::{TILE_PIXELS, Tiles};
use crate::weights::{to_hwio, to_ohwi};

/// What is added to and applied on the convolution's result.
struct Epilogue<'a> {
    bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
    act: Activation,
    out_c: usize,
}

impl Epilogue<'_> {
    /// Writes bias + residual into an output tile starting at pixel `first_pixel`, for the GEMM
    /// to accumulate onto. Returns whether it did, i.e. whether the GEMM must read the tile.
    fn prefill(&self, first_pixel: usize, y: &mut [f32]) -> bool {
        let residual = self.residual.map(|r| &r[first_pixel * self.out_c..][..y.len()]);
        match (self.bias, residual) {
            (None, None) => return false,
            (Some(b), None) => {
                y.chunks_exact_mut(self.out_c).for_each(|row| row.copy_from_slice(b))
            }
            (None, Some(r)) => y.copy_from_slice(r),
            (Some(b), Some(r)) => {
                for (row, r) in y.chunks_exact_mut(self.out_c).zip(r.chunks_exact(self.out_c)) {
                    row.iter_mut().zip(b.iter().zip(r)).for_each(|(y, (b, r))| *y = b + r);
                }
            }
        }
        true
    }
}

/// `y = act(conv(x, w) + bias + residual)`, the GEMMs in the arithmetic `gemm`.
///
/// `x` is NHWC `[batch, in_h, in_w, in_c]`, `w` is `[out_c, in_c, kernel_h, kernel_w]`, `bias`
/// has `out_c` values, and `residual` and `y` are NHWC `[batch, out_h, out_w, out_c]`.
/// Runs on the current rayon pool.
///
/// # Panics
/// If the shape is invalid or a slice length does not match it.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward(
    gemm: Gemm,
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Activation,
    y: &mut [f32],
) {
    s.assert_lens(&[
        ("x", x.len(), s.input_len()),
        ("w", w.len(), s.weight_len()),
        ("y", y.len(), s.output_len()),
    ]);
    if let Some(b) = bias {
        assert_lens(&[("bias", b.len(), s.out_c)]);
    }
    if let Some(r) = residual {
        assert_lens(&[("residual", r.len(), s.output_len())]);
    }
    let epilogue = Epilogue { bias, residual, act, out_c: s.out_c };
    // f32: the `[patch, out_c]` weights gemm packs fastest; bf16: packed straight from the
    // `[out_c, patch]` order (the stored one for 1x1 kernels, no copy).
    let hwio;
    let ohwi;
    let w = match gemm {
        Gemm::F32 => {
            hwio = to_hwio(s, w);
            Rhs::new(gemm, View::row_major(&hwio, s.patch_len(), s.out_c))
        }
        Gemm::Bf16(_) => {
            ohwi = to_ohwi(s, w);
            Rhs::new(gemm, View::row_major(&ohwi, s.out_c, s.patch_len()).t())
        }
    };

    let threads = rayon::current_num_threads();
    let tiles = Tiles::plan(s, TILE_PIXELS, threads, 1);
    let tile_len = tiles.max_pixels() * s.out_c;
    let col_len = if s.is_pointwise() { 0 } else { tiles.max_pixels() * s.patch_len() };
    let tile = |t: usize, col: &mut [f32], y: &mut [f32], parallelism| {
        let pixels = tiles.pixels(t);
        let parallel = matches!(parallelism, Parallelism::Rayon(_));
        let patches = patch_matrix(s, x, tiles.rows(t), col, parallel);
        let accumulate = epilogue.prefill(pixels.start, y);
        let out = ViewMut::row_major(y, pixels.len(), s.out_c);
        product(out, accumulate, patches, &w, parallelism);
        epilogue.act.apply(y);
    };
    if tiles.count() < threads {
        // Too few tiles to go round: one tile at a time, each GEMM on every thread.
        scratch::with_f32(col_len, |col| {
            for (t, y) in y.chunks_mut(tile_len).enumerate() {
                tile(t, col, y, Parallelism::Rayon(0));
            }
        });
    } else {
        y.par_chunks_mut(tile_len).enumerate().for_each(|(t, y)| {
            scratch::with_f32(col_len, |col| tile(t, col, y, Parallelism::None))
        });
    }
}
