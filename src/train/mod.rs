//! Training: the data of a run, the model it trains, the epoch loop with its steps and
//! optimizers, the feature cache, checkpoints and resumption.

pub mod announce;
pub mod batches;
pub mod checkpoint;
pub mod model;
pub mod optim;
pub mod prepare;
pub mod record;
pub mod steps;
pub mod trainer;

use std::path::Path;

use anyhow::{Result, ensure};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::Device;

use crate::config::{Mode, TrainConfig};
use crate::run::{Environment, History, ResumeState, RunDir, RunRecord};
use checkpoint::Optimizers;
use trainer::Trainer;

/// How a training run ended.
pub struct Outcome {
    pub history: History,
    /// Stopped early by Ctrl-C; the resume checkpoint is saved.
    pub interrupted: bool,
}

/// Trains `config` into a new run folder `out`, or (`config` = `None`) continues the run in
/// `out`, on `device`. Ctrl-C during any phase ends it with `interrupted` set and the run
/// resumable.
pub fn start_or_resume(
    config: Option<TrainConfig>,
    out: &Path,
    device: &Device,
) -> Result<Outcome> {
    match open_and_train(config, out, device) {
        Err(error) if crate::interrupt::is_interruption(&error) => {
            Ok(Outcome { history: History::default(), interrupted: true })
        }
        outcome => outcome,
    }
}

fn open_and_train(config: Option<TrainConfig>, out: &Path, device: &Device) -> Result<Outcome> {
    let (run, config, state, _lock) = match config {
        Some(config) => {
            let (run, lock) = RunDir::create(out)?;
            let record = RunRecord {
                config: config.clone(),
                environment: Environment::capture(config.backend.name()),
                dataset: None,
            };
            run.write_record(&record)?;
            (run, config, None, lock)
        }
        None => {
            let run = RunDir::open(out)?;
            let lock = run.lock_for_writing()?;
            let config = run.read_record()?.config;
            let state =
                run.resume_file("state.json").exists().then(|| run.read_resume()).transpose()?;
            if let Some(state) = state.as_ref().filter(|s| s.finished) {
                eprintln!("{} has already finished all its epochs", out.display());
                return Ok(Outcome { history: state.history.clone(), interrupted: false });
            }
            (run, config, state, lock)
        }
    };
    if config.mode == Mode::Frozen && config.feature_cache && !config.augment.is_identity() {
        eprintln!(
            "note: frozen mode caches backbone features of the plain images, so --augment is not applied; pass --no-feature-cache to augment (the backbone then runs every epoch)"
        );
    }
    train(&config, &run, state, device)
}

/// Trains (or continues) the run in `run` until its epochs are done or Ctrl-C.
fn train(
    config: &TrainConfig,
    run: &RunDir,
    resume: Option<ResumeState>,
    device: &Device,
) -> Result<Outcome> {
    let ad = device.clone().autodiff();
    // Model initialisation draws from the device's generator: seed it for reproducible runs.
    device.seed(config.seed);

    let data = prepare::prepare_data(config)?;
    if resume.is_some() {
        ensure!(
            run.read_classes()? == data.classes,
            "the classes of {} changed since this run started",
            config.data.display()
        );
    } else {
        run.write_classes(&data.classes)?;
    }
    record_dataset(run, &data)?;
    for line in announce::header(config, &data, &run.path, resume.as_ref()) {
        eprintln!("{line}");
        run.log(line.trim())?;
    }
    for warning in announce::warnings(config, &data) {
        eprintln!("warning: {warning}");
        run.log(&format!("warning: {warning}"))?;
    }

    let mut model = model::build_model(config, data.classes.len(), &ad)?;
    let mut optimizers = Optimizers::new(config);
    let mut state = match resume {
        Some(state) => {
            model = crate::weights::checkpoint::load(model, &run.resume_file(&state.model_file))?;
            optimizers = optimizers.restore(run, &state)?;
            run.log(&format!(
                "resumed at epoch {} step {}",
                state.epochs_done + 1,
                state.step_in_epoch
            ))?;
            state
        }
        None => ResumeState::fresh(History {
            decode_seconds: data.decode_seconds,
            ..History::default()
        }),
    };
    let mut trainer = Trainer {
        config,
        run,
        device: device.clone(),
        ad,
        data,
        model,
        optimizers,
        loss: CrossEntropyLossConfig::new().with_smoothing(
            (config.label_smoothing > 0.0).then_some(config.label_smoothing as f32),
        ),
    };
    let outcome = trainer.train(&mut state)?;
    if state.finished && !config.keep_resume {
        run.drop_resume_checkpoint()?;
    }
    Ok(outcome)
}

/// Writes what the run sees of its dataset into `config.json` and the log.
fn record_dataset(run: &RunDir, data: &prepare::PreparedData) -> Result<()> {
    let mut record = run.read_record()?;
    record.dataset = Some(data.summary.clone());
    run.write_record(&record)?;
    for bad in &data.summary.skipped_images {
        run.log(&format!("skipped unreadable image: {}", bad.error))?;
    }
    if let Some(first) = data.summary.ignored_files.first() {
        run.log(&format!(
            "ignored {} non-image file(s) in class folders, e.g. {}",
            data.summary.ignored_files.len(),
            first.display()
        ))?;
    }
    Ok(())
}
