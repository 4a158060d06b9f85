//! The files of one evaluation: evaluation.json, the confusion matrix (CSV and picture),
//! per-class accuracy and the most confident mistakes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{confusion, grid, tables};
use crate::data::LabeledImage;
use crate::eval::Evaluation;
use crate::run::write_json;

/// Writes evaluation.json, confusion.csv/png, per_class.csv and errors.jpg into `out`.
pub fn write_evaluation(
    out: &Path,
    evaluation: &Evaluation,
    classes: &[String],
    files: &[LabeledImage],
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_json(&out.join("evaluation.json"), evaluation)?;
    tables::write_confusion_csv(&out.join("confusion.csv"), &evaluation.confusion, classes)?;
    tables::write_per_class_csv(&out.join("per_class.csv"), &evaluation.per_class)?;
    let title = match &evaluation.data {
        Some(data) => format!("Confusion matrix ({})", data.display()),
        None => "Confusion matrix (validation)".to_string(),
    };
    confusion::draw(&out.join("confusion.png"), &evaluation.confusion, classes, &title)?;
    let paths: Vec<PathBuf> =
        evaluation.mistakes.iter().map(|m| files[m.index].path.clone()).collect();
    grid::draw_mistakes(&out.join("errors.jpg"), &evaluation.mistakes, &paths)
}
