//! The machine's fp32 peak, measured: every thread runs chains of independent fused
//! multiply-adds on the widest vectors the CPU has (AVX-512, else AVX2+FMA), enough chains to
//! hide the FMA latency, so the result is the number of FMA units times their width and clock.
//! The kernels' GFLOP/s are reported against it in BENCHMARKS.md.
//!
//!     cargo run --release -p fruitlab-kernels --example fp32_peak [THREADS]

use std::time::Instant;

use rayon::prelude::*;

/// Multiply-adds per lane per call of [`fma_block`].
const ITERATIONS: usize = 1 << 24;

fn main() {
    let threads = std::env::args().nth(1).and_then(|t| t.parse().ok()).unwrap_or_else(num_cpus);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
    let (lanes, kernel): (usize, fn(usize) -> f32) = widest_kernel();
    let mut best = 0.0f64;
    for _ in 0..5 {
        let started = Instant::now();
        let sink: f32 = pool.install(|| (0..threads).into_par_iter().map(kernel).sum());
        let seconds = started.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        // CHAINS vectors of `lanes` floats, 2 FLOP per multiply-add.
        let flops = (threads * ITERATIONS * CHAINS * lanes * 2) as f64;
        best = best.max(flops / seconds / 1e9);
    }
    println!("fp32 peak: {best:.0} GFLOP/s on {threads} thread(s) ({} lanes per vector)", lanes);
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Independent accumulator chains: more than FMA latency times FMA units.
const CHAINS: usize = 12;

#[cfg(target_arch = "x86_64")]
fn widest_kernel() -> (usize, fn(usize) -> f32) {
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        (16, |seed| unsafe { x86::fma_avx512(seed) })
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        (8, |seed| unsafe { x86::fma_avx2(seed) })
    } else {
        (1, scalar)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn widest_kernel() -> (usize, fn(usize) -> f32) {
    (1, scalar)
}

/// The portable fallback: scalar multiply-adds (the compiler may vectorise them).
fn scalar(seed: usize) -> f32 {
    let mut acc = [seed as f32; CHAINS];
    for _ in 0..ITERATIONS {
        for a in &mut acc {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{CHAINS, ITERATIONS};

    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_avx512(seed: usize) -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(seed as f32); CHAINS];
        for _ in 0..ITERATIONS {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_avx2(seed: usize) -> f32 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(seed as f32); CHAINS];
        for _ in 0..ITERATIONS {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut lanes = [0f32; 8];
        acc.iter()
            .map(|v| {
                // SAFETY: `lanes` holds the 8 floats the store writes.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *v) };
                lanes.iter().sum::<f32>()
            })
            .sum()
    }
}
