//! Stopping rules, asked after each epoch while epochs remain (as burn-train's early-stopping
//! strategies): a target validation accuracy, and patience on a validation metric.

use crate::config::{Monitor, StoppingConfig};
use crate::run::History;

/// A reason to stop before the configured epochs are done.
pub trait StoppingRule {
    /// Why the run should stop now, given its history, or `None` to go on.
    fn check(&self, history: &History) -> Option<String>;
}

/// Stop once the validation accuracy reaches a target.
pub struct TargetAccuracy {
    pub target: f64,
}

impl StoppingRule for TargetAccuracy {
    fn check(&self, history: &History) -> Option<String> {
        let last = history.epochs.last()?;
        (last.val_accuracy >= self.target).then(|| {
            format!("reached the target validation accuracy after epoch {}; stopping", last.epoch)
        })
    }
}

/// Stop after `epochs` epochs without improvement of the monitored metric.
pub struct Patience {
    pub epochs: usize,
    pub monitor: Monitor,
}

impl Patience {
    /// Epochs since the monitored metric last improved.
    fn epochs_without_improvement(&self, history: &History) -> usize {
        let value = |loss: f64, accuracy: f64| match self.monitor {
            Monitor::Loss => -loss,
            Monitor::Accuracy => accuracy,
        };
        let mut best = f64::NEG_INFINITY;
        let mut since = 0;
        for epoch in &history.epochs {
            let v = value(epoch.val_loss, epoch.val_accuracy);
            if v > best {
                best = v;
                since = 0;
            } else {
                since += 1;
            }
        }
        since
    }
}

impl StoppingRule for Patience {
    fn check(&self, history: &History) -> Option<String> {
        let stale = self.epochs_without_improvement(history);
        let metric = match self.monitor {
            Monitor::Loss => "loss",
            Monitor::Accuracy => "accuracy",
        };
        (stale >= self.epochs).then(|| {
            format!("validation {metric} has not improved for {stale} epochs; stopping early")
        })
    }
}

/// The rules a configuration asks for, in the order they are asked.
pub fn rules(config: &StoppingConfig) -> Vec<Box<dyn StoppingRule>> {
    let mut rules: Vec<Box<dyn StoppingRule>> = Vec::new();
    if let Some(target) = config.stop_at_accuracy {
        rules.push(Box::new(TargetAccuracy { target }));
    }
    if let Some(epochs) = config.patience {
        rules.push(Box::new(Patience { epochs, monitor: config.patience_on }));
    }
    rules
}

/// The first rule's reason to stop, if any.
pub fn reason_to_stop(rules: &[Box<dyn StoppingRule>], history: &History) -> Option<String> {
    rules.iter().find_map(|rule| rule.check(history))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::EpochRecord;

    /// Validation (loss, accuracy) per epoch.
    type Epochs = &'static [(f64, f64)];

    fn history(epochs: Epochs) -> History {
        let epochs = epochs
            .iter()
            .enumerate()
            .map(|(i, &(loss, accuracy))| EpochRecord::validated(i + 1, loss, accuracy))
            .collect();
        History { epochs, ..History::default() }
    }

    #[test]
    fn patience_counts_epochs_since_the_monitored_metric_improved() {
        // (validation loss, accuracy) per epoch; patience; monitor; stops?
        let cases: [(Epochs, usize, Monitor, bool); 7] = [
            (&[(0.5, 0.90), (0.3, 0.95), (0.4, 0.96), (0.35, 0.94)], 2, Monitor::Loss, true),
            (&[(0.5, 0.90), (0.3, 0.95), (0.4, 0.96), (0.35, 0.94)], 3, Monitor::Loss, false),
            (&[(0.5, 0.90), (0.3, 0.95), (0.4, 0.96), (0.35, 0.94)], 1, Monitor::Accuracy, true),
            (&[(0.5, 0.90), (0.3, 0.95), (0.4, 0.96), (0.35, 0.94)], 2, Monitor::Accuracy, false),
            (&[(0.5, 0.90), (0.5, 0.90)], 1, Monitor::Loss, true),
            (&[(0.5, 0.90)], 1, Monitor::Loss, false),
            (&[], 1, Monitor::Accuracy, false),
        ];
        for (epochs, patience, monitor, stops) in cases {
            let rule = Patience { epochs: patience, monitor };
            assert_eq!(rule.check(&history(epochs)).is_some(), stops, "{epochs:?} {patience}");
        }
    }

    #[test]
    fn a_target_stops_once_reached_and_rules_are_asked_in_order() {
        let cases: [(Epochs, f64, bool); 4] = [
            (&[(0.5, 0.98), (0.4, 0.99)], 0.99, true),
            (&[(0.5, 0.99), (0.4, 0.98)], 0.99, false),
            (&[(0.5, 0.98)], 0.99, false),
            (&[], 0.5, false),
        ];
        for (epochs, target, stops) in cases {
            let rule = TargetAccuracy { target };
            assert_eq!(rule.check(&history(epochs)).is_some(), stops, "{epochs:?} {target}");
        }
        let config = StoppingConfig {
            stop_at_accuracy: Some(0.9),
            patience: Some(1),
            patience_on: Monitor::Loss,
            keep_resume: false,
        };
        let reason = reason_to_stop(&rules(&config), &history(&[(0.3, 0.95), (0.4, 0.96)]));
        assert!(reason.unwrap().contains("target"), "the target is asked first");
        let none = StoppingConfig { stop_at_accuracy: None, patience: None, ..config };
        assert!(rules(&none).is_empty());
    }
}
