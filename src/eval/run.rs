//! Evaluating a trained run on a set of images.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use burn::tensor::Device;

use super::{Evaluation, evaluate, map_images};
use crate::data::{self, ImageFolder, LabeledImage};
use crate::progress::Progress;
use crate::train::RunDir;

/// Images per forward pass.
const EVAL_BATCH: usize = 32;

/// The images to evaluate on, labelled with the run's class indices.
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

/// Evaluates the run's best (or last) model on `data` (see [`evaluation_images`]). Returns the
/// evaluation, the evaluated files (unreadable ones left out when `skip_bad`) and the classes.
pub fn evaluate_run(
    run: &RunDir,
    data: Option<&Path>,
    last: bool,
    skip_bad: bool,
    device: &Device,
) -> Result<(Evaluation, Vec<LabeledImage>, Vec<String>)> {
    let trained = run.load_model(last, device)?;
    let files = evaluation_images(run, data, &trained.classes)?;
    let progress = Progress::new("decode", files.len() as u64);
    let (decoded, bad) = data::decode_all(&files, trained.config.image_size, &|n| {
        progress.update(n as u64, String::new)
    });
    progress.finish();
    data::decoded::ensure_none_bad(&bad, skip_bad)?;
    for image in &bad {
        eprintln!("skipped unreadable image: {}", image.error);
    }
    let kept: Vec<LabeledImage> =
        files.into_iter().filter(|f| !bad.iter().any(|b| b.path == f.path)).collect();
    let decoded = Arc::new(decoded);
    let progress = Progress::new("evaluate", decoded.len() as u64);
    let logits =
        map_images(&decoded, EVAL_BATCH, trained.config.normalization, device, &progress, |x| {
            trained.model.forward(x)
        })?;
    progress.finish();
    Ok((evaluate(&logits, &decoded.labels, &trained.classes), kept, trained.classes))
}
