//! `resume/state.json`: the training progress needed to continue an interrupted run.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::history::History;

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
    /// SHA-256 of each checkpoint file named above, checked before resuming.
    pub checksums: HashMap<String, String>,
    /// True once the configured epochs are all done.
    pub finished: bool,
}

impl ResumeState {
    /// The state of a run that has not trained yet.
    pub fn fresh(history: History) -> Self {
        Self {
            step: 0,
            epochs_done: 0,
            step_in_epoch: 0,
            partial_epoch: PartialEpoch::default(),
            head_warmup_done: false,
            history,
            model_file: String::new(),
            optimizer_files: HashMap::new(),
            checksums: HashMap::new(),
            finished: false,
        }
    }
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
