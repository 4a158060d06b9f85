//! `fruitlab evaluate`: accuracy, per-class accuracy and confusion of a trained run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::ComputeArgs;
use crate::eval::Evaluation;
use crate::eval::run::{EvaluationRequest, OodReport, RunEvaluation, evaluate_run, evaluation_of};
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
    /// Never judge "none of these" (the rejection share is then not reported).
    #[arg(long)]
    no_reject: bool,
    /// Also: a folder of images of other things (any images, walked recursively): how many
    /// the model rejects as "none of these", beside the share of validation images it rejects.
    #[arg(long)]
    ood: Option<PathBuf>,
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
        reject: !args.no_reject,
    };
    let RunEvaluation { evaluation, files, classes } = evaluate_run(&run, request, &device)?;
    let out = match &args.out {
        Some(out) => EvaluationDir::at(out.clone()),
        None => run.evaluation_dir(&evaluation_of(args.data.as_deref())?),
    };
    report::evaluation::write_evaluation(&out, &evaluation, &classes, &files)?;
    let ood = match &args.ood {
        Some(folder) => {
            let report = crate::eval::run::evaluate_ood(&run, folder, &device)?;
            out.write_ood(&report)?;
            Some(report)
        }
        None => None,
    };
    if args.json {
        let mut json = serde_json::to_value(&evaluation)?;
        if let Some(ood) = &ood {
            json["ood"] = serde_json::to_value(ood)?;
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_summary(&evaluation, out.path());
        if let Some(ood) = &ood {
            print_ood(ood);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_ood(ood: &OodReport) {
    let share = |rejected: usize| 100.0 * rejected as f64 / ood.images.max(1) as f64;
    println!(
        "images of other things ({}): {} of {} rejected as none of the classes ({:.1}%, by {}){}",
        ood.folder.display(),
        ood.rejected,
        ood.images,
        share(ood.rejected),
        crate::support::spelling(&ood.score),
        if ood.unreadable > 0 { format!("; {} unreadable", ood.unreadable) } else { String::new() }
    );
    for score in &ood.by_score {
        println!(
            "  {:<12} rejects {:5.1}% of them and {:.1}% of the validation images",
            crate::support::spelling(&score.score),
            share(score.rejected),
            100.0 * score.validation_rejected
        );
    }
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
    println!(
        "every class alike: balanced accuracy {:.2}%, macro-F1 {:.2}%",
        100.0 * evaluation.balanced_accuracy,
        100.0 * evaluation.macro_f1
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
    if let Some(c) = &evaluation.calibration {
        println!(
            "calibration error (15 bins): {:.2}% as trained, {:.2}% with the run's temperature {:.3}",
            100.0 * c.ece_before,
            100.0 * c.ece_after,
            c.temperature
        );
    }
    if let Some(rejected) = evaluation.rejected {
        println!("rejected as none of the classes: {:.1}% of these images", 100.0 * rejected);
    }
    if let Some(overlap) = evaluation.overlap.filter(|o| !o.is_empty()) {
        println!(
            "warning: {} of these {} images are training images of the run and {} are its validation images (the same files, by content): this accuracy is not one on unseen images",
            overlap.training, m.images, overlap.validation
        );
    }
    println!("details in {}", out.display());
}
