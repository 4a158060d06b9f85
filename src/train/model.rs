//! The network a run trains: backbone (ImageNet or random), a new top, batch norms set for
//! the mode.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::Device;

use crate::config::{Init, Mode, TrainConfig};
use crate::model::Classifier;
use crate::weights;

/// The model as configured, on the autodiff device `ad`.
pub fn build_model(config: &TrainConfig, num_classes: usize, ad: &Device) -> Result<Classifier> {
    let mut model = Classifier::new(config.model.layout, config.model.head, num_classes, ad);
    if config.init == Init::Imagenet {
        model.backbone =
            weights::imagenet_backbone(model.backbone, config.model.weights.as_deref(), ad)?;
    }
    model.backbone = model.backbone.with_batchnorm(config.training_batchnorm());
    model.backbone = match config.mode {
        Mode::Frozen => model.backbone.freeze(),
        Mode::Finetune => model.backbone.train_from(config.model.train_from),
    };
    Ok(model)
}
