//! The run folder: a training run's configuration, classes, history, log, checkpoints and
//! resume state, and loading the model it trained. Everything that reads or writes a run
//! (training, evaluation, reports, prediction) goes through [`RunDir`].
//!
//! ```text
//! RUN/config.json            everything needed to rerun (and what it ran on)
//! RUN/classes.json           class names, in label order
//! RUN/history.json|csv       per-epoch metrics
//! RUN/train.log              the run's log
//! RUN/model-best.safetensors best validation accuracy so far
//! RUN/model-last.safetensors end of the last finished epoch (or interruption)
//! RUN/resume/state.json      commit point of the resume checkpoint; names its files:
//! RUN/resume/model-STEP.bpk, RUN/resume/optimizer-{head,backbone}-STEP.bpk
//! ```
//! Every file is written atomically; `resume/state.json` is written last, so a kill at any
//! moment leaves a complete checkpoint behind.

pub mod history;
pub mod json;
pub mod lock;
pub mod record;
pub mod resume;
pub mod trained;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub use history::{EpochRecord, History};
pub use json::{read_json, write_json};
pub use lock::RunLock;
pub use record::{DatasetSummary, Environment, RunRecord};
pub use resume::{PartialEpoch, ResumeState};
pub use trained::TrainedModel;

use crate::model::Classifier;
use crate::weights::checkpoint;
use crate::{atomic_file, checksum};

pub struct RunDir {
    pub path: PathBuf,
}

/// Whether `name` is a resume checkpoint file as [`RunDir::save_resume`] names them:
/// `model-STEP-N.bpk` or `optimizer-PART-STEP-N.bpk`.
fn is_checkpoint_file(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".bpk") else { return false };
    let tag = match stem.split_once('-') {
        Some(("model", tag)) => tag,
        Some(("optimizer", rest)) => match rest.split_once('-') {
            Some(("head" | "backbone", tag)) => tag,
            _ => return false,
        },
        _ => return false,
    };
    matches!(tag.split_once('-'), Some((step, n)) if step.chars().all(|c| c.is_ascii_digit()) && n.chars().all(|c| c.is_ascii_digit()) && !step.is_empty() && !n.is_empty())
}

impl RunDir {
    /// Creates a new run folder, locked for this process; refuses a folder holding a run that
    /// has started training (one that failed before its first checkpoint may be started again
    /// with new flags) and a folder of other files (nothing of the user's is overwritten).
    pub fn create(path: &Path) -> Result<(Self, RunLock)> {
        if path.join("resume").join("state.json").exists() {
            bail!(
                "{} already holds a run: use --resume {0} to continue it, or another --out",
                path.display()
            );
        }
        let foreign = path.is_dir()
            && !path.join("config.json").exists()
            && std::fs::read_dir(path)?.next().is_some();
        if foreign {
            bail!(
                "{} exists and holds other files, not a fruitlab run: choose a new --out",
                path.display()
            );
        }
        std::fs::create_dir_all(path.join("resume"))
            .with_context(|| format!("cannot create the run folder {}", path.display()))?;
        let run = Self { path: path.to_path_buf() };
        let lock = run.lock_for_writing()?;
        Ok((run, lock))
    }

    /// Locks an existing run folder for writing (training resumes), and removes what a
    /// killed writer left half-written.
    pub fn lock_for_writing(&self) -> Result<RunLock> {
        let lock = RunLock::acquire(&self.path)?;
        for dir in [self.path.clone(), self.file("resume")] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if atomic_file::is_temporary(&entry.path()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(lock)
    }

    /// Opens an existing run folder.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.join("config.json").exists() {
            bail!("{} is not a fruitlab run folder (no config.json)", path.display());
        }
        Ok(Self { path: path.to_path_buf() })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write_record(&self, record: &RunRecord) -> Result<()> {
        write_json(&self.file("config.json"), record)
    }

    pub fn read_record(&self) -> Result<RunRecord> {
        read_json(&self.file("config.json"))
    }

    pub fn write_classes(&self, classes: &[String]) -> Result<()> {
        write_json(&self.file("classes.json"), &classes)
    }

    pub fn read_classes(&self) -> Result<Vec<String>> {
        read_json(&self.file("classes.json"))
    }

    pub fn read_history(&self) -> Result<History> {
        History::read(&self.file("history.json"))
    }

    /// Appends a line to `train.log`.
    pub fn log(&self, line: &str) -> Result<()> {
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(self.file("train.log"))?;
        writeln!(file, "{} {line}", chrono::Local::now().format("%Y-%m-%d %H:%M:%S"))?;
        Ok(())
    }

    /// The trained model: `model-best.safetensors`, or `model-last.safetensors` with `last`.
    pub fn model_path(&self, last: bool) -> PathBuf {
        self.file(if last { "model-last.safetensors" } else { "model-best.safetensors" })
    }

    pub fn save_best(&self, model: &Classifier, metadata: &HashMap<String, String>) -> Result<()> {
        checkpoint::save(model, &self.model_path(false), metadata).map(drop)
    }

    /// Writes the resume checkpoint: the model (burnpack, which keeps the parameter ids the
    /// optimizer state refers to), the optimizer states (already serialised by the caller),
    /// then `state.json` as the commit point; then `model-last.safetensors`, and removes older
    /// checkpoint files.
    pub fn save_resume(
        &self,
        model: &Classifier,
        metadata: &HashMap<String, String>,
        optimizers: &[(&str, Vec<u8>)],
        mut state: ResumeState,
    ) -> Result<()> {
        let tag = format!("{:07}-{}", state.step, state.step_in_epoch);
        let model_file = format!("model-{tag}.bpk");
        state.checksums.clear();
        let model_sum = checkpoint::save(model, &self.resume_file(&model_file), metadata)?;
        state.checksums.insert(model_file.clone(), model_sum);
        state.model_file = model_file.clone();
        state.optimizer_files.clear();
        for (name, bytes) in optimizers {
            let file = format!("optimizer-{name}-{tag}.bpk");
            atomic_file::write(&self.resume_file(&file), bytes)?;
            state.checksums.insert(file.clone(), checksum::sha256_hex(bytes));
            state.optimizer_files.insert(name.to_string(), file);
        }
        write_json(&self.resume_file("state.json"), &state)?;
        checkpoint::save(model, &self.model_path(true), metadata)?;
        self.remove_stale_resume_files(&state)
    }

    /// The resume state, after checking that the checkpoint files it names are the bytes
    /// that were written.
    /// Removes the resume checkpoint's model and optimizer files of a finished run (hundreds
    /// of megabytes it no longer needs); `state.json` stays, marking the run finished.
    pub fn drop_resume_checkpoint(&self) -> Result<()> {
        let mut state = self.read_resume()?;
        for file in std::iter::once(&state.model_file).chain(state.optimizer_files.values()) {
            if is_checkpoint_file(file) {
                let _ = std::fs::remove_file(self.resume_file(file));
            }
        }
        state.model_file.clear();
        state.optimizer_files.clear();
        state.checksums.clear();
        write_json(&self.resume_file("state.json"), &state)
    }

    pub fn read_resume(&self) -> Result<ResumeState> {
        let state: ResumeState = read_json(&self.resume_file("state.json"))?;
        for (file, expected) in &state.checksums {
            let path = self.resume_file(file);
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            anyhow::ensure!(
                checksum::sha256_hex(&bytes) == *expected,
                "the resume checkpoint {} has changed since it was saved (checksum mismatch): it is corrupt, so the run cannot continue; start it again with --config {}",
                path.display(),
                self.file("config.json").display()
            );
        }
        Ok(state)
    }

    pub fn resume_file(&self, name: &str) -> PathBuf {
        self.file("resume").join(name)
    }

    /// Removes older checkpoints: only files of our own naming, never anything else.
    fn remove_stale_resume_files(&self, state: &ResumeState) -> Result<()> {
        let keep: Vec<&String> =
            std::iter::once(&state.model_file).chain(state.optimizer_files.values()).collect();
        for entry in std::fs::read_dir(self.file("resume"))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if is_checkpoint_file(&name) && !keep.iter().any(|k| **k == name) {
                let _ = std::fs::remove_file(self.resume_file(&name));
            }
        }
        Ok(())
    }
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
}
