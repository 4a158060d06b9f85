//! Evaluating a trained run on a set of images.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use burn::tensor::Device;

use super::{Evaluation, evaluate};
use crate::config::Mode;
use crate::data::{self, ImageFolder, LabeledImage};
use crate::features::{FeatureStore, feature_identity, head_logits};
use crate::inference::{Predictor, map_images};
use crate::progress::Progress;
use crate::run::RunDir;

/// The images to evaluate on, labelled with the run's class indices: `data` (a folder of class
/// folders, or a dataset root with `Test/`), or the run's own validation images.
pub fn evaluation_images(
    run: &RunDir,
    data: Option<&Path>,
    classes: &[String],
) -> Result<Vec<LabeledImage>> {
    let Some(dir) = data else {
        let config = run.read_record()?.config;
        return Ok(data::load_splits(&config.data, config.val_split)?.val);
    };
    let folder = if dir.join("Test").is_dir() {
        dir.join("Test")
    } else if dir.join("Training").is_dir() {
        bail!(
            "{} has Training/ but no Test/: pass a folder of class folders, or leave out --data to use the run's validation images",
            dir.display()
        );
    } else {
        dir.to_path_buf()
    };
    let found = ImageFolder::scan(&folder)?;
    let unknown: Vec<&String> = found.classes.iter().filter(|c| !classes.contains(c)).collect();
    if !unknown.is_empty() {
        bail!("{} has classes the model was not trained on: {unknown:?}", folder.display());
    }
    Ok(found
        .images
        .into_iter()
        .map(|image| {
            let label =
                classes.iter().position(|c| *c == found.classes[image.label]).expect("checked");
            LabeledImage { path: image.path, label }
        })
        .collect())
}

/// What [`evaluate_run`] found: the evaluation, the evaluated files (unreadable ones left out
/// when skipping them) and the classes.
pub struct RunEvaluation {
    pub evaluation: Evaluation,
    pub files: Vec<LabeledImage>,
    pub classes: Vec<String>,
}

/// Evaluates the run's best (or last) model on `data` (see [`evaluation_images`]).
pub fn evaluate_run(
    run: &RunDir,
    data: Option<&Path>,
    last: bool,
    skip_bad: bool,
    device: &Device,
) -> Result<RunEvaluation> {
    let predictor = Predictor::from_run(run, last, device)?;
    let files = evaluation_images(run, data, &predictor.classes)?;
    let decoded = data::decode_labeled(&files, predictor.input.size, "decode")?;
    data::decoded::ensure_none_bad(&decoded.bad, skip_bad)?;
    for image in &decoded.bad {
        eprintln!("skipped unreadable image: {}", image.error);
    }
    let images = Arc::new(decoded.images);
    let config = run.read_record()?.config;
    let logits = if config.mode == Mode::Frozen && config.feature_cache {
        // A frozen backbone is the pretrained one: its features of these images may already
        // be in the store (training computed them; a second evaluation certainly has).
        let mut store = FeatureStore::open(&feature_identity(&config)?)?;
        let backbone = &predictor.model.backbone;
        let features = store.features(
            backbone,
            &images,
            &decoded.files,
            predictor.input.normalization,
            device,
            "features",
        )?;
        head_logits(&predictor.model.head, &features, device)?
    } else {
        let progress = Progress::new("evaluate", images.len() as u64);
        let logits = map_images(
            &images,
            predictor.input.normalization,
            device,
            |n| progress.update(n as u64, String::new),
            |x| predictor.model.forward(x),
        )?;
        progress.finish();
        logits
    };
    Ok(RunEvaluation {
        evaluation: evaluate(&logits, &images.labels, &predictor.classes)?,
        files: decoded.files,
        classes: predictor.classes,
    })
}
