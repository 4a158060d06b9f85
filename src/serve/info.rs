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
        validation: config.images.val_split,
    })
}
