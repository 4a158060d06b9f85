//! Evaluating a trained run on a set of images.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use burn::tensor::Device;

use super::{Evaluation, evaluate};
use crate::data::{self, DecodedImages, ImageFolder, LabeledImage};
use crate::features::{self, FeatureVariant, head_logits};
use crate::inference::stream::{Entry, walk_images};
use crate::inference::{Predictor, map_images, softmax};
use crate::run::{Checkpoint, EvaluationOf, RunDir};
use crate::support::progress::Progress;
use crate::trust::rejection::ScoreKind;

/// The images to evaluate on, labelled with the run's class indices: `data` (a folder of class
/// folders, or a dataset root with `Test/`), or the run's own validation images.
pub fn evaluation_images(
    run: &RunDir,
    data: Option<&Path>,
    classes: &[String],
) -> Result<Vec<LabeledImage>> {
    let Some(dir) = data else {
        let config = run.read_config()?;
        return Ok(data::load_splits(&config.data, config.images.split())?.val);
    };
    let folder = evaluation_folder(dir)?;
    let found = ImageFolder::scan(&folder)?;
    for name in &found.bad_names {
        eprintln!("left out {}: the file name is not valid UTF-8", name.display());
    }
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
pub fn evaluation_folder(dir: &Path) -> Result<PathBuf> {
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

/// Which images of the run folder's evaluations `data` (as `evaluate --data` takes it) is.
pub fn evaluation_of(data: Option<&Path>) -> Result<EvaluationOf> {
    Ok(match data {
        None => EvaluationOf::Validation,
        Some(dir) => EvaluationOf::Folder(evaluation_folder(dir)?),
    })
}

/// How to evaluate a run.
#[derive(Clone, Copy, Debug)]
pub struct EvaluationRequest<'a> {
    /// The images (see [`evaluation_images`]); `None` for the run's validation images.
    pub data: Option<&'a Path>,
    pub checkpoint: Checkpoint,
    /// Leave out unreadable images (listed) instead of failing.
    pub skip_bad_images: bool,
    /// Test-time augmentation: each image's class probabilities are the mean of the image's
    /// and its mirror image's (twice the cost).
    pub mirrored_too: bool,
    /// Judge "none of these" (where the model can tell).
    pub reject: bool,
}

impl EvaluationRequest<'_> {
    /// The best model on the run's validation images, failing on an unreadable image.
    pub const VALIDATION: EvaluationRequest<'static> = EvaluationRequest {
        data: None,
        checkpoint: Checkpoint::Best,
        skip_bad_images: false,
        mirrored_too: false,
        reject: true,
    };
}

/// What [`evaluate_run`] found: the evaluation, the evaluated files (unreadable ones left out
/// when skipping them) and the classes.
pub struct RunEvaluation {
    pub evaluation: Evaluation,
    pub files: Vec<LabeledImage>,
    pub classes: Vec<String>,
}

/// Evaluates a run's model as `request` says.
pub fn evaluate_run(
    run: &RunDir,
    request: EvaluationRequest,
    device: &Device,
) -> Result<RunEvaluation> {
    let predictor = Predictor::from_run(run, request.checkpoint, device)?;
    let predictor = if request.reject { predictor } else { predictor.without_rejection() };
    let files = evaluation_images(run, request.data, &predictor.classes)?;
    let decoded = data::decode_labeled(&files, &predictor.input, "decode")?;
    data::decoded::ensure_none_bad(&decoded.bad, request.skip_bad_images)?;
    for image in &decoded.bad {
        eprintln!("skipped unreadable image: {}", image.error);
    }
    let images = Arc::new(decoded.images);
    let config = run.read_config()?;
    // Pooled features, then the top: a frozen backbone is the pretrained one, so its features
    // of these images may already be in the store (training computed them; a second
    // evaluation certainly has).
    let features_of = |images: &Arc<DecodedImages>, variant| -> Result<Vec<f32>> {
        let backbone = &predictor.model.backbone;
        if config.uses_feature_store() {
            return features::lookup(&config, variant, backbone, images, device, "features")?
                .to_vec();
        }
        let progress = Progress::new("evaluate", images.len() as u64);
        let rows = map_images(
            images,
            predictor.input.normalization,
            device,
            |n| progress.update(n as u64, String::new),
            |x| backbone.features(x),
        )?;
        progress.finish();
        Ok(rows)
    };
    let features = features_of(&images, FeatureVariant::Plain)?;
    let mut logits = head_logits(&predictor.model.head, &features, device)?;
    let classes = predictor.classes.len();
    let trust = predictor.trust.as_ref();
    let calibration = trust.map(|trust| {
        super::CalibrationSummary::of(&logits, &images.labels, classes, trust.record.temperature)
    });
    let rejected = trust.filter(|_| predictor.reject).map(|trust| {
        let judged = trust.judge(&logits, &features, classes);
        judged.iter().filter(|j| j.unknown).count() as f64 / judged.len().max(1) as f64
    });
    if request.mirrored_too {
        let mirrored = features_of(&Arc::new(images.mirrored()), FeatureVariant::Mirrored)?;
        let flipped = head_logits(&predictor.model.head, &mirrored, device)?;
        logits = mean_probabilities(&logits, &flipped, classes);
    }
    let mut evaluation = evaluate(&logits, &images.labels, &predictor.classes)?;
    evaluation.calibration = calibration;
    evaluation.rejected = rejected;
    evaluation.name_files(&decoded.files, request.data.unwrap_or(&config.data));
    evaluation.data = request.data.map(Path::to_path_buf);
    evaluation.mirrored_too = request.mirrored_too;
    if request.data.is_some() {
        let files = run.read_dataset_files()?;
        let (training, validation) = files.overlap(&images.hashes);
        evaluation.overlap = Some(super::Overlap { training, validation });
    }
    Ok(RunEvaluation { evaluation, files: decoded.files, classes: predictor.classes })
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

/// How a model meets images of none of its classes: of a folder of them, how many it
/// rejects as "none of these", by the deciding score and by each of the others.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OodReport {
    pub folder: PathBuf,
    pub images: usize,
    pub unreadable: usize,
    /// The deciding score.
    pub score: ScoreKind,
    /// Images the deciding score rejects.
    pub rejected: usize,
    /// Every score: the images it would reject, and the share of the validation images its
    /// threshold rejected when it was set.
    pub by_score: Vec<ScoreRejection>,
}

/// What one score would reject.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScoreRejection {
    pub score: ScoreKind,
    pub rejected: usize,
    pub validation_rejected: f64,
}

/// Runs the best model of `run` over every image under `folder` (images of other things) and
/// counts the ones each score rejects.
pub fn evaluate_ood(run: &RunDir, folder: &Path, device: &Device) -> Result<OodReport> {
    let predictor = Predictor::from_run(run, Checkpoint::Best, device)?;
    let Some(trust) = predictor.trust.as_ref() else {
        bail!(
            "{}: {}",
            run.path().display(),
            predictor.note.as_deref().unwrap_or("the run has no calibration")
        );
    };
    // What cannot be walked (a broken link, a folder not ours to read) counts as unreadable.
    let mut paths = Vec::new();
    let mut unreadable = 0;
    for entry in walk_images(&[folder.to_path_buf()]) {
        match entry {
            Entry::Image(path) => paths.push(path),
            Entry::Bad(..) => unreadable += 1,
        }
    }
    anyhow::ensure!(!paths.is_empty(), "no images found under {}", folder.display());
    let thresholds = &trust.record.thresholds;
    let classes = predictor.classes.len();
    let mut rejected = vec![0; thresholds.len()];
    let mut readable = 0;
    let progress = Progress::new("other images", paths.len() as u64);
    let mut done = 0;
    for chunk in paths.chunks(crate::inference::BATCH * 4) {
        crate::support::interrupt::check()?;
        let loaded = predictor.load_all(chunk);
        unreadable += loaded.iter().filter(|image| image.is_err()).count();
        let images: Vec<_> = loaded.into_iter().filter_map(Result::ok).collect();
        readable += images.len();
        let (logits, features) = predictor.outputs(&images)?;
        for (count, threshold) in rejected.iter_mut().zip(thresholds) {
            let scores = trust.scores(threshold.score, &logits, &features, classes);
            *count += scores
                .iter()
                .filter(|&&score| crate::trust::rejection::is_rejected(score, threshold.threshold))
                .count();
        }
        done += chunk.len();
        progress.update(done as u64, String::new);
    }
    progress.finish();
    let by_score: Vec<ScoreRejection> = thresholds
        .iter()
        .zip(rejected)
        .map(|(t, rejected)| ScoreRejection {
            score: t.score,
            rejected,
            validation_rejected: t.validation_rejected,
        })
        .collect();
    let deciding =
        by_score.iter().find(|s| s.score == trust.record.score).map_or(0, |s| s.rejected);
    Ok(OodReport {
        folder: folder.to_path_buf(),
        images: readable,
        unreadable,
        score: trust.record.score,
        rejected: deciding,
        by_score,
    })
}
