//! Convolution geometry, kept in one place so every kernel and test agrees on sizes and limits.

use std::fmt;

/// Geometry of a 2-D convolution over NHWC activations with `[out_c, in_c, kh, kw]` weights.
///
/// Padding is symmetric zero padding; dilation is 1 and groups is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_c: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
}

/// Why a shape cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError(String);

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShapeError {}

impl ShapeError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl ConvShape {
    /// Output height: `(in_h + 2 * pad_h - kernel_h) / stride_h + 1`.
    pub fn out_h(&self) -> usize {
        out_len(self.in_h, self.pad_h, self.kernel_h, self.stride_h)
    }

    /// Output width: `(in_w + 2 * pad_w - kernel_w) / stride_w + 1`.
    pub fn out_w(&self) -> usize {
        out_len(self.in_w, self.pad_w, self.kernel_w, self.stride_w)
    }

    /// Floating-point operations of the forward pass (2 per multiply-add).
    pub fn flops(&self) -> f64 {
        2.0 * (self.out_pixels() * self.patch_len() * self.out_c) as f64
    }

    /// Elements of the input `x` (and of its gradient).
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }

    /// Elements of the output `y` (and of its gradient).
    pub fn output_len(&self) -> usize {
        self.out_pixels() * self.out_c
    }

    /// Elements of the weights (and of their gradient).
    pub fn weight_len(&self) -> usize {
        self.out_c * self.patch_len()
    }

    /// Checks that every size is positive and the kernel fits in the padded input.
    pub fn validate(&self) -> Result<(), ShapeError> {
        let sizes = [
            ("batch", self.batch),
            ("in_h", self.in_h),
            ("in_w", self.in_w),
            ("in_c", self.in_c),
            ("out_c", self.out_c),
            ("kernel_h", self.kernel_h),
            ("kernel_w", self.kernel_w),
            ("stride_h", self.stride_h),
            ("stride_w", self.stride_w),
        ];
        check_positive(&sizes)?;
        check_kernel_fits("height", self.in_h, self.pad_h, self.kernel_h)?;
        check_kernel_fits("width", self.in_w, self.pad_w, self.kernel_w)
    }

    /// Output pixels over the whole batch: the M of every GEMM.
    pub(crate) fn out_pixels(&self) -> usize {
        self.batch * self.out_h() * self.out_w()
    }

    /// Length of one receptive field, `kernel_h * kernel_w * in_c`: the K of the forward GEMM.
    pub(crate) fn patch_len(&self) -> usize {
        self.kernel_h * self.kernel_w * self.in_c
    }

    /// A 1x1 stride-1 unpadded convolution reads its patches straight from the input rows.
    pub(crate) fn is_pointwise(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_h == 0
            && self.pad_w == 0
    }

    /// Panics with a readable message unless the shape is valid and the slices match it.
    pub(crate) fn assert_lens(&self, lens: &[(&str, usize, usize)]) {
        if let Err(e) = self.validate() {
            panic!("invalid convolution shape {self:?}: {e}");
        }
        assert_lens(lens);
    }
}

/// Output length of one spatial dimension.
pub(crate) fn out_len(input: usize, pad: usize, kernel: usize, stride: usize) -> usize {
    (input + 2 * pad - kernel) / stride + 1
}

/// Errors on the first zero among named sizes.
pub(crate) fn check_positive(sizes: &[(&str, usize)]) -> Result<(), ShapeError> {
    match sizes.iter().find(|(_, v)| *v == 0) {
        Some((name, _)) => Err(ShapeError::new(format!("{name} must be positive"))),
        None => Ok(()),
    }
}

/// Errors when the kernel is larger than the padded input along one dimension.
pub(crate) fn check_kernel_fits(
    dim: &str,
    input: usize,
    pad: usize,
    kernel: usize,
) -> Result<(), ShapeError> {
    if kernel > input + 2 * pad {
        return Err(ShapeError::new(format!(
            "kernel {dim} {kernel} exceeds padded input {dim} {}",
            input + 2 * pad
        )));
    }
    Ok(())
}

/// Panics naming the first slice whose length differs from what the shape needs.
pub(crate) fn assert_lens(lens: &[(&str, usize, usize)]) {
    for &(name, actual, expected) in lens {
        assert_eq!(actual, expected, "{name} has {actual} elements, the shape needs {expected}");
    }
}
