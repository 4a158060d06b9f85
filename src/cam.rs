//! Class activation maps (Grad-CAM on the pooled features): where in the image the network
//! found the evidence for its predicted class.
//!
//! With global average pooling before the new top, the gradient of the class score with
//! respect to the feature map is the same at every position, `(1/HW) dy/df`, so Grad-CAM is
//! `relu(sum_k dy/df_k * A_k)` and needs only the head's gradient `dy/df`, computed exactly
//! here from its weights (for a linear head it is the class's weight column: classic CAM).

use anyhow::Result;
use burn::tensor::Tensor;
use image::imageops::FilterType;
use image::{Rgb, RgbImage};
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};

use crate::inference::{Predictor, argmax, ensure_finite, rows, softmax};
use crate::model::{Classifier, Head};
use crate::preprocess;

/// The heat map of the predicted class of one image.
pub struct ActivationMap {
    pub class: usize,
    pub probability: f32,
    /// Row-major `height x width`, scaled to [0, 1].
    pub heat: Vec<f32>,
    pub height: usize,
    pub width: usize,
}

/// The activation map of the predicted class for one square RGB image of the predictor's
/// input size.
pub fn image_map(predictor: &Predictor, rgb: &RgbImage) -> Result<ActivationMap> {
    let input = preprocess::batch_tensor(
        &[rgb.as_raw()],
        predictor.input.size,
        predictor.input.normalization,
        &predictor.device,
    );
    activation_map(&predictor.model, input)
}

/// The activation map of `model`'s predicted class for one image (`[1, s, s, 3]`).
pub fn activation_map(model: &Classifier, image: Tensor<4>) -> Result<ActivationMap> {
    let map = model.backbone.feature_map(image);
    let [_, height, width, channels] = map.dims();
    let positions = height * width;
    // Channels last: one row of `channels` activations per position.
    let activations = rows(map.reshape([positions, channels]))?;
    let mut features = vec![0f32; channels];
    for position in activations.chunks_exact(channels) {
        for (f, a) in features.iter_mut().zip(position) {
            *f += a / positions as f32;
        }
    }
    let features_tensor =
        Tensor::<1>::from_floats(features.as_slice(), &model.head.output.weight.device());
    let logits = rows(model.head.forward(features_tensor.reshape([1, channels])))?;
    ensure_finite(&logits, logits.len())?;
    let class = argmax(&logits);
    let probability = softmax(&logits)[class];
    let gradient = head_gradient(&model.head, &features, class)?;
    let mut heat: Vec<f32> = activations
        .chunks_exact(channels)
        .map(|position| position.iter().zip(&gradient).map(|(a, g)| a * g).sum())
        .collect();
    let max = heat.iter().copied().fold(0f32, f32::max);
    for h in &mut heat {
        *h = if max > 0.0 { h.max(0.0) / max } else { 0.0 };
    }
    Ok(ActivationMap { class, probability, heat, height, width })
}

/// `d logit[class] / d features` of the head at `features`.
fn head_gradient(head: &Head, features: &[f32], class: usize) -> Result<Vec<f32>> {
    let output = rows(head.output.weight.val())?; // [inputs, classes]
    let classes = head.num_classes();
    let column = |weights: &[f32], inputs: usize| -> Vec<f32> {
        (0..inputs).map(|i| weights[i * classes + class]).collect()
    };
    let Some(hidden) = &head.hidden else {
        return Ok(column(&output, features.len()));
    };
    let w1 = rows(hidden.weight.val())?; // [features, units]
    let units = w1.len() / features.len();
    let b1 = match &hidden.bias {
        Some(bias) => rows(bias.val().reshape([1, units]))?,
        None => vec![0.0; units],
    };
    let w2_column = column(&output, units);
    let mut pre = b1;
    for (f, row) in features.iter().zip(w1.chunks_exact(units)) {
        for (p, w) in pre.iter_mut().zip(row) {
            *p += f * w;
        }
    }
    let gated: Vec<f32> =
        pre.iter().zip(&w2_column).map(|(p, w)| if *p > 0.0 { *w } else { 0.0 }).collect();
    Ok(w1.chunks_exact(units).map(|row| row.iter().zip(&gated).map(|(w, g)| w * g).sum()).collect())
}

/// The image with the heat map blended over it (viridis colours), `scale` times larger.
pub fn overlay(image: &RgbImage, map: &ActivationMap, scale: u32) -> RgbImage {
    let (w, h) = (image.width() * scale, image.height() * scale);
    let base = image::imageops::resize(image, w, h, FilterType::Triangle);
    let small = image::ImageBuffer::<image::Luma<f32>, Vec<f32>>::from_raw(
        map.width as u32,
        map.height as u32,
        map.heat.clone(),
    )
    .expect("heat map matches its size");
    let heat = image::imageops::resize(&small, w, h, FilterType::Triangle);
    RgbImage::from_fn(w, h, |x, y| {
        let value = heat.get_pixel(x, y)[0].clamp(0.0, 1.0);
        let colour = ViridisRGB.get_color(value as f64);
        let pixel = base.get_pixel(x, y);
        let alpha = 0.25 + 0.35 * value;
        let blend = |a: u8, b: u8| (a as f32 * (1.0 - alpha) + b as f32 * alpha) as u8;
        Rgb([blend(pixel[0], colour.0), blend(pixel[1], colour.1), blend(pixel[2], colour.2)])
    })
}
