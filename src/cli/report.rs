//! `fruitlab report`: the comparison figures and report of finished runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::ComputeArgs;
use crate::report::build;
use crate::report::summary::Summary;

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

pub fn execute(args: ReportArgs) -> Result<ExitCode> {
    crate::run::RunDir::refuse_inside_run(&args.out, "--out")?;
    let device = args.compute.compute().setup()?;
    let summary = build::build(&args.runs, &args.out, &device)?;
    print_summary(&summary, &args.out);
    Ok(ExitCode::SUCCESS)
}

/// One line per model, then where the report is.
pub fn print_summary(summary: &Summary, out: &Path) {
    for model in &summary.models {
        println!(
            "{:20} best val acc {:6.2}% (epoch {}), final {:6.2}%, {:.1} min, run folder {:.0} MB",
            model.label,
            100.0 * model.best_val_accuracy,
            model.best_epoch,
            100.0 * model.final_val_accuracy,
            model.total_seconds / 60.0,
            model.folder_bytes as f64 / 1e6
        );
    }
    println!("report: {}", out.join("report.html").display());
}
