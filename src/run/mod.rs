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
pub mod record;
pub mod resume;
pub mod trained;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub use history::{EpochRecord, History};
pub use json::{read_json, write_json};
pub use record::{DatasetSummary, Environment, RunRecord};
pub use resume::{PartialEpoch, ResumeState};
pub use trained::TrainedModel;

use crate::atomic_file;
use crate::model::Classifier;
use crate::weights::checkpoint;

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates a new run folder; refuses a folder holding a run that has started training
    /// (a run that failed before its first checkpoint may be started again with new flags).
    pub fn create(path: &Path) -> Result<Self> {
        if path.join("resume").join("state.json").exists() {
            bail!(
                "{} already holds a run: use --resume {0} to continue it, or another --out",
                path.display()
            );
        }
        std::fs::create_dir_all(path.join("resume"))
            .with_context(|| format!("cannot create the run folder {}", path.display()))?;
        Ok(Self { path: path.to_path_buf() })
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
        checkpoint::save(model, &self.model_path(false), metadata)
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
        checkpoint::save(model, &self.resume_file(&model_file), metadata)?;
        state.model_file = model_file.clone();
        state.optimizer_files.clear();
        for (name, bytes) in optimizers {
            let file = format!("optimizer-{name}-{tag}.bpk");
            atomic_file::write(&self.resume_file(&file), bytes)?;
            state.optimizer_files.insert(name.to_string(), file);
        }
        write_json(&self.resume_file("state.json"), &state)?;
        checkpoint::save(model, &self.model_path(true), metadata)?;
        self.remove_stale_resume_files(&state)
    }

    pub fn read_resume(&self) -> Result<ResumeState> {
        read_json(&self.resume_file("state.json"))
    }

    pub fn resume_file(&self, name: &str) -> PathBuf {
        self.file("resume").join(name)
    }

    fn remove_stale_resume_files(&self, state: &ResumeState) -> Result<()> {
        let keep: Vec<&String> =
            std::iter::once(&state.model_file).chain(state.optimizer_files.values()).collect();
        for entry in std::fs::read_dir(self.file("resume"))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name != "state.json" && !keep.iter().any(|k| **k == name) {
                let _ = std::fs::remove_file(self.resume_file(&name));
            }
        }
        Ok(())
    }
}
