//! Memory: the process's peak resident size, and refusing a batch that cannot fit before a
//! long run starts instead of dying from the allocator halfway through.

use anyhow::{Result, bail};

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// Memory the system can still give without swapping, in bytes (Linux `MemAvailable`).
pub fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_kib(&info, "MemAvailable:").map(|kib| kib * 1024)
}

fn status_kib(key: &str) -> Option<u64> {
    parse_kib(&std::fs::read_to_string("/proc/self/status").ok()?, key)
}

fn parse_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with(key))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
}

/// Bytes of activations kept for the backward pass per training image at 100x100 px,
/// measured for ResNet-50 on the flex backend (peak RSS growth per image of batch 16 to 64).
const TRAIN_BYTES_PER_IMAGE_100PX: f64 = 40e6;
/// Weights, gradients and Adam's two moments of ResNet-50 (25.6 M parameters, float32),
/// with slack for the allocator.
const TRAIN_MODEL_BYTES: f64 = 0.8e9;

/// Estimated memory for fine-tuning with `batch_size` images of `image_size` pixels.
pub fn training_estimate(batch_size: usize, image_size: usize) -> u64 {
    let scale = (image_size as f64 / 100.0).powi(2);
    (TRAIN_MODEL_BYTES + batch_size as f64 * scale * TRAIN_BYTES_PER_IMAGE_100PX) as u64
}

/// Fails with advice (`fix`) when `needed` bytes exceed what the machine has available.
pub fn ensure_fits(needed: u64, what: &str, fix: &str) -> Result<()> {
    let Some(available) = available_bytes() else { return Ok(()) };
    if needed > available {
        bail!(
            "{what} needs about {:.1} GiB of memory but only {:.1} GiB is available: {fix}",
            gib(needed),
            gib(available)
        );
    }
    Ok(())
}

pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t1 kB\n";
        assert_eq!(parse_kib(text, "VmHWM:"), Some(2048));
        assert_eq!(parse_kib(text, "Missing:"), None);
    }

    #[test]
    fn absurd_batches_do_not_fit() {
        assert!(ensure_fits(training_estimate(1_000_000, 100), "test", "fix").is_err());
        assert!(training_estimate(32, 200) > training_estimate(32, 100));
    }
}
