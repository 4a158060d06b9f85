//! The tables and pictures of one evaluation, written into its folder beside the numbers:
//! the confusion matrix (CSV and picture), per-class accuracy and the most confident mistakes.

use std::path::PathBuf;

use anyhow::Result;

use super::{confusion, grid, tables};
use crate::data::LabeledImage;
use crate::eval::Evaluation;
use crate::run::EvaluationDir;

/// Writes the evaluation and its tables and pictures into `dir`.
pub fn write_evaluation(
    dir: &EvaluationDir,
    evaluation: &Evaluation,
    classes: &[String],
    files: &[LabeledImage],
) -> Result<()> {
    dir.write(evaluation)?;
    tables::write_confusion_csv(&dir.confusion_csv(), &evaluation.confusion, classes)?;
    tables::write_per_class_csv(&dir.per_class_csv(), &evaluation.per_class)?;
    let title = match &evaluation.data {
        Some(data) => format!("Confusion matrix ({})", data.display()),
        None => "Confusion matrix (validation)".to_string(),
    };
    confusion::draw(&dir.confusion_png(), &evaluation.confusion, classes, &title)?;
    let paths: Vec<PathBuf> =
        evaluation.mistakes.iter().map(|m| files[m.index].path.clone()).collect();
    grid::draw_mistakes(&dir.errors_jpg(), &evaluation.mistakes, &paths)
}
