//! `fruitlab compare`, `fruitlab report` and `fruitlab cam`: the pretrained-vs-vanilla
//! comparison and its figures.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::ComputeArgs;
use super::train::{TrainFlags, interrupt_flag, start_or_resume};
use crate::cam;
use crate::preprocess;
use crate::report::build;
use crate::report::summary::Summary;
use crate::train::RunDir;
use crate::train::config::Init;

#[derive(Args)]
pub struct CompareArgs {
    /// Dataset root: trains `OUT/pretrained` and `OUT/vanilla` on it with identical settings.
    #[arg(long, required_unless_present = "runs")]
    data: Option<PathBuf>,
    /// Compare these runs instead of training new ones (unfinished ones are resumed first).
    #[arg(long, num_args = 2.., conflicts_with = "data")]
    runs: Vec<PathBuf>,
    /// Output folder: the runs (with --data), figures, report.html and summary.json.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    flags: TrainFlags,
}

#[derive(Args)]
pub struct ReportArgs {
    /// Run folders to compare.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Where to write the figures, report.html and summary.json.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    compute: ComputeArgs,
}

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

pub fn compare(args: CompareArgs) -> Result<()> {
    let stop = interrupt_flag();
    let runs: Vec<PathBuf> = match &args.data {
        Some(data) => [(Init::Imagenet, "pretrained"), (Init::Random, "vanilla")]
            .iter()
            .map(|(init, name)| {
                let mut flags = args.flags.clone();
                flags.init = *init;
                (flags.resolve(data), args.out.join(name))
            })
            .map(|(config, dir)| {
                let existing = dir.join("config.json").exists();
                if existing {
                    let saved = RunDir::open(&dir)?.read_record()?.config;
                    if saved != config {
                        bail!(
                            "{} holds a run with other settings: use another --out, or `fruitlab compare --runs` to compare existing runs",
                            dir.display()
                        );
                    }
                }
                train_or_resume((!existing).then_some(config), dir, &stop)
            })
            .collect::<Result<_>>()?,
        None => args
            .runs
            .iter()
            .map(|dir| train_or_resume(None, dir.clone(), &stop))
            .collect::<Result<_>>()?,
    };
    let device = args.flags.compute.device()?;
    let summary = build::build(&runs, &args.out, &device)?;
    print_summary(&summary, &args.out);
    Ok(())
}

fn train_or_resume(
    config: Option<crate::train::TrainConfig>,
    dir: PathBuf,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<PathBuf> {
    eprintln!("== {} ==", dir.display());
    let outcome = start_or_resume(config, &dir, stop)?;
    if outcome.interrupted {
        eprintln!("stopped; run the same command again to continue");
        std::process::exit(130);
    }
    Ok(dir)
}

pub fn report(args: ReportArgs) -> Result<()> {
    let device = args.compute.device()?;
    let summary = build::build(&args.runs, &args.out, &device)?;
    print_summary(&summary, &args.out);
    Ok(())
}

fn print_summary(summary: &Summary, out: &std::path::Path) {
    for model in &summary.models {
        println!(
            "{:28} best val acc {:6.2}% (epoch {}), final {:6.2}%, {:.1} min",
            model.label,
            100.0 * model.best_val_accuracy,
            model.best_epoch,
            100.0 * model.final_val_accuracy,
            model.total_seconds / 60.0
        );
    }
    println!("report: {}", out.join("report.html").display());
}

pub fn cam(args: CamArgs) -> Result<()> {
    let device = args.compute.device()?;
    let trained = RunDir::open(&args.run)?.load_model(args.last, &device)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let size = trained.config.image_size;
    for path in &args.images {
        let rgb = preprocess::load_square(path, size as u32)?;
        let input =
            preprocess::batch_tensor(&[rgb.as_raw()], size, trained.config.normalization, &device);
        let map = cam::activation_map(&trained.model, input)?;
        let stem = path.file_stem().map_or("image".into(), |s| s.to_string_lossy().into_owned());
        let target = args.out.join(format!("{stem}-cam.png"));
        let overlay = cam::overlay(&rgb, &map, (300 / size as u32).max(1));
        crate::report::write_png(&target, overlay.width(), overlay.height(), overlay.into_raw())?;
        println!(
            "{}: {} ({:.1}%) -> {}",
            path.display(),
            trained.classes[map.class],
            100.0 * map.probability,
            target.display()
        );
    }
    Ok(())
}
