//! Packing f32 operands into the bf16 tiles the micro-kernels read, rounding on the way (so
//! no separate conversion pass touches the activations): one routine per operand layout.
//!
//! Both micro-kernels (AMX and AVX512-BF16) read the same two layouts:
//! - the left operand in **row tiles**: 16 rows x 32 k-values, each row 64 bytes;
//! - the right operand in **pair tiles** (Intel's "VNNI" layout): 16 rows of k-pairs x 16
//!   columns, each row holding `(B[2p][c], B[2p + 1][c])` for c in 0..16.
//!
//! A packed operand is a grid of such tiles, `k_tiles` consecutive tiles per 16 rows (left)
//! or 16 columns (right), zero-padded to whole tiles: padding adds zero products.

use std::ops::Range;

use crate::matmul::View;

/// Rows of a tile, and columns of a right-operand tile.
pub(crate) const TILE_ROWS: usize = 16;
/// k-values of a tile row.
pub(crate) const TILE_K: usize = 32;
/// bf16 values per tile (1 KiB).
pub(crate) const TILE_LEN: usize = TILE_ROWS * TILE_K;

/// The bf16 bits of `x`, rounded to the nearest even value (as `vcvtne2ps2bf16` does); NaN
/// stays a (quiet) NaN.
#[inline]
pub(crate) fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounding = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// The f32 value of bf16 bits.
#[inline]
#[cfg(test)]
pub(crate) fn from_bf16(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// Tiles needed to cover `len` values in steps of `step`.
pub(crate) fn tiles(len: usize, step: usize) -> usize {
    len.div_ceil(step)
}

/// Tiles of `len` rows (or columns), rounded up to whole blocks: the micro-kernels take two
/// at a time.
pub(crate) fn padded_tiles(len: usize) -> usize {
    tiles(len, TILE_ROWS).next_multiple_of(2)
}

/// The right operand, packed once and read by every row block of the product.
pub struct PackedRhs {
    data: Vec<u16>,
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) k_tiles: usize,
}

impl PackedRhs {
    /// The pair tiles of `B` (`k x n`, row-major or column-major), rounded to bf16.
    pub(crate) fn pack(b: View<'_>) -> Self {
        let (k, n) = (b.rows(), b.cols());
        let (k_tiles, n_tiles) = (tiles(k, TILE_K), padded_tiles(n));
        // Every element is written below (padding included) before anything reads it, so a
        // buffer of an earlier product serves without being cleared.
        let mut data = crate::scratch::take_bf16(n_tiles * k_tiles * TILE_LEN);
        // One column block (16 columns, every k) per job: independent, so in parallel.
        use rayon::prelude::*;
        data.par_chunks_mut(k_tiles * TILE_LEN).enumerate().for_each(|(nt, block)| {
            for (kt, tile) in block.chunks_exact_mut(TILE_LEN).enumerate() {
                if b.is_row_major() {
                    pair_tile(b, kt, nt, tile);
                } else {
                    transposed_pair_tile(b, kt, nt, tile);
                }
            }
        });
        Self { data, k, n, k_tiles }
    }

    /// The tiles of column block `nt` (16 columns), `k_tiles` of them in k order.
    pub(crate) fn column_block(&self, nt: usize) -> &[u16] {
        &self.data[nt * self.k_tiles * TILE_LEN..(nt + 1) * self.k_tiles * TILE_LEN]
    }
}

impl Drop for PackedRhs {
    fn drop(&mut self) {
        crate::scratch::give_bf16(std::mem::take(&mut self.data));
    }
}

/// bf16 values of the row tiles of `rows` rows of `k` values.
pub(crate) fn lhs_len(rows: usize, k: usize) -> usize {
    padded_tiles(rows) * tiles(k, TILE_K) * TILE_LEN
}

/// Packs rows `rows` of `A` (`m x k`) into row tiles at the start of `out` (at least
/// [`lhs_len`] long): tile `(mt, kt)` of the panel at `(mt * k_tiles + kt) * TILE_LEN`, rows
/// past the matrix zero. Every tile is written whole, so `out` needs no clearing.
pub(crate) fn pack_lhs(a: View<'_>, rows: Range<usize>, out: &mut [u16]) {
    let k_tiles = tiles(a.cols(), TILE_K);
    let out = &mut out[..lhs_len(rows.len(), a.cols())];
    for (mt, panel) in out.chunks_exact_mut(k_tiles * TILE_LEN).enumerate() {
        let first = rows.start + mt * TILE_ROWS;
        let tile_rows = first..(first + TILE_ROWS).min(rows.end).max(first);
        for (kt, tile) in panel.chunks_exact_mut(TILE_LEN).enumerate() {
            if a.is_row_major() {
                row_tile(a, tile_rows.clone(), kt, tile);
            } else {
                column_tile(a, tile_rows.clone(), kt, tile);
            }
        }
    }
}

/// Whether the vector packers can run: they round with `vcvtne2ps2bf16`, which every CPU
/// with a bf16 kernel has.
fn vector_packing() -> bool {
    static VECTOR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VECTOR.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512bf16")
    })
}

/// Row tile `kt` of the rows `rows` (at most 16) of a row-major `a`.
fn row_tile(a: View<'_>, rows: Range<usize>, kt: usize, tile: &mut [u16]) {
    let k = a.cols();
    if vector_packing() && rows.len() == TILE_ROWS && (kt + 1) * TILE_K <= k {
        let (base, stride, _) = a.block(rows.start, kt * TILE_K, TILE_ROWS, TILE_K);
        // SAFETY: the whole tile lies inside the view (checked by `block`); the CPU has the
        // instructions (checked).
        unsafe { simd::convert_rows(base, stride, tile, false) }
        return;
    }
    let ks = kt * TILE_K..((kt + 1) * TILE_K).min(k);
    for (r, out) in tile.chunks_exact_mut(TILE_K).enumerate() {
        let row = rows.start + r;
        if row >= rows.end {
            out.fill(0);
            continue;
        }
        let source = &a.row(row)[ks.clone()];
        if vector_packing() {
            // SAFETY: the CPU has the instructions (checked); `source` holds at most 32 and
            // `out` exactly 32 values.
            unsafe { simd::convert_32(source, out) }
        } else {
            for (i, dst) in out.iter_mut().enumerate() {
                *dst = source.get(i).map_or(0, |&x| to_bf16(x));
            }
        }
    }
}

/// Row tile `kt` of the rows `rows` (at most 16) of a column-major `a` (each k's values of
/// consecutive rows are contiguous).
fn column_tile(a: View<'_>, rows: Range<usize>, kt: usize, tile: &mut [u16]) {
    let k = a.cols();
    if vector_packing() && rows.len() == TILE_ROWS && (kt + 1) * TILE_K <= k {
        let (base, _, stride) = a.block(rows.start, kt * TILE_K, TILE_ROWS, TILE_K);
        // SAFETY: as in `row_tile`; column kk of the tile starts at base + kk * stride.
        unsafe { simd::interleave_rows(base, stride, tile, true) }
        return;
    }
    if vector_packing() {
        let columns: [Option<&[f32]>; TILE_K] = std::array::from_fn(|i| {
            let kk = kt * TILE_K + i;
            (kk < k).then(|| a.column(kk, rows.clone()))
        });
        // SAFETY: the CPU has the instructions (checked); each column holds at most 16 values,
        // the tile 512.
        unsafe { simd::transpose_tile(&columns, tile) }
        return;
    }
    for (r, out) in tile.chunks_exact_mut(TILE_K).enumerate() {
        let row = rows.start + r;
        for (i, dst) in out.iter_mut().enumerate() {
            let kk = kt * TILE_K + i;
            *dst = if row < rows.end && kk < k { to_bf16(a.at(row, kk)) } else { 0 };
        }
    }
}

/// Pair tile (`kt`, `nt`) of a row-major `b`: row `p` holds `(b[2p][c], b[2p + 1][c])` for
/// the 16 columns `c` of column block `nt`, of the k tile `kt`.
fn pair_tile(b: View<'_>, kt: usize, nt: usize, tile: &mut [u16]) {
    let (k, n) = (b.rows(), b.cols());
    if vector_packing() && (kt + 1) * TILE_K <= k && (nt + 1) * TILE_ROWS <= n {
        let (base, stride, _) = b.block(kt * TILE_K, nt * TILE_ROWS, TILE_K, TILE_ROWS);
        // SAFETY: as in `row_tile`; k-row kk of the tile starts at base + kk * stride.
        unsafe { simd::interleave_rows(base, stride, tile, false) }
        return;
    }
    let cols = (nt * TILE_ROWS).min(n)..((nt + 1) * TILE_ROWS).min(n);
    for (p, out) in tile.chunks_exact_mut(TILE_K).enumerate() {
        let k0 = kt * TILE_K + 2 * p;
        let part = |kk: usize| (kk < k).then(|| &b.row(kk)[cols.clone()]);
        let (even, odd) = (part(k0), part(k0 + 1));
        if vector_packing() {
            // SAFETY: the CPU has the instructions (checked); each part holds at most 16
            // values, `out` 32.
            unsafe { simd::interleave_pair(even, odd, out) }
        } else {
            for c in 0..TILE_ROWS {
                let value =
                    |row: Option<&[f32]>| row.and_then(|r| r.get(c)).map_or(0, |&x| to_bf16(x));
                out[2 * c] = value(even);
                out[2 * c + 1] = value(odd);
            }
        }
    }
}

/// Pair tile (`kt`, `nt`) of a column-major `b` (each column's k-values contiguous, as a
/// convolution's `[out_c, patch]` weights are for the forward product).
fn transposed_pair_tile(b: View<'_>, kt: usize, nt: usize, tile: &mut [u16]) {
    let (k, n) = (b.rows(), b.cols());
    if vector_packing() && (kt + 1) * TILE_K <= k && (nt + 1) * TILE_ROWS <= n {
        let (base, _, stride) = b.block(kt * TILE_K, nt * TILE_ROWS, TILE_K, TILE_ROWS);
        // SAFETY: as in `row_tile`; column c of the tile starts at base + c * stride.
        unsafe { simd::convert_rows(base, stride, tile, true) }
        return;
    }
    let ks = (kt * TILE_K).min(k)..((kt + 1) * TILE_K).min(k);
    if vector_packing() {
        let columns: [Option<&[f32]>; TILE_ROWS] = std::array::from_fn(|c| {
            let col = nt * TILE_ROWS + c;
            (col < n).then(|| b.column(col, ks.clone()))
        });
        // SAFETY: the CPU has the instructions (checked); each column holds at most 32 values,
        // the tile 512.
        unsafe { simd::transpose_pairs(&columns, tile) }
        return;
    }
    for (p, out) in tile.chunks_exact_mut(TILE_K).enumerate() {
        for c in 0..TILE_ROWS {
            let col = nt * TILE_ROWS + c;
            for half in 0..2 {
                let kk = kt * TILE_K + 2 * p + half;
                out[2 * c + half] = if kk < k && col < n { to_bf16(b.at(kk, col)) } else { 0 };
            }
        }
    }
}

/// The AVX-512 conversions the packers use where the CPU has them.
mod simd;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3F80);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: to the even one.
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3F82);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        for x in [0.1f32, -3.7, 1e-20, 6.5e4] {
            let error = (from_bf16(to_bf16(x)) - x).abs() / x.abs();
            assert!(error <= 1.0 / 512.0, "{x}: relative error {error}");
        }
    }

    #[test]
    fn packing_places_each_value_in_its_tile() {
        let (m, k, n) = (20, 40, 18);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..k * n).map(|i| -(i as f32)).collect();
        let mut packed_a = vec![0; lhs_len(m, k)];
        pack_lhs(View::row_major(&a, m, k), 0..m, &mut packed_a);
        let packed_b = PackedRhs::pack(View::row_major(&b, k, n));
        let k_tiles = tiles(k, TILE_K);
        for (row, kk) in [(0, 0), (17, 33), (19, 39), (5, 31)] {
            let at = ((row / 16) * k_tiles + kk / 32) * TILE_LEN + (row % 16) * 32 + kk % 32;
            assert_eq!(packed_a[at], to_bf16(a[row * k + kk]), "a[{row}][{kk}]");
        }
        for (kk, col) in [(0, 0), (33, 17), (39, 15), (6, 3)] {
            let block = packed_b.column_block(col / 16);
            let tile = &block[(kk / 32) * TILE_LEN..];
            let at = ((kk % 32) / 2) * 32 + 2 * (col % 16) + kk % 2;
            let expected = b[kk * n + col];
            assert!((from_bf16(tile[at]) - expected).abs() <= expected.abs() / 256.0);
        }
        // The same matrices stored transposed pack to the same tiles.
        let b_t: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let packed_bt = PackedRhs::pack(View::row_major(&b_t, n, k).t());
        assert_eq!(packed_bt.data, packed_b.data);
        let a_t: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let mut packed_t = vec![0; lhs_len(m, k)];
        pack_lhs(View::row_major(&a_t, k, m).t(), 0..m, &mut packed_t);
        assert_eq!(packed_t, packed_a);
    }
}
