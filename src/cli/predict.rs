//! `fruitlab predict`: top-k classes for images, files or whole folder trees.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use super::{ComputeArgs, ModelArgs};
use crate::inference::stream::{self, Entry, Shard};
use crate::inference::{Prediction, Predictor};
use crate::support::interrupt::{self, EXIT_INTERRUPTED};

#[derive(Args)]
pub struct PredictArgs {
    /// Image files, or folders (walked recursively, in name order).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    top_k: u16,
    /// Print one JSON array instead of text.
    #[arg(long, conflicts_with = "jsonl")]
    json: bool,
    /// Stream one JSON line per image (its classes, or the error for a bad file), for folders
    /// of any size; progress goes to stderr.
    #[arg(long)]
    jsonl: bool,
    /// With --jsonl: skip the images this earlier output already answered (resume with
    /// `... --jsonl --skip-done OUT.jsonl >> OUT.jsonl`).
    #[arg(long, requires = "jsonl")]
    skip_done: Option<PathBuf>,
    /// With --jsonl: take only share I of N of the images (`--shard I/N`), so that N
    /// machines each take a fixed, disjoint part [default: 1/1].
    #[arg(long, requires = "jsonl")]
    shard: Option<Shard>,
    #[command(flatten)]
    compute: ComputeArgs,
}

pub fn execute(args: PredictArgs) -> Result<ExitCode> {
    let device = args.compute.compute().setup()?;
    let predictor = args.model.predictor(args.model.run_dir()?.as_ref(), &device)?;
    if args.jsonl {
        return stream_lines(&predictor, &args);
    }
    let mut images = Vec::new();
    let mut failed = Vec::new();
    for entry in stream::walk_images(&args.images) {
        match entry {
            Entry::Image(path) => images.push(path),
            Entry::Bad(path, why) => {
                eprintln!("error: {}: {why}", path.display());
                failed.push(path.display().to_string());
            }
        }
    }
    let total = images.len() + failed.len();
    if total == 0 {
        let roots: Vec<String> = args.images.iter().map(|r| r.display().to_string()).collect();
        bail!("no images found under {}", roots.join(", "));
    }
    let results = predictor.classify_files(&images, args.top_k as usize)?;
    let mut predictions = Vec::new();
    for (path, result) in images.iter().zip(results) {
        match result {
            Ok(prediction) => predictions.push(prediction),
            Err(error) => {
                eprintln!("error: {error:#}");
                failed.push(path.display().to_string());
            }
        }
    }
    if let Some(note) = &predictor.note {
        eprintln!("note: {note}");
    }
    print_predictions(&predictions, predictor.classes.len(), args.json)?;
    if !failed.is_empty() {
        bail!("{} of {total} images could not be classified: {}", failed.len(), failed.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn stream_lines(predictor: &Predictor, args: &PredictArgs) -> Result<ExitCode> {
    interrupt::install();
    let done = match &args.skip_done {
        Some(path) => stream::done_images(path, &predictor.identity)?,
        None => Default::default(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // Appending to the file whose last line a kill cut short: new lines start on a line of
    // their own (the cut line is ignored by the next --skip-done).
    if done.ends_mid_line && args.skip_done.as_deref().is_some_and(is_stdout) {
        out.write_all(b"\n")?;
    }
    let skip = done.images;
    let summary = stream::predict_stream(
        predictor,
        &args.images,
        args.top_k as usize,
        args.shard.unwrap_or(Shard::ALL),
        &skip,
        &mut out,
    )?;
    out.flush()?;
    stream::ensure_found(&summary, &args.images)?;
    eprintln!(
        "{} classified, {} unreadable, {} already done",
        summary.classified, summary.failed, summary.skipped
    );
    if summary.interrupted {
        eprintln!("stopped; continue with the same command plus --skip-done OUT.jsonl");
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if summary.failed > 0 {
        bail!("{} image(s) could not be classified: their lines hold the error", summary.failed);
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether standard output is the file `path` (as in `--skip-done OUT >> OUT`).
fn is_stdout(path: &std::path::Path) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(stdout) = std::io::stdout().as_fd().try_clone_to_owned() else { return false };
    match (std::fs::File::from(stdout).metadata(), std::fs::metadata(path)) {
        (Ok(out), Ok(file)) => out.dev() == file.dev() && out.ino() == file.ino(),
        _ => false,
    }
}

fn print_predictions(predictions: &[Prediction], classes: usize, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(predictions)?);
        return Ok(());
    }
    for prediction in predictions {
        println!("{}", prediction.image.display());
        if prediction.unknown == Some(true) {
            println!("  not one of the {} classes I know; the closest:", classes);
        }
        for (rank, guess) in prediction.top.iter().enumerate() {
            println!(
                "  {}. {} ({})  {:.2}%",
                rank + 1,
                guess.class,
                guess.index,
                100.0 * guess.probability
            );
        }
    }
    Ok(())
}
