//! `fruitlab data inspect`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::data::dataset::training_folder;
use crate::data::{ImageFolder, inspect};
use crate::report;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Classes, images per class and split, image sizes, unreadable and ignored files.
    Inspect {
        /// Dataset root (`Training/`, optional `Test/`), or a folder of class folders.
        root: PathBuf,
        /// Also draw a labelled grid of sample images (one per class) into this PNG.
        #[arg(long)]
        grid: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub fn execute(command: DataCommand) -> Result<ExitCode> {
    match command {
        DataCommand::Inspect { root, grid, json } => {
            let report = inspect::inspect(&root)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            if let Some(path) = grid {
                let folder = ImageFolder::scan(&training_folder(&root))?;
                report::grid::draw_samples(&path, &folder)?;
                eprintln!("sample grid written to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
