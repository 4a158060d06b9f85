//! Building the comparison report of finished runs: curves, confusion matrices, error grids,
//! sample images, activation maps, `report.html` and `summary.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;
use plotters::prelude::RGBColor;

use super::charts::{Chart, Series};
use super::grid::{self, Tile};
use super::html::{self, Figure};
use super::summary::{self, Summary};
use super::{confusion, tables};
use crate::cam;
use crate::config::TrainConfig;
use crate::data::{ImageFolder, LabeledImage, dataset::training_folder};
use crate::eval::Evaluation;
use crate::eval::run::{RunEvaluation, evaluate_run, evaluation_images};
use crate::inference::Predictor;
use crate::run::{EpochRecord, History, RunDir, read_json, write_json};

/// Colours of the runs' curves, in order.
const COLOURS: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

/// Images shown with their activation maps.
const CAM_IMAGES: usize = 8;

/// Writes evaluation.json, confusion.csv/png, per_class.csv and errors.png into `out`.
pub fn write_evaluation(
    out: &Path,
    evaluation: &Evaluation,
    classes: &[String],
    files: &[LabeledImage],
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_json(&out.join("evaluation.json"), evaluation)?;
    tables::write_confusion_csv(&out.join("confusion.csv"), &evaluation.confusion, classes)?;
    tables::write_per_class_csv(&out.join("per_class.csv"), &evaluation.per_class)?;
    confusion::draw(
        &out.join("confusion.png"),
        &evaluation.confusion,
        classes,
        "Confusion matrix (validation)",
    )?;
    let paths: Vec<PathBuf> =
        evaluation.mistakes.iter().map(|m| files[m.index].path.clone()).collect();
    grid::draw_mistakes(&out.join("errors.png"), &evaluation.mistakes, &paths)
}

/// A run with everything the report needs.
struct LoadedRun {
    run: RunDir,
    config: TrainConfig,
    history: History,
    evaluation: Evaluation,
    files: Vec<LabeledImage>,
    classes: Vec<String>,
    label: String,
}

/// The run's validation evaluation, from `RUN/evaluation` or computed (and saved) now.
fn load_or_evaluate(run: &RunDir, device: &Device) -> Result<RunEvaluation> {
    let dir = run.file("evaluation");
    let saved = dir.join("evaluation.json");
    let classes = run.read_classes()?;
    if saved.exists() {
        let evaluation: Evaluation = read_json(&saved)?;
        let files = evaluation_images(run, None, &classes)?;
        if evaluation.metrics.images == files.len() {
            return Ok(RunEvaluation { evaluation, files, classes });
        }
    }
    let evaluated = evaluate_run(run, None, false, true, false, device)?;
    write_evaluation(&dir, &evaluated.evaluation, &evaluated.classes, &evaluated.files)?;
    Ok(evaluated)
}

fn slug(label: &str) -> String {
    label
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Builds the report of `runs` into `out`.
pub fn build(runs: &[PathBuf], out: &Path, device: &Device) -> Result<Summary> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut loaded = Vec::new();
    let configs: Vec<TrainConfig> = runs
        .iter()
        .map(|path| Ok(RunDir::open(path)?.read_record()?.config))
        .collect::<Result<_>>()?;
    let modes_differ = configs.iter().any(|c| c.mode != configs[0].mode);
    for (path, config) in runs.iter().zip(configs) {
        let run = RunDir::open(path)?;
        let history = run.read_history()?;
        let RunEvaluation { evaluation, files, classes } = load_or_evaluate(&run, device)?;
        let label = summary::label(&config, modes_differ);
        loaded.push(LoadedRun { run, config, history, evaluation, files, classes, label });
    }

    let dataset = loaded[0].config.data.clone();
    let images_seen = loaded
        .iter()
        .filter_map(|r| r.history.epochs.last())
        .map(|e| e.images_seen)
        .max()
        .unwrap_or(0);
    let dataset_name =
        dataset.file_name().map_or("dataset".into(), |n| n.to_string_lossy().into_owned());
    curves(&loaded, out, &dataset_name, images_seen)?;

    let mut per_model = Vec::new();
    for run in &loaded {
        let slug = slug(&run.label);
        let confusion_png = out.join(format!("confusion-{slug}.png"));
        confusion::draw(
            &confusion_png,
            &run.evaluation.confusion,
            &run.classes,
            &format!("{}: confusion matrix (validation)", run.label),
        )?;
        let errors_png = out.join(format!("errors-{slug}.png"));
        let paths: Vec<PathBuf> =
            run.evaluation.mistakes.iter().map(|m| run.files[m.index].path.clone()).collect();
        grid::draw_mistakes(&errors_png, &run.evaluation.mistakes, &paths)?;
        per_model
            .push(Figure { title: format!("{}: confusion matrix", run.label), png: confusion_png });
        per_model.push(Figure {
            title: format!("{}: most confident mistakes", run.label),
            png: errors_png,
        });
    }

    let samples_png = out.join("samples.png");
    grid::draw_samples(&samples_png, &ImageFolder::scan(&training_folder(&dataset))?)?;
    let cam_png = out.join("cam.png");
    activation_maps(&loaded[0], &cam_png, device)?;

    let summary = Summary {
        dataset: dataset.clone(),
        generated: chrono::Local::now().to_rfc3339(),
        models: loaded
            .iter()
            .map(|r| {
                summary::summarise(
                    r.label.clone(),
                    r.run.path.clone(),
                    &r.config,
                    &r.history,
                    Some(r.evaluation.metrics),
                )
            })
            .collect(),
    };
    write_json(&out.join("summary.json"), &summary)?;
    let sections = vec![
        (
            "Training curves".to_string(),
            vec![
                Figure {
                    title: "Validation (solid) and training (dashed) accuracy per epoch".into(),
                    png: out.join("accuracy.png"),
                },
                Figure {
                    title: "Validation (solid) and training (dashed) loss per epoch".into(),
                    png: out.join("loss.png"),
                },
            ],
        ),
        ("Confusion and mistakes".to_string(), per_model),
        (
            "Where the network looks".to_string(),
            vec![Figure {
                title: format!(
                    "{}: class activation maps (Grad-CAM) of validation images",
                    loaded[0].label
                ),
                png: cam_png,
            }],
        ),
        (
            "The data".to_string(),
            vec![Figure { title: "One training image per class".into(), png: samples_png }],
        ),
    ];
    let configs: Vec<(String, TrainConfig)> =
        loaded.iter().map(|r| (r.label.clone(), r.config.clone())).collect();
    let page = html::render(&summary, &configs, &sections)?;
    crate::atomic_file::write(&out.join("report.html"), page.as_bytes())?;
    Ok(summary)
}

fn curves(runs: &[LoadedRun], out: &Path, dataset: &str, images_seen: u64) -> Result<()> {
    type Pick = fn(&EpochRecord) -> (f64, f64);
    let charts: [(&str, &str, Pick); 2] = [
        ("accuracy", "accuracy (%)", |e| (100.0 * e.val_accuracy, 100.0 * e.train_accuracy)),
        ("loss", "cross-entropy loss", |e| (e.val_loss, e.train_loss)),
    ];
    for (name, y_label, pick) in charts {
        let mut series = Vec::new();
        for (run, colour) in runs.iter().zip(COLOURS.iter().cycle()) {
            let points: Vec<(f64, (f64, f64))> =
                run.history.epochs.iter().map(|e| (e.epoch as f64, pick(e))).collect();
            series.push(Series {
                label: format!("{} (validation)", run.label),
                color: *colour,
                dashed: false,
                points: points.iter().map(|&(x, (v, _))| (x, v)).collect(),
            });
            series.push(Series {
                label: format!("{} (training)", run.label),
                color: *colour,
                dashed: true,
                points: points.iter().map(|&(x, (_, t))| (x, t)).collect(),
            });
        }
        let chart = Chart {
            title: format!(
                "{} on {dataset} ({images_seen} training images seen)",
                if name == "loss" { "Loss" } else { "Accuracy" }
            ),
            x_label: "epoch".into(),
            y_label: y_label.into(),
            series,
        };
        chart.draw(&out.join(format!("{name}.png")), &out.join(format!("{name}.svg")))?;
    }
    Ok(())
}

/// Activation maps of validation images spread over the classes.
fn activation_maps(run: &LoadedRun, path: &Path, device: &Device) -> Result<()> {
    let predictor = Predictor::from_run(&run.run, false, device)?;
    let step = (run.files.len() / CAM_IMAGES).max(1);
    let mut tiles = Vec::new();
    for file in run.files.iter().step_by(step).take(CAM_IMAGES) {
        let rgb = predictor.input.load(&file.path)?;
        let map = cam::image_map(&predictor, &rgb)?;
        tiles.push(Tile {
            image: rgb.clone(),
            caption: vec![format!("true: {}", predictor.classes[file.label])],
        });
        tiles.push(Tile {
            image: cam::overlay(&rgb, &map, 1),
            caption: vec![format!(
                "pred: {} {:.0}%",
                predictor.classes[map.class],
                100.0 * map.probability
            )],
        });
    }
    grid::draw(
        path,
        "Class activation maps: image, and evidence for the predicted class",
        &tiles,
        8,
    )
}
