//! Saving and restoring the training state: the model, both optimizers and the progress.

use std::collections::HashMap;

use anyhow::{Context, Result};
use burn::optim::ModuleOptimizer;

use crate::config::TrainConfig;
use crate::model::Classifier;
use crate::run::{EpochRecord, ResumeState, RunDir};

/// The optimizers of a run: the new top's, and the backbone's when it trains.
pub struct Optimizers {
    pub head: ModuleOptimizer,
    pub backbone: Option<ModuleOptimizer>,
}

impl Optimizers {
    /// Fresh optimizers for `config`.
    pub fn new(config: &TrainConfig) -> Self {
        Self {
            head: super::optim::build(config),
            backbone: config.trains_backbone().then(|| super::optim::build(config)),
        }
    }

    /// The optimizer states saved in `state`'s resume checkpoint.
    pub fn restore(self, run: &RunDir, state: &ResumeState) -> Result<Self> {
        let load = |optim: ModuleOptimizer, name: &str| -> Result<ModuleOptimizer> {
            let file = state.optimizer_files.get(name).with_context(|| {
                format!(
                    "the resume checkpoint of {} has no {name} optimizer state",
                    run.path.display()
                )
            })?;
            optim
                .load(run.resume_file(file))
                .map_err(|error| anyhow::anyhow!("cannot load optimizer state {file}: {error}"))
        };
        Ok(Self {
            head: load(self.head, "head")?,
            backbone: self.backbone.map(|optim| load(optim, "backbone")).transpose()?,
        })
    }

    /// Each optimizer's serialised state, by name.
    fn serialised(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let bytes = |optim: &ModuleOptimizer| -> Result<Vec<u8>> {
            let bytes = optim.into_bytes().map_err(|error| {
                anyhow::anyhow!("cannot serialise the optimizer state: {error}")
            })?;
            Ok(bytes.to_vec())
        };
        let mut out = vec![("head", bytes(&self.head)?)];
        if let Some(optim) = &self.backbone {
            out.push(("backbone", bytes(optim)?));
        }
        Ok(out)
    }
}

/// Writes the resume checkpoint of `state`.
pub fn save_resume(
    run: &RunDir,
    model: &Classifier,
    optimizers: &Optimizers,
    state: &ResumeState,
) -> Result<()> {
    let metadata = HashMap::from([("step".to_string(), state.step.to_string())]);
    run.save_resume(model, &metadata, &optimizers.serialised()?, state.clone())
}

/// What `model-best.safetensors` says about itself.
pub fn model_metadata(config: &TrainConfig, record: &EpochRecord) -> HashMap<String, String> {
    HashMap::from([
        ("epoch".to_string(), record.epoch.to_string()),
        ("val_accuracy".to_string(), record.val_accuracy.to_string()),
        ("head".to_string(), format!("{:?}", config.head).to_lowercase()),
        ("layout".to_string(), format!("{:?}", config.layout).to_lowercase()),
    ])
}
