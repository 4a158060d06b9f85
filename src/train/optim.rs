//! Optimizers and the learning-rate schedule.

use std::path::Path;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamConfig, AdamWConfig, GradientsParams, LBFGS, LBFGSConfig, LineSearchFn, ModuleOptimizer,
    SgdConfig,
};

use crate::config::{OptimizationConfig, OptimizerKind, Schedule, TrainConfig};

/// Adam's epsilon, as Keras sets it.
const ADAM_EPSILON: f32 = 1e-7;

/// L-BFGS iterations in one optimizer step (one epoch of a whole-set run, validated after).
pub const LBFGS_ITERATIONS: usize = 20;
/// Curvature pairs L-BFGS remembers: enough for a top's few hundred iterations, and small
/// beside its parameters (two vectors of them each).
const LBFGS_HISTORY: usize = 10;
/// L-BFGS stops when no gradient component is larger (the top has converged in f32).
const LBFGS_GRADIENT_TOLERANCE: f64 = 1e-6;

/// An optimizer of either kind.
pub enum Optimizer {
    /// First-order: each step follows one batch's gradient.
    Gradient(ModuleOptimizer),
    /// L-BFGS: each step is [`LBFGS_ITERATIONS`] iterations over the whole training set.
    Lbfgs(Box<LBFGS>),
}

impl Optimizer {
    /// The optimizer's state, serialised (for the resume checkpoint).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bytes = match self {
            Optimizer::Gradient(optim) => optim.into_bytes(),
            Optimizer::Lbfgs(optim) => optim.into_bytes(),
        };
        let bytes = bytes
            .map_err(|error| anyhow::anyhow!("cannot serialise the optimizer state: {error}"))?;
        Ok(bytes.to_vec())
    }

    /// One first-order step of `module` along `grads` at rate `lr`.
    pub fn gradient_step<M: Module>(
        &mut self,
        lr: f64,
        module: M,
        grads: GradientsParams,
    ) -> Result<M> {
        match self {
            Optimizer::Gradient(optim) => Ok(optim.step(lr, module, grads)),
            Optimizer::Lbfgs(_) => bail!(
                "--optimizer lbfgs takes each step over the stored features of every training image at once: it trains the top of a frozen backbone only (use adam, adamw or sgd)"
            ),
        }
    }

    /// The optimizer with the state saved in `path`.
    pub fn load(self, path: &Path) -> Result<Self> {
        let loaded = match self {
            Optimizer::Gradient(optim) => optim.load(path).map(Optimizer::Gradient),
            Optimizer::Lbfgs(optim) => optim.load(path).map(|o| Optimizer::Lbfgs(Box::new(o))),
        };
        loaded.map_err(|error| {
            anyhow::anyhow!("cannot load optimizer state {}: {error}", path.display())
        })
    }
}

/// A fresh optimizer of the configured kind.
pub fn build(config: &TrainConfig) -> Optimizer {
    let config = &config.optimization;
    let weight_decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    let optimizer =
        match config.optimizer {
            // Dampening 0 is the Keras/PyTorch momentum (burn's default dampens by 0.1).
            OptimizerKind::Sgd => SgdConfig::new()
                .with_momentum((config.momentum > 0.0).then(|| {
                    MomentumConfig::new().with_momentum(config.momentum).with_dampening(0.0)
                }))
                .with_weight_decay(weight_decay)
                .init(),
            OptimizerKind::Adam => {
                AdamConfig::new().with_epsilon(ADAM_EPSILON).with_weight_decay(weight_decay).init()
            }
            OptimizerKind::Adamw => AdamWConfig::new()
                .with_epsilon(ADAM_EPSILON)
                .with_weight_decay(config.weight_decay as f32)
                .init(),
            OptimizerKind::Lbfgs => return lbfgs(),
        };
    Optimizer::Gradient(optimizer)
}

/// A fresh L-BFGS optimizer for a whole-set fit of the linear top (its weight decay is a term
/// of the loss it minimises: see `learner`).
pub fn lbfgs() -> Optimizer {
    let lbfgs = LBFGSConfig::new()
        .with_max_iter(LBFGS_ITERATIONS)
        .with_history_size(LBFGS_HISTORY)
        .with_tolerance_grad(LBFGS_GRADIENT_TOLERANCE)
        .with_line_search_fn(LineSearchFn::StrongWolfe)
        .init();
    Optimizer::Lbfgs(Box::new(lbfgs))
}

/// The configured learning rate at optimizer step `step` (0-based) of `total`.
pub fn learning_rate(config: &OptimizationConfig, step: u64, total: u64) -> f64 {
    rate(config.schedule, config.lr, config.warmup_steps, step, total)
}

/// Learning rate at optimizer step `step` (0-based) of `total`, for a peak rate `peak`.
fn rate(schedule: Schedule, peak: f64, warmup: usize, step: u64, total: u64) -> f64 {
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

/// The rate of the last step of `epoch` (1-based), recorded in the epoch's history: computed
/// from the step number, not remembered from the loop, so that an epoch resumed after its last
/// step (no steps left to run) records the same rate.
pub fn epoch_end_rate(config: &TrainConfig, epoch: usize, steps_per_epoch: usize) -> f64 {
    let total = (config.schedule.epochs * steps_per_epoch) as u64;
    let last_step = (epoch * steps_per_epoch) as u64 - 1;
    learning_rate(&config.optimization, last_step, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_warms_up_then_decays_to_zero() {
        let lr = |step| rate(Schedule::Cosine, 1.0, 10, step, 110);
        assert!((lr(0) - 0.1).abs() < 1e-12);
        assert!((lr(9) - 1.0).abs() < 1e-12);
        assert!((lr(10) - 1.0).abs() < 1e-12);
        assert!((lr(60) - 0.5).abs() < 1e-12);
        assert!(lr(109) < 0.001);
        assert_eq!(rate(Schedule::Constant, 0.3, 10, 5, 110), 0.3);
    }

    #[test]
    fn the_rate_of_an_epochs_last_step_is_that_steps_rate() {
        let config = crate::config::resolve(
            crate::config::Recipe::Default,
            crate::config::Mode::Finetune,
            crate::config::Init::Imagenet,
            "d".into(),
            Default::default(),
        );
        let steps = 495;
        for epoch in 1..=config.schedule.epochs {
            let end_rate = epoch_end_rate(&config, epoch, steps);
            let step = (epoch * steps - 1) as u64;
            let total = (config.schedule.epochs * steps) as u64;
            assert_eq!(end_rate, learning_rate(&config.optimization, step, total));
            assert!(end_rate > 0.0, "epoch {epoch} ends at rate {end_rate}");
        }
    }
}
