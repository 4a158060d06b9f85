//! `fruitlab predict`: top-k classes for images.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::ComputeArgs;
use crate::inference::{Prediction, Predictor};
use crate::run::RunDir;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("model").required(true).args(["run", "weights"])))]
pub struct PredictArgs {
    /// Image files (JPEG or PNG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// A trained run folder: predict its classes.
    #[arg(long, conflicts_with = "weights")]
    run: Option<PathBuf>,
    /// Use the run's last checkpoint instead of its best.
    #[arg(long, requires = "run")]
    last: bool,
    /// `imagenet` for the cached ImageNet ResNet-50, or a weights file (TF.js model.json or
    /// converted .safetensors): predict the 1000 ImageNet classes.
    #[arg(long)]
    weights: Option<String>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Print one JSON array instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    compute: ComputeArgs,
}

pub fn execute(args: PredictArgs) -> Result<ExitCode> {
    let device = args.compute.compute().setup()?;
    let predictor = match (&args.run, args.weights.as_deref()) {
        (Some(run), _) => Predictor::from_run(&RunDir::open(run)?, args.last, &device)?,
        (None, Some("imagenet") | None) => Predictor::imagenet(None, &device)?,
        (None, Some(path)) => Predictor::imagenet(Some(path.as_ref()), &device)?,
    };
    let results = predictor.classify_files(&args.images, args.top_k);
    let predictions: Vec<Prediction> = results.into_iter().collect::<Result<_>>()?;
    print_predictions(&predictions, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_predictions(predictions: &[Prediction], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(predictions)?);
        return Ok(());
    }
    for prediction in predictions {
        println!("{}", prediction.image.display());
        for (rank, guess) in prediction.top.iter().enumerate() {
            println!(
                "  {}. {} ({})  {:.2}%",
                rank + 1,
                guess.class,
                guess.index,
                100.0 * guess.probability
            );
        }
    }
    Ok(())
}
