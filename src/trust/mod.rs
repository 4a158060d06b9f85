//! Answers a person can trust: calibrated probabilities (a temperature fitted on the
//! validation images), "none of these" (a score and a threshold that rejects a stated share of
//! the validation images at most), and the data's own mistakes (`audit`).
//!
//! At the end of training the run's best model gets its [`Trust`]: fitted on the validation
//! images (the temperature, the thresholds) and on up to [`DENSITY_IMAGES_PER_CLASS`] training
//! images of each class (the feature density of the Mahalanobis score), saved in the run
//! folder with the identity of the model it belongs to, and applied by every prediction of
//! that model (never of another).

pub mod calibration;
pub mod rejection;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::run::TrustFiles;
use crate::weights::NamedTensors;
use calibration::ReliabilityBin;
use rejection::{FeatureDensity, ScoreKind};

/// The score that decides "none of these" unless asked otherwise: the one measured to reject
/// the most images of other things at the stated share of validation images (BENCHMARKS.md).
pub const DEFAULT_SCORE: ScoreKind = ScoreKind::Mahalanobis;

/// Training images per class the feature density is fitted on (all of a smaller class).
pub const DENSITY_IMAGES_PER_CLASS: usize = 100;

/// What a run's best model knows of how far its answers can be believed (`RUN/trust.json`;
/// the feature density is beside it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrustRecord {
    /// The model it was fitted for (`sha256:...` of its weights, as predictions record it).
    pub model: String,
    /// Validation images it was fitted on.
    pub validation_images: usize,
    /// `softmax(logits / temperature)` is the calibrated probability.
    pub temperature: f64,
    /// Expected calibration error (15 bins) on the validation images before and after.
    pub ece_before: f64,
    pub ece_after: f64,
    pub reliability_before: Vec<ReliabilityBin>,
    pub reliability_after: Vec<ReliabilityBin>,
    /// The share of validation images each threshold rejects at most.
    pub reject_rate: f64,
    /// The score that decides, and each score's threshold and measured validation share.
    pub score: ScoreKind,
    pub thresholds: Vec<Threshold>,
}

/// A score's threshold: images scoring below it are "none of these".
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Threshold {
    pub score: ScoreKind,
    pub threshold: f64,
    /// The share of validation images it rejects.
    pub validation_rejected: f64,
}

/// A fitted trust: the record and the feature density it refers to.
#[derive(Clone, Debug)]
pub struct Trust {
    pub record: TrustRecord,
    pub density: FeatureDensity,
}

/// How one image's answer is to be believed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Judgement {
    /// Not one of the classes (when rejection applies).
    pub unknown: bool,
    /// The deciding score and its threshold.
    pub score: f64,
}

impl Trust {
    /// The threshold of the deciding score.
    pub fn threshold(&self) -> f64 {
        self.record
            .thresholds
            .iter()
            .find(|t| t.score == self.record.score)
            .map_or(f64::NEG_INFINITY, |t| t.threshold)
    }

    /// The deciding score of each image, from its logits and pooled features.
    pub fn scores(
        &self,
        kind: ScoreKind,
        logits: &[f32],
        features: &[f32],
        classes: usize,
    ) -> Vec<f64> {
        let t = self.record.temperature;
        match kind {
            ScoreKind::Probability => rejection::probability_scores(logits, classes, t),
            ScoreKind::Energy => rejection::energy_scores(logits, classes, t),
            ScoreKind::Mahalanobis => self.density.scores(features),
        }
    }

    /// Each image's judgement.
    pub fn judge(&self, logits: &[f32], features: &[f32], classes: usize) -> Vec<Judgement> {
        let threshold = self.threshold();
        self.scores(self.record.score, logits, features, classes)
            .into_iter()
            .map(|score| Judgement { unknown: rejection::is_rejected(score, threshold), score })
            .collect()
    }
}

impl Trust {
    /// Writes the trust into `files`.
    pub fn save(&self, files: &TrustFiles) -> Result<()> {
        let (means, precision) = self.density.parts();
        let mut tensors = NamedTensors::new(files.density.display().to_string());
        let (classes, dim) = (self.density.classes, self.density.dim);
        tensors.insert("means", vec![classes, dim], means.iter().map(|&v| v as f32).collect());
        tensors.insert("precision", vec![dim, dim], precision.iter().map(|&v| v as f32).collect());
        tensors.write_safetensors(&files.density)?;
        crate::run::write_json(&files.record, &self.record)
    }

    /// The trust kept in `files`, if there is one.
    pub fn load(files: &TrustFiles) -> Result<Option<Self>> {
        if !files.record.exists() {
            return Ok(None);
        }
        let record: TrustRecord = crate::run::read_json(&files.record)?;
        let mut tensors = NamedTensors::read_safetensors(&files.density)?;
        let mut take = |name: &str| {
            tensors.tensors.remove(name).ok_or_else(|| {
                anyhow::anyhow!("{} has no `{name}` tensor", files.density.display())
            })
        };
        let (means, precision) = (take("means")?, take("precision")?);
        anyhow::ensure!(
            means.shape.len() == 2,
            "{}: the means are not a matrix",
            files.density.display()
        );
        let (classes, dim) = (means.shape[0], means.shape[1]);
        anyhow::ensure!(
            precision.shape == [dim, dim],
            "{} holds a precision matrix of shape {:?} for {dim} features",
            files.density.display(),
            precision.shape
        );
        let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect();
        let density =
            FeatureDensity::from_parts(widen(means.values), widen(precision.values), classes, dim);
        Ok(Some(Trust { record, density }))
    }
}
