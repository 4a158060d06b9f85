//! Helpers shared by the tests: seeded random data, precision conversion and error metrics.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Allowed relative L2 error of f32 kernels against f64 references (see main.rs).
pub const TOLERANCE: f64 = 1e-4;

/// `len` values uniform in [-1, 1), reproducible from `seed`.
pub fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| f64::from(v)).collect()
}

/// `||actual - expected|| / ||expected||` (plain `||actual||` when `expected` is all zero).
pub fn relative_error(actual: &[f32], expected: &[f64]) -> f64 {
    assert_eq!(actual.len(), expected.len(), "lengths differ");
    let diff: f64 = actual.iter().zip(expected).map(|(&a, e)| (f64::from(a) - e).powi(2)).sum();
    let norm: f64 = expected.iter().map(|e| e * e).sum();
    if norm == 0.0 { diff.sqrt() } else { (diff / norm).sqrt() }
}

/// Asserts `actual` matches `expected` within [`TOLERANCE`].
pub fn assert_close(what: &str, actual: &[f32], expected: &[f64]) {
    let err = relative_error(actual, expected);
    assert!(err <= TOLERANCE, "{what}: relative L2 error {err:e} exceeds {TOLERANCE:e}");
}

/// Runs `f` on a fresh rayon pool of `threads` threads, so tests cover other thread counts
/// than the machine's.
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool").install(f)
}
