//! The learning-rate range test (fastai's `lr_find`): train for a few hundred steps while the
//! rate grows geometrically from tiny to huge, record the loss at each, and suggest a rate a
//! little below where the loss falls fastest, i.e. a tenth of the rate at the loss minimum.

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::Device;

use crate::config::TrainConfig;
use crate::report::charts::{Chart, Series};
use crate::support::progress::Progress;
use crate::train::batches::{Inputs, sample_stream};
use crate::train::learner::Learner;
use crate::train::model::build_model;
use crate::train::prepare::prepare_data;

/// The range and length of the sweep.
pub struct Sweep {
    pub start: f64,
    pub end: f64,
    pub steps: usize,
}

/// What the sweep found.
pub struct Found {
    /// `(rate, smoothed loss)` per step.
    pub curve: Vec<(f64, f64)>,
    /// A tenth of the rate with the lowest smoothed loss.
    pub suggested: f64,
}

/// Smoothing of the recorded loss (an exponential average, bias-corrected).
const SMOOTHING: f64 = 0.9;
/// The sweep stops once the smoothed loss exceeds this multiple of its minimum.
const DIVERGED: f64 = 4.0;

/// Runs the sweep for `config` on `device` and writes `lr-find.png`, `lr-find.svg` and
/// `lr-find.csv` into `out`.
pub fn lr_find(config: &TrainConfig, sweep: &Sweep, out: &Path, device: &Device) -> Result<Found> {
    if config.steps_on_whole_set() {
        bail!(
            "lr-find sweeps the learning rate of a first-order optimizer, and --optimizer lbfgs (the frozen default) finds its own step lengths: pass --optimizer adam (or adamw, sgd) to sweep theirs"
        );
    }
    device.seed(config.optimization.seed);
    let data = prepare_data(config)?;
    let model = build_model(config, data.classes.len(), &device.clone().autodiff())?;
    let weights =
        crate::train::learner::class_weights(config, &data.train.labels, data.classes.len());
    let mut learner = Learner::new(config, model, device).with_class_weights(weights);
    let batch_size = config.optimization.batch_size;
    let samples = sample_stream(config, &data.train.labels, config.optimization.seed)
        .slice(0, sweep.steps * batch_size);
    let inputs = Inputs::of(config, &learner.model, &data.train, device, "features train")?;
    let mut batches = inputs.batches(config, samples, learner.autodiff_device());
    let progress = Progress::steps("lr-find", sweep.steps as u64);
    let labels = data.train.labels.clone();
    let (mut average, mut best) = (0.0, f64::INFINITY);
    let mut curve = Vec::new();
    for step in 0..sweep.steps {
        crate::support::interrupt::check()?;
        let Some((input, batch_labels)) = batches.next_batch(&labels)? else { break };
        let rate = sweep.start
            * (sweep.end / sweep.start).powf(step as f64 / (sweep.steps - 1).max(1) as f64);
        // A diverged loss (an error from the step) ends the sweep: the rates beyond are useless.
        let Ok(result) = learner.step(input, &batch_labels, rate) else { break };
        average = SMOOTHING * average + (1.0 - SMOOTHING) * result.loss;
        let smoothed = average / (1.0 - SMOOTHING.powi(step as i32 + 1));
        curve.push((rate, smoothed));
        best = best.min(smoothed);
        progress.update(step as u64 + 1, || format!("rate {rate:.1e}, loss {smoothed:.3}"));
        if smoothed > DIVERGED * best {
            break;
        }
    }
    progress.finish();
    if curve.len() < 3 {
        bail!("the sweep stopped after {} steps: start it at a lower rate", curve.len());
    }
    let at_minimum = curve.iter().min_by(|a, b| a.1.total_cmp(&b.1)).expect("points").0;
    let suggested = (at_minimum / 10.0).max(sweep.start);
    write_outputs(&curve, suggested, out)?;
    Ok(Found { curve, suggested })
}

fn write_outputs(curve: &[(f64, f64)], suggested: f64, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let mut csv = String::from("rate,smoothed_loss\n");
    for (rate, loss) in curve {
        csv.push_str(&format!("{rate:e},{loss}\n"));
    }
    crate::support::atomic_file::write(&out.join("lr-find.csv"), csv.as_bytes())?;
    let (low, high) =
        curve.iter().fold((f64::INFINITY, 0f64), |(l, h), p| (l.min(p.1), h.max(p.1)));
    let chart = Chart {
        title: format!("Learning-rate range test: suggested rate {suggested:.1e}"),
        x_label: "learning rate (log scale)".into(),
        y_label: "training loss (smoothed)".into(),
        series: vec![
            Series {
                label: "loss".into(),
                color: plotters::prelude::RGBColor(31, 119, 180),
                dashed: false,
                points: curve.to_vec(),
            },
            Series {
                label: format!("suggested: {suggested:.1e}"),
                color: plotters::prelude::RGBColor(214, 39, 40),
                dashed: true,
                points: vec![(suggested, low), (suggested, high)],
            },
        ],
        log_y: false,
        log_x: true,
    };
    chart.draw(&out.join("lr-find.png"), &out.join("lr-find.svg"))
}
