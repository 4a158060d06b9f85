//! The AVX-512 packers: conversion by `vcvtne2ps2bf16` (round to nearest even, as
//! [`super::to_bf16`]), masked loads at the edges.

use std::arch::x86_64::*;

/// 16 runs of 32 floats, `stride` apart from `base`, in bf16: tile row `r` is run `r`, or
/// with `transpose` (each run's 16 pairs become the dwords of column `r`) the transpose.
///
/// # Safety
/// The 16 runs must be readable; the CPU must have AVX512-BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn convert_rows(
    base: *const f32,
    stride: usize,
    tile: &mut [u16],
    transpose: bool,
) {
    assert!(tile.len() == 512);
    unsafe {
        let mut rows: [__m512i; 16] = std::array::from_fn(|r| {
            let run = base.add(r * stride);
            convert(_mm512_loadu_ps(run), _mm512_loadu_ps(run.add(16)))
        });
        if transpose {
            rows = transpose16(rows);
        }
        for (r, row) in rows.iter().enumerate() {
            _mm512_storeu_si512(tile.as_mut_ptr().add(r * 32).cast(), *row);
        }
    }
}

/// 32 runs of 16 floats, `stride` apart from `base`, in bf16, pairs of runs interleaved:
/// tile row `p` is `(run 2p [c], run 2p + 1 [c])` for the 16 `c`, or with `transpose`
/// (each pair of runs gives the dwords of column `p`) the transpose.
///
/// # Safety
/// As [`convert_rows`], for 32 runs of 16.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn interleave_rows(
    base: *const f32,
    stride: usize,
    tile: &mut [u16],
    transpose: bool,
) {
    assert!(tile.len() == 512);
    unsafe {
        let order = pair_order();
        let mut rows: [__m512i; 16] = std::array::from_fn(|p| {
            let even = _mm512_loadu_ps(base.add(2 * p * stride));
            let odd = _mm512_loadu_ps(base.add((2 * p + 1) * stride));
            _mm512_permutexvar_epi16(order, convert(even, odd))
        });
        if transpose {
            rows = transpose16(rows);
        }
        for (r, row) in rows.iter().enumerate() {
            _mm512_storeu_si512(tile.as_mut_ptr().add(r * 32).cast(), *row);
        }
    }
}

/// The permutation of 32 bf16 that interleaves lanes 0-15 with lanes 16-31.
#[target_feature(enable = "avx512f")]
fn pair_order() -> __m512i {
    _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
        19, 3, 18, 2, 17, 1, 16, 0,
    )
}

/// A mask of the first `len` (at most 16) lanes.
fn mask(len: usize) -> __mmask16 {
    if len >= 16 { 0xFFFF } else { (1u16 << len) - 1 }
}

/// 16 floats of `values` (fewer at its end: zeros), or zeros for `None`.
#[target_feature(enable = "avx512f")]
unsafe fn load(values: Option<&[f32]>, offset: usize) -> __m512 {
    match values {
        // SAFETY: the mask covers only elements inside the slice.
        Some(v) if v.len() > offset => unsafe {
            _mm512_maskz_loadu_ps(mask(v.len() - offset), v.as_ptr().add(offset))
        },
        _ => _mm512_setzero_ps(),
    }
}

/// 32 bf16: `low` in lanes 0-15, `high` in 16-31.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn convert(low: __m512, high: __m512) -> __m512i {
    // SAFETY: a bit-for-bit reinterpretation of a 512-bit vector.
    unsafe { std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(high, low)) }
}

/// `out` (32 values) = `source` (at most 32) in bf16, zero-padded.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn convert_32(source: &[f32], out: &mut [u16]) {
    debug_assert!(source.len() <= 32 && out.len() == 32);
    unsafe {
        let v = convert(load(Some(source), 0), load(Some(source), 16));
        _mm512_storeu_si512(out.as_mut_ptr().cast(), v);
    }
}

/// `out` (32 values) = `(even[c], odd[c])` for c in 0..16, in bf16.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn interleave_pair(even: Option<&[f32]>, odd: Option<&[f32]>, out: &mut [u16]) {
    debug_assert!(out.len() == 32);
    unsafe {
        let v = convert(load(even, 0), load(odd, 0));
        _mm512_storeu_si512(out.as_mut_ptr().cast(), _mm512_permutexvar_epi16(pair_order(), v));
    }
}

/// The row tile whose column `i` (k-value `i`, 16 rows) is `columns[i]` (zeros for
/// `None` and past a column's end): pairs of columns become 16 dwords (one per row), then
/// a 16 x 16 transpose of dwords makes them rows.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn transpose_tile(columns: &[Option<&[f32]>; 32], tile: &mut [u16]) {
    debug_assert!(tile.len() == 512);
    unsafe {
        let order = pair_order();
        // pairs[p]: dword r = (row r's k-value 2p, 2p + 1).
        let pairs: [__m512i; 16] = std::array::from_fn(|p| {
            let v = convert(load(columns[2 * p], 0), load(columns[2 * p + 1], 0));
            _mm512_permutexvar_epi16(order, v)
        });
        for (r, row) in transpose16(pairs).iter().enumerate() {
            _mm512_storeu_si512(tile.as_mut_ptr().add(r * 32).cast(), *row);
        }
    }
}

/// The pair tile whose column `c` (16 pairs of k-values) is `columns[c]` (32 values; zeros
/// for `None` and past a column's end): each column becomes 16 dwords, then a 16 x 16
/// transpose of dwords makes the pairs rows.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn transpose_pairs(columns: &[Option<&[f32]>; 16], tile: &mut [u16]) {
    debug_assert!(tile.len() == 512);
    unsafe {
        let pairs: [__m512i; 16] =
            std::array::from_fn(|c| convert(load(columns[c], 0), load(columns[c], 16)));
        for (p, row) in transpose16(pairs).iter().enumerate() {
            _mm512_storeu_si512(tile.as_mut_ptr().add(p * 32).cast(), *row);
        }
    }
}

/// The transpose of 16 rows of 16 dwords.
#[target_feature(enable = "avx512f")]
fn transpose16(v: [__m512i; 16]) -> [__m512i; 16] {
    // Pairs of rows interleaved by dword, then by quad-word: u[4g + j], lane l, holds rows
    // 4g..4g+4 of column 4l + j.
    let t: [__m512i; 16] = std::array::from_fn(|i| {
        let (a, b) = (v[i & !1], v[i | 1]);
        if i % 2 == 0 { _mm512_unpacklo_epi32(a, b) } else { _mm512_unpackhi_epi32(a, b) }
    });
    let u: [__m512i; 16] = std::array::from_fn(|i| {
        let (g, j) = (i / 4, i % 4);
        let (a, b) = (t[4 * g + j / 2], t[4 * g + j / 2 + 2]);
        if j % 2 == 0 { _mm512_unpacklo_epi64(a, b) } else { _mm512_unpackhi_epi64(a, b) }
    });
    // Then a 4 x 4 transpose of 128-bit lanes per j: row 4l + j = [u_j, u_4+j, u_8+j,
    // u_12+j] at lane l.
    let mut out = [_mm512_setzero_si512(); 16];
    for j in 0..4 {
        let (u0, u1, u2, u3) = (u[j], u[4 + j], u[8 + j], u[12 + j]);
        let v0 = _mm512_shuffle_i32x4::<0x44>(u0, u1);
        let v1 = _mm512_shuffle_i32x4::<0xEE>(u0, u1);
        let v2 = _mm512_shuffle_i32x4::<0x44>(u2, u3);
        let v3 = _mm512_shuffle_i32x4::<0xEE>(u2, u3);
        out[j] = _mm512_shuffle_i32x4::<0x88>(v0, v2);
        out[4 + j] = _mm512_shuffle_i32x4::<0xDD>(v0, v2);
        out[8 + j] = _mm512_shuffle_i32x4::<0x88>(v1, v3);
        out[12 + j] = _mm512_shuffle_i32x4::<0xDD>(v1, v3);
    }
    out
}
