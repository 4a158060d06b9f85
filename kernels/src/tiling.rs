//! Splits a convolution's output rows into tiles: small enough that a tile's patch matrix and
//! output stay in cache between the im2col, the GEMM and the epilogue, numerous enough that
//! every thread gets the same amount of work.

use std::ops::Range;

use crate::shape::ConvShape;

/// Output pixels per tile. Measured with gemm 0.19 on ResNet-50 shapes (K = 64 ... 4608,
/// N = 64 ... 2048, two threads): 256 beat 128 (weights repacked twice as often) and 512 on
/// every shape tried.
pub(crate) const TILE_PIXELS: usize = 256;

/// Equal runs of output rows, where a row is one `(image, out_y)` pair of the whole batch.
///
/// Tiles always hold whole rows, so a tile's input footprint is a contiguous range of input
/// rows; they may span several images, which keeps the GEMMs large for tiny feature maps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tiles {
    rows_per_tile: usize,
    total_rows: usize,
    out_w: usize,
}

impl Tiles {
    /// Tiles of about `tile_pixels` output pixels and at least `min_rows` rows, their count
    /// rounded up to a multiple of `multiple` (where there are enough rows) so that threads get
    /// equal shares.
    pub(crate) fn plan(
        shape: &ConvShape,
        tile_pixels: usize,
        multiple: usize,
        min_rows: usize,
    ) -> Self {
        let total_rows = shape.batch * shape.out_h();
        let out_w = shape.out_w();
        let min_rows = min_rows.max(1);
        let wanted_rows = tile_pixels.div_ceil(out_w).max(min_rows);
        let count = total_rows
            .div_ceil(wanted_rows)
            .next_multiple_of(multiple)
            .min(total_rows / min_rows)
            .max(1);
        let rows_per_tile = total_rows.div_ceil(count).max(min_rows);
        Self { rows_per_tile, total_rows, out_w }
    }

    pub(crate) fn count(&self) -> usize {
        self.total_rows.div_ceil(self.rows_per_tile)
    }

    /// Output rows of tile `t`.
    pub(crate) fn rows(&self, t: usize) -> Range<usize> {
        let start = t * self.rows_per_tile;
        start..(start + self.rows_per_tile).min(self.total_rows)
    }

    /// Output pixels of tile `t`, as indices into the flattened batch.
    pub(crate) fn pixels(&self, t: usize) -> Range<usize> {
        let rows = self.rows(t);
        rows.start * self.out_w..rows.end * self.out_w
    }

    /// Pixels of the largest tile: the size of per-thread scratch buffers.
    pub(crate) fn max_pixels(&self) -> usize {
        self.rows_per_tile * self.out_w
    }
}
