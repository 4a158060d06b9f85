//! Training: the data of a run, the model it trains, the one optimizer step every loop
//! takes, the epoch loop with its stopping rules, and what the run says before it trains.

pub mod announce;
pub mod batches;
pub mod folds;
pub mod learner;
pub mod model;
pub mod optim;
pub mod prepare;
pub mod record;
pub mod stopping;
pub mod trainer;
pub mod trust;
pub mod whole_set;

use anyhow::Result;
use burn::tensor::Device;

use crate::run::{History, ResumeState, Start, TrainingRun};
use learner::Learner;
use trainer::Trainer;

/// How a training run ended.
pub struct Outcome {
    pub history: History,
    /// Stopped early by Ctrl-C; the resume checkpoint is saved.
    pub interrupted: bool,
}

/// Trains the run in `run` from where `start` says, on `device`, until its epochs are done or
/// Ctrl-C. Ctrl-C during any phase ends it with `interrupted` set and the run resumable; any
/// other failure leaves no folder behind when this process made it and nothing was trained.
pub fn train(mut run: TrainingRun, start: Start, device: &Device) -> Result<Outcome> {
    match train_run(&mut run, start, device) {
        Err(error) if crate::support::interrupt::is_interruption(&error) => {
            Ok(Outcome { history: History::default(), interrupted: true })
        }
        Err(error) => {
            run.remove_if_untrained();
            Err(error)
        }
        outcome => outcome,
    }
}

fn train_run(run: &mut TrainingRun, start: Start, device: &Device) -> Result<Outcome> {
    if let Start::Finished(state) = start {
        eprintln!("{} has already finished all its epochs", run.dir().path().display());
        return Ok(Outcome { history: state.history, interrupted: false });
    }
    let config = run.config().clone();
    if config.uses_feature_store() && !config.images.augmentation().is_identity() {
        eprintln!(
            "note: frozen mode caches backbone features of the plain images, so --augment is not applied; pass --no-feature-cache --optimizer adam to augment (the backbone then runs every epoch)"
        );
    }
    // Model initialisation draws from the device's generator: seed it for reproducible runs.
    device.seed(config.optimization.seed);

    let data = prepare::prepare_data(&config)?;
    run.settle_classes(&data.classes, &start)?;
    run.record_dataset(data.summary.clone(), data.files.clone(), &start)?;
    let resume = match start {
        Start::Resume(state) => Some(state),
        Start::Fresh | Start::Finished(_) => None,
    };
    for line in announce::header(&config, &data, run.dir().path(), resume.as_ref()) {
        eprintln!("{line}");
        run.log(line.trim())?;
    }
    for warning in announce::warnings(&config, &data) {
        eprintln!("warning: {warning}");
        run.log(&format!("warning: {warning}"))?;
    }

    let model = model::build_model(&config, data.classes.len(), &device.clone().autodiff())?;
    let weights = learner::class_weights(&config, &data.train.labels, data.classes.len());
    let mut learner = Learner::new(&config, model, device).with_class_weights(weights);
    let mut state = match resume {
        Some(state) => {
            learner = learner.restored(run, &state)?;
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
    let mut trainer = Trainer::new(&config, run, device, &data, learner);
    let outcome = trainer.train(&mut state)?;
    if state.finished && !outcome.interrupted {
        trainer.fit_trust(&state)?;
        trainer.cross_validate(&state)?;
    }
    drop(trainer);
    if state.finished {
        run.finish()?;
    }
    Ok(outcome)
}
