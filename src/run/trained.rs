//! Loading the model a run trained, ready for inference.

use anyhow::{Result, bail};
use burn::tensor::Device;

use super::{Checkpoint, RunDir};
use crate::config::TrainConfig;
use crate::model::Classifier;
use crate::weights::checkpoint;

/// A trained model ready for inference, its classes and configuration.
pub struct TrainedModel {
    /// The inference network (batch norms folded).
    pub model: Classifier,
    pub classes: Vec<String>,
    pub config: TrainConfig,
}

impl RunDir {
    /// The run's best model (`model-best.safetensors`) or its latest.
    pub fn load_model(&self, which: Checkpoint, device: &Device) -> Result<TrainedModel> {
        let config = self.read_config()?;
        let classes = self.read_classes()?;
        let path = self.model_path(which);
        if !path.exists() {
            bail!(
                "{} has no trained model yet ({} is missing)",
                self.path().display(),
                path.display()
            );
        }
        let mut template =
            Classifier::new(config.model.layout, config.model.head, classes.len(), device);
        if config.folds_batchnorm() {
            template.backbone = template.backbone.fold_batchnorm();
        }
        let model = checkpoint::load(template, &path)?.inference();
        Ok(TrainedModel { model, classes, config })
    }
}
