//! `fruitlab export`: a trained run (or the ImageNet model) as an ONNX file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::{ComputeArgs, ModelArgs};
use crate::export;

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    model: ModelArgs,
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
    crate::run::RunDir::refuse_inside_run(&args.out, "--out")?;
    if args.out.exists() && !export::is_our_export(&args.out) {
        anyhow::bail!(
            "--out {} exists and is not a model fruitlab exported: choose another file (nothing was written)",
            args.out.display()
        );
    }
    let device = args.compute.compute().setup()?;
    let mut provenance = BTreeMap::new();
    let run = args.model.run_dir()?;
    match &run {
        Some(dir) => {
            provenance.insert("run".into(), dir.path().display().to_string());
            let model = dir.model_path(args.model.checkpoint());
            provenance.insert("model".into(), model.display().to_string());
            provenance.insert("config".into(), serde_json::to_string(&dir.read_config()?)?);
        }
        None => {
            provenance.insert("weights".into(), args.model.weights_name().into());
        }
    }
    let predictor = args.model.predictor(run.as_ref(), &device)?;
    provenance.insert("exported".into(), chrono::Local::now().to_rfc3339());
    let Format::Onnx = args.format;
    let bytes = export::to_onnx(&predictor, provenance)?;
    crate::support::atomic_file::write(&args.out, &bytes)?;
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
