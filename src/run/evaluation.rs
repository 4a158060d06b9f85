//! An evaluation folder: `evaluation.json` (the numbers and every mistake's file), the
//! confusion matrix as CSV and picture, per-class accuracy, the most confident mistakes and,
//! when asked, `ood.json` (how many images of other things were rejected).
//! Inside a run folder ([`super::RunDir::evaluation_dir`]) or anywhere (`evaluate --out`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::json::{read_json, write_json};

/// Which images an evaluation kept in a run folder is of.
#[derive(Clone, Debug)]
pub enum EvaluationOf {
    /// The run's own validation images.
    Validation,
    /// A folder of class folders (named after it).
    Folder(PathBuf),
}

/// The files of one evaluation.
#[derive(Clone, Debug)]
pub struct EvaluationDir {
    path: PathBuf,
}

impl EvaluationDir {
    pub fn at(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The evaluation's numbers, written (with the folder) atomically.
    pub fn write(&self, evaluation: &impl Serialize) -> Result<()> {
        std::fs::create_dir_all(&self.path)
            .with_context(|| format!("cannot create {}", self.path.display()))?;
        write_json(&self.file("evaluation.json"), evaluation)
    }

    /// How the model met a folder of images of other things (`evaluate --ood`).
    pub fn write_ood(&self, report: &impl Serialize) -> Result<()> {
        write_json(&self.file("ood.json"), report)
    }

    /// The saved evaluation, or `None` when there is none.
    pub fn read<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let path = self.file("evaluation.json");
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// Whether the tables and pictures are there beside the numbers.
    pub fn has_tables(&self) -> bool {
        self.confusion_csv().exists()
    }

    pub fn confusion_csv(&self) -> PathBuf {
        self.file("confusion.csv")
    }

    pub fn confusion_png(&self) -> PathBuf {
        self.file("confusion.png")
    }

    pub fn per_class_csv(&self) -> PathBuf {
        self.file("per_class.csv")
    }

    pub fn errors_jpg(&self) -> PathBuf {
        self.file("errors.jpg")
    }
}
