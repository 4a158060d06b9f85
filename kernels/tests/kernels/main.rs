//! Integration tests of the kernels, one test binary: references, gradient checks, and fast
//! kernels against references.
//!
//! Tolerance: fast f32 results must match the f64 references to a relative L2 error
//! `||fast - reference|| / ||reference||` of at most 1e-4 (f32 sums over up to ~10^4 terms
//! land near 1e-6; the margin covers reordering in blocked GEMMs). The bf16 kernels have
//! their own, per-output bound (see bf16.rs).

mod bf16;
mod conv;
mod gradient_check;
mod pool;
mod reference;
mod util;
