//! "None of these": scores that tell an image of none of the model's classes from one of
//! them, and the threshold that rejects a stated share of the validation images (which are of
//! the classes) at most.
//!
//! Scores, higher meaning "more like the training classes":
//! - the calibrated top probability (maximum softmax probability);
//! - the energy score: `T * logsumexp(logits / T)`, which the softmax normalises away;
//! - the Mahalanobis score: minus the smallest Mahalanobis distance of the image's pooled
//!   backbone features to a class mean, with one covariance shared by the classes (Lee et al.,
//!   2018), shrunk towards a multiple of the identity (Ledoit and Wolf) so that it is
//!   invertible with fewer images than feature dimensions.

use serde::{Deserialize, Serialize};

use crate::inference::softmax;

/// Which score decides "none of these".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    Probability,
    Energy,
    Mahalanobis,
}

impl ScoreKind {
    pub const ALL: [ScoreKind; 3] =
        [ScoreKind::Probability, ScoreKind::Energy, ScoreKind::Mahalanobis];
}

crate::spelled_setting!(ScoreKind);

/// Whether a score is "none of these" at `threshold`: below it, or not a number at all.
pub fn is_rejected(score: f64, threshold: f64) -> bool {
    score.partial_cmp(&threshold).is_none_or(|order| order.is_lt())
}

/// The calibrated top probability of each row of logits.
pub fn probability_scores(logits: &[f32], classes: usize, temperature: f64) -> Vec<f64> {
    logits
        .chunks_exact(classes)
        .map(|row| {
            let scaled = super::calibration::scaled(row, temperature);
            softmax(&scaled).into_iter().fold(0f32, f32::max) as f64
        })
        .collect()
}

/// The energy score `T * logsumexp(logits / T)` of each row.
pub fn energy_scores(logits: &[f32], classes: usize, temperature: f64) -> Vec<f64> {
    logits
        .chunks_exact(classes)
        .map(|row| {
            let scaled: Vec<f64> = row.iter().map(|&l| l as f64 / temperature).collect();
            let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            temperature * (scaled.iter().map(|s| (s - max).exp()).sum::<f64>().ln() + max)
        })
        .collect()
}

/// Class means and the shared precision matrix of pooled features.
#[derive(Clone, Debug)]
pub struct FeatureDensity {
    pub dim: usize,
    pub classes: usize,
    /// `classes x dim`.
    pub means: Vec<f64>,
    /// `precision * mean` per class (`classes x dim`) and `mean' * precision * mean`.
    weighted_means: Vec<f64>,
    offsets: Vec<f64>,
    /// `dim x dim`, symmetric.
    precision: Vec<f64>,
}

impl FeatureDensity {
    /// Fits the class means and the shrunk shared covariance of `features` (rows of `dim`),
    /// labelled `labels` (each of the `classes` must occur).
    pub fn fit(features: &[f32], labels: &[usize], classes: usize, dim: usize) -> Self {
        let n = labels.len();
        let mut means = vec![0f64; classes * dim];
        let mut counts = vec![0usize; classes];
        for (row, &label) in features.chunks_exact(dim).zip(labels) {
            counts[label] += 1;
            for (m, &x) in means[label * dim..(label + 1) * dim].iter_mut().zip(row) {
                *m += x as f64;
            }
        }
        for (c, &count) in counts.iter().enumerate() {
            for m in &mut means[c * dim..(c + 1) * dim] {
                *m /= count.max(1) as f64;
            }
        }
        // Centred rows, the sample covariance S and the sum of the rows' fourth moments.
        let centred: Vec<f64> = features
            .chunks_exact(dim)
            .zip(labels)
            .flat_map(|(row, &label)| {
                let mean = &means[label * dim..(label + 1) * dim];
                row.iter().zip(mean).map(|(&x, m)| x as f64 - m).collect::<Vec<_>>()
            })
            .collect();
        let mut covariance = gram(&centred, n, dim);
        covariance.iter_mut().for_each(|v| *v /= n.max(1) as f64);
        let fourth: f64 = centred
            .chunks_exact(dim)
            .map(|row| row.iter().map(|x| x * x).sum::<f64>().powi(2))
            .sum();
        // Ledoit-Wolf: shrink S towards mu * I by beta / delta.
        let mu = (0..dim).map(|i| covariance[i * dim + i]).sum::<f64>() / dim as f64;
        let frobenius: f64 = covariance.iter().map(|v| v * v).sum();
        let delta = frobenius - 2.0 * mu * mu * dim as f64 + mu * mu * dim as f64;
        let beta = ((fourth / n.max(1) as f64 - frobenius) / n.max(1) as f64).max(0.0);
        let shrinkage = if delta > 0.0 { (beta / delta).clamp(1e-3, 1.0) } else { 1.0 };
        for (i, v) in covariance.iter_mut().enumerate() {
            *v *= 1.0 - shrinkage;
            if i % (dim + 1) == 0 {
                *v += shrinkage * mu;
            }
        }
        Self::from_parts(means, invert_spd(covariance, dim), classes, dim)
    }

    /// Minus the smallest squared Mahalanobis distance of each row of `features` to a class.
    pub fn scores(&self, features: &[f32]) -> Vec<f64> {
        let dim = self.dim;
        features
            .chunks_exact(dim)
            .map(|row| {
                let x: Vec<f64> = row.iter().map(|&v| v as f64).collect();
                let quadratic: f64 = (0..dim)
                    .map(|i| {
                        x[i] * self.precision[i * dim..(i + 1) * dim]
                            .iter()
                            .zip(&x)
                            .map(|(p, v)| p * v)
                            .sum::<f64>()
                    })
                    .sum();
                let nearest = (0..self.classes)
                    .map(|c| {
                        let cross: f64 = self.weighted_means[c * dim..(c + 1) * dim]
                            .iter()
                            .zip(&x)
                            .map(|(w, v)| w * v)
                            .sum();
                        quadratic - 2.0 * cross + self.offsets[c]
                    })
                    .fold(f64::INFINITY, f64::min);
                -nearest
            })
            .collect()
    }

    /// The parts a file stores and [`FeatureDensity::from_parts`] takes back.
    pub fn parts(&self) -> (&[f64], &[f64]) {
        (&self.means, &self.precision)
    }

    pub fn from_parts(means: Vec<f64>, precision: Vec<f64>, classes: usize, dim: usize) -> Self {
        let mut weighted_means = vec![0f64; classes * dim];
        let mut offsets = vec![0f64; classes];
        for c in 0..classes {
            let mean = &means[c * dim..(c + 1) * dim];
            let weighted = &mut weighted_means[c * dim..(c + 1) * dim];
            for (i, w) in weighted.iter_mut().enumerate() {
                *w = precision[i * dim..(i + 1) * dim].iter().zip(mean).map(|(p, m)| p * m).sum();
            }
            offsets[c] = weighted.iter().zip(mean).map(|(w, m)| w * m).sum();
        }
        Self { dim, classes, means, weighted_means, offsets, precision }
    }
}

/// `X' X` of `n` rows of `dim` (row-major), blocked over rows so that it streams through
/// the data once per block of columns.
fn gram(rows: &[f64], n: usize, dim: usize) -> Vec<f64> {
    use rayon::prelude::*;
    let mut out = vec![0f64; dim * dim];
    out.par_chunks_mut(dim).enumerate().for_each(|(i, out_row)| {
        for r in 0..n {
            let row = &rows[r * dim..(r + 1) * dim];
            let xi = row[i];
            if xi == 0.0 {
                continue;
            }
            for (o, &xj) in out_row.iter_mut().zip(row) {
                *o += xi * xj;
            }
        }
    });
    out
}

/// The inverse of a symmetric positive-definite `dim x dim` matrix, by Cholesky
/// factorisation (`A = L L'`, then `A^-1 = L^-T L^-1`, the Gram matrix of the rows of
/// `L^-1`). Every inner loop runs along rows: walking columns of a 2048 x 2048 matrix
/// touches a new cache line at every step, which made this the slowest part of fitting.
fn invert_spd(mut a: Vec<f64>, dim: usize) -> Vec<f64> {
    use rayon::prelude::*;
    // In place: the lower triangle becomes L. Once row j is done, the rows below it are
    // independent of each other.
    for j in 0..dim {
        let (done, rest) = a.split_at_mut((j + 1) * dim);
        let row_j = &mut done[j * dim..];
        let diagonal = (row_j[j] - dot(&row_j[..j], &row_j[..j])).max(1e-12).sqrt();
        row_j[j] = diagonal;
        let row_j = &row_j[..j];
        rest.par_chunks_mut(dim).for_each(|row_i| {
            row_i[j] = (row_i[j] - dot(&row_i[..j], row_j)) / diagonal;
        });
    }
    // L^-1 by rows: row i is (e_i - sum over k < i of L[i][k] * row k) / L[i][i].
    let mut inverse_l = vec![0f64; dim * dim];
    for i in 0..dim {
        let (above, rest) = inverse_l.split_at_mut(i * dim);
        let row = &mut rest[..dim];
        row[i] = 1.0;
        for k in 0..i {
            let factor = a[i * dim + k];
            for (v, &u) in row[..=k].iter_mut().zip(&above[k * dim..k * dim + k + 1]) {
                *v -= factor * u;
            }
        }
        let diagonal = a[i * dim + i];
        row[..=i].iter_mut().for_each(|v| *v /= diagonal);
    }
    gram(&inverse_l, dim, dim)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The score below which an image is rejected: the `rate` quantile of the validation images'
/// scores, so that at most that share of images of the classes is rejected.
pub fn threshold_at(scores: &[f64], rate: f64) -> f64 {
    let mut sorted: Vec<f64> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NEG_INFINITY;
    }
    sorted.sort_by(f64::total_cmp);
    let at = ((sorted.len() as f64 * rate).floor() as usize).min(sorted.len() - 1);
    sorted[at]
}

/// The share of `scores` a threshold rejects (see [`is_rejected`]).
pub fn rejected_share(scores: &[f64], threshold: f64) -> f64 {
    scores.iter().filter(|&&s| is_rejected(s, threshold)).count() as f64
        / scores.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inverse_of_a_covariance_times_it_is_the_identity() {
        let a = vec![4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let inverse = invert_spd(a.clone(), 3);
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| a[i * 3 + k] * inverse[k * 3 + j]).sum();
                assert!((v - (i == j) as u8 as f64).abs() < 1e-9, "({i}, {j}) = {v}");
            }
        }
    }

    #[test]
    fn a_large_inverse_times_its_matrix_is_the_identity() {
        // X'X / n + I of pseudo-random rows: symmetric positive definite, far from diagonal.
        let (n, dim) = (150, 97);
        let rows: Vec<f64> =
            (0..n * dim).map(|i| ((i * 7919 % 1009) as f64 / 1009.0) - 0.3).collect();
        let mut a = gram(&rows, n, dim);
        for (i, v) in a.iter_mut().enumerate() {
            *v = *v / n as f64 + if i % (dim + 1) == 0 { 1.0 } else { 0.0 };
        }
        let inverse = invert_spd(a.clone(), dim);
        for i in 0..dim {
            for j in 0..dim {
                let v: f64 = (0..dim).map(|k| a[i * dim + k] * inverse[k * dim + j]).sum();
                assert!((v - (i == j) as u8 as f64).abs() < 1e-9, "({i}, {j}) = {v}");
            }
        }
    }

    #[test]
    fn mahalanobis_scores_rank_far_images_below_near_ones() {
        // Two classes around (0, 0) and (10, 0), with a feature that barely varies.
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for i in 0..200 {
            let label = i % 2;
            let jitter = ((i * 7919) % 100) as f32 / 100.0 - 0.5;
            features.extend([label as f32 * 10.0 + jitter, jitter * 0.01]);
            labels.push(label);
        }
        let density = FeatureDensity::fit(&features, &labels, 2, 2);
        let scores = density.scores(&[0.1, 0.0, 10.2, 0.0, 5.0, 0.0, 0.0, 3.0]);
        assert!(scores[0] > scores[2] && scores[1] > scores[2], "{scores:?}");
        // Off the narrow axis is far, even close to a mean in plain distance.
        assert!(scores[3] < scores[2], "{scores:?}");
        let (means, precision) = density.parts();
        let again = FeatureDensity::from_parts(means.to_vec(), precision.to_vec(), 2, 2);
        assert_eq!(again.scores(&[0.1, 0.0]), density.scores(&[0.1, 0.0]));
    }

    #[test]
    fn the_threshold_rejects_the_stated_share_of_validation_images() {
        let scores: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let threshold = threshold_at(&scores, 0.02);
        assert_eq!(rejected_share(&scores, threshold), 0.02);
        let energy = energy_scores(&[0.0, 0.0, 10.0, 0.0], 2, 1.0);
        assert!((energy[0] - 2f64.ln()).abs() < 1e-9 && energy[1] > 9.99);
        let probability = probability_scores(&[0.0, 0.0], 2, 1.0);
        assert!((probability[0] - 0.5).abs() < 1e-6);
    }
}
