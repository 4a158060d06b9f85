//! NHWC im2col for a tile of output rows, and its adjoint (col2im scatter-add), so that every
//! convolution becomes a GEMM over a cache-sized patch matrix.
//!
//! A patch is ordered (ky, kx, ci): in NHWC the in-bounds taps of one kernel row are one
//! contiguous run of input memory, so a patch is a handful of `memcpy`s rather than a loop
//! over single floats.

use std::ops::Range;

use rayon::prelude::*;

use crate::matmul::View;
use crate::shape::ConvShape;

/// Kernel taps `t` whose input index `o * stride + t - pad` lies inside `0..input`.
fn valid_taps(o: usize, stride: usize, pad: usize, kernel: usize, input: usize) -> Range<usize> {
    let start = o * stride;
    let lo = pad.saturating_sub(start).min(kernel);
    let hi = (input + pad).saturating_sub(start).min(kernel).max(lo);
    lo..hi
}

/// The in-bounds part of one output pixel's receptive field.
struct Patch {
    ys: Range<usize>,
    xs: Range<usize>,
    /// Flat input index of the first in-bounds tap (0 when there is none).
    first: usize,
}

/// One kernel row's in-bounds taps: `len` floats at `x_at` in the input, at `col_at` in the patch.
struct Run {
    x_at: usize,
    col_at: usize,
    len: usize,
}

impl Patch {
    fn new(s: &ConvShape, n: usize, oy: usize, ox: usize) -> Self {
        let ys = valid_taps(oy, s.stride_h, s.pad_h, s.kernel_h, s.in_h);
        let xs = valid_taps(ox, s.stride_w, s.pad_w, s.kernel_w, s.in_w);
        if ys.is_empty() || xs.is_empty() {
            // Entirely in the padding: no runs at all.
            return Self { ys: 0..0, xs: 0..0, first: 0 };
        }
        let iy = oy * s.stride_h + ys.start - s.pad_h;
        let ix = ox * s.stride_w + xs.start - s.pad_w;
        let first = ((n * s.in_h + iy) * s.in_w + ix) * s.in_c;
        Self { ys, xs, first }
    }

    /// Whether no tap falls into the padding (so the patch needs no zero fill).
    fn is_complete(&self, s: &ConvShape) -> bool {
        self.ys.len() == s.kernel_h && self.xs.len() == s.kernel_w
    }

    fn runs(&self, s: &ConvShape) -> impl Iterator<Item = Run> {
        let len = self.xs.len() * s.in_c;
        let row_stride = s.in_w * s.in_c;
        let (first, ys_start, xs_start) = (self.first, self.ys.start, self.xs.start);
        let (kernel_w, in_c) = (s.kernel_w, s.in_c);
        self.ys.clone().map(move |ky| Run {
            x_at: first + (ky - ys_start) * row_stride,
            col_at: (ky * kernel_w + xs_start) * in_c,
            len,
        })
    }
}

/// `(image, out_y, out_x)` of every pixel of the output rows `rows`, in memory order.
fn pixels(s: &ConvShape, rows: Range<usize>) -> impl Iterator<Item = (usize, usize, usize)> {
    let (out_h, out_w) = (s.out_h(), s.out_w());
    rows.flat_map(move |r| (0..out_w).map(move |ox| (r / out_h, r % out_h, ox)))
}

/// Writes the patches of the output rows `rows` into `col`, one `patch_len` row per pixel.
fn gather(s: &ConvShape, x: &[f32], rows: Range<usize>, col: &mut [f32]) {
    for ((n, oy, ox), dst) in pixels(s, rows).zip(col.chunks_exact_mut(s.patch_len())) {
        let patch = Patch::new(s, n, oy, ox);
        if !patch.is_complete(s) {
            dst.fill(0.0);
        }
        for run in patch.runs(s) {
            dst[run.col_at..][..run.len].copy_from_slice(&x[run.x_at..][..run.len]);
        }
    }
}

/// The patch matrix (`pixels x patch_len`) of the output rows `rows`.
///
/// Pointwise convolutions read it straight from `x`; others gather it into `col`, over the
/// rayon pool when `parallel` (used when a single tile is being computed by all threads).
pub(crate) fn patch_matrix<'a>(
    s: &ConvShape,
    x: &'a [f32],
    rows: Range<usize>,
    col: &'a mut [f32],
    parallel: bool,
) -> View<'a> {
    let pixels = rows.len() * s.out_w();
    if s.is_pointwise() {
        let first = rows.start * s.out_w() * s.in_c;
        return View::row_major(&x[first..], pixels, s.in_c);
    }
    let col = &mut col[..pixels * s.patch_len()];
    if parallel {
        let row_len = s.out_w() * s.patch_len();
        col.par_chunks_mut(row_len).zip(rows).for_each(|(c, r)| gather(s, x, r..r + 1, c));
    } else {
        gather(s, x, rows, col);
    }
    View::row_major(col, pixels, s.patch_len())
}

/// Adds the patch gradients `dcol` of the output rows `rows` into `dx`, a window of the input
/// gradient starting at flat index `dx_start` that covers all of those rows' receptive fields.
pub(crate) fn scatter_add(
    s: &ConvShape,
    dcol: &[f32],
    rows: Range<usize>,
    dx: &mut [f32],
    dx_start: usize,
) {
    for ((n, oy, ox), src) in pixels(s, rows).zip(dcol.chunks_exact(s.patch_len())) {
        let patch = Patch::new(s, n, oy, ox);
        for run in patch.runs(s) {
            let dst = &mut dx[run.x_at - dx_start..][..run.len];
            for (d, v) in dst.iter_mut().zip(&src[run.col_at..][..run.len]) {
                *d += v;
            }
        }
    }
}
