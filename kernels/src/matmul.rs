//! Bounds-checked strided matrix views over slices and the one safe entry point to `gemm::gemm`,
//! so the rest of the crate never touches raw pointers.

pub(crate) use gemm::Parallelism;

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
