//! The run folder: configuration, classes, history, log, checkpoints and resume state.
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

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::history::History;
use crate::atomic_file;
use crate::data::{BadImage, Validation};
use crate::model::Classifier;
use crate::weights::checkpoint;

/// What the run ran on, for the record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Environment {
    pub fruitlab_version: String,
    pub burn_version: String,
    pub backend: String,
    pub threads: usize,
    pub os: String,
    pub arch: String,
    pub cpu: String,
    pub started: String,
    pub command_line: Vec<String>,
}

impl Environment {
    pub fn capture(backend: &str) -> Self {
        Self {
            fruitlab_version: env!("CARGO_PKG_VERSION").into(),
            burn_version: crate::BURN_VERSION.into(),
            backend: backend.into(),
            threads: rayon::current_num_threads(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            cpu: cpu_model(),
            started: chrono::Local::now().to_rfc3339(),
            command_line: std::env::args().collect(),
        }
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The dataset as this run saw it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub classes: usize,
    pub train_images: usize,
    pub val_images: usize,
    pub validation: Validation,
    /// Unreadable images left out (`--skip-bad-images`).
    pub skipped_images: Vec<BadImage>,
    /// Non-image files found in class folders (not used).
    pub ignored_files: Vec<PathBuf>,
}

/// The content of `config.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub config: TrainConfig,
    pub environment: Environment,
    pub dataset: Option<DatasetSummary>,
}

/// Training progress needed to continue a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResumeState {
    /// Optimizer steps done in the main phase.
    pub step: u64,
    /// Finished epochs.
    pub epochs_done: usize,
    /// Optimizer steps done in the unfinished epoch.
    pub step_in_epoch: usize,
    /// Running sums of the unfinished epoch: loss * images, correct, images, seconds.
    pub partial_epoch: PartialEpoch,
    pub head_warmup_done: bool,
    pub history: History,
    pub model_file: String,
    pub optimizer_files: HashMap<String, String>,
    /// True once the configured epochs are all done.
    pub finished: bool,
}

/// Training sums of an epoch in progress.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PartialEpoch {
    pub loss_sum: f64,
    pub correct: u64,
    pub images: u64,
    pub seconds: f64,
    pub waited_seconds: f64,
}

/// A trained model ready for inference.
pub struct TrainedModel {
    pub model: Classifier,
    pub classes: Vec<String>,
    pub config: TrainConfig,
}

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

    /// The trained model for inference (batch norms folded), its classes and configuration.
    pub fn load_model(&self, last: bool, device: &burn::tensor::Device) -> Result<TrainedModel> {
        let record = self.read_record()?;
        let classes = self.read_classes()?;
        let path = self.model_path(last);
        if !path.exists() {
            bail!(
                "{} has no trained model yet ({} is missing)",
                self.path.display(),
                path.display()
            );
        }
        let mut template =
            Classifier::new(record.config.layout, record.config.head, classes.len(), device);
        if record.config.folds_batchnorm() {
            template.backbone = template.backbone.fold_batchnorm();
        }
        let model = checkpoint::load(template, &path)?;
        let model = Classifier { backbone: model.backbone.fold_batchnorm(), head: model.head };
        Ok(TrainedModel { model, classes, config: record.config })
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
        checkpoint::save(model, &self.file("resume").join(&model_file), metadata)?;
        state.model_file = model_file.clone();
        state.optimizer_files.clear();
        for (name, bytes) in optimizers {
            let file = format!("optimizer-{name}-{tag}.bpk");
            atomic_file::write(&self.file("resume").join(&file), bytes)?;
            state.optimizer_files.insert(name.to_string(), file);
        }
        write_json(&self.file("resume").join("state.json"), &state)?;
        checkpoint::save(model, &self.model_path(true), metadata)?;
        self.remove_stale_resume_files(&state)
    }

    pub fn read_resume(&self) -> Result<ResumeState> {
        read_json(&self.file("resume").join("state.json"))
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
                let _ = std::fs::remove_file(self.file("resume").join(name));
            }
        }
        Ok(())
    }
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    atomic_file::write(path, serde_json::to_string_pretty(value)?.as_bytes())
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is malformed", path.display()))
}
