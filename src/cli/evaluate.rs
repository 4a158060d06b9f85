//! `fruitlab evaluate`: accuracy, per-class accuracy and confusion of a trained run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::ComputeArgs;
use crate::data::{self, ImageFolder, LabeledImage};
use crate::eval::{self, Evaluation};
use crate::progress::Progress;
use crate::report;
use crate::train::RunDir;
use crate::train::run_dir::write_json;

/// Images per forward pass.
const EVAL_BATCH: usize = 64;

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
    /// [default: RUN/evaluation].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Leave out unreadable images (listed) instead of failing.
    #[arg(long)]
    skip_bad_images: bool,
    /// Print one JSON object (accuracy, top5_accuracy, images, per_class, ...).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    compute: ComputeArgs,
}

/// The images to evaluate on, labelled with the run's class indices.
fn evaluation_images(run: &RunDir, data: Option<&Path>, classes: &[String]) -> Result<Vec<LabeledImage>> {
    let Some(dir) = data else {
        let config = run.read_record()?.config;
        return Ok(data::load_splits(&config.data, config.val_split)?.val);
    };
    let folder = if dir.join("Test").is_dir() {
        dir.join("Test")
    } else if dir.join("Training").is_dir() {
        bail!(
            "{} has Training/ but no Test/: pass a folder of class folders, or leave out --data to use the run's validation images",
            dir.display()
        );
    } else {
        dir.to_path_buf()
    };
    let found = ImageFolder::scan(&folder)?;
    let unknown: Vec<&String> = found.classes.iter().filter(|c| !classes.contains(c)).collect();
    if !unknown.is_empty() {
        bail!("{} has classes the model was not trained on: {unknown:?}", folder.display());
    }
    Ok(found
        .images
        .into_iter()
        .map(|image| {
            let label = classes.iter().position(|c| *c == found.classes[image.label]).expect("checked");
            LabeledImage { path: image.path, label }
        })
        .collect())
}

pub fn run(args: EvaluateArgs) -> Result<()> {
    let device = args.compute.device()?;
    let run = RunDir::open(&args.run)?;
    let trained = run.load_model(args.last, &device)?;
    let files = evaluation_images(&run, args.data.as_deref(), &trained.classes)?;
    let progress = Progress::new("decode", files.len() as u64);
    let (decoded, bad) = data::decode_all(&files, trained.config.image_size, args.skip_bad_images, &|n| {
        progress.update(n as u64, String::new)
    })?;
    progress.finish();
    for image in &bad {
        eprintln!("skipped unreadable image: {}", image.error);
    }
    let kept: Vec<LabeledImage> =
        files.into_iter().filter(|f| !bad.iter().any(|b| b.path == f.path)).collect();
    let decoded = Arc::new(decoded);
    let progress = Progress::new("evaluate", decoded.len() as u64);
    let logits = eval::map_images(&decoded, EVAL_BATCH, trained.config.normalization, &device, &progress, |x| {
        trained.model.forward(x)
    })?;
    progress.finish();
    let evaluation = eval::evaluate(&logits, &decoded.labels, &trained.classes);

    let out = args.out.clone().unwrap_or_else(|| run.file("evaluation"));
    write_outputs(&out, &evaluation, &trained.classes, &kept)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&evaluation)?);
    } else {
        print_summary(&evaluation, &out);
    }
    Ok(())
}

fn write_outputs(out: &Path, evaluation: &Evaluation, classes: &[String], files: &[LabeledImage]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_json(&out.join("evaluation.json"), evaluation)?;
    report::tables::write_confusion_csv(&out.join("confusion.csv"), &evaluation.confusion, classes)?;
    report::tables::write_per_class_csv(&out.join("per_class.csv"), &evaluation.per_class)?;
    report::confusion::draw(&out.join("confusion.png"), &evaluation.confusion, classes, "Confusion matrix")?;
    let paths: Vec<PathBuf> = evaluation.mistakes.iter().map(|m| files[m.index].path.clone()).collect();
    report::grid::draw_mistakes(&out.join("errors.png"), &evaluation.mistakes, &paths)?;
    Ok(())
}

fn print_summary(evaluation: &Evaluation, out: &Path) {
    let m = &evaluation.metrics;
    println!(
        "{} images: accuracy {:.2}%, top-5 {:.2}%, loss {:.4}",
        m.images,
        100.0 * m.accuracy,
        100.0 * m.top5_accuracy,
        m.loss
    );
    let mut worst: Vec<_> = evaluation.per_class.iter().filter(|c| c.images > 0).collect();
    worst.sort_by(|a, b| a.accuracy.total_cmp(&b.accuracy));
    println!("lowest per-class accuracy:");
    for class in worst.iter().take(5) {
        println!("  {:30} {:6.2}% ({}/{})", class.class, 100.0 * class.accuracy, class.correct, class.images);
    }
    if !evaluation.most_confused.is_empty() {
        println!("most confused (true -> predicted):");
        for pair in evaluation.most_confused.iter().take(5) {
            println!("  {} -> {}: {}", pair.true_class, pair.predicted_class, pair.count);
        }
    }
    println!("details in {}", out.display());
}
