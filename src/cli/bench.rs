//! `fruitlab bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::ComputeArgs;
use crate::bench::{self, BenchSettings};
use crate::model::BatchNormMode;

#[derive(Args)]
pub struct BenchArgs {
    /// Images per forward pass and training step.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    batch_size: u16,
    /// Input size in pixels.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(32..=1024))]
    image_size: u16,
    /// Timed repetitions; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    runs: u16,
    /// Untimed warm-up repetitions.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=1000))]
    warmup: u16,
    /// Batch norm in the training step.
    #[arg(long, value_enum, default_value_t = BatchNormMode::Frozen)]
    batchnorm: BatchNormMode,
    /// Skip the training-step measurement.
    #[arg(long)]
    no_train: bool,
    /// Also measure decoding and augmentation on this dataset.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Images for the data-pipeline measurement.
    #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u32).range(1..))]
    data_images: u32,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    compute: ComputeArgs,
}

pub fn execute(args: BenchArgs) -> Result<ExitCode> {
    let device = args.compute.compute().setup()?;
    let settings = BenchSettings {
        batch_size: args.batch_size as usize,
        image_size: args.image_size as usize,
        runs: args.runs as usize,
        warmup: args.warmup as usize,
        batchnorm: args.batchnorm,
        skip_train: args.no_train,
    };
    let compute = args.compute.compute();
    let device_name = compute.device.as_ref().map_or("default".to_string(), |d| d.to_string());
    let backend = crate::support::spelling(&compute.backend);
    let mut result = bench::bench_model(&settings, &device, &backend, &device_name)?;
    if let Some(root) = &args.data {
        result.data =
            Some(bench::bench_data(root, args.image_size as usize, args.data_images as usize)?);
    }
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "ResNet-50, {} backend, {}, {} threads, batch {}, {}x{} px (median of {} runs)",
        result.backend,
        result.kernels,
        result.threads,
        result.batch_size,
        result.image_size,
        result.image_size,
        result.runs
    );
    println!("  inference (BN folded)   {:8.1} img/s", result.infer_img_per_s);
    println!("  inference (BN layers)   {:8.1} img/s", result.infer_unfolded_img_per_s);
    if let Some(train) = result.train_img_per_s {
        let label =
            format!("training step (BN {})", crate::support::spelling(&result.train_batchnorm));
        println!("  {label:24}{train:8.1} img/s");
    }
    if let Some(data) = &result.data {
        println!("  data, {} images:", data.images);
        println!("    decode                {:8.0} img/s", data.decode_img_per_s);
        println!("    augment + normalise   {:8.0} img/s", data.augment_img_per_s);
        println!("    decode + augment      {:8.0} img/s", data.decode_augment_img_per_s);
    }
    Ok(ExitCode::SUCCESS)
}
