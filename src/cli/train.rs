//! `fruitlab train`: the training flags (shared with `compare` and `lr-find`) and what is
//! printed around a training run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::Args;

use crate::config::{self, Init, Mode, Overrides, Recipe, TrainConfig};
use crate::run::record::read_config_file;
use crate::run::{Checkpoint, RunDir, Start, TrainingRun};
use crate::support::interrupt::{self, EXIT_INTERRUPTED};
use crate::train;

#[derive(Args)]
pub struct TrainArgs {
    /// Dataset root: `Training/` (and optionally `Test/`, used for validation), or a folder of
    /// class folders.
    #[arg(long, required_unless_present_any = ["resume", "config"])]
    pub data: Option<PathBuf>,
    /// Run folder to create.
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in this folder.
    #[arg(long, conflicts_with_all = ["data", "out", "config"])]
    pub resume: Option<PathBuf>,
    /// Rerun with the configuration of a run's config.json (other flags are ignored).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: TrainFlags,
}

/// Training flags, shared by `train`, `compare` and `lr-find`: which recipe, for which mode
/// and initialisation, then every setting (unset ones take the recipe's value).
#[derive(Args, Clone, Debug)]
pub struct TrainFlags {
    /// Starting point for every setting below: our measured defaults, or the notebook's recipe.
    #[arg(long, value_enum, default_value_t = Recipe::Default)]
    pub recipe: Recipe,
    /// Backbone initialisation.
    #[arg(long, value_enum, default_value_t = Init::Imagenet)]
    pub init: Init,
    /// Fine-tune every layer, or train only the new top on a frozen backbone.
    #[arg(long, value_enum, default_value_t = Mode::Finetune)]
    pub mode: Mode,
    #[command(flatten)]
    pub settings: Overrides,
}

impl TrainFlags {
    /// The full configuration of a run on `data`: the recipe's values, then the given flags.
    pub fn config(&self, data: PathBuf) -> TrainConfig {
        config::resolve(self.recipe, self.mode, self.init, data, self.settings.clone())
    }
}

pub fn execute(args: TrainArgs) -> Result<ExitCode> {
    interrupt::install();
    let (run, start, device) = match (&args.resume, &args.config, &args.data, &args.out) {
        (Some(dir), ..) => {
            let (run, start) = RunDir::resume(dir)?;
            let device = ready(run.config())?;
            (run, start, device)
        }
        (None, Some(path), _, Some(out)) => new_run(from_data(read_config_file(path)?)?, out)?,
        (None, None, Some(data), Some(out)) => {
            new_run(from_data(args.flags.config(data.clone()))?, out)?
        }
        _ => bail!("give --data and --out (or --config and --out, or --resume)"),
    };
    let dir = run.dir().clone();
    let outcome = train::train(run, start, &device)?;
    if outcome.interrupted {
        eprintln!("stopped; continue with: fruitlab train --resume {}", dir.path().display());
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    match outcome.history.best() {
        Some(best) => println!(
            "best validation accuracy {:.2}% (epoch {}); model: {}; run folder: {:.0} MB",
            100.0 * best.val_accuracy,
            best.epoch,
            dir.model_path(Checkpoint::Best).display(),
            dir.size_bytes() as f64 / 1e6
        ),
        None => bail!("the run trained no epoch"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `config` with the settings left to the data chosen from it, each choice said on stderr.
pub(super) fn from_data(mut config: TrainConfig) -> Result<TrainConfig> {
    for note in config::from_data::resolve(&mut config)? {
        eprintln!("from the data: {note}");
    }
    Ok(config)
}

/// The device of a checked configuration.
fn ready(config: &TrainConfig) -> Result<Device> {
    config.validate()?;
    config.compute.setup()
}

/// A new run of `config` in `out`, started once the configuration is checked and its device
/// set up (a refused configuration leaves no folder behind).
fn new_run(config: TrainConfig, out: &Path) -> Result<(TrainingRun, Start, Device)> {
    let device = ready(&config)?;
    if crate::support::is_within(out, &config.data) {
        bail!(
            "--out {} is inside the dataset {}: its folder would be read as a class; choose an --out outside the dataset",
            out.display(),
            config.data.display()
        );
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        RunDir::refuse_inside_run(parent, "--out")?;
    }
    let (run, start) = RunDir::start(out, config)?;
    Ok((run, start, device))
}
