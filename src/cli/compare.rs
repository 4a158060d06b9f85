//! `fruitlab compare`: the pretrained and the vanilla model trained alike, then the report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::Args;

use super::report::print_summary;
use super::train::TrainFlags;
use crate::config::{Init, TrainConfig};
use crate::interrupt::{self, EXIT_INTERRUPTED};
use crate::report::build;
use crate::run::RunDir;
use crate::train;

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

pub fn execute(args: CompareArgs) -> Result<ExitCode> {
    interrupt::install();
    let device = args.flags.compute.compute().setup()?;
    let runs: Vec<(Option<TrainConfig>, PathBuf)> = match &args.data {
        Some(data) => [(Init::Imagenet, "pretrained"), (Init::Random, "vanilla")]
            .into_iter()
            .map(|(init, name)| {
                let mut flags = args.flags.clone();
                flags.init = init;
                let config = flags.config(data.clone());
                config.validate()?;
                new_or_same(config, args.out.join(name))
            })
            .collect::<Result<_>>()?,
        None => args.runs.iter().map(|dir| (None, dir.clone())).collect(),
    };
    for (config, dir) in &runs {
        eprintln!("== {} ==", dir.display());
        if train::start_or_resume(config.clone(), dir, &device)?.interrupted {
            eprintln!("stopped; run the same command again to continue");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
    }
    let dirs: Vec<PathBuf> = runs.into_iter().map(|(_, dir)| dir).collect();
    report(&dirs, &args.out, &device)
}

/// `config` for a new run in `dir`, or `None` to continue the run already there, which must
/// have the same settings.
fn new_or_same(config: TrainConfig, dir: PathBuf) -> Result<(Option<TrainConfig>, PathBuf)> {
    if !dir.join("config.json").exists() {
        return Ok((Some(config), dir));
    }
    if RunDir::open(&dir)?.read_record()?.config != config {
        bail!(
            "{} holds a run with other settings: use another --out, or `fruitlab compare --runs` to compare existing runs",
            dir.display()
        );
    }
    Ok((None, dir))
}

fn report(runs: &[PathBuf], out: &Path, device: &Device) -> Result<ExitCode> {
    let summary = build::build(runs, out, device)?;
    print_summary(&summary, out);
    Ok(ExitCode::SUCCESS)
}
