//! `fruitlab audit`: the dataset's own mistakes (likely label errors, the same photo twice,
//! outliers) as JSON and as a page with thumbnails.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::ComputeArgs;
use crate::audit::{self, AuditOptions};
use crate::run::RunDir;

#[derive(Args)]
pub struct AuditArgs {
    /// A trained run: its dataset is audited with its best model's backbone.
    #[arg(long)]
    run: PathBuf,
    /// Where to write audit.json and audit.html [default: RUN/audit].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Folds of the cross-fitting that gives every image out-of-sample probabilities.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..=50))]
    folds: u16,
    /// Suspects, duplicate groups and outliers listed.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    listed: u32,
    #[command(flatten)]
    compute: ComputeArgs,
}

pub fn execute(args: AuditArgs) -> Result<ExitCode> {
    crate::support::interrupt::install();
    let device = args.compute.compute().setup()?;
    let run = RunDir::open(&args.run)?;
    let (out, _lock) = match &args.out {
        Some(out) => {
            RunDir::refuse_inside_run(out, "--out")?;
            (out.clone(), None)
        }
        None => {
            let lock = run.lock_to_write(
                "wait until it has finished, or pass --out DIR to write the audit elsewhere",
            )?;
            (run.audit_dir(), Some(lock))
        }
    };
    let options = AuditOptions { folds: args.folds as usize, listed: args.listed as usize };
    let audit = audit::audit(&run, options, &device)?;
    std::fs::create_dir_all(&out)?;
    crate::run::write_json(&out.join("audit.json"), &audit)?;
    audit::write_page(&audit, &out.join("audit.html"))?;
    println!(
        "{} images: {} possible label errors ({} confident), {} groups of the same photo ({} across splits)",
        audit.images,
        audit.suspects_found,
        audit.confident_found,
        audit.duplicate_groups_found,
        audit.leaking_groups_found
    );
    for suspect in audit.suspects.iter().take(10) {
        println!(
            "  {} (in {}): looks like {}{} ({:.0}% against {:.0}%)",
            suspect.path.display(),
            suspect.given,
            suspect.suggested,
            if suspect.confident { ", confidently" } else { "" },
            100.0 * suspect.suggested_probability,
            100.0 * suspect.given_probability
        );
    }
    println!(
        "details: {} and {}",
        out.join("audit.html").display(),
        out.join("audit.json").display()
    );
    Ok(ExitCode::SUCCESS)
}
