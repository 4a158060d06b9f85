//! The numbers of a comparison: one summary per run, computed from its saved history and
//! evaluations; `summary.json`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::runs::LoadedRun;
use crate::config::{Init, Mode};
use crate::eval::Metrics;
use crate::run::EpochRecord;

/// One trained model, as the report shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelSummary {
    /// "Pretrained" or "Vanilla" (with the mode when the runs differ in it), or the run's
    /// folder name when those would not tell the runs apart.
    pub label: String,
    pub run: PathBuf,
    pub init: Init,
    pub mode: Mode,
    pub epochs: usize,
    pub images_seen: u64,
    /// The best checkpoint (`model-best.safetensors`): its epoch and validation accuracy.
    pub best_val_accuracy: f64,
    pub best_epoch: usize,
    /// The last epoch's validation accuracy and loss.
    pub final_val_accuracy: f64,
    pub final_val_loss: f64,
    /// First epoch with validation accuracy of at least 95% / 99%, if any.
    pub epoch_reached_95: Option<usize>,
    pub epoch_reached_99: Option<usize>,
    /// Training images seen when validation first reached 99%, if it did.
    pub images_to_99: Option<u64>,
    /// Mean wall time of an epoch: training plus validation.
    pub seconds_per_epoch: f64,
    /// Mean training throughput.
    pub train_images_per_second: f64,
    /// Decoding + feature extraction + all epochs.
    pub total_seconds: f64,
    /// The best checkpoint on the validation images (top-5 etc.).
    pub evaluation: Option<Metrics>,
    /// The best checkpoint's balanced accuracy and macro-F1 on the validation images (each
    /// class counts alike).
    #[serde(default)]
    pub balanced_accuracy: f64,
    #[serde(default)]
    pub macro_f1: f64,
    /// The best checkpoint on other folders (`fruitlab evaluate --data`), e.g. `test`.
    pub other_evaluations: Vec<(String, Metrics)>,
    /// The run's K-fold cross-validation over its training and validation images
    /// (`--folds`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<crate::train::folds::CrossValidation>,
    /// Size of the run folder on disk.
    pub folder_bytes: u64,
}

/// The content of `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub dataset: PathBuf,
    pub dataset_name: String,
    pub generated: String,
    /// What the comparison shows, in sentences computed from the histories.
    pub findings: Vec<String>,
    pub models: Vec<ModelSummary>,
}

fn reached(epochs: &[EpochRecord], threshold: f64) -> Option<&EpochRecord> {
    epochs.iter().find(|e| e.val_accuracy >= threshold)
}

pub fn summarise(run: &LoadedRun) -> ModelSummary {
    let history = &run.history;
    let epochs = &history.epochs;
    let best = history.best();
    let last = epochs.last();
    let n = epochs.len().max(1) as f64;
    let epoch_seconds: f64 = epochs.iter().map(|e| e.train_seconds + e.val_seconds).sum();
    ModelSummary {
        label: run.label.clone(),
        run: run.run.path().to_path_buf(),
        init: run.config().init,
        mode: run.config().mode,
        epochs: epochs.len(),
        images_seen: last.map_or(0, |e| e.images_seen),
        best_val_accuracy: best.map_or(0.0, |e| e.val_accuracy),
        best_epoch: best.map_or(0, |e| e.epoch),
        final_val_accuracy: last.map_or(0.0, |e| e.val_accuracy),
        final_val_loss: last.map_or(f64::NAN, |e| e.val_loss),
        epoch_reached_95: reached(epochs, 0.95).map(|e| e.epoch),
        epoch_reached_99: reached(epochs, 0.99).map(|e| e.epoch),
        images_to_99: reached(epochs, 0.99).map(|e| e.images_seen),
        seconds_per_epoch: epoch_seconds / n,
        train_images_per_second: epochs.iter().map(|e| e.train_images_per_second).sum::<f64>() / n,
        total_seconds: history.decode_seconds
            + history.feature_seconds
            + history.head_warmup_seconds
            + epoch_seconds,
        evaluation: Some(run.evaluation.metrics),
        balanced_accuracy: run.evaluation.balanced_accuracy,
        macro_f1: run.evaluation.macro_f1,
        other_evaluations: run
            .other_evaluations
            .iter()
            .map(|(name, e)| (name.clone(), e.metrics))
            .collect(),
        cross_validation: run.cross_validation.clone(),
        folder_bytes: run.run.size_bytes(),
    }
}
