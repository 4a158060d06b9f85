//! `fruitlab predict`: top-k classes for images.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use clap::Args;
use serde::Serialize;

use super::ComputeArgs;
use crate::preprocess::{self, Normalization};
use crate::train::RunDir;
use crate::weights::{self, fetch, keras};

/// Images per forward pass.
const BATCH: usize = 16;

#[derive(Args)]
pub struct PredictArgs {
    /// Image files (JPEG or PNG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// A trained run folder: predict its classes.
    #[arg(long, required_unless_present = "weights", conflicts_with = "weights")]
    run: Option<PathBuf>,
    /// Use the run's last checkpoint instead of its best.
    #[arg(long, requires = "run")]
    last: bool,
    /// `imagenet` for the cached ImageNet ResNet-50, or a weights file (TF.js model.json or
    /// converted .safetensors): predict the 1000 ImageNet classes.
    #[arg(long)]
    weights: Option<String>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Input size in pixels [default: the run's, or 224 (ImageNet's) with --weights].
    #[arg(long)]
    image_size: Option<u32>,
    /// Print one JSON array instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    compute: ComputeArgs,
}

/// One class of a prediction.
#[derive(Serialize)]
pub struct Guess {
    pub index: usize,
    pub class: String,
    pub probability: f32,
}

#[derive(Serialize)]
pub struct Prediction {
    pub image: PathBuf,
    pub top: Vec<Guess>,
}

pub fn run(args: PredictArgs) -> Result<()> {
    let device = args.compute.device()?;
    if let Some(run) = &args.run {
        let trained = RunDir::open(run)?.load_model(args.last, &device)?;
        let predictions = classify(
            &args.images,
            args.image_size.unwrap_or(trained.config.image_size as u32),
            trained.config.normalization,
            &device,
            |batch| trained.model.forward(batch),
            &trained.classes,
            args.top_k,
        )?;
        return print_predictions(&predictions, args.json);
    }
    let weights = args.weights.as_deref().unwrap_or("imagenet");
    let path = (weights != "imagenet").then(|| PathBuf::from(weights));
    let tensors = weights::read_imagenet(path.as_deref())?;
    let classes = fetch::imagenet_classes(&tensors)
        .unwrap_or_else(|| (0..keras::IMAGENET_CLASSES).map(|i| format!("class {i}")).collect());
    let model = keras::load_imagenet(tensors, &device)?;
    let predictions = classify(
        &args.images,
        args.image_size.unwrap_or(224),
        Normalization::Caffe,
        &device,
        |batch| model.forward(batch),
        &classes,
        args.top_k,
    )?;
    print_predictions(&predictions, args.json)
}

/// Runs `forward` over the images in batches and keeps the `top_k` classes of each.
pub fn classify(
    images: &[PathBuf],
    size: u32,
    normalization: Normalization,
    device: &Device,
    forward: impl Fn(Tensor<4>) -> Tensor<2>,
    classes: &[String],
    top_k: usize,
) -> Result<Vec<Prediction>> {
    let mut predictions = Vec::with_capacity(images.len());
    for paths in images.chunks(BATCH) {
        let pixels = paths
            .iter()
            .map(|path| preprocess::load_square(path, size))
            .collect::<Result<Vec<_>>>()?;
        let raw: Vec<&[u8]> = pixels.iter().map(|image| image.as_raw().as_slice()).collect();
        let batch = preprocess::batch_tensor(&raw, size as usize, normalization, device);
        let probabilities = softmax(forward(batch), 1)
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|error| anyhow::anyhow!("cannot read probabilities: {error:?}"))?;
        for (path, row) in paths.iter().zip(probabilities.chunks_exact(classes.len())) {
            predictions
                .push(Prediction { image: path.clone(), top: top_classes(row, classes, top_k) });
        }
    }
    Ok(predictions)
}

/// The `k` most probable classes, most probable first.
pub fn top_classes(probabilities: &[f32], classes: &[String], k: usize) -> Vec<Guess> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    order
        .into_iter()
        .take(k)
        .map(|index| Guess {
            index,
            class: classes[index].clone(),
            probability: probabilities[index],
        })
        .collect()
}

fn print_predictions(predictions: &[Prediction], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(predictions)?);
        return Ok(());
    }
    for prediction in predictions {
        println!("{}", prediction.image.display());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_classes_are_sorted_by_probability() {
        let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let top = top_classes(&[0.2, 0.5, 0.3], &classes, 2);
        assert_eq!(top.iter().map(|g| g.index).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(top[0].class, "b");
    }
}
