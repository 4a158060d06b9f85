//! The bias gradient: per-channel sums of the output gradient.

use rayon::prelude::*;

/// Pixels per parallel job: large enough to amortise scheduling.
const CHUNK_PIXELS: usize = 1024;

/// Sums the NHWC gradient `g` over every pixel of the batch, giving one value per channel.
///
/// Accumulates in f64: the sums run over up to batch x height x width pixels.
///
/// # Panics
/// If `out_c` is 0 or does not divide `g.len()`.
pub fn bias_backward(g: &[f32], out_c: usize) -> Vec<f32> {
    assert!(
        out_c > 0 && g.len().is_multiple_of(out_c),
        "g is not a whole number of {out_c}-channel pixels"
    );
    let sums = g
        .par_chunks(CHUNK_PIXELS * out_c)
        .fold(
            || vec![0.0f64; out_c],
            |mut acc, chunk| {
                for pixel in chunk.chunks_exact(out_c) {
                    acc.iter_mut().zip(pixel).for_each(|(a, &v)| *a += f64::from(v));
                }
                acc
            },
        )
        .reduce(
            || vec![0.0; out_c],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    sums.into_iter().map(|v| v as f32).collect()
}
