//! `fruitlab cam`: class activation maps of images under a trained run's model.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::ComputeArgs;
use crate::cam;
use crate::inference::Predictor;
use crate::report::grid::cam_panel;
use crate::run::RunDir;

#[derive(Args)]
pub struct CamArgs {
    /// Trained run folder.
    #[arg(long)]
    run: PathBuf,
    /// Images (JPEG, PNG or WebP).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Output folder for the maps, one PNG per image (FOLDER-NAME-cam.png: image files of
    /// different classes often share a name).
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
    RunDir::refuse_inside_run(&args.out, "--out")?;
    let run = RunDir::open(&args.run)?;
    let predictor = Predictor::from_run(&run, super::checkpoint(args.last), &device)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut taken = HashSet::new();
    for path in &args.images {
        let rgb = predictor.input.load(path)?;
        let map = cam::image_map(&predictor, &rgb)?;
        let overlay = cam::overlay(&rgb, &map, (300 / predictor.input.size as u32).max(1));
        let caption = [
            format!(
                "predicted: {} ({:.1}%)",
                predictor.classes[map.class],
                100.0 * map.probability
            ),
            format!("image: {}", path.display()),
        ];
        let panel = cam_panel(&rgb, &overlay, &caption)?;
        let target = args.out.join(unique_name(path, &mut taken));
        crate::report::write_image(&target, panel.width(), panel.height(), panel.into_raw())?;
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

/// `FOLDER-STEM-cam.png` for `FOLDER/STEM.jpg`, numbered when two images still collide.
fn unique_name(path: &Path, taken: &mut HashSet<String>) -> String {
    let part =
        |p: Option<&std::ffi::OsStr>| p.map_or(String::new(), |s| s.to_string_lossy().into_owned());
    let folder = part(path.parent().and_then(Path::file_name));
    let stem = part(path.file_stem());
    let base = if folder.is_empty() { stem } else { format!("{folder}-{stem}") };
    let base: String = base
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    let mut name = format!("{base}-cam.png");
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}-cam.png");
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_across_classes_and_repeats() {
        let mut taken = HashSet::new();
        let names: Vec<String> = ["Banana/1_100.jpg", "Kiwi/1_100.jpg", "Kiwi/1_100.jpg", "x.png"]
            .iter()
            .map(|p| unique_name(Path::new(p), &mut taken))
            .collect();
        assert_eq!(
            names,
            ["Banana-1_100-cam.png", "Kiwi-1_100-cam.png", "Kiwi-1_100-2-cam.png", "x-cam.png"]
        );
    }
}
