//! Building the comparison report of finished runs: curves, confusion matrices, error grids,
//! sample images, activation maps, `report.html` and `summary.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;
use plotters::prelude::RGBColor;

use super::charts::{Chart, Series};
use super::grid::{self, Tile};
use super::html::{self, Figure, Page};
use super::runs::{self, LoadedRun};
use super::summary::{self, Summary};
use super::{confusion, findings};
use crate::cam;
use crate::data::{ImageFolder, LabeledImage, dataset::training_folder};
use crate::inference::Predictor;
use crate::run::{Checkpoint, EpochRecord, write_json};

/// Colours of the runs' curves, in order.
const COLOURS: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

/// Classes shown with an activation map: all of a small dataset, else this many, spread
/// over the class list.
const CAM_CLASSES: usize = 12;

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

/// The dataset's name: its folder's, or its parent's for a `Training` folder.
fn dataset_name(data: &Path) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match name(data).as_deref() {
        Some("Training") => data.parent().and_then(name).unwrap_or_else(|| "dataset".into()),
        Some(other) => other.to_string(),
        None => "dataset".into(),
    }
}

/// Builds the report of `runs` into `out`.
pub fn build(runs: &[PathBuf], out: &Path, device: &Device) -> Result<Summary> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let loaded = runs::load(runs, device)?;

    let dataset = loaded[0].config().data.clone();
    let name = dataset_name(&dataset);
    let images_seen = loaded
        .iter()
        .filter_map(|r| r.history.epochs.last())
        .map(|e| e.images_seen)
        .max()
        .unwrap_or(0);
    curves(&loaded, out, &name, images_seen)?;

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
        let errors = out.join(format!("errors-{slug}.jpg"));
        let paths: Vec<PathBuf> =
            run.evaluation.mistakes.iter().map(|m| run.files[m.index].path.clone()).collect();
        grid::draw_mistakes(&errors, &run.evaluation.mistakes, &paths)?;
        per_model.push(Figure::image(
            format!("{}: confusion matrix (validation images)", run.label),
            confusion_png,
        ));
        per_model.push(Figure::image(
            format!(
                "{}: its most confident mistakes, each with its file (relative to the dataset)",
                run.label
            ),
            errors,
        ));
        if let Some(trust) = crate::trust::Trust::load(&run.run.trust_files())? {
            let record = &trust.record;
            let (png, svg) = (
                out.join(format!("reliability-{slug}.png")),
                out.join(format!("reliability-{slug}.svg")),
            );
            reliability_diagram(record, &run.label).draw(&png, &svg)?;
            per_model.push(Figure::svg(
                format!(
                    "{}: reliability on the validation images: how often the model is right against how sure it says it is, as trained (calibration error {:.2}%) and with its temperature {:.2} ({:.2}%); on the diagonal, a probability means what it says",
                    run.label,
                    100.0 * record.ece_before,
                    record.temperature,
                    100.0 * record.ece_after
                ),
                svg,
            ));
        }
    }

    let samples = out.join("samples.jpg");
    grid::draw_samples(&samples, &ImageFolder::scan(&training_folder(&dataset))?)?;
    let cams = out.join("cam.jpg");
    let shown = activation_maps(&loaded[0], &cams, device)?;

    let summary = Summary {
        dataset: dataset.clone(),
        dataset_name: name.clone(),
        generated: chrono::Local::now().format("%Y-%m-%d %H:%M").to_string(),
        findings: findings::findings(&loaded),
        models: loaded.iter().map(summary::summarise).collect(),
    };
    write_json(&out.join("summary.json"), &summary)?;
    let page = Page {
        summary: &summary,
        runs: &loaded,
        curves: vec![
            Figure::svg(
                "Accuracy per epoch: validation (solid) and training (dashed)",
                out.join("accuracy.svg"),
            ),
            Figure::svg(
                "Loss per epoch, on a logarithmic scale: validation (solid) and training (dashed)",
                out.join("loss.svg"),
            ),
        ],
        per_model,
        activation_maps: Figure::image(
            format!(
                "{}: class activation maps (Grad-CAM) of validation images, {shown}: each photo, then where the network found the evidence for its prediction (yellow: strongest)",
                loaded[0].label
            ),
            cams,
        ),
        samples: Figure::image(
            "One training image per class, with the class's image count",
            samples,
        ),
    };
    crate::support::atomic_file::write(&out.join("report.html"), html::render(&page)?.as_bytes())?;
    Ok(summary)
}

fn curves(runs: &[LoadedRun], out: &Path, dataset: &str, images_seen: u64) -> Result<()> {
    type Pick = fn(&EpochRecord) -> (f64, f64);
    let charts: [(&str, &str, Pick, bool); 2] = [
        ("accuracy", "accuracy (%)", |e| (100.0 * e.val_accuracy, 100.0 * e.train_accuracy), false),
        ("loss", "cross-entropy loss (log scale)", |e| (e.val_loss, e.train_loss), true),
    ];
    for (name, y_label, pick, log_y) in charts {
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
            log_y,
            log_x: false,
        };
        chart.draw(&out.join(format!("{name}.png")), &out.join(format!("{name}.svg")))?;
    }
    Ok(())
}

/// The reliability diagram of a run's calibration: accuracy per confidence bin, before and
/// after the temperature, against the diagonal.
fn reliability_diagram(record: &crate::trust::TrustRecord, label: &str) -> Chart {
    let points = |bins: &[crate::trust::calibration::ReliabilityBin]| -> Vec<(f64, f64)> {
        bins.iter()
            .filter(|b| b.images > 0)
            .map(|b| (100.0 * b.confidence, 100.0 * b.accuracy))
            .collect()
    };
    Chart {
        title: format!("{label}: reliability on the validation images"),
        x_label: "stated probability of the top class (%)".into(),
        y_label: "images of that probability that are right (%)".into(),
        series: vec![
            Series {
                label: "as trained".into(),
                color: COLOURS[1],
                dashed: false,
                points: points(&record.reliability_before),
            },
            Series {
                label: format!("calibrated (T = {:.2})", record.temperature),
                color: COLOURS[0],
                dashed: false,
                points: points(&record.reliability_after),
            },
            Series {
                label: "perfect".into(),
                color: RGBColor(120, 120, 120),
                dashed: true,
                points: vec![(0.0, 0.0), (100.0, 100.0)],
            },
        ],
        log_y: false,
        log_x: false,
    }
}

/// Activation maps of one validation image per class (all classes, or a spread-out sample);
/// returns what was shown, in words.
fn activation_maps(run: &LoadedRun, path: &Path, device: &Device) -> Result<String> {
    let predictor = Predictor::from_run(&run.run, Checkpoint::Best, device)?;
    let classes = run.classes.len();
    let chosen: Vec<usize> = if classes <= CAM_CLASSES {
        (0..classes).collect()
    } else {
        (0..CAM_CLASSES).map(|i| i * classes / CAM_CLASSES).collect()
    };
    let mut tiles = Vec::new();
    for &label in &chosen {
        // The middle validation image of the class.
        let of_class: Vec<&LabeledImage> = run.files.iter().filter(|f| f.label == label).collect();
        let Some(file) = of_class.get(of_class.len() / 2) else { continue };
        let rgb = predictor.input.load(&file.path)?;
        let map = cam::image_map(&predictor, &rgb)?;
        tiles.push(Tile {
            image: rgb.clone(),
            caption: vec![format!("true: {}", predictor.classes[label])],
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
        "Class activation maps: each image, and the evidence for the predicted class",
        &tiles,
        8,
    )?;
    Ok(if chosen.len() == classes {
        format!("one of each of the {classes} classes")
    } else {
        format!(
            "one of each of {} of the {classes} classes, spread over the class list",
            chosen.len()
        )
    })
}
