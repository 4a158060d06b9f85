//! `fruitlab cam`: class activation maps of images under a trained run's model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::ComputeArgs;
use crate::cam;
use crate::inference::Predictor;
use crate::run::RunDir;

#[derive(Args)]
pub struct CamArgs {
    /// Trained run folder.
    #[arg(long)]
    run: PathBuf,
    /// Images (JPEG or PNG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Output folder for IMAGE-cam.png files.
    #[arg(long)]
    out: PathBuf,
    /// Use the last checkpoint instead of the best.
    #[arg(long)]
    last: bool,
    #[command(flatten)]
    compute: ComputeArgs,
}

pub fn execute(args: CamArgs) -> Result<ExitCode> {
    let device = args.compute.compute().setup()?;
    let predictor = Predictor::from_run(&RunDir::open(&args.run)?, args.last, &device)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for path in &args.images {
        let rgb = predictor.input.load(path)?;
        let map = cam::image_map(&predictor, &rgb)?;
        let stem = path.file_stem().map_or("image".into(), |s| s.to_string_lossy().into_owned());
        let target = args.out.join(format!("{stem}-cam.png"));
        let overlay = cam::overlay(&rgb, &map, (300 / predictor.input.size as u32).max(1));
        crate::report::write_png(&target, overlay.width(), overlay.height(), overlay.into_raw())?;
        println!(
            "{}: {} ({:.1}%) -> {}",
            path.display(),
            predictor.classes[map.class],
            100.0 * map.probability,
            target.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
