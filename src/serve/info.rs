//! What `GET /v1/model` says: the classes, the input, where the model came from and how it
//! was trained.

use serde::Serialize;

use crate::config::{Init, Mode, Recipe};
use crate::data::ValSplit;
use crate::inference::Predictor;
use crate::preprocess::Normalization;
use crate::run::RunDir;

/// The answer of `GET /v1/model`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub classes: Vec<String>,
    pub image_size: usize,
    pub normalization: Normalization,
    /// The run folder, or the weights (`imagenet` or a file).
    pub source: String,
    pub training: Training,
    /// How this server computes.
    pub compute: ComputeInfo,
    /// How far the probabilities can be believed, and how "none of these" is decided (a
    /// trained run's best model; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationInfo>,
    /// Why the answers are not calibrated, when a trained run's model is not (yet) the one
    /// its calibration was fitted for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration_note: Option<String>,
}

/// The calibration and rejection a model's answers carry.
#[derive(Clone, Debug, Serialize)]
pub struct CalibrationInfo {
    pub temperature: f64,
    /// On the validation images, before and after the temperature.
    pub ece_before: f64,
    pub ece_after: f64,
    /// The score deciding "none of these", its threshold and the share of validation images
    /// it rejects; absent with `--no-reject`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject: Option<crate::trust::Threshold>,
}

/// The arithmetic the server's convolutions use.
#[derive(Clone, Debug, Serialize)]
pub struct ComputeInfo {
    pub precision: crate::compute::Precision,
    /// The kernels that run, e.g. "bf16 on AMX".
    pub kernels: String,
}

/// How the model was trained.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Training {
    /// The ImageNet network as published.
    Imagenet { mode: &'static str },
    /// A fruitlab run.
    Run {
        mode: Mode,
        init: Init,
        recipe: Recipe,
        epochs: usize,
        /// Training images seen up to the best epoch.
        images_seen: Option<u64>,
        best_val_accuracy: Option<f64>,
        validation: ValSplit,
    },
}

impl ModelInfo {
    /// What a run's model (or, without a run, the ImageNet weights `weights`) says of itself.
    pub fn describe(
        predictor: &Predictor,
        run: Option<&RunDir>,
        weights: &str,
    ) -> anyhow::Result<Self> {
        let (source, training) = match run {
            Some(dir) => (dir.path().display().to_string(), run_training(dir)?),
            None => (weights.to_string(), Training::Imagenet { mode: "imagenet" }),
        };
        Ok(Self {
            classes: predictor.classes.clone(),
            image_size: predictor.input.size,
            normalization: predictor.input.normalization,
            source,
            training,
            compute: ComputeInfo {
                precision: crate::compute::arithmetic().precision(),
                kernels: crate::compute::arithmetic().describe(),
            },
            calibration_note: predictor.note.clone(),
            calibration: predictor.trust.as_ref().map(|trust| CalibrationInfo {
                temperature: trust.record.temperature,
                ece_before: trust.record.ece_before,
                ece_after: trust.record.ece_after,
                reject: predictor
                    .reject
                    .then(|| {
                        trust
                            .record
                            .thresholds
                            .iter()
                            .find(|t| t.score == trust.record.score)
                            .cloned()
                    })
                    .flatten(),
            }),
        })
    }
}

fn run_training(dir: &RunDir) -> anyhow::Result<Training> {
    let config = dir.read_config()?;
    let history = dir.read_history().ok();
    let best = history.as_ref().and_then(|h| h.best().cloned());
    Ok(Training::Run {
        mode: config.mode,
        init: config.init,
        recipe: config.recipe,
        epochs: history.as_ref().map_or(0, |h| h.epochs.len()),
        images_seen: best.as_ref().map(|b| b.images_seen),
        best_val_accuracy: best.as_ref().map(|b| b.val_accuracy),
        validation: config.images.split(),
    })
}
