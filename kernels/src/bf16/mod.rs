//! bf16 GEMMs: the operands rounded to bfloat16 while they are packed (8-bit mantissa, the
//! f32 exponent range), every product accumulated in f32, the result f32. Two micro-kernels
//! read the same packed tiles: Intel AMX (`tdpbf16ps` on tile registers) and AVX512-BF16
//! (`vdpbf16ps` on vector registers); which one runs is chosen per process ([`best`]).
//!
//! Error: each operand is rounded once (relative error at most 2^-9), so a product is off by
//! at most about 2^-8 of itself; an output's error is bounded by 2^-8 times the sum of the
//! magnitudes of its products, plus f32 accumulation.

mod amx;
mod avx512;
pub(crate) mod pack;

use std::ops::Range;

use rayon::prelude::*;

use crate::matmul::{View, ViewMut};
pub use pack::PackedRhs;
use pack::{TILE_K, TILE_LEN, TILE_ROWS, lhs_len, pack_lhs};

/// A bf16 micro-kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// Intel AMX tiles (Sapphire Rapids and later Xeons).
    Amx,
    /// AVX512-BF16 vectors (AMD Zen 4 and 5; Intel Xeons from Cooper Lake).
    Avx512,
}

impl Bf16Kernel {
    /// The kernel's name, as the run header and reports say it.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Kernel::Amx => "AMX",
            Bf16Kernel::Avx512 => "AVX512-BF16",
        }
    }

    /// Whether this process can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Bf16Kernel::Amx => amx::available().is_ok(),
            Bf16Kernel::Avx512 => avx512::available(),
        }
    }
}

/// What this machine offers for bf16.
#[derive(Clone, Debug)]
pub struct Bf16Support {
    /// The fastest kernel this process can run, if any.
    pub best: Option<Bf16Kernel>,
    /// Why AMX cannot run, when the CPU and the OS report it but the process may not use
    /// it, or the CPU lacks it.
    pub amx_unavailable: Option<String>,
    /// Whether the CPU and the OS report AMX-BF16 (the tests require its kernel to run then).
    pub amx_reported: bool,
    pub avx512_bf16: bool,
    /// Whether AVX512-BF16 beats fp32 on this CPU (AMD's run it at twice the fp32 rate,
    /// Intel's at half).
    pub avx512_bf16_fast: bool,
}

impl Bf16Support {
    /// The kernel worth using for speed: AMX, else AVX512-BF16 where it beats fp32.
    pub fn fastest(&self) -> Option<Bf16Kernel> {
        match self.best {
            Some(Bf16Kernel::Avx512) if !self.avx512_bf16_fast => None,
            best => best,
        }
    }
}

/// The bf16 kernels of this machine (AMX permission is asked for once per process).
pub fn support() -> Bf16Support {
    let amx = amx::available();
    let avx512_bf16 = avx512::available();
    let best = match &amx {
        Ok(()) => Some(Bf16Kernel::Amx),
        Err(_) if avx512_bf16 => Some(Bf16Kernel::Avx512),
        Err(_) => None,
    };
    Bf16Support {
        best,
        amx_unavailable: amx.err(),
        amx_reported: amx::reported(),
        avx512_bf16,
        avx512_bf16_fast: avx512::faster_than_fp32(),
    }
}

/// Runs the kernel's multiply-add instruction back to back on registers, on this thread, for
/// `iterations` rounds; returns the floating-point operations done (for the peak rate).
///
/// # Panics
/// If this process cannot run the kernel.
pub fn peak_loop(kernel: Bf16Kernel, iterations: usize) -> u64 {
    assert!(kernel.is_available(), "{} cannot run in this process", kernel.name());
    match kernel {
        Bf16Kernel::Amx => amx::Tiles::configure().peak_loop(iterations),
        // SAFETY: the CPU has AVX512-BF16 (checked).
        Bf16Kernel::Avx512 => unsafe { avx512::peak_loop(iterations) },
    }
}

/// Rows and columns of a block of C per micro-kernel call (AMX: 2 x 2 tiles).
const BLOCK: usize = 2 * TILE_ROWS;
/// Rows of A packed together: a panel is reused by every column block of the product.
const PANEL_ROWS: usize = 64;

/// A block of C the jobs of one product share; each job writes its own blocks only.
struct Output {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    row_stride: usize,
}

// SAFETY: `Output` is a view of one `&mut` borrow; the jobs that share it write disjoint
// blocks (distinct rows or distinct columns), so no element is written by two threads.
unsafe impl Sync for Output {}

/// `dst = lhs * rhs`, or `dst += lhs * rhs` when `accumulate`, with `kernel`; `parallel`
/// splits the product over the current rayon pool.
pub(crate) fn matmul(
    kernel: Bf16Kernel,
    dst: ViewMut<'_>,
    accumulate: bool,
    lhs: View<'_>,
    rhs: &PackedRhs,
    parallel: bool,
) {
    let (m, n) = (dst.rows(), dst.cols());
    assert_eq!(lhs.rows(), m, "dst and lhs row counts differ");
    assert_eq!(rhs.n, n, "dst and rhs column counts differ");
    assert_eq!(lhs.cols(), rhs.k, "lhs columns and rhs rows differ");
    if m == 0 || n == 0 {
        return;
    }
    let row_stride = dst.row_stride();
    let out = Output { ptr: dst.into_slice().as_mut_ptr(), rows: m, cols: n, row_stride };
    let column_blocks = n.div_ceil(BLOCK);
    let panels = m.div_ceil(PANEL_ROWS);
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    // Enough jobs for every thread: row panels, each split into column groups when few.
    let groups = (2 * threads).div_ceil(panels).clamp(1, column_blocks);
    let jobs: Vec<(Range<usize>, Range<usize>)> = (0..panels)
        .flat_map(|p| {
            let rows = p * PANEL_ROWS..((p + 1) * PANEL_ROWS).min(m);
            (0..groups).map(move |g| {
                (rows.clone(), g * column_blocks / groups..(g + 1) * column_blocks / groups)
            })
        })
        .collect();
    let run = |(rows, blocks): &(Range<usize>, Range<usize>)| {
        crate::scratch::with_bf16(lhs_len(rows.len(), lhs.cols()), |packed| {
            pack_lhs(lhs, rows.clone(), packed);
            compute(kernel, &out, accumulate, packed, rows.clone(), blocks.clone(), rhs);
        })
    };
    if jobs.len() == 1 || threads == 1 {
        jobs.iter().for_each(run);
    } else {
        jobs.par_iter().for_each(run);
    }
}

/// The blocks of C in `rows` x column blocks `blocks`, from the packed rows `a`.
fn compute(
    kernel: Bf16Kernel,
    out: &Output,
    accumulate: bool,
    a: &[u16],
    rows: Range<usize>,
    blocks: Range<usize>,
    rhs: &PackedRhs,
) {
    let k_tiles = rhs.k_tiles;
    let panel = k_tiles * TILE_LEN;
    let tiles_config = (kernel == Bf16Kernel::Amx).then(amx::Tiles::configure);
    let mut scratch = [0f32; BLOCK * BLOCK];
    for nb in blocks {
        let b = [rhs.column_block(2 * nb).as_ptr(), rhs.column_block(2 * nb + 1).as_ptr()];
        for mb in 0..rows.len().div_ceil(BLOCK) {
            let (r0, c0) = (rows.start + mb * BLOCK, nb * BLOCK);
            let a0 = &a[2 * mb * panel..];
            let a1 = &a[(2 * mb + 1) * panel..];
            let whole = r0 + BLOCK <= out.rows && c0 + BLOCK <= out.cols;
            // SAFETY: a whole block lies inside `out` (checked), whose jobs write disjoint
            // blocks; otherwise the block goes through `scratch`. The packed operands hold
            // `k_tiles` tiles from each pointer (pack_lhs pads to whole blocks of rows,
            // PackedRhs to whole blocks of columns).
            let (c, stride) = if whole {
                (unsafe { out.ptr.add(r0 * out.row_stride + c0) }, out.row_stride)
            } else {
                if accumulate {
                    copy_block(out, r0, c0, &mut scratch, true);
                }
                (scratch.as_mut_ptr(), BLOCK)
            };
            unsafe {
                match &tiles_config {
                    Some(tiles) => {
                        tiles.block([a0.as_ptr(), a1.as_ptr()], b, k_tiles, c, stride, accumulate)
                    }
                    None => {
                        for part in 0..BLOCK / avx512::ROWS {
                            let tile = if part < 2 { a0 } else { a1 };
                            let row = (part % 2) * avx512::ROWS * TILE_K;
                            avx512::block(
                                tile[row..].as_ptr(),
                                b,
                                k_tiles,
                                c.add(part * avx512::ROWS * stride),
                                stride,
                                accumulate,
                            );
                        }
                    }
                }
            }
            if !whole {
                copy_block(out, r0, c0, &mut scratch, false);
            }
        }
    }
}

/// Copies the part of the block at (`r0`, `c0`) inside `out` into `scratch` (`into_scratch`)
/// or back.
fn copy_block(out: &Output, r0: usize, c0: usize, scratch: &mut [f32], into_scratch: bool) {
    let rows = BLOCK.min(out.rows - r0);
    let cols = BLOCK.min(out.cols - c0);
    for r in 0..rows {
        // SAFETY: rows r0..r0+rows and columns c0..c0+cols lie inside `out`, a block only
        // this job writes.
        let row = unsafe {
            std::slice::from_raw_parts_mut(out.ptr.add((r0 + r) * out.row_stride + c0), cols)
        };
        let block_row = &mut scratch[r * BLOCK..r * BLOCK + cols];
        if into_scratch { block_row.copy_from_slice(row) } else { row.copy_from_slice(block_row) }
    }
}
