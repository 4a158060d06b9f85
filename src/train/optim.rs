//! Optimizers and the learning-rate schedule.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};

use crate::config::{OptimizerKind, Schedule, TrainConfig};

/// Adam's epsilon, as Keras sets it.
const ADAM_EPSILON: f32 = 1e-7;

/// A fresh optimizer of the configured kind.
pub fn build(config: &TrainConfig) -> ModuleOptimizer {
    let weight_decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.optimizer {
        // Dampening 0 is the Keras/PyTorch momentum (burn's default dampens by 0.1).
        OptimizerKind::Sgd => {
            SgdConfig::new()
                .with_momentum((config.momentum > 0.0).then(|| {
                    MomentumConfig::new().with_momentum(config.momentum).with_dampening(0.0)
                }))
                .with_weight_decay(weight_decay)
                .init()
        }
        OptimizerKind::Adam => {
            AdamConfig::new().with_epsilon(ADAM_EPSILON).with_weight_decay(weight_decay).init()
        }
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_epsilon(ADAM_EPSILON)
            .with_weight_decay(config.weight_decay as f32)
            .init(),
    }
}

/// Learning rate at optimizer step `step` (0-based) of `total`, for a peak rate `peak`.
pub fn learning_rate(schedule: Schedule, peak: f64, warmup: usize, step: u64, total: u64) -> f64 {
    match schedule {
        Schedule::Constant => peak,
        Schedule::Cosine => {
            let warmup = warmup as u64;
            if step < warmup {
                return peak * (step + 1) as f64 / warmup as f64;
            }
            let progress = (step - warmup) as f64 / total.saturating_sub(warmup).max(1) as f64;
            peak * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_warms_up_then_decays_to_zero() {
        let lr = |step| learning_rate(Schedule::Cosine, 1.0, 10, step, 110);
        assert!((lr(0) - 0.1).abs() < 1e-12);
        assert!((lr(9) - 1.0).abs() < 1e-12);
        assert!((lr(10) - 1.0).abs() < 1e-12);
        assert!((lr(60) - 0.5).abs() < 1e-12);
        assert!(lr(109) < 0.001);
        assert_eq!(learning_rate(Schedule::Constant, 0.3, 10, 5, 110), 0.3);
    }
}
