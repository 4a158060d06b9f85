//! The trust of a finished run's best model, fitted at the end of training: the temperature
//! and the thresholds on the validation images, the feature density on a sample of the
//! training images (see [`crate::trust`]).

use std::sync::Arc;

use anyhow::Result;
use burn::tensor::Device;

use crate::config::TrainConfig;
use crate::data::DecodedImages;
use crate::features::{self, FeatureVariant, head_logits};
use crate::inference::map_images;
use crate::model::Classifier;
use crate::model::resnet::FEATURE_DIM;
use crate::support::progress::Progress;
use crate::trust::rejection::{self, FeatureDensity, ScoreKind};
use crate::trust::{
    DEFAULT_SCORE, DENSITY_IMAGES_PER_CLASS, Threshold, Trust, TrustRecord, calibration,
};

/// The trust of a run's best model `model` (an inference network of a run configured by
/// `config`, its weights `identity`), from its logits and pooled features of the validation
/// images (labels `val_labels`) and a sample of its training images `train`.
#[allow(clippy::too_many_arguments)]
pub fn fit_trust(
    model: &Classifier,
    identity: &str,
    config: &TrainConfig,
    val_logits: &[f32],
    val_features: &[f32],
    val_labels: &[usize],
    train: &Arc<DecodedImages>,
    device: &Device,
) -> Result<Trust> {
    let classes = model.head.num_classes();
    let reject_rate = config.model.reject_rate;
    let temperature = calibration::fit_temperature(val_logits, val_labels, classes);
    let reliability_before = calibration::reliability(val_logits, val_labels, classes);
    let scaled = calibration::scaled(val_logits, temperature);
    let reliability_after = calibration::reliability(&scaled, val_labels, classes);
    let sample = Arc::new(train.subset(&per_class_sample(&train.labels, classes))?);
    let train_features =
        pooled_features(config, model, &sample, device, "trust: training features")?;
    let density = FeatureDensity::fit(&train_features, &sample.labels, classes, FEATURE_DIM);
    let mut trust = Trust {
        record: TrustRecord {
            model: identity.to_string(),
            validation_images: val_labels.len(),
            temperature,
            ece_before: calibration::expected_calibration_error(&reliability_before),
            ece_after: calibration::expected_calibration_error(&reliability_after),
            reliability_before,
            reliability_after,
            reject_rate,
            score: DEFAULT_SCORE,
            thresholds: Vec::new(),
        },
        density,
    };
    trust.record.thresholds = ScoreKind::ALL
        .iter()
        .map(|&kind| {
            let scores = trust.scores(kind, val_logits, val_features, classes);
            let threshold = rejection::threshold_at(&scores, reject_rate);
            Threshold {
                score: kind,
                threshold,
                validation_rejected: rejection::rejected_share(&scores, threshold),
            }
        })
        .collect();
    Ok(trust)
}

/// The logits and pooled features of `images` through `model`.
pub fn logits_and_features(
    config: &TrainConfig,
    model: &Classifier,
    images: &Arc<DecodedImages>,
    device: &Device,
    label: &str,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let features = pooled_features(config, model, images, device, label)?;
    Ok((head_logits(&model.head, &features, device)?, features))
}

/// Up to [`DENSITY_IMAGES_PER_CLASS`] images of each class, spread over the class.
fn per_class_sample(labels: &[usize], classes: usize) -> Vec<usize> {
    let mut by_class = vec![Vec::new(); classes];
    for (i, &label) in labels.iter().enumerate() {
        by_class[label].push(i);
    }
    by_class
        .iter()
        .flat_map(|images| {
            let step = images.len().div_ceil(DENSITY_IMAGES_PER_CLASS).max(1);
            images.iter().step_by(step).copied().collect::<Vec<_>>()
        })
        .collect()
}

/// The pooled backbone features of `images` through `model`: from the feature store when the
/// run's backbone is the frozen one it keeps, else computed.
pub fn pooled_features(
    config: &TrainConfig,
    model: &Classifier,
    images: &Arc<DecodedImages>,
    device: &Device,
    label: &str,
) -> Result<Vec<f32>> {
    if config.uses_feature_store() {
        return features::lookup(
            config,
            FeatureVariant::Plain,
            &model.backbone,
            images,
            device,
            label,
        )?
        .to_vec();
    }
    let progress = Progress::new(label, images.len() as u64);
    let rows = map_images(
        images,
        config.images.normalization,
        device,
        |n| progress.update(n as u64, String::new),
        |x| model.backbone.features(x),
    )?;
    progress.finish();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_density_sample_spreads_over_every_class() {
        let labels: Vec<usize> = (0..1000).map(|i| if i < 950 { 0 } else { 1 }).collect();
        let sample = per_class_sample(&labels, 2);
        let class_0 = sample.iter().filter(|&&i| labels[i] == 0).count();
        let class_1 = sample.iter().filter(|&&i| labels[i] == 1).count();
        assert!((90..=100).contains(&class_0), "{class_0}");
        assert_eq!(class_1, 50, "a small class gives all its images");
    }
}
