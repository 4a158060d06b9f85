//! `fruitlab compare`: the pretrained and the vanilla model trained alike, then the report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use burn::tensor::Device;
use clap::Args;

use super::report::print_summary;
use super::train::TrainFlags;
use crate::config::Init;
use crate::report::build;
use crate::run::{RunDir, Start, TrainingRun};
use crate::support::interrupt::{self, EXIT_INTERRUPTED};
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
    RunDir::refuse_inside_run(&args.out, "--out")?;
    let device = args.flags.settings.compute.clone().into_compute().setup()?;
    let (runs, made_out) = match &args.data {
        Some(data) => {
            // Both configurations are checked before either run starts.
            let configs =
                [(Init::Imagenet, "pretrained"), (Init::Random, "vanilla")].map(|(init, name)| {
                    let mut flags = args.flags.clone();
                    flags.init = init;
                    (flags.config(data.clone()), args.out.join(name))
                });
            let mut configs = configs;
            for (config, _) in &mut configs {
                // Both runs see the same data, so one says what was chosen.
                let notes = crate::config::from_data::resolve(config)?;
                if config.init == Init::Imagenet {
                    notes.iter().for_each(|note| eprintln!("from the data: {note}"));
                }
            }
            for (config, _) in &configs {
                config.validate()?;
            }
            let made_out = !args.out.exists();
            let mut runs = Vec::new();
            for (config, dir) in configs {
                match RunDir::start_or_continue(&dir, config) {
                    Ok(run) => runs.push(run),
                    Err(error) => return Err(abandon(runs, made_out.then_some(&args.out), error)),
                }
            }
            (runs, made_out)
        }
        None => {
            let runs = args.runs.iter().map(|dir| RunDir::resume(dir));
            (runs.collect::<Result<Vec<_>>>()?, false)
        }
    };
    let mut dirs = Vec::new();
    let mut runs = runs.into_iter();
    while let Some((run, start)) = runs.next() {
        let dir = run.dir().path().to_path_buf();
        eprintln!("== {} ==", dir.display());
        let outcome = match train::train(run, start, &device) {
            Ok(outcome) => outcome,
            Err(error) => return Err(abandon(runs, made_out.then_some(&args.out), error)),
        };
        if outcome.interrupted {
            eprintln!("stopped; run the same command again to continue");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        dirs.push(dir);
    }
    report(&dirs, &args.out, &device)
}

/// After `error`: the runs not yet trained leave nothing behind when this command made them
/// (a failed run has already cleaned up after itself), nor does the `--out` folder it made.
fn abandon(
    runs: impl IntoIterator<Item = (TrainingRun, Start)>,
    made_out: Option<&Path>,
    error: anyhow::Error,
) -> anyhow::Error {
    runs.into_iter().for_each(|(run, _)| run.remove_if_untrained());
    if let Some(out) = made_out {
        // Only an empty folder is removed: a run trained before the failure stays.
        let _ = std::fs::remove_dir(out);
    }
    error
}

fn report(runs: &[PathBuf], out: &Path, device: &Device) -> Result<ExitCode> {
    let summary = build::build(runs, out, device)?;
    print_summary(&summary, out);
    Ok(ExitCode::SUCCESS)
}
