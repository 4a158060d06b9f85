//! Throughput measurements: ResNet-50 inference and training steps, and the data pipeline.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::Serialize;

use crate::config::{Init, Mode, Recipe};
use crate::data::{self, Augment, BatchRecipe, ImageFolder};
use crate::inference::rows;
use crate::model::{BatchNormMode, Classifier, HeadKind, Layout};
use crate::preprocess::{InputSpec, Normalization};
use crate::train::learner::{Learner, StepInput};

/// Classes of the benchmark head (Fruits-360's).
const BENCH_CLASSES: usize = 95;

#[derive(Clone, Debug)]
pub struct BenchSettings {
    pub batch_size: usize,
    pub image_size: usize,
    /// Timed repetitions (the median is reported), after `warmup` untimed ones.
    pub runs: usize,
    pub warmup: usize,
    /// Batch norm during the training step.
    pub batchnorm: BatchNormMode,
    pub skip_train: bool,
}

#[derive(Debug, Serialize)]
pub struct BenchResult {
    pub backend: String,
    pub device: String,
    /// The convolutions' arithmetic that ran, and on which kernels.
    pub precision: crate::compute::Precision,
    pub kernels: String,
    pub threads: usize,
    pub batch_size: usize,
    pub image_size: usize,
    pub runs: usize,
    /// Inference with batch norms folded into the convolutions (what fruitlab runs).
    pub infer_img_per_s: f64,
    /// Inference with separate batch-norm layers.
    pub infer_unfolded_img_per_s: f64,
    /// One fine-tuning step (forward, backward, Adam update of every layer).
    pub train_img_per_s: Option<f64>,
    pub train_batchnorm: BatchNormMode,
    pub data: Option<DataBench>,
}

#[derive(Debug, Serialize)]
pub struct DataBench {
    pub images: usize,
    /// JPEG decode (+ resize when needed) into memory, all threads.
    pub decode_img_per_s: f64,
    /// Augmentation (notebook: shear, zoom, flip) + normalisation from memory, all threads.
    pub augment_img_per_s: f64,
    /// Both, per image: what a pipeline decoding every image every epoch would sustain.
    pub decode_augment_img_per_s: f64,
}

/// Median of the timings of `runs` calls of `f` after `warmup` untimed ones, as images/s.
fn median_rate(
    images: usize,
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        f()?;
        rates.push(images as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

fn random_batch(settings: &BenchSettings, device: &Device) -> Tensor<4> {
    let (b, s) = (settings.batch_size, settings.image_size);
    let values: Vec<f32> = (0..b * 3 * s * s).map(|i| ((i * 7919) % 255) as f32 - 120.0).collect();
    crate::preprocess::input_tensor(values, b, s, device)
}

/// The ImageNet weights when they are cached: with random weights the activations of a
/// 50-layer network drift into ranges (denormals) that make the arithmetic itself slower, so
/// timings would not be those of real use.
fn bench_model_weights(mut model: Classifier, device: &Device) -> Result<Classifier> {
    if crate::weights::fetch::cached_weights_path()?.exists() {
        model.backbone = crate::weights::imagenet_backbone(model.backbone, None, device)?;
    }
    Ok(model)
}

/// ResNet-50 inference and training throughput on `device`.
pub fn bench_model(
    settings: &BenchSettings,
    device: &Device,
    backend: &str,
    device_name: &str,
) -> Result<BenchResult> {
    let images = random_batch(settings, device);
    let model = bench_model_weights(
        Classifier::new(Layout::Keras, HeadKind::Mlp, BENCH_CLASSES, device),
        device,
    )?;
    let unfolded = model.valid();
    let folded = model.inference();
    let b = settings.batch_size;
    let infer = |model: &Classifier| {
        median_rate(b, settings.warmup, settings.runs, || {
            rows(model.forward(images.clone())).map(drop)
        })
    };
    let infer_img_per_s = infer(&folded)?;
    let infer_unfolded_img_per_s = infer(&unfolded)?;

    let train_img_per_s = if settings.skip_train {
        None
    } else {
        let ad = device.clone().autodiff();
        let mut model = bench_model_weights(
            Classifier::new(Layout::Keras, HeadKind::Mlp, BENCH_CLASSES, &ad),
            &ad,
        )?;
        // Every layer trains (not the fine-tuning default's stage 3 on): the whole network's
        // step, as the PyTorch reference measures it.
        model.backbone = model.backbone.with_batchnorm(settings.batchnorm);
        let config = Recipe::Default.config(Mode::Finetune, Init::Imagenet, "bench".into());
        let mut learner = Learner::new(&config, model, device);
        let images = random_batch(settings, &ad);
        let labels: Vec<usize> = (0..b).map(|i| i % BENCH_CLASSES).collect();
        Some(median_rate(b, settings.warmup.min(1), settings.runs.div_ceil(2).max(2), || {
            learner.step(StepInput::Images(images.clone()), &labels, 1e-4)?;
            ad.sync().map_err(|error| anyhow::anyhow!("device sync failed: {error:?}"))?;
            Ok(())
        })?)
    };
    let arithmetic = crate::compute::arithmetic();
    Ok(BenchResult {
        backend: backend.to_string(),
        device: device_name.to_string(),
        precision: arithmetic.precision(),
        kernels: arithmetic.describe(),
        threads: rayon::current_num_threads(),
        batch_size: b,
        image_size: settings.image_size,
        runs: settings.runs,
        infer_img_per_s,
        infer_unfolded_img_per_s,
        train_img_per_s,
        train_batchnorm: settings.batchnorm,
        data: None,
    })
}

/// Decode and augmentation throughput on up to `limit` images of a dataset.
pub fn bench_data(root: &Path, image_size: usize, limit: usize) -> Result<DataBench> {
    let folder = ImageFolder::scan(&data::dataset::training_folder(root))?;
    // Spread the sample over all classes.
    let step = (folder.images.len() / limit.max(1)).max(1);
    let sample: Vec<_> = folder.images.iter().step_by(step).take(limit).cloned().collect();
    let started = Instant::now();
    let input = InputSpec::trained(image_size, 1.0, Normalization::Caffe);
    let (decoded, bad) = data::decode_all(&sample, &input, &|_| {});
    data::decoded::ensure_none_bad(&bad, false)?;
    let decode_img_per_s = sample.len() as f64 / started.elapsed().as_secs_f64();
    let decoded = Arc::new(decoded);
    let recipe = BatchRecipe {
        batch_size: 64,
        normalization: Normalization::Caffe,
        augment: Some((Augment::notebook(), 1)),
    };
    let samples: Vec<(usize, u64)> = (0..decoded.len()).map(|i| (i, i as u64)).collect();
    let started = Instant::now();
    for chunk in samples.chunks(recipe.batch_size) {
        std::hint::black_box(data::loader::assemble(&decoded, chunk, &recipe)?);
    }
    let augment_img_per_s = decoded.len() as f64 / started.elapsed().as_secs_f64();
    Ok(DataBench {
        images: sample.len(),
        decode_img_per_s,
        augment_img_per_s,
        decode_augment_img_per_s: 1.0 / (1.0 / decode_img_per_s + 1.0 / augment_img_per_s),
    })
}
