//! The `fruitlab` command line: argument parsing and one module per command.

mod bench;
mod compare;
mod data;
mod evaluate;
mod predict;
mod train;
mod weights;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::device::{self, Backend, DeviceSpec};

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
    Report(compare::ReportArgs),
    /// Class activation maps: where the network sees its predicted class.
    Cam(compare::CamArgs),
    /// Measure ResNet-50 inference/training throughput and the data pipeline.
    Bench(bench::BenchArgs),
    /// Train a classifier (fine-tune, or a new top on a frozen backbone).
    Train(Box<train::TrainArgs>),
}

/// Where the network runs.
#[derive(Args, Clone, Debug)]
pub struct ComputeArgs {
    /// Compute backend (only those compiled in are available).
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// `cpu`, `cuda` or `cuda:N` [default: cpu; cuda:0 for the cuda backend].
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// CPU threads for the math and the data pipeline [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
}

impl ComputeArgs {
    /// Sets up the thread pool and returns the device.
    pub fn device(&self) -> Result<burn::tensor::Device> {
        if let Some(threads) = self.threads {
            // Both burn-flex and our data pipeline use rayon's global pool.
            rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().ok();
        }
        device::select(self.backend, self.device.as_ref())
    }
}

/// Parses the command line and runs the command.
pub fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Weights(command) => weights::run(command),
        Command::Predict(args) => predict::run(args),
        Command::Data(command) => data::run(command),
        Command::Bench(args) => bench::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Compare(args) => compare::compare(*args),
        Command::Report(args) => compare::report(args),
        Command::Cam(args) => compare::cam(args),
        Command::Train(args) => train::run(*args),
    }
}
