//! Bounds-checked strided matrix views over slices and the one entry point of every product:
//! `gemm::gemm` for f32, our bf16 kernels for bf16, so the rest of the crate never touches raw
//! pointers.

pub(crate) use gemm::Parallelism;

use crate::bf16::{self, Bf16Kernel, PackedRhs};

/// The arithmetic of a convolution's GEMMs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gemm {
    /// f32 inputs and accumulation (the `gemm` crate, dispatched to AVX-512, AVX2 or scalar).
    F32,
    /// bf16 inputs, f32 accumulation, on this kernel.
    Bf16(Bf16Kernel),
}

impl Gemm {
    /// The code path, as the run header and reports say it.
    pub fn name(self) -> &'static str {
        match self {
            Gemm::F32 if is_x86_feature_detected!("avx512f") => "fp32 AVX-512",
            Gemm::F32 if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") => {
                "fp32 AVX2"
            }
            Gemm::F32 => "fp32 portable",
            Gemm::Bf16(kernel) => kernel.name(),
        }
    }
}

/// The right operand of repeated products (a convolution's weights, a tile's patches): as it
/// is for f32, packed into bf16 tiles once for bf16.
pub(crate) enum Rhs<'a> {
    F32(View<'a>),
    Bf16(Bf16Kernel, PackedRhs),
}

impl<'a> Rhs<'a> {
    pub(crate) fn new(gemm: Gemm, view: View<'a>) -> Self {
        match gemm {
            Gemm::F32 => Rhs::F32(view),
            Gemm::Bf16(kernel) => Rhs::Bf16(kernel, PackedRhs::pack(view)),
        }
    }
}

/// `dst = lhs * rhs`, or `dst += lhs * rhs` when `accumulate`, in the arithmetic `rhs` was
/// prepared for.
pub(crate) fn product(
    dst: ViewMut<'_>,
    accumulate: bool,
    lhs: View<'_>,
    rhs: &Rhs<'_>,
    parallelism: Parallelism,
) {
    match rhs {
        Rhs::F32(rhs) => matmul(dst, accumulate, lhs, *rhs, parallelism),
        Rhs::Bf16(kernel, packed) => {
            let parallel = matches!(parallelism, Parallelism::Rayon(_));
            bf16::matmul(*kernel, dst, accumulate, lhs, packed, parallel)
        }
    }
}

/// A read-only strided matrix inside a slice.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// A writable strided matrix inside a slice.
pub(crate) struct ViewMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> View<'a> {
    /// The contiguous row-major `rows x cols` matrix at the start of `data`.
    pub(crate) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "view exceeds its slice");
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Whether each row's elements are contiguous.
    pub(crate) fn is_row_major(&self) -> bool {
        self.col_stride == 1
    }

    /// Row `r` of a row-major view.
    pub(crate) fn row(&self, r: usize) -> &'a [f32] {
        assert!(self.is_row_major() && r < self.rows, "not a row of a row-major view");
        &self.data[r * self.row_stride..r * self.row_stride + self.cols]
    }

    /// Rows `rows` of column `c` of a column-major view.
    pub(crate) fn column(&self, c: usize, rows: std::ops::Range<usize>) -> &'a [f32] {
        assert!(self.row_stride == 1 && c < self.cols, "not a column of a column-major view");
        if rows.is_empty() {
            return &[];
        }
        assert!(rows.end <= self.rows, "rows past the view");
        &self.data[c * self.col_stride + rows.start..c * self.col_stride + rows.end]
    }

    /// A pointer to element (`r`, `c`) after checking that the block of `rows` x `cols`
    /// elements from there lies inside the view, and the strides to walk it.
    pub(crate) fn block(
        &self,
        r: usize,
        c: usize,
        rows: usize,
        cols: usize,
    ) -> (*const f32, usize, usize) {
        assert!(
            r + rows <= self.rows && c + cols <= self.cols && rows > 0 && cols > 0,
            "block past the view"
        );
        let last = (r + rows - 1) * self.row_stride + (c + cols - 1) * self.col_stride;
        assert!(last < self.data.len(), "block past the slice");
        (
            self.data[r * self.row_stride + c * self.col_stride..].as_ptr(),
            self.row_stride,
            self.col_stride,
        )
    }

    /// The element at row `r`, column `c`.
    #[inline]
    pub(crate) fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.row_stride + c * self.col_stride]
    }

    /// The transpose, as a view of the same memory.
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

impl<'a> ViewMut<'a> {
    /// The contiguous row-major `rows x cols` matrix at the start of `data`.
    pub(crate) fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "view exceeds its slice");
        Self { data, rows, cols, row_stride: cols }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    pub(crate) fn row_stride(&self) -> usize {
        self.row_stride
    }

    /// The slice the view lies in, at least `(rows - 1) * row_stride + cols` long.
    pub(crate) fn into_slice(self) -> &'a mut [f32] {
        self.data
    }
}

/// `dst = lhs * rhs`, or `dst += lhs * rhs` when `accumulate`.
///
/// `Parallelism::None` keeps the call on the current thread (the caller parallelises over
/// tiles); `Parallelism::Rayon(0)` lets gemm split the product over the current rayon pool.
pub(crate) fn matmul(
    dst: ViewMut<'_>,
    accumulate: bool,
    lhs: View<'_>,
    rhs: View<'_>,
    parallelism: Parallelism,
) {
    assert_eq!(dst.rows, lhs.rows, "dst and lhs row counts differ");
    assert_eq!(dst.cols, rhs.cols, "dst and rhs column counts differ");
    assert_eq!(lhs.cols, rhs.rows, "lhs columns and rhs rows differ");
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: every view is a (possibly transposed) contiguous row-major matrix whose
    // constructor checked `rows * cols <= len`, so every index gemm forms from these sizes and
    // strides lies inside the borrowed slices; `dst` is a unique
    // borrow, so it cannot alias `lhs` or `rhs`; all strides are far below `isize::MAX` because
    // they index existing slices. gemm reads `dst` only when `accumulate` (read_dst) is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            dst.row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
