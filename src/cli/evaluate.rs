//! `fruitlab evaluate`: accuracy, per-class accuracy and confusion of a trained run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::ComputeArgs;
use crate::eval::Evaluation;
use crate::eval::run::{EvaluationRequest, RunEvaluation, evaluate_run, evaluation_of};
use crate::report;
use crate::run::{EvaluationDir, RunDir};

#[derive(Args)]
pub struct EvaluateArgs {
    /// Trained run folder.
    #[arg(long)]
    run: PathBuf,
    /// Images to evaluate on: a folder of class folders, or a dataset root with `Test/`
    /// [default: the run's validation images].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Use the last checkpoint instead of the best.
    #[arg(long)]
    last: bool,
    /// Where to write evaluation.json, confusion.csv/png, per_class.csv and the error grid
    /// [default: RUN/evaluation for the validation images, RUN/evaluation-test for a
    /// dataset's Test/, RUN/evaluation-NAME for a folder NAME].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Test-time augmentation: average each image's prediction with its mirror image's
    /// (twice the cost).
    #[arg(long)]
    tta: bool,
    /// Leave out unreadable images (listed) instead of failing.
    #[arg(long)]
    skip_bad_images: bool,
    /// Print one JSON object (accuracy, top5_accuracy, images, per_class, ...).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    compute: ComputeArgs,
}

pub fn execute(args: EvaluateArgs) -> Result<ExitCode> {
    let device = args.compute.compute().setup()?;
    let run = RunDir::open(&args.run)?;
    // Writing into the run folder: only while no training process writes it.
    let _lock = match &args.out {
        Some(out) => {
            RunDir::refuse_inside_run(out, "--out")?;
            None
        }
        None => Some(run.lock_to_write(
            "wait until it has finished, or pass --out DIR to write the evaluation elsewhere",
        )?),
    };
    let request = EvaluationRequest {
        data: args.data.as_deref(),
        checkpoint: super::checkpoint(args.last),
        skip_bad_images: args.skip_bad_images,
        mirrored_too: args.tta,
    };
    let RunEvaluation { evaluation, files, classes } = evaluate_run(&run, request, &device)?;
    let out = match &args.out {
        Some(out) => EvaluationDir::at(out.clone()),
        None => run.evaluation_dir(&evaluation_of(args.data.as_deref())?),
    };
    report::evaluation::write_evaluation(&out, &evaluation, &classes, &files)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&evaluation)?);
    } else {
        print_summary(&evaluation, out.path());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(evaluation: &Evaluation, out: &Path) {
    let m = &evaluation.metrics;
    let seen = evaluation
        .overlap
        .filter(|o| !o.is_empty())
        .map_or("", |_| " (NOT unseen images: see below)");
    println!(
        "{} images: accuracy {:.2}%{seen}, top-5 {:.2}%, loss {:.4}",
        m.images,
        100.0 * m.accuracy,
        100.0 * m.top5_accuracy,
        m.loss
    );
    let mut worst: Vec<_> = evaluation.per_class.iter().filter(|c| c.images > 0).collect();
    worst.sort_by(|a, b| a.accuracy.total_cmp(&b.accuracy));
    println!("lowest per-class accuracy:");
    for class in worst.iter().take(5) {
        println!(
            "  {:30} {:6.2}% ({}/{})",
            class.class,
            100.0 * class.accuracy,
            class.correct,
            class.images
        );
    }
    if !evaluation.most_confused.is_empty() {
        println!("most confused (true -> predicted):");
        for pair in evaluation.most_confused.iter().take(5) {
            println!("  {} -> {}: {}", pair.true_class, pair.predicted_class, pair.count);
        }
    }
    if let Some(overlap) = evaluation.overlap.filter(|o| !o.is_empty()) {
        println!(
            "warning: {} of these {} images are training images of the run and {} are its validation images (the same files, by content): this accuracy is not one on unseen images",
            overlap.training, m.images, overlap.validation
        );
    }
    println!("details in {}", out.display());
}
