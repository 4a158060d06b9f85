//! Evaluating a trained run on a set of images.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use burn::tensor::Device;

use super::{Evaluation, evaluate};
use crate::config::Mode;
use crate::config::TrainConfig;
use crate::data::DecodedImages;
use crate::data::{self, ImageFolder, LabeledImage};
use crate::features::{FeatureStore, feature_identity, head_logits};
use crate::inference::{Predictor, map_images, softmax};
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
    let folder = evaluation_folder(dir)?;
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

/// The folder of class folders that `--data DIR` names: `DIR/Test` when there is one, else
/// `DIR` itself.
pub fn evaluation_folder(dir: &Path) -> Result<std::path::PathBuf> {
    if dir.join("Test").is_dir() {
        return Ok(dir.join("Test"));
    }
    if dir.join("Training").is_dir() {
        bail!(
            "{} has Training/ but no Test/: pass a folder of class folders, or leave out --data to use the run's validation images",
            dir.display()
        );
    }
    Ok(dir.to_path_buf())
}

/// Where an evaluation is written in the run folder: `evaluation/` for the validation
/// images, `evaluation-NAME/` for the folder NAME (e.g. `evaluation-test/`), so that neither
/// overwrites the other.
pub fn evaluation_dir(run: &RunDir, data: Option<&Path>) -> Result<std::path::PathBuf> {
    let Some(dir) = data else { return Ok(validation_evaluation_dir(run)) };
    let folder = evaluation_folder(dir)?;
    let name = folder.file_name().map_or("data".into(), |n| n.to_string_lossy().to_lowercase());
    let name: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    Ok(run.file(&format!("evaluation-{name}")))
}

/// Where the evaluation on the run's own validation images is written (by training, from the
/// best epoch's validation pass, and by `evaluate` and `report`).
pub fn validation_evaluation_dir(run: &RunDir) -> std::path::PathBuf {
    run.file("evaluation")
}

/// What [`evaluate_run`] found: the evaluation, the evaluated files (unreadable ones left out
/// when skipping them) and the classes.
pub struct RunEvaluation {
    pub evaluation: Evaluation,
    pub files: Vec<LabeledImage>,
    pub classes: Vec<String>,
}

/// Evaluates the run's best (or last) model on `data` (see [`evaluation_images`]). With
/// `mirrored_too` (test-time augmentation), each image's class probabilities are the mean of
/// the image's and its mirror image's (twice the cost).
pub fn evaluate_run(
    run: &RunDir,
    data: Option<&Path>,
    last: bool,
    skip_bad: bool,
    mirrored_too: bool,
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
    let mut logits = logits_of(&predictor, &config, &images, &decoded.files, false, device)?;
    if mirrored_too {
        let mirrored = Arc::new(images.mirrored());
        let flipped = logits_of(&predictor, &config, &mirrored, &decoded.files, true, device)?;
        logits = mean_probabilities(&logits, &flipped, predictor.classes.len());
    }
    let mut evaluation = evaluate(&logits, &images.labels, &predictor.classes)?;
    evaluation.name_files(&decoded.files, data.unwrap_or(&config.data));
    evaluation.data = data.map(Path::to_path_buf);
    evaluation.mirrored_too = mirrored_too;
    Ok(RunEvaluation { evaluation, files: decoded.files, classes: predictor.classes })
}

/// The model's logits for `images` (`mirrored`: the mirror images of `files`).
fn logits_of(
    predictor: &Predictor,
    config: &TrainConfig,
    images: &Arc<DecodedImages>,
    files: &[LabeledImage],
    mirrored: bool,
    device: &Device,
) -> Result<Vec<f32>> {
    if config.mode == Mode::Frozen && config.feature_cache {
        // A frozen backbone is the pretrained one: its features of these images may already
        // be in the store (training computed them; a second evaluation certainly has).
        let identity = feature_identity(config)?;
        let identity = if mirrored { format!("{identity}|mirrored") } else { identity };
        let mut store = FeatureStore::open(&identity)?;
        let features = store.features(
            &predictor.model.backbone,
            images,
            files,
            predictor.input.normalization,
            device,
            "features",
        )?;
        return head_logits(&predictor.model.head, &features, device);
    }
    let progress = Progress::new("evaluate", images.len() as u64);
    let logits = map_images(
        images,
        predictor.input.normalization,
        device,
        |n| progress.update(n as u64, String::new),
        |x| predictor.model.forward(x),
    )?;
    progress.finish();
    Ok(logits)
}

/// Rows of `ln((softmax(a) + softmax(b)) / 2)`: logits whose softmax is the mean of two
/// predictions' probabilities.
fn mean_probabilities(a: &[f32], b: &[f32], classes: usize) -> Vec<f32> {
    a.chunks_exact(classes)
        .zip(b.chunks_exact(classes))
        .flat_map(|(a, b)| {
            let (pa, pb) = (softmax(a), softmax(b));
            pa.into_iter()
                .zip(pb)
                .map(|(x, y)| ((x + y) / 2.0).max(f32::MIN_POSITIVE).ln())
                .collect::<Vec<_>>()
        })
        .collect()
}
