//! The runs of a report, loaded: record, history, evaluations (computed when missing), and
//! the label each is shown under.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::Device;

use super::evaluation::write_evaluation;
use crate::config::{Init, Mode, TrainConfig};
use crate::data::LabeledImage;
use crate::eval::Evaluation;
use crate::eval::run::{RunEvaluation, evaluate_run, evaluation_images, validation_evaluation_dir};
use crate::run::{History, RunDir, RunRecord, read_json};

/// A run with everything the report needs.
pub struct LoadedRun {
    pub run: RunDir,
    pub record: RunRecord,
    pub history: History,
    /// On the validation images.
    pub evaluation: Evaluation,
    /// Other evaluations found in the run folder (`evaluate --data`), by folder name.
    pub other_evaluations: Vec<(String, Evaluation)>,
    pub files: Vec<LabeledImage>,
    pub classes: Vec<String>,
    pub label: String,
}

impl LoadedRun {
    pub fn config(&self) -> &TrainConfig {
        &self.record.config
    }
}

/// Loads `paths` for a report on `device` (evaluating runs that have not been evaluated).
pub fn load(paths: &[PathBuf], device: &Device) -> Result<Vec<LoadedRun>> {
    let records: Vec<RunRecord> =
        paths.iter().map(|path| RunDir::open(path)?.read_record()).collect::<Result<_>>()?;
    let labels = labels(&records, paths);
    let mut loaded = Vec::new();
    for ((path, record), label) in paths.iter().zip(records).zip(labels) {
        let run = RunDir::open(path)?;
        let history = run.read_history()?;
        let RunEvaluation { evaluation, files, classes } =
            load_or_evaluate(&run, &history, device)?;
        let other_evaluations = other_evaluations(&run);
        loaded.push(LoadedRun {
            run,
            record,
            history,
            evaluation,
            other_evaluations,
            files,
            classes,
            label,
        });
    }
    Ok(loaded)
}

/// The run's validation evaluation, from `RUN/evaluation` (written by `evaluate`, or by
/// training from the best epoch's validation pass) or computed now; its tables and pictures
/// are written beside it when missing.
fn load_or_evaluate(run: &RunDir, history: &History, device: &Device) -> Result<RunEvaluation> {
    let dir = validation_evaluation_dir(run);
    let classes = run.read_classes()?;
    if let Some(loaded) = saved_evaluation(run, history, &classes)? {
        if !dir.join("confusion.csv").exists() {
            write_evaluation(&dir, &loaded.evaluation, &loaded.classes, &loaded.files)?;
        }
        return Ok(loaded);
    }
    let evaluated = evaluate_run(run, None, false, true, false, device)?;
    write_evaluation(&dir, &evaluated.evaluation, &evaluated.classes, &evaluated.files)?;
    Ok(evaluated)
}

/// The saved validation evaluation when it is of the images the run validates on now and,
/// when training wrote it, of the epoch that `model-best` holds.
fn saved_evaluation(
    run: &RunDir,
    history: &History,
    classes: &[String],
) -> Result<Option<RunEvaluation>> {
    let saved = validation_evaluation_dir(run).join("evaluation.json");
    if !saved.exists() {
        return Ok(None);
    }
    let mut evaluation: Evaluation = read_json(&saved)?;
    let best_epoch = history.best().map(|e| e.epoch);
    if evaluation.epoch.is_some() && evaluation.epoch != best_epoch {
        return Ok(None);
    }
    let files = evaluation_images(run, None, classes)?;
    if evaluation.metrics.images != files.len() {
        return Ok(None);
    }
    // Evaluations saved before mistakes named their files get the names now.
    evaluation.name_files(&files, &run.read_record()?.config.data);
    Ok(Some(RunEvaluation { evaluation, files, classes: classes.to_vec() }))
}

/// Evaluations on other folders (`RUN/evaluation-NAME/evaluation.json`), e.g. the Test/ split.
fn other_evaluations(run: &RunDir) -> Vec<(String, Evaluation)> {
    let Ok(entries) = std::fs::read_dir(&run.path) else { return Vec::new() };
    let mut found: Vec<(String, Evaluation)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let name = name.strip_prefix("evaluation-")?.to_string();
            let evaluation = read_json(&entry.path().join("evaluation.json")).ok()?;
            Some((name, evaluation))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Labels for the runs: "Pretrained" / "Vanilla" (with the mode when the modes differ), or
/// the runs' folder names when those would not tell them apart.
fn labels(records: &[RunRecord], paths: &[PathBuf]) -> Vec<String> {
    let modes_differ = records.iter().any(|r| r.config.mode != records[0].config.mode);
    let labels: Vec<String> = records.iter().map(|r| label(&r.config, modes_differ)).collect();
    let distinct = labels.iter().collect::<std::collections::BTreeSet<_>>().len() == labels.len();
    if distinct {
        return labels;
    }
    let names: Vec<String> = paths
        .iter()
        .map(|p| {
            p.file_name().map_or(p.display().to_string(), |n| n.to_string_lossy().into_owned())
        })
        .collect();
    let distinct = names.iter().collect::<std::collections::BTreeSet<_>>().len() == names.len();
    if distinct { names } else { paths.iter().map(|p| p.display().to_string()).collect() }
}

/// A run's label: by initialisation, plus the mode if `modes_differ`.
fn label(config: &TrainConfig, modes_differ: bool) -> String {
    let init = match config.init {
        Init::Imagenet => "Pretrained",
        Init::Random => "Vanilla",
    };
    if modes_differ {
        let mode = match config.mode {
            Mode::Finetune => "fine-tuned",
            Mode::Frozen => "frozen",
        };
        format!("{init} ({mode})")
    } else {
        init.to_string()
    }
}
