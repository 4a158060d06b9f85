//! Calibrated probabilities: temperature scaling (Guo et al., 2017), one scalar `T` fitted on
//! the validation images (which training never fits on) so that `softmax(logits / T)` says
//! how often the model is right, and the expected calibration error that measures it.

use serde::{Deserialize, Serialize};

use crate::inference::softmax;

/// Equal-width confidence bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

/// The temperatures searched, as `ln T`: from T = 0.05 to T = 20.
const LOG_T_RANGE: (f64, f64) = (-3.0, 3.0);

/// The temperature minimising the mean negative log-likelihood of `labels` under
/// `softmax(logits / T)` (rows of `classes`). The likelihood is convex in `1 / T`, so a
/// golden-section search over `ln T` finds its minimum.
pub fn fit_temperature(logits: &[f32], labels: &[usize], classes: usize) -> f64 {
    let loss = |log_t: f64| negative_log_likelihood(logits, labels, classes, log_t.exp());
    let (mut low, mut high) = LOG_T_RANGE;
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (high - ratio * (high - low), low + ratio * (high - low));
    let (mut fa, mut fb) = (loss(a), loss(b));
    for _ in 0..60 {
        if fa < fb {
            high = b;
            (b, fb) = (a, fa);
            a = high - ratio * (high - low);
            fa = loss(a);
        } else {
            low = a;
            (a, fa) = (b, fb);
            b = low + ratio * (high - low);
            fb = loss(b);
        }
    }
    ((low + high) / 2.0).exp()
}

/// Mean cross-entropy of `labels` under `softmax(logits / temperature)`.
pub fn negative_log_likelihood(
    logits: &[f32],
    labels: &[usize],
    classes: usize,
    temperature: f64,
) -> f64 {
    let total: f64 = logits
        .chunks_exact(classes)
        .zip(labels)
        .map(|(row, &label)| {
            let scaled: Vec<f64> = row.iter().map(|&l| l as f64 / temperature).collect();
            let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = scaled.iter().map(|s| (s - max).exp()).sum::<f64>().ln() + max;
            log_sum - scaled[label]
        })
        .sum();
    total / labels.len().max(1) as f64
}

/// `logits / temperature`, the logits whose softmax is the calibrated probability.
pub fn scaled(logits: &[f32], temperature: f64) -> Vec<f32> {
    logits.iter().map(|&l| (l as f64 / temperature) as f32).collect()
}

/// One bin of a reliability diagram: the images whose top probability fell in it, their mean
/// confidence and how often they were right.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub low: f64,
    pub high: f64,
    pub images: usize,
    pub confidence: f64,
    pub accuracy: f64,
}

/// The reliability diagram of predictions (rows of `classes` logits): [`ECE_BINS`] bins of the
/// top probability.
pub fn reliability(logits: &[f32], labels: &[usize], classes: usize) -> Vec<ReliabilityBin> {
    let mut sums = vec![(0usize, 0f64, 0usize); ECE_BINS];
    for (row, &label) in logits.chunks_exact(classes).zip(labels) {
        let p = softmax(row);
        let top = crate::inference::argmax(&p);
        let confidence = p[top] as f64;
        let bin = ((confidence * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
        sums[bin].0 += 1;
        sums[bin].1 += confidence;
        sums[bin].2 += (top == label && crate::eval::is_correct(row, label)) as usize;
    }
    sums.iter()
        .enumerate()
        .map(|(i, &(images, confidence, correct))| ReliabilityBin {
            low: i as f64 / ECE_BINS as f64,
            high: (i + 1) as f64 / ECE_BINS as f64,
            images,
            confidence: confidence / images.max(1) as f64,
            accuracy: correct as f64 / images.max(1) as f64,
        })
        .collect()
}

/// The expected calibration error of a reliability diagram: the images-weighted mean gap
/// between confidence and accuracy.
pub fn expected_calibration_error(bins: &[ReliabilityBin]) -> f64 {
    let total: usize = bins.iter().map(|b| b.images).sum();
    bins.iter().map(|b| b.images as f64 * (b.confidence - b.accuracy).abs()).sum::<f64>()
        / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits of an overconfident model: right 70% of the time, yet sure of itself.
    fn overconfident(scale: f32) -> (Vec<f32>, Vec<usize>) {
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..1000 {
            let label = i % 3;
            let predicted = if i % 10 < 7 { label } else { (label + 1) % 3 };
            let mut row = [0f32; 3];
            row[predicted] = scale;
            logits.extend(row);
            labels.push(label);
        }
        (logits, labels)
    }

    #[test]
    fn temperature_scaling_makes_an_overconfident_model_honest() {
        let (logits, labels) = overconfident(8.0);
        let before = expected_calibration_error(&reliability(&logits, &labels, 3));
        assert!(before > 0.25, "overconfident: ECE {before}");
        let t = fit_temperature(&logits, &labels, 3);
        assert!(t > 2.0, "an overconfident model is cooled: T = {t}");
        let after = expected_calibration_error(&reliability(&scaled(&logits, t), &labels, 3));
        assert!(after < 0.02, "calibrated: ECE {after}");
        // The fitted temperature is the likelihood's minimum.
        let nll = |t: f64| negative_log_likelihood(&logits, &labels, 3, t);
        assert!(nll(t) <= nll(t * 1.1) && nll(t) <= nll(t / 1.1));
    }

    #[test]
    fn a_calibrated_model_keeps_a_temperature_near_one() {
        // Confidence softmax([ln 7/1.5, 0, 0])= 0.7 for a model right 70% of the time.
        let (logits, labels) = overconfident((7.0f32 / 1.5).ln());
        let t = fit_temperature(&logits, &labels, 3);
        assert!((t - 1.0).abs() < 0.05, "T = {t}");
        let bins = reliability(&logits, &labels, 3);
        assert_eq!(bins.iter().map(|b| b.images).sum::<usize>(), 1000);
        assert!(expected_calibration_error(&bins) < 0.01);
    }
}
