//! Weight layout changes between the public `[out_c, in_c, kh, kw]` layout and the layouts the
//! GEMMs want, whose patch dimension follows the (ky, kx, ci) order of NHWC patches.
//!
//! Deep layers have megabytes of weights and few pixels, so these copies are cache-blocked and
//! parallel rather than naive loops.

use std::borrow::Cow;

use rayon::prelude::*;

use crate::shape::ConvShape;

/// Output channels handled together by the transpose: one 64-byte cache line of output.
const CO_BLOCK: usize = 16;
/// Patch rows per parallel job of the transpose.
const ROWS_PER_JOB: usize = 64;

/// `[out_c, in_c, kh, kw]` to `[kh, kw, in_c, out_c]`: the forward GEMM's right-hand side in
/// the row-major form that gemm packs fastest (a transposed view runs ~1.5x slower).
pub(crate) fn to_hwio(s: &ConvShape, w: &[f32]) -> Vec<f32> {
    let taps = s.kernel_h * s.kernel_w;
    let (k, co) = (s.patch_len(), s.out_c);
    let mut out = vec![0.0; w.len()];
    out.par_chunks_mut(ROWS_PER_JOB * co).enumerate().for_each(|(job, rows)| {
        // Blocks of output channels keep the 16 source rows being read in cache while each
        // output row gets one full cache line at a time.
        for co0 in (0..co).step_by(CO_BLOCK) {
            let co1 = (co0 + CO_BLOCK).min(co);
            for (r, row) in rows.chunks_exact_mut(co).enumerate() {
                let patch_index = job * ROWS_PER_JOB + r;
                let (tap, ci) = (patch_index / s.in_c, patch_index % s.in_c);
                let source = ci * taps + tap;
                for (o, dst) in (co0..co1).zip(&mut row[co0..co1]) {
                    *dst = w[o * k + source];
                }
            }
        }
    });
    out
}

/// `[out_c, in_c, kh, kw]` to `[out_c, kh, kw, in_c]`, the input-gradient GEMM's right-hand
/// side; a 1x1 kernel is already both, so it is borrowed.
pub(crate) fn to_ohwi<'a>(s: &ConvShape, w: &'a [f32]) -> Cow<'a, [f32]> {
    let taps = s.kernel_h * s.kernel_w;
    if taps == 1 {
        return Cow::Borrowed(w);
    }
    let mut out = vec![0.0; w.len()];
    out.par_chunks_mut(s.patch_len()).zip(w.par_chunks(s.patch_len())).for_each(|(dst, src)| {
        for (ci, taps_of_ci) in src.chunks_exact(taps).enumerate() {
            for (tap, &v) in taps_of_ci.iter().enumerate() {
                dst[tap * s.in_c + ci] = v;
            }
        }
    });
    Cow::Owned(out)
}

/// Writes the sum of `[out_c, kh, kw, in_c]` partial gradients into `dw` as
/// `[out_c, in_c, kh, kw]`, folding the per-thread reduction into the layout change.
pub(crate) fn sum_into_oihw(s: &ConvShape, partials: &[Vec<f32>], dw: &mut [f32]) {
    let taps = s.kernel_h * s.kernel_w;
    dw.par_chunks_mut(s.patch_len()).enumerate().for_each(|(o, dst)| {
        let row = o * s.patch_len();
        for (ci, taps_of_ci) in dst.chunks_exact_mut(taps).enumerate() {
            for (tap, d) in taps_of_ci.iter_mut().enumerate() {
                *d = partials.iter().map(|p| p[row + tap * s.in_c + ci]).sum();
            }
        }
    });
}
