//! `fruitlab lr-find`: the learning-rate range test, its curve and a suggested rate.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, ensure};
use clap::Args;

use super::train::TrainFlags;
use crate::lr_find::{Sweep, lr_find};

#[derive(Args)]
pub struct LrFindArgs {
    /// Dataset root, as for `train`.
    #[arg(long)]
    data: PathBuf,
    /// Folder for lr-find.png, lr-find.svg and lr-find.csv.
    #[arg(long)]
    out: PathBuf,
    /// Rate of the first step.
    #[arg(long, default_value_t = 1e-7)]
    start_lr: f64,
    /// Rate of the last step.
    #[arg(long, default_value_t = 10.0)]
    end_lr: f64,
    /// Steps of the sweep.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(3..=100_000))]
    sweep_steps: u32,
    #[command(flatten)]
    flags: TrainFlags,
}

pub fn execute(args: LrFindArgs) -> Result<ExitCode> {
    crate::support::interrupt::install();
    let good = |v: f64| v.is_finite() && v > 0.0;
    ensure!(
        good(args.start_lr) && good(args.end_lr) && args.start_lr < args.end_lr,
        "--start-lr and --end-lr must be positive with start below end, got {} and {}",
        args.start_lr,
        args.end_lr
    );
    crate::run::RunDir::refuse_inside_run(&args.out, "--out")?;
    let config = super::train::from_data(args.flags.config(args.data.clone()))?;
    config.validate()?;
    let device = config.compute.setup()?;
    let sweep = Sweep { start: args.start_lr, end: args.end_lr, steps: args.sweep_steps as usize };
    let found = lr_find(&config, &sweep, &args.out, &device)?;
    println!(
        "suggested learning rate {:.1e} (a tenth of the rate at the lowest loss); curve: {}",
        found.suggested,
        args.out.join("lr-find.png").display()
    );
    println!("train with: fruitlab train ... --lr {:.1e}", found.suggested);
    Ok(ExitCode::SUCCESS)
}
