//! The `fruitlab` command line: argument parsing and printing, one module per command; the
//! work itself lives in the library's modules.

mod audit;
mod bench;
mod cam;
mod compare;
mod data;
mod evaluate;
mod export;
mod flags;
mod lr_find;
mod predict;
mod report;
mod serve;
mod train;
mod values;
mod weights;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use burn::tensor::Device;
use clap::{Args, Parser, Subcommand};

use crate::compute::{Compute, ComputeOverrides};
use crate::inference::Predictor;
use crate::run::{Checkpoint, RunDir};

#[derive(Parser)]
#[command(
    name = "fruitlab",
    version,
    about = "Transfer learning for image classification: ResNet-50 with ImageNet weights, in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch and cache pretrained weights.
    #[command(subcommand)]
    Weights(weights::WeightsCommand),
    /// Classify images with the ImageNet model or a trained run.
    Predict(predict::PredictArgs),
    /// Inspect datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Accuracy, per-class accuracy and confusion of a trained run on a set of images.
    Evaluate(evaluate::EvaluateArgs),
    /// Train the pretrained and the vanilla model alike and report them side by side.
    Compare(Box<compare::CompareArgs>),
    /// Regenerate the comparison figures and report from finished runs.
    Report(report::ReportArgs),
    /// Class activation maps: where the network sees its predicted class.
    Cam(cam::CamArgs),
    /// Measure ResNet-50 inference/training throughput and the data pipeline.
    Bench(bench::BenchArgs),
    /// Train a classifier (fine-tune, or a new top on a frozen backbone).
    Train(Box<train::TrainArgs>),
    /// Export a trained model (or the ImageNet one) as an ONNX file.
    Export(export::ExportArgs),
    /// Serve a trained model over HTTP, with a page to drop photos on.
    Serve(serve::ServeArgs),
    /// Find a learning rate: the loss over a sweep of rates, and a suggestion.
    LrFind(Box<lr_find::LrFindArgs>),
    /// The dataset's own mistakes: likely label errors, the same photo twice, outliers.
    Audit(audit::AuditArgs),
}

/// Where the network runs: the compute settings' flags.
#[derive(Args, Clone, Debug)]
pub struct ComputeArgs {
    #[command(flatten)]
    settings: ComputeOverrides,
}

impl ComputeArgs {
    pub fn compute(&self) -> Compute {
        self.settings.clone().into_compute()
    }
}

/// Which model a command uses: a trained run's (best or last checkpoint) or the ImageNet one.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("model").required(true).args(["run", "weights"])))]
pub struct ModelArgs {
    /// A trained run folder: use its best model.
    #[arg(long, conflicts_with = "weights")]
    pub run: Option<PathBuf>,
    /// Use the run's last checkpoint instead of its best.
    #[arg(long, requires = "run")]
    pub last: bool,
    /// `imagenet` for the cached ImageNet ResNet-50 (1000 classes), or a weights file (TF.js
    /// model.json or converted .safetensors).
    #[arg(long)]
    pub weights: Option<String>,
    /// Answer every image with its closest classes, never "not one of the classes I know".
    #[arg(long)]
    pub no_reject: bool,
}

impl ModelArgs {
    /// The run folder, when the model is a trained run's.
    pub fn run_dir(&self) -> Result<Option<RunDir>> {
        // clap's `requires` does not hold `--last` back when the group is met by `--weights`.
        anyhow::ensure!(
            self.run.is_some() || !self.last,
            "--last chooses a run's last checkpoint: it needs --run RUN, not --weights"
        );
        self.run.as_deref().map(RunDir::open).transpose()
    }

    /// Which of the run's models.
    pub fn checkpoint(&self) -> Checkpoint {
        checkpoint(self.last)
    }

    /// What `--weights` names, for the record: `imagenet` or the file.
    pub fn weights_name(&self) -> &str {
        self.weights.as_deref().unwrap_or("imagenet")
    }

    /// Loads the model for prediction.
    pub fn predictor(&self, run: Option<&RunDir>, device: &Device) -> Result<Predictor> {
        let predictor = match run {
            Some(dir) => Predictor::from_run(dir, self.checkpoint(), device)?,
            None => {
                let file = Some(self.weights_name()).filter(|w| *w != "imagenet");
                Predictor::imagenet(file.map(Path::new), device)?
            }
        };
        Ok(if self.no_reject { predictor.without_rejection() } else { predictor })
    }
}

/// The model `--last` chooses.
pub fn checkpoint(last: bool) -> Checkpoint {
    if last { Checkpoint::Last } else { Checkpoint::Best }
}

/// Parses the command line and runs the command; the process's exit status.
pub fn execute() -> Result<ExitCode> {
    match Cli::parse().command {
        Command::Weights(command) => weights::execute(command),
        Command::Predict(args) => predict::execute(args),
        Command::Data(command) => data::execute(command),
        Command::Bench(args) => bench::execute(args),
        Command::Evaluate(args) => evaluate::execute(args),
        Command::Compare(args) => compare::execute(*args),
        Command::Report(args) => report::execute(args),
        Command::Cam(args) => cam::execute(args),
        Command::Train(args) => train::execute(*args),
        Command::Export(args) => export::execute(args),
        Command::Serve(args) => serve::execute(args),
        Command::LrFind(args) => lr_find::execute(*args),
        Command::Audit(args) => audit::execute(args),
    }
}
