//! `fruitlab serve`: a trained run (or the ImageNet model) behind HTTP, with a page.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{ComputeArgs, ModelArgs};
use crate::serve::uncertain::UncertainStore;
use crate::serve::{self, ModelInfo, ServeOptions};

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on (0.0.0.0 for every interface).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0: any free one, printed at start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Images per forward pass: concurrent requests share it.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    max_batch: u16,
    /// Milliseconds a request waits for others to share its forward pass.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    max_wait_ms: u32,
    /// Requests that may wait for the model; beyond it the server answers 503 (Retry-After).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    queue: u32,
    /// Largest request body, in megabytes (413 beyond).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_body_mb: u32,
    /// Largest image, in megapixels, checked before decoding (413 beyond).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_megapixels: u32,
    /// Images per request.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    max_images: u16,
    /// Seconds to answer a request, receiving its body included (408 beyond).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3600))]
    timeout_s: u32,
    /// Seconds a client has to send its request headers (slow clients are dropped).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3600))]
    header_timeout_s: u32,
    /// Keep the uploads the model rejects as "none of these", or is unsure of, in this folder
    /// (each image beside a JSON of its prediction), for a person to label.
    #[arg(long)]
    save_uncertain: Option<PathBuf>,
    /// With --save-uncertain: also keep uploads whose top probability is under this.
    #[arg(long, default_value_t = 0.5, requires = "save_uncertain")]
    uncertain_below: f32,
    /// With --save-uncertain: the most files the folder may hold (images and their JSON).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(2..), requires = "save_uncertain")]
    uncertain_max_files: u32,
    /// With --save-uncertain: the most megabytes the folder may hold.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..), requires = "save_uncertain")]
    uncertain_max_mb: u32,
    #[command(flatten)]
    compute: ComputeArgs,
}

pub fn execute(args: ServeArgs) -> Result<ExitCode> {
    let device = args.compute.compute().setup()?;
    let run = args.model.run_dir()?;
    let predictor = args.model.predictor(run.as_ref(), &device)?;
    let model = ModelInfo::describe(&predictor, run.as_ref(), args.model.weights_name())?;
    let options = ServeOptions {
        address: SocketAddr::new(args.host, args.port),
        max_batch: args.max_batch as usize,
        max_wait: Duration::from_millis(args.max_wait_ms as u64),
        queue: args.queue as usize,
        max_body: args.max_body_mb as usize * 1024 * 1024,
        max_pixels: args.max_megapixels as u64 * 1_000_000,
        max_images: args.max_images as usize,
        timeout: Duration::from_secs(args.timeout_s as u64),
        header_timeout: Duration::from_secs(args.header_timeout_s as u64),
        uncertain: match &args.save_uncertain {
            Some(dir) => {
                crate::run::RunDir::refuse_inside_run(dir, "--save-uncertain")?;
                anyhow::ensure!(
                    args.uncertain_below.is_finite() && (0.0..=1.0).contains(&args.uncertain_below),
                    "--uncertain-below must be a probability in [0, 1], got {}",
                    args.uncertain_below
                );
                Some(UncertainStore::open(
                    dir.clone(),
                    args.uncertain_below,
                    args.uncertain_max_files as usize,
                    args.uncertain_max_mb as u64 * 1_000_000,
                )?)
            }
            None => None,
        },
    };
    serve::serve(predictor, model, options)?;
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}
