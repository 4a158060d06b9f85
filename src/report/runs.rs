//! The runs of a report, loaded: record, history, evaluations (computed when missing), and
//! the label each is shown under.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::Device;

use super::evaluation::write_evaluation;
use crate::config::{Init, Mode, TrainConfig};
use crate::data::LabeledImage;
use crate::eval::Evaluation;
use crate::eval::run::{EvaluationRequest, RunEvaluation, evaluate_run, evaluation_images};
use crate::run::{EvaluationOf, History, RunDir, RunRecord};

/// A run with everything the report needs.
pub struct LoadedRun {
    pub run: RunDir,
    pub record: RunRecord,
    pub history: History,
    /// On the validation images.
    pub evaluation: Evaluation,
    /// Other evaluations found in the run folder (`evaluate --data`), by folder name.
    pub other_evaluations: Vec<(String, Evaluation)>,
    /// The run's K-fold cross-validation (`--folds`), when it has one.
    pub cross_validation: Option<crate::train::folds::CrossValidation>,
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
    let runs: Vec<RunDir> = paths.iter().map(|path| RunDir::open(path)).collect::<Result<_>>()?;
    let records: Vec<RunRecord> = runs.iter().map(RunDir::read_record).collect::<Result<_>>()?;
    ensure_comparable(&runs, &records)?;
    let labels = labels(&records, paths);
    let mut loaded = Vec::new();
    for ((run, record), label) in runs.into_iter().zip(records).zip(labels) {
        let history = run.read_history()?;
        anyhow::ensure!(
            !history.epochs.is_empty(),
            "{} has not finished an epoch yet: there is nothing to report of it",
            run.path().display()
        );
        let RunEvaluation { evaluation, files, classes } =
            load_or_evaluate(&run, &history, device)?;
        let other_evaluations = run.folder_evaluations();
        let cross_validation = run.read_cross_validation()?;
        loaded.push(LoadedRun {
            run,
            record,
            history,
            evaluation,
            other_evaluations,
            cross_validation,
            files,
            classes,
            label,
        });
    }
    Ok(loaded)
}

/// Runs are compared only on the same classes of the same dataset (the same folder): a
/// difference in accuracy between other runs would mean nothing.
fn ensure_comparable(runs: &[RunDir], records: &[RunRecord]) -> Result<()> {
    let classes: Vec<Vec<String>> = runs.iter().map(RunDir::read_classes).collect::<Result<_>>()?;
    for i in 1..runs.len() {
        let (a, b) = (runs[0].path().display(), runs[i].path().display());
        let (data_a, data_b) = (&records[0].config.data, &records[i].config.data);
        if crate::support::absolute(data_a) != crate::support::absolute(data_b) {
            anyhow::bail!(
                "{a} and {b} were trained on different datasets ({} and {}): their accuracies cannot be compared; report them separately",
                data_a.display(),
                data_b.display()
            );
        }
        if classes[i] != classes[0] {
            anyhow::bail!(
                "{a} and {b} have different classes ({} and {}): their accuracies cannot be compared; report them separately",
                classes[0].len(),
                classes[i].len()
            );
        }
    }
    Ok(())
}

/// The run's validation evaluation, as saved (by training, from the best epoch's validation
/// pass, or by `evaluate`) or computed now; its tables and pictures are written beside it
/// when missing.
fn load_or_evaluate(run: &RunDir, history: &History, device: &Device) -> Result<RunEvaluation> {
    let dir = run.evaluation_dir(&EvaluationOf::Validation);
    let classes = run.read_classes()?;
    // The tables are kept in the run folder when no training process is writing it.
    let keep = |evaluated: &RunEvaluation| -> Result<()> {
        if let Ok(_lock) = run.lock_to_write("") {
            write_evaluation(&dir, &evaluated.evaluation, &evaluated.classes, &evaluated.files)?;
        }
        Ok(())
    };
    if let Some(loaded) = saved_evaluation(run, history, &classes)? {
        if !dir.has_tables() {
            keep(&loaded)?;
        }
        return Ok(loaded);
    }
    let request = EvaluationRequest { skip_bad_images: true, ..EvaluationRequest::VALIDATION };
    let evaluated = evaluate_run(run, request, device)?;
    keep(&evaluated)?;
    Ok(evaluated)
}

/// The saved validation evaluation when it is of the images the run validates on now and,
/// when training wrote it, of the epoch that `model-best` holds.
fn saved_evaluation(
    run: &RunDir,
    history: &History,
    classes: &[String],
) -> Result<Option<RunEvaluation>> {
    let Some(evaluation) = run.evaluation_dir(&EvaluationOf::Validation).read::<Evaluation>()?
    else {
        return Ok(None);
    };
    let best_epoch = history.best().map(|e| e.epoch);
    if evaluation.epoch.is_some() && evaluation.epoch != best_epoch {
        return Ok(None);
    }
    let files = evaluation_images(run, None, classes)?;
    if evaluation.metrics.images != files.len() {
        return Ok(None);
    }
    Ok(Some(RunEvaluation { evaluation, files, classes: classes.to_vec() }))
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
