//! The run folder: a training run's configuration, classes, history, log, models, evaluations
//! and resume state, and loading the model it trained. This module is the only one that names
//! a file inside a run folder; training writes through a [`TrainingRun`] (which holds the
//! folder's lock), everything else reads through a [`RunDir`].
//!
//! ```text
//! RUN/config.json            everything needed to rerun (and what it ran on)
//! RUN/classes.json           class names, in label order
//! RUN/history.json|csv       per-epoch metrics
//! RUN/train.log              the run's log
//! RUN/model-best.safetensors best validation accuracy so far
//! RUN/model-last.safetensors end of the last finished epoch (or interruption)
//! RUN/evaluation/            the best model on the validation images (see EvaluationDir)
//! RUN/evaluation-NAME/       the best model on the folder NAME (`evaluate --data`)
//! RUN/resume/state.json      commit point of the resume checkpoint; names its files:
//! RUN/resume/model-STEP.bpk, RUN/resume/optimizer-{head,backbone}-STEP.bpk
//! ```
//! Every file is written atomically; `resume/state.json` is written last, so a kill at any
//! moment leaves a complete checkpoint behind.

pub mod evaluation;
pub mod history;
pub mod json;
pub mod lock;
pub mod record;
pub mod resume;
pub mod trained;
pub mod training;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;

pub use evaluation::{EvaluationDir, EvaluationOf};
pub use history::{EpochRecord, History};
pub use json::{read_json, write_json};
pub use lock::RunLock;
pub use record::{DatasetFiles, DatasetSummary, Environment, FileRecord, RunRecord};
pub use resume::{PartialEpoch, ResumeState};
pub use trained::TrainedModel;
pub use training::{Start, TrainingRun};

use crate::config::TrainConfig;
use crate::support::checksum;

/// The names of a run folder's files.
mod names {
    pub const CONFIG: &str = "config.json";
    pub const CLASSES: &str = "classes.json";
    pub const HISTORY_JSON: &str = "history.json";
    pub const HISTORY_CSV: &str = "history.csv";
    pub const LOG: &str = "train.log";
    pub const BEST_MODEL: &str = "model-best.safetensors";
    pub const LAST_MODEL: &str = "model-last.safetensors";
    pub const RESUME: &str = "resume";
    pub const RESUME_STATE: &str = "state.json";
    pub const LOCK: &str = ".lock";
    pub const DATASET: &str = "dataset.json";
    pub const TRUST_RECORD: &str = "trust.json";
    pub const AUDIT: &str = "audit";
    pub const TRUST_DENSITY: &str = "trust.safetensors";
    pub const CROSS_VALIDATION: &str = "cross-validation.json";
    pub const VALIDATION_EVALUATION: &str = "evaluation";
    pub const FOLDER_EVALUATION_PREFIX: &str = "evaluation-";
}

/// Where a run keeps the trust of its best model (see `crate::trust`): the record and the
/// feature density.
pub struct TrustFiles {
    pub record: PathBuf,
    pub density: PathBuf,
}

/// The two trained models a run keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// The epoch with the best validation accuracy (`model-best.safetensors`).
    Best,
    /// The end of the last finished epoch (`model-last.safetensors`).
    Last,
}

/// The parts of a run's optimizer state, each saved in its own resume file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptimizerPart {
    /// The new top's optimizer.
    Head,
    /// The backbone's, when it trains.
    Backbone,
}

impl OptimizerPart {
    const ALL: [OptimizerPart; 2] = [OptimizerPart::Head, OptimizerPart::Backbone];

    /// The part's name in resume file names and `state.json`.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerPart::Head => "head",
            OptimizerPart::Backbone => "backbone",
        }
    }
}

/// A run folder, for reading. Opening checks that it holds a run.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Opens an existing run folder.
    pub fn open(path: &Path) -> Result<Self> {
        if !Self::holds_run(path) {
            bail!("{} is not a fruitlab run folder (no {})", path.display(), names::CONFIG);
        }
        Ok(Self { path: path.to_path_buf() })
    }

    /// Whether `path` holds a run (its configuration).
    pub fn holds_run(path: &Path) -> bool {
        path.join(names::CONFIG).exists()
    }

    /// Refuses `out` (given as `flag`) when it lies inside a run folder: only the process
    /// that holds a run's lock writes into it, and only files of the run.
    pub fn refuse_inside_run(out: &Path, flag: &str) -> Result<()> {
        let out = crate::support::absolute(out);
        if let Some(run) = out.ancestors().find(|folder| Self::holds_run(folder)) {
            bail!(
                "{flag} {} is inside the run folder {}: fruitlab writes into a run only the run's own files; choose a place outside it",
                out.display(),
                run.display()
            );
        }
        Ok(())
    }

    /// Locks the run to write into it (an evaluation, its tables), or explains that a
    /// training process holds it and what to do (`advice`).
    pub fn lock_to_write(&self, advice: &str) -> Result<RunLock> {
        RunLock::acquire(&self.file(names::LOCK), advice)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn resume_file(&self, name: &str) -> PathBuf {
        self.file(names::RESUME).join(name)
    }

    pub fn read_record(&self) -> Result<RunRecord> {
        read_json(&self.file(names::CONFIG))
    }

    pub fn read_config(&self) -> Result<TrainConfig> {
        Ok(self.read_record()?.config)
    }

    pub fn read_classes(&self) -> Result<Vec<String>> {
        read_json(&self.file(names::CLASSES))
    }

    pub fn read_history(&self) -> Result<History> {
        let path = self.file(names::HISTORY_JSON);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let history: History = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a history", path.display()))?;
        let problems = history.problems();
        if !problems.is_empty() {
            bail!(
                "{} holds values no run writes ({}): it has been edited or is corrupt",
                path.display(),
                problems.join("; ")
            );
        }
        Ok(history)
    }

    /// Where `audit` writes its findings by default.
    pub fn audit_dir(&self) -> PathBuf {
        self.file(names::AUDIT)
    }

    /// Where the trust of the run's best model is kept.
    pub fn trust_files(&self) -> TrustFiles {
        TrustFiles {
            record: self.file(names::TRUST_RECORD),
            density: self.file(names::TRUST_DENSITY),
        }
    }

    /// The run's K-fold cross-validation (`--folds`), when it has one.
    pub fn read_cross_validation<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let path = self.file(names::CROSS_VALIDATION);
        path.exists().then(|| read_json(&path)).transpose()
    }

    /// The images the run trains and validates on (`dataset.json`).
    pub fn read_dataset_files(&self) -> Result<DatasetFiles> {
        read_json(&self.file(names::DATASET))
    }

    /// The file of a trained model.
    pub fn model_path(&self, checkpoint: Checkpoint) -> PathBuf {
        self.file(match checkpoint {
            Checkpoint::Best => names::BEST_MODEL,
            Checkpoint::Last => names::LAST_MODEL,
        })
    }

    /// Where an evaluation of the run's best model is kept: `evaluation/` for the validation
    /// images, `evaluation-NAME/` for the folder NAME (e.g. `evaluation-test/` for a `Test/`
    /// folder), so that neither overwrites the other.
    pub fn evaluation_dir(&self, of: &EvaluationOf) -> EvaluationDir {
        let name = match of {
            EvaluationOf::Validation => names::VALIDATION_EVALUATION.to_string(),
            EvaluationOf::Folder(folder) => {
                let name = folder
                    .file_name()
                    .map_or("data".into(), |n| n.to_string_lossy().to_lowercase());
                let name: String =
                    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
                format!("{}{name}", names::FOLDER_EVALUATION_PREFIX)
            }
        };
        EvaluationDir::at(self.file(&name))
    }

    /// The saved evaluations on other folders (`evaluation-NAME/`), by NAME, in name order;
    /// unreadable ones are left out.
    pub fn folder_evaluations<T: DeserializeOwned>(&self) -> Vec<(String, T)> {
        let Ok(entries) = std::fs::read_dir(&self.path) else { return Vec::new() };
        let mut found: Vec<(String, T)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let name = name.strip_prefix(names::FOLDER_EVALUATION_PREFIX)?.to_string();
                let evaluation = EvaluationDir::at(entry.path()).read().ok()??;
                Some((name, evaluation))
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// Bytes of the files in the run folder.
    pub fn size_bytes(&self) -> u64 {
        folder_size(&self.path)
    }

    /// The resume state, after checking that the checkpoint files it names are the bytes
    /// that were written; `None` when the run has saved no checkpoint yet.
    fn read_resume(&self) -> Result<Option<ResumeState>> {
        let path = self.resume_file(names::RESUME_STATE);
        if !path.exists() {
            return Ok(None);
        }
        let state: ResumeState = read_json(&path)?;
        for (file, expected) in &state.checksums {
            let path = self.resume_file(file);
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            anyhow::ensure!(
                checksum::sha256_hex(&bytes) == *expected,
                "the resume checkpoint {} has changed since it was saved (checksum mismatch): it is corrupt, so the run cannot continue; start it again with --config {}",
                path.display(),
                self.file(names::CONFIG).display()
            );
        }
        Ok(Some(state))
    }
}

/// Bytes of the files under `path`.
fn folder_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => folder_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Whether `name` is a resume checkpoint file as [`TrainingRun::save_checkpoint`] names them:
/// `model-STEP-N.bpk` or `optimizer-PART-STEP-N.bpk`.
fn is_checkpoint_file(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".bpk") else { return false };
    let tag = match stem.split_once('-') {
        Some(("model", tag)) => tag,
        Some(("optimizer", rest)) => match rest.split_once('-') {
            Some((part, tag)) if OptimizerPart::ALL.iter().any(|p| p.name() == part) => tag,
            _ => return false,
        },
        _ => return false,
    };
    let number = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    matches!(tag.split_once('-'), Some((step, n)) if number(step) && number(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_checkpoint_names_are_ever_removed() {
        for ours in
            ["model-0000012-3.bpk", "optimizer-head-0000012-3.bpk", "optimizer-backbone-1-0.bpk"]
        {
            assert!(is_checkpoint_file(ours), "{ours}");
        }
        for theirs in [
            "state.json",
            "notes.txt",
            "model-best.bpk",
            "optimizer-x-1-2.bpk",
            "model-1-2.bpk.bak",
            "model--.bpk",
        ] {
            assert!(!is_checkpoint_file(theirs), "{theirs}");
        }
    }

    #[test]
    fn evaluations_of_folders_are_named_by_the_folder() {
        let run = RunDir { path: PathBuf::from("r") };
        let test = run.evaluation_dir(&EvaluationOf::Folder("data/Test".into()));
        assert_eq!(test.path(), Path::new("r/evaluation-test"));
        let other = run.evaluation_dir(&EvaluationOf::Folder("my photos".into()));
        assert_eq!(other.path(), Path::new("r/evaluation-my-photos"));
        assert_eq!(run.evaluation_dir(&EvaluationOf::Validation).path(), Path::new("r/evaluation"));
    }
}
