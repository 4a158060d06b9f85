//! NHWC max pooling; the forward records each maximum's input index so the backward is a plain
//! scatter with no search.

use std::ops::Range;

use rayon::prelude::*;

use crate::shape::{ShapeError, assert_lens, check_kernel_fits, check_positive, out_len};

/// Geometry of a 2-D max pool over NHWC activations; padding counts as `-inf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShape {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
}

impl PoolShape {
    pub fn out_h(&self) -> usize {
        out_len(self.in_h, self.pad_h, self.kernel_h, self.stride_h)
    }

    pub fn out_w(&self) -> usize {
        out_len(self.in_w, self.pad_w, self.kernel_w, self.stride_w)
    }

    /// Elements of the input `x` (and of its gradient).
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.channels
    }

    /// Elements of the output `y`, its gradient and the argmax indices.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h() * self.out_w() * self.channels
    }

    /// Checks that every size is positive, the kernel fits in the padded input, and padding is
    /// at most half the kernel (as in PyTorch), so every window holds at least one real input.
    pub fn validate(&self) -> Result<(), ShapeError> {
        check_positive(&[
            ("batch", self.batch),
            ("in_h", self.in_h),
            ("in_w", self.in_w),
            ("channels", self.channels),
            ("kernel_h", self.kernel_h),
            ("kernel_w", self.kernel_w),
            ("stride_h", self.stride_h),
            ("stride_w", self.stride_w),
        ])?;
        if 2 * self.pad_h > self.kernel_h || 2 * self.pad_w > self.kernel_w {
            return Err(ShapeError::new("padding must be at most half the kernel"));
        }
        if u32::try_from(self.input_len()).is_err() {
            return Err(ShapeError::new("input too large for u32 argmax indices"));
        }
        check_kernel_fits("height", self.in_h, self.pad_h, self.kernel_h)?;
        check_kernel_fits("width", self.in_w, self.pad_w, self.kernel_w)
    }

    fn assert_lens(&self, lens: &[(&str, usize, usize)]) {
        if let Err(e) = self.validate() {
            panic!("invalid pooling shape {self:?}: {e}");
        }
        assert_lens(lens);
    }
}

/// Input positions (rows or columns) inside the window of output position `o`.
fn window(o: usize, stride: usize, pad: usize, kernel: usize, input: usize) -> Range<usize> {
    (o * stride).saturating_sub(pad)..(o * stride + kernel).saturating_sub(pad).min(input)
}

/// `y` = the maximum of each window, `argmax` = its flat index into `x`.
///
/// `x` is NHWC `[batch, in_h, in_w, channels]`; `y` and `argmax` are `[batch, out_h, out_w,
/// channels]`. Ties go to the first maximum in row-major window order; a NaN wins (as in
/// PyTorch). Runs on the current rayon pool.
///
/// # Panics
/// If the shape is invalid or a slice length does not match it.
pub fn max_pool2d_forward(s: &PoolShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    s.assert_lens(&[
        ("x", x.len(), s.input_len()),
        ("y", y.len(), s.output_len()),
        ("argmax", argmax.len(), s.output_len()),
    ]);
    let (out_h, out_w, c) = (s.out_h(), s.out_w(), s.channels);
    let row_len = out_w * c;
    y.par_chunks_mut(row_len).zip(argmax.par_chunks_mut(row_len)).enumerate().for_each(
        |(r, (y, argmax))| {
            let (n, oy) = (r / out_h, r % out_h);
            let rows = window(oy, s.stride_h, s.pad_h, s.kernel_h, s.in_h);
            for (ox, (y, argmax)) in
                y.chunks_exact_mut(c).zip(argmax.chunks_exact_mut(c)).enumerate()
            {
                let cols = window(ox, s.stride_w, s.pad_w, s.kernel_w, s.in_w);
                let pixel = |iy: usize, ix: usize| ((n * s.in_h + iy) * s.in_w + ix) * c;
                // Start from the first real input, so an all -inf window still has an argmax.
                let first = pixel(rows.start, cols.start);
                y.copy_from_slice(&x[first..][..c]);
                argmax.iter_mut().zip(first as u32..).for_each(|(a, i)| *a = i);
                for iy in rows.clone() {
                    for ix in cols.clone() {
                        let at = pixel(iy, ix);
                        let values = &x[at..][..c];
                        for ((y, a), (&v, i)) in
                            y.iter_mut().zip(argmax.iter_mut()).zip(values.iter().zip(at as u32..))
                        {
                            if v > *y || v.is_nan() {
                                *y = v;
                                *a = i;
                            }
                        }
                    }
                }
            }
        },
    );
}

/// `dx` = the gradient of [`max_pool2d_forward`] with respect to `x`: each `dy` value added at
/// its window's argmax. `dx` is overwritten. Runs on the current rayon pool, one image per job.
///
/// # Panics
/// If the shape is invalid, a slice length does not match it, or an index lies outside its
/// image.
pub fn max_pool2d_backward(s: &PoolShape, argmax: &[u32], dy: &[f32], dx: &mut [f32]) {
    s.assert_lens(&[
        ("argmax", argmax.len(), s.output_len()),
        ("dy", dy.len(), s.output_len()),
        ("dx", dx.len(), s.input_len()),
    ]);
    let image_in = s.in_h * s.in_w * s.channels;
    let image_out = s.out_h() * s.out_w() * s.channels;
    dx.par_chunks_mut(image_in)
        .zip(dy.par_chunks(image_out).zip(argmax.par_chunks(image_out)))
        .enumerate()
        .for_each(|(n, (dx, (dy, argmax)))| {
            dx.fill(0.0);
            let base = n * image_in;
            for (&g, &i) in dy.iter().zip(argmax) {
                let i = (i as usize).checked_sub(base).expect("argmax index outside its image");
                dx[i] += g;
            }
        });
}
