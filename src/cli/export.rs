//! `fruitlab export`: a trained run (or the ImageNet model) as an ONNX file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::ComputeArgs;
use crate::export;
use crate::inference::Predictor;
use crate::run::RunDir;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("model").required(true).args(["run", "weights"])))]
pub struct ExportArgs {
    /// A trained run folder: export its best model.
    #[arg(long, conflicts_with = "weights")]
    run: Option<PathBuf>,
    /// Export the run's last checkpoint instead of its best.
    #[arg(long, requires = "run")]
    last: bool,
    /// `imagenet` for the cached ImageNet ResNet-50, or a weights file.
    #[arg(long)]
    weights: Option<String>,
    /// File format.
    #[arg(long, value_enum, default_value_t = Format::Onnx)]
    format: Format,
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    compute: ComputeArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// ONNX, opset 17: uint8 RGB images in, class probabilities out.
    Onnx,
}

pub fn execute(args: ExportArgs) -> Result<ExitCode> {
    let device = args.compute.compute().setup()?;
    let mut provenance = BTreeMap::new();
    let predictor = match (&args.run, args.weights.as_deref()) {
        (Some(run), _) => {
            let dir = RunDir::open(run)?;
            provenance.insert("run".into(), run.display().to_string());
            provenance.insert("model".into(), dir.model_path(args.last).display().to_string());
            provenance.insert("config".into(), serde_json::to_string(&dir.read_record()?.config)?);
            Predictor::from_run(&dir, args.last, &device)?
        }
        (None, weights) => {
            let path = weights.filter(|w| *w != "imagenet").map(PathBuf::from);
            provenance.insert("weights".into(), weights.unwrap_or("imagenet").into());
            Predictor::imagenet(path.as_deref(), &device)?
        }
    };
    provenance.insert("exported".into(), chrono::Local::now().to_rfc3339());
    let Format::Onnx = args.format;
    let bytes = export::to_onnx(&predictor, provenance)?;
    crate::atomic_file::write(&args.out, &bytes)?;
    println!(
        "{} ({:.1} MB): input `{}` uint8 [batch, {size}, {size}, 3] RGB, output `{}` [batch, {}]",
        args.out.display(),
        bytes.len() as f64 / 1e6,
        export::INPUT,
        export::OUTPUT,
        predictor.classes.len(),
        size = predictor.input.size,
    );
    Ok(ExitCode::SUCCESS)
}
