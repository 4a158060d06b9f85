//! A run folder held by the process that trains it: started or resumed (with `config.json`
//! read once), its log, classes and dataset record, its history, and the checkpoints it owns
//! (the best and last models and the resume checkpoint, as timm's `CheckpointSaver` owns best,
//! last and recovery files). One process writes a run folder: [`TrainingRun`] holds its lock.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

use super::{
    Checkpoint, DatasetFiles, DatasetSummary, EpochRecord, EvaluationOf, History, OptimizerPart,
    ResumeState, RunDir, RunLock, RunRecord, is_checkpoint_file, names, read_json, write_json,
};
use crate::config::TrainConfig;
use crate::model::Classifier;
use crate::run::record::Environment;
use crate::support::{atomic_file, checksum, spelling};
use crate::weights::checkpoint;

/// Where training picks up.
pub enum Start {
    /// Nothing has been trained yet.
    Fresh,
    /// Continue from the resume checkpoint.
    Resume(ResumeState),
    /// Every epoch is done already.
    Finished(ResumeState),
}

/// A run folder held for writing.
pub struct TrainingRun {
    dir: RunDir,
    /// Whether this process made the folder (then a run that fails before training leaves
    /// nothing behind).
    made_folder: bool,
    _lock: RunLock,
    record: RunRecord,
    /// The best validation accuracy so far (what `model-best` holds).
    best: f64,
}

impl RunDir {
    /// Starts a new run of `config` in `path`, locked for this process. Refuses a folder
    /// holding a run that has started training (one that failed before its first checkpoint
    /// may be started again with new settings) and a folder of other files (nothing of the
    /// user's is overwritten).
    pub fn start(path: &Path, config: TrainConfig) -> Result<(TrainingRun, Start)> {
        if path.join(names::RESUME).join(names::RESUME_STATE).exists() {
            bail!(
                "{} already holds a run: use --resume {0} to continue it, or another --out",
                path.display()
            );
        }
        let foreign =
            path.is_dir() && !Self::holds_run(path) && std::fs::read_dir(path)?.next().is_some();
        if foreign {
            bail!(
                "{} exists and holds other files, not a fruitlab run: choose a new --out",
                path.display()
            );
        }
        let made_folder = !path.exists();
        std::fs::create_dir_all(path.join(names::RESUME))
            .with_context(|| format!("cannot create the run folder {}", path.display()))?;
        let dir = Self { path: path.to_path_buf() };
        let lock = dir.lock_for_writing()?;
        let environment = Environment::capture(&spelling(&config.compute.backend));
        let record = RunRecord { config, environment, dataset: None };
        write_json(&dir.file(names::CONFIG), &record)?;
        let run = TrainingRun { dir, made_folder, _lock: lock, record, best: f64::NEG_INFINITY };
        Ok((run, Start::Fresh))
    }

    /// Locks the run in `path` to continue it.
    pub fn resume(path: &Path) -> Result<(TrainingRun, Start)> {
        let dir = Self::open(path)?;
        let lock = dir.lock_for_writing()?;
        let record = dir.read_record()?;
        dir.held(lock, record)
    }

    /// For `compare`: a new run of `config` in `path`, or the run already there, which must
    /// have the same settings.
    pub fn start_or_continue(path: &Path, config: TrainConfig) -> Result<(TrainingRun, Start)> {
        if !Self::holds_run(path) {
            return Self::start(path, config);
        }
        let dir = Self::open(path)?;
        let lock = dir.lock_for_writing()?;
        let record = dir.read_record()?;
        if record.config != config {
            bail!(
                "{} holds a run with other settings: use another --out, or `fruitlab compare --runs` to compare existing runs",
                path.display()
            );
        }
        dir.held(lock, record)
    }

    /// The run of `record` held with `lock`, and where it picks up.
    fn held(self, lock: RunLock, record: RunRecord) -> Result<(TrainingRun, Start)> {
        let start = match self.read_resume()? {
            None => Start::Fresh,
            Some(state) if state.finished => Start::Finished(state),
            Some(state) => Start::Resume(state),
        };
        let best = match &start {
            Start::Fresh => f64::NEG_INFINITY,
            Start::Resume(state) | Start::Finished(state) => {
                state.history.best().map_or(f64::NEG_INFINITY, |b| b.val_accuracy)
            }
        };
        Ok((TrainingRun { dir: self, made_folder: false, _lock: lock, record, best }, start))
    }

    /// Locks the folder for writing, and removes what a killed writer left half-written.
    fn lock_for_writing(&self) -> Result<RunLock> {
        let lock = RunLock::acquire(
            &self.file(names::LOCK),
            "wait for it to finish, or train into another --out",
        )?;
        for dir in [self.path.clone(), self.file(names::RESUME)] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if atomic_file::is_temporary(&entry.path()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(lock)
    }
}

impl TrainingRun {
    pub fn dir(&self) -> &RunDir {
        &self.dir
    }

    /// After a failure: when this process made the folder and nothing was trained in it,
    /// removes the files it wrote and the folder (never another file), so that a refused
    /// command leaves nothing behind.
    pub fn remove_if_untrained(self) {
        if !self.made_folder || self.dir.resume_file(names::RESUME_STATE).exists() {
            return;
        }
        let path = self.dir.path.clone();
        drop(self);
        for name in [names::CONFIG, names::CLASSES, names::LOG, names::DATASET, names::LOCK] {
            let _ = std::fs::remove_file(path.join(name));
        }
        let _ = std::fs::remove_dir(path.join(names::RESUME));
        let _ = std::fs::remove_dir(&path);
    }

    pub fn config(&self) -> &TrainConfig {
        &self.record.config
    }

    /// Appends a line to `train.log`.
    pub fn log(&self, line: &str) -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.file(names::LOG))?;
        writeln!(file, "{} {line}", chrono::Local::now().format("%Y-%m-%d %H:%M:%S"))?;
        Ok(())
    }

    /// Records the classes of a fresh run, or checks that a resumed run's are unchanged.
    pub fn settle_classes(&self, classes: &[String], start: &Start) -> Result<()> {
        let path = self.dir.file(names::CLASSES);
        if let Start::Fresh = start {
            return write_json(&path, &classes);
        }
        let recorded: Vec<String> = read_json(&path)?;
        ensure!(
            recorded == classes,
            "the classes of {} changed since this run started",
            self.config().data.display()
        );
        Ok(())
    }

    /// Writes what the run sees of its dataset into `config.json`, `dataset.json` and the log;
    /// a resumed run must see the same images it started with, or it would go on with other
    /// training and validation images than those its history and best model were chosen on.
    pub fn record_dataset(
        &mut self,
        summary: DatasetSummary,
        files: DatasetFiles,
        start: &Start,
    ) -> Result<()> {
        let path = self.dir.file(names::DATASET);
        if let Start::Fresh = start {
            write_json(&path, &files)?;
        } else {
            let earlier: DatasetFiles = read_json(&path)?;
            if let Some(changes) = files.changes_since(&earlier) {
                bail!(
                    "the dataset {} has changed since this run started: {changes}; the run cannot go on with other images (start a new run with --out elsewhere)",
                    self.config().data.display()
                );
            }
        }
        for bad in &summary.skipped_images {
            self.log(&format!("skipped unreadable image: {}", bad.error))?;
        }
        if let Some(first) = summary.ignored_files.first() {
            self.log(&format!(
                "ignored {} non-image file(s) in class folders, e.g. {}",
                summary.ignored_files.len(),
                first.display()
            ))?;
        }
        self.record.dataset = Some(summary);
        write_json(&self.dir.file(names::CONFIG), &self.record)
    }

    /// `model` with the weights of `state`'s resume checkpoint.
    pub fn restore_model(&self, model: Classifier, state: &ResumeState) -> Result<Classifier> {
        checkpoint::load(model, &self.dir.resume_file(&state.model_file))
    }

    /// The file of the optimizer state `part` in `state`'s resume checkpoint.
    pub fn optimizer_state(
        &self,
        state: &ResumeState,
        part: OptimizerPart,
    ) -> Result<std::path::PathBuf> {
        let file = state.optimizer_files.get(part.name()).with_context(|| {
            format!(
                "the resume checkpoint of {} has no {} optimizer state",
                self.dir.path.display(),
                part.name()
            )
        })?;
        Ok(self.dir.resume_file(file))
    }

    /// Writes the resume checkpoint: the model (burnpack, which keeps the parameter ids the
    /// optimizer state refers to), the optimizer states (already serialised by the caller),
    /// then `state.json` as the commit point; then `model-last.safetensors`, and removes older
    /// checkpoint files.
    pub fn save_checkpoint(
        &self,
        model: &Classifier,
        optimizers: &[(OptimizerPart, Vec<u8>)],
        state: &ResumeState,
    ) -> Result<()> {
        let mut state = state.clone();
        let metadata = HashMap::from([("step".to_string(), state.step.to_string())]);
        let tag = format!("{:07}-{}", state.step, state.step_in_epoch);
        let model_file = format!("model-{tag}.bpk");
        state.checksums.clear();
        let model_sum = checkpoint::save(model, &self.dir.resume_file(&model_file), &metadata)?;
        state.checksums.insert(model_file.clone(), model_sum);
        state.model_file = model_file;
        state.optimizer_files.clear();
        for (part, bytes) in optimizers {
            let file = format!("optimizer-{}-{tag}.bpk", part.name());
            atomic_file::write(&self.dir.resume_file(&file), bytes)?;
            state.checksums.insert(file.clone(), checksum::sha256_hex(bytes));
            state.optimizer_files.insert(part.name().to_string(), file);
        }
        write_json(&self.dir.resume_file(names::RESUME_STATE), &state)?;
        checkpoint::save(model, &self.dir.model_path(Checkpoint::Last), &metadata)?;
        self.remove_stale_checkpoint_files(&state)
    }

    /// After an epoch: when its validation accuracy is the best so far, saves `model` as
    /// `model-best` and the validation `evaluation` (computed only then) beside it; whether
    /// it did.
    pub fn keep_if_best<E: Serialize>(
        &mut self,
        model: &Classifier,
        epoch: &EpochRecord,
        evaluation: impl FnOnce() -> Result<E>,
    ) -> Result<bool> {
        if epoch.val_accuracy <= self.best {
            return Ok(false);
        }
        self.best = epoch.val_accuracy;
        let config = self.config();
        let metadata = HashMap::from([
            ("epoch".to_string(), epoch.epoch.to_string()),
            ("val_accuracy".to_string(), epoch.val_accuracy.to_string()),
            ("head".to_string(), spelling(&config.model.head)),
            ("layout".to_string(), spelling(&config.model.layout)),
        ]);
        checkpoint::save(model, &self.dir.model_path(Checkpoint::Best), &metadata)?;
        self.dir.evaluation_dir(&EvaluationOf::Validation).write(&evaluation()?)?;
        Ok(true)
    }

    /// Where the trust of the best model is kept (written by the process holding the run).
    pub fn trust_files(&self) -> super::TrustFiles {
        self.dir.trust_files()
    }

    /// Keeps the run's K-fold cross-validation (`--folds`).
    pub fn write_cross_validation(&self, record: &impl Serialize) -> Result<()> {
        write_json(&self.dir.file(names::CROSS_VALIDATION), record)
    }

    /// Writes `history.json` and `history.csv`.
    pub fn write_history(&self, history: &History) -> Result<()> {
        write_json(&self.dir.file(names::HISTORY_JSON), history)?;
        let mut csv = csv::Writer::from_writer(Vec::new());
        for record in &history.epochs {
            csv.serialize(record)?;
        }
        atomic_file::write(&self.dir.file(names::HISTORY_CSV), &csv.into_inner()?)
    }

    /// A finished run: removes the resume checkpoint's model and optimizer files (hundreds of
    /// megabytes it no longer needs) unless the configuration keeps them; `state.json` stays,
    /// marking the run finished.
    pub fn finish(&self) -> Result<()> {
        if self.config().stopping.keep_resume {
            return Ok(());
        }
        let Some(mut state) = self.dir.read_resume()? else { return Ok(()) };
        for file in std::iter::once(&state.model_file).chain(state.optimizer_files.values()) {
            if is_checkpoint_file(file) {
                let _ = std::fs::remove_file(self.dir.resume_file(file));
            }
        }
        state.model_file.clear();
        state.optimizer_files.clear();
        state.checksums.clear();
        write_json(&self.dir.resume_file(names::RESUME_STATE), &state)
    }

    /// Removes older checkpoints: only files of our own naming, never anything else.
    fn remove_stale_checkpoint_files(&self, state: &ResumeState) -> Result<()> {
        let keep: Vec<&String> =
            std::iter::once(&state.model_file).chain(state.optimizer_files.values()).collect();
        for entry in std::fs::read_dir(self.dir.file(names::RESUME))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if is_checkpoint_file(&name) && !keep.iter().any(|k| **k == name) {
                let _ = std::fs::remove_file(self.dir.resume_file(&name));
            }
        }
        Ok(())
    }
}
