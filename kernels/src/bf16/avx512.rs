//! The AVX512-BF16 micro-kernel (AMD Zen 4 and 5 run `vdpbf16ps` at twice the fp32 FMA rate):
//! 8 rows x 32 columns of C in 16 registers; per pair of k-values, two pair-tile rows of B and
//! a broadcast pair of each A row.

use std::arch::x86_64::*;

use super::pack::{TILE_K, TILE_LEN};

/// Whether the CPU has AVX512-BF16.
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
}

/// Whether `vdpbf16ps` is worth using on this CPU: on AMD (Zen 4 and 5) it runs at twice the
/// fp32 FMA rate (measured on a Zen 5: 918 against 461 GFLOP/s on 2 threads); on Intel Xeons
/// it runs at half (measured: 246 against 492), and AMX is the fast path there.
pub(crate) fn faster_than_fp32() -> bool {
    let vendor = std::arch::x86_64::__cpuid(0);
    // "AuthenticAMD", spelled over EBX, EDX, ECX.
    available() && [vendor.ebx, vendor.edx, vendor.ecx] == [0x6874_7541, 0x6974_6E65, 0x444D_4163]
}

/// A vector of 32 bf16 (bits), as the dot-product instruction takes it.
#[inline]
#[target_feature(enable = "avx512f")]
fn as_bf16(bits: __m512i) -> __m512bh {
    // SAFETY: a bit-for-bit reinterpretation of one 512-bit vector as another.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(bits) }
}

/// Rows of C per call.
pub(crate) const ROWS: usize = 8;

/// `C[8 x 32] (+)= A . B` over `k_tiles` tiles of k. `a` points at row `r` (of 16) of the
/// first row tile of a panel, `b0` and `b1` at the first pair tiles of columns 0-15 and 16-31;
/// each operand has `k_tiles` consecutive tiles. `c` is row-major, `c_stride` floats a row.
///
/// # Safety
/// The CPU must have AVX512-BF16 ([`available`]); `a` must point at 8 rows of `k_tiles` row
/// tiles, `b0` and `b1` at `k_tiles` pair tiles each; `c` must be valid for reads (when
/// `accumulate`) and writes of 8 rows of 32 floats `c_stride` apart.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(crate) unsafe fn block(
    a: *const u16,
    [b0, b1]: [*const u16; 2],
    k_tiles: usize,
    c: *mut f32,
    c_stride: usize,
    accumulate: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
    // SAFETY: the caller guarantees every pointer's extent; unaligned loads and stores.
    unsafe {
        if accumulate {
            for (r, row) in acc.iter_mut().enumerate() {
                row[0] = _mm512_loadu_ps(c.add(r * c_stride));
                row[1] = _mm512_loadu_ps(c.add(r * c_stride + 16));
            }
        }
        for kt in 0..k_tiles {
            let a = a.add(kt * TILE_LEN);
            let (b0, b1) = (b0.add(kt * TILE_LEN), b1.add(kt * TILE_LEN));
            for pair in 0..TILE_K / 2 {
                let v0: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(b0.add(pair * TILE_K).cast()));
                let v1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(b1.add(pair * TILE_K).cast()));
                for (r, row) in acc.iter_mut().enumerate() {
                    let pair_bits = a.add(r * TILE_K + 2 * pair).cast::<i32>().read_unaligned();
                    let broadcast = as_bf16(_mm512_set1_epi32(pair_bits));
                    row[0] = _mm512_dpbf16_ps(row[0], broadcast, v0);
                    row[1] = _mm512_dpbf16_ps(row[1], broadcast, v1);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            _mm512_storeu_ps(c.add(r * c_stride), row[0]);
            _mm512_storeu_ps(c.add(r * c_stride + 16), row[1]);
        }
    }
}

/// `iterations` rounds of 16 independent `vdpbf16ps` on registers only: the instruction's
/// peak rate. Returns the floating-point operations done.
///
/// # Safety
/// The CPU must have AVX512-BF16 ([`available`]).
#[target_feature(enable = "avx512f,avx512bf16")]
pub(crate) unsafe fn peak_loop(iterations: usize) -> u64 {
    let (a, b) = (as_bf16(_mm512_set1_epi32(0x3F80_3F80)), as_bf16(_mm512_set1_epi32(0x3400_3400)));
    let mut acc = [_mm512_setzero_ps(); 16];
    for _ in 0..iterations {
        for v in &mut acc {
            *v = _mm512_dpbf16_ps(*v, a, b);
        }
    }
    std::hint::black_box(acc);
    // 16 instructions of 16 lanes, each lane two products and their sum.
    iterations as u64 * 16 * 16 * 2 * 2
}
