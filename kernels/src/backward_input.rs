//! The input gradient: per tile, a GEMM into patch gradients, then a scatter-add (col2im) into
//! `dx`, with tiles scheduled so that no two threads ever add into the same part of `dx`.

use std::ops::Range;

use rayon::prelude::*;

use crate::matmul::{Gemm, Parallelism, Rhs, View, ViewMut, product};
use crate::patches::scatter_add;
use crate::scratch;
use crate::shape::ConvShape;
use crate::tiling::{TILE_PIXELS, Tiles};
use crate::weights::to_ohwi;

/// Floats per parallel job when zeroing `dx`.
const ZERO_CHUNK: usize = 1 << 16;

/// `dx = conv2d_forward`'s gradient with respect to `x`, given `g`, the gradient at the
/// convolution's output (after [`crate::activation_backward`]), the GEMMs in the arithmetic
/// `gemm`.
///
/// `g` is NHWC `[batch, out_h, out_w, out_c]`, `w` is `[out_c, in_c, kernel_h, kernel_w]`, and
/// `dx` is NHWC `[batch, in_h, in_w, in_c]` (overwritten). Runs on the current rayon pool.
///
/// # Panics
/// If the shape is invalid or a slice length does not match it.
pub fn conv2d_backward_input(gemm: Gemm, s: &ConvShape, g: &[f32], w: &[f32], dx: &mut [f32]) {
    s.assert_lens(&[
        ("g", g.len(), s.output_len()),
        ("w", w.len(), s.weight_len()),
        ("dx", dx.len(), s.input_len()),
    ]);
    if s.is_pointwise() {
        // dX[pixels, in_c] = G[pixels, out_c] * W[out_c, in_c]: one GEMM, no scatter.
        let pixels = s.out_pixels();
        let g = View::row_major(g, pixels, s.out_c);
        let w = Rhs::new(gemm, View::row_major(w, s.out_c, s.in_c));
        product(ViewMut::row_major(dx, pixels, s.in_c), false, g, &w, Parallelism::Rayon(0));
        return;
    }
    let w = to_ohwi(s, w);
    let w = Rhs::new(gemm, View::row_major(&w, s.out_c, s.patch_len()));

    // When the kernel is taller than the stride, the footprints of neighbouring tiles overlap:
    // run even tiles, then odd ones. Tiles of at least kernel_h / stride_h rows keep tiles
    // two apart disjoint.
    let phases = if s.kernel_h > s.stride_h { 2 } else { 1 };
    let threads = rayon::current_num_threads();
    let min_rows = s.kernel_h.div_ceil(s.stride_h);
    let tiles = Tiles::plan(s, TILE_PIXELS, threads * phases, min_rows);
    let dcol_len = tiles.max_pixels() * s.patch_len();

    dx.par_chunks_mut(ZERO_CHUNK).for_each(|c| c.fill(0.0));
    let tile = |t: usize, dcol: &mut [f32], dx: &mut [f32], dx_start, parallelism| {
        let pixels = tiles.pixels(t);
        let dcol = &mut dcol[..pixels.len() * s.patch_len()];
        let g = View::row_major(&g[pixels.start * s.out_c..], pixels.len(), s.out_c);
        let out = ViewMut::row_major(dcol, pixels.len(), s.patch_len());
        product(out, false, g, &w, parallelism);
        scatter_add(s, dcol, tiles.rows(t), dx, dx_start);
    };
    for phase in 0..phases {
        let jobs = split_footprints(s, &tiles, (phase..tiles.count()).step_by(phases), dx);
        if jobs.len() < threads {
            // Too few tiles to go round: one tile at a time, each GEMM on every thread.
            scratch::with_f32(dcol_len, |dcol| {
                for (t, dx, dx_start) in jobs {
                    tile(t, dcol, dx, dx_start, Parallelism::Rayon(0));
                }
            });
        } else {
            jobs.into_par_iter().for_each(|(t, dx, dx_start)| {
                scratch::with_f32(dcol_len, |dcol| tile(t, dcol, dx, dx_start, Parallelism::None))
            });
        }
    }
}

/// Flat range of `dx` that the receptive fields of tile `t`'s output rows cover.
fn footprint(s: &ConvShape, tiles: &Tiles, t: usize) -> Range<usize> {
    let rows = tiles.rows(t);
    let out_h = s.out_h();
    let row_len = s.in_w * s.in_c;
    let (first_n, first_oy) = (rows.start / out_h, rows.start % out_h);
    let (last_n, last_oy) = ((rows.end - 1) / out_h, (rows.end - 1) % out_h);
    let first_iy = (first_oy * s.stride_h).saturating_sub(s.pad_h).min(s.in_h);
    let end_iy = (last_oy * s.stride_h + s.kernel_h).saturating_sub(s.pad_h).min(s.in_h);
    (first_n * s.in_h + first_iy) * row_len..(last_n * s.in_h + end_iy) * row_len
}

/// Splits `dx` into the footprints of `tiles_of_phase`, as `(tile, window, window start)`.
///
/// The footprints must be increasing and disjoint (the phase schedule guarantees it); the
/// borrow checker then proves that the threads writing them cannot race.
fn split_footprints<'a>(
    s: &ConvShape,
    tiles: &Tiles,
    tiles_of_phase: impl Iterator<Item = usize>,
    dx: &'a mut [f32],
) -> Vec<(usize, &'a mut [f32], usize)> {
    let mut rest = dx;
    let mut rest_start = 0;
    let mut jobs = Vec::new();
    for t in tiles_of_phase {
        let span = footprint(s, tiles, t);
        let gap = span.start.checked_sub(rest_start).expect("tile footprints overlap");
        let (window, tail) = std::mem::take(&mut rest)[gap..].split_at_mut(span.len());
        jobs.push((t, window, span.start));
        rest = tail;
        rest_start = span.end;
    }
    jobs
}
