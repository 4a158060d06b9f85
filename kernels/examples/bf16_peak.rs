//! The machine's bf16 peak, measured: every thread runs the bf16 kernels' multiply-add
//! instruction back to back on registers (AMX `tdpbf16ps` on four tile accumulators,
//! AVX512-BF16 `vdpbf16ps` on sixteen vector accumulators), for each kernel this process can
//! run. The bf16 kernels' GFLOP/s are reported against it in BENCHMARKS.md.
//!
//!     cargo run --release -p fruitlab-kernels --example bf16_peak [THREADS]

use std::time::Instant;

use fruitlab_kernels::bf16::{self, Bf16Kernel};
use rayon::prelude::*;

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
    println!("{:?}", bf16::support());
    for (kernel, iterations) in [(Bf16Kernel::Amx, 1 << 22), (Bf16Kernel::Avx512, 1 << 24)] {
        if !kernel.is_available() {
            println!("{}: not available here", kernel.name());
            continue;
        }
        let mut best = 0.0f64;
        for _ in 0..5 {
            let started = Instant::now();
            let flops: u64 = pool.install(|| {
                (0..threads).into_par_iter().map(|_| bf16::peak_loop(kernel, iterations)).sum()
            });
            best = best.max(flops as f64 / started.elapsed().as_secs_f64() / 1e9);
        }
        println!("{} bf16 peak: {best:.0} GFLOP/s on {threads} thread(s)", kernel.name());
    }
}
