//! Numeric proof of the port: our ResNet-50 with the converted Keras weights reproduces an
//! independent numpy forward pass (`../shared/testdata/resnet50-keras-reference.safetensors`).

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use fruitlab::weights::{NamedTensors, keras};

fn reference() -> NamedTensors {
    NamedTensors::read_safetensors(&common::testdata("resnet50-keras-reference.safetensors"))
        .expect("reference outputs")
}

/// A reference input (NCHW) in the network's layout (NHWC).
fn input(reference: &NamedTensors, name: &str, device: &Device) -> Tensor<4> {
    let t = &reference.tensors[name];
    let shape: [usize; 4] = t.shape.clone().try_into().unwrap();
    Tensor::<4>::from_data(TensorData::new(t.values.clone(), shape), device).permute([0, 2, 3, 1])
}

/// ||actual - expected|| / ||expected||
fn relative_error(actual: &[f32], expected: &[f32]) -> f64 {
    assert_eq!(actual.len(), expected.len());
    let diff: f64 = actual.iter().zip(expected).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let norm: f64 = expected.iter().map(|b| (*b as f64).powi(2)).sum();
    (diff / norm).sqrt()
}

fn values(tensor: Tensor<2>) -> Vec<f32> {
    tensor.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn keras_resnet50_matches_reference_logits_and_pooled_features() {
    let device = Device::flex();
    let weights = NamedTensors::read_safetensors(&common::cached_weights()).unwrap();
    let model = keras::load_imagenet(weights, &device).unwrap();
    let reference = reference();

    let logits = values(model.forward(input(&reference, "dog_input", &device)));
    let expected = &reference.tensors["dog_logits"].values;
    let error = relative_error(&logits, expected);
    eprintln!("dog logits relative error {error:e}");
    assert!(error <= 1e-3, "dog logits relative error {error:e}");
    let top1 = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap();
    assert_eq!(top1, 249, "the dog should be a malamute");

    let pooled = values(model.backbone.features(input(&reference, "fruit_input", &device)));
    let error = relative_error(&pooled, &reference.tensors["fruit_pooled"].values);
    eprintln!("fruit pooled features relative error {error:e}");
    assert!(error <= 1e-3, "fruit pooled features relative error {error:e}");
}

#[test]
fn predict_names_the_malamute_first() {
    common::cached_weights();
    let predictions = common::stdout_json(
        common::fruitlab()
            .args(["predict", "--weights", "imagenet", "--json"])
            .arg(common::testdata("dog.jpg")),
    );
    let top = &predictions[0]["top"];
    assert_eq!(top[0]["index"], 249, "{predictions}");
    assert_eq!(top[0]["class"], "malamute");
    assert_eq!(top.as_array().unwrap().len(), 5);
    // The standard ImageNet evaluation crop (shorter side to 256, centre 224) reproduces the
    // reference probability; only the JPEG decoders differ (by about 0.1 grey level).
    let p = top[0]["probability"].as_f64().unwrap();
    assert!((p - 0.8085).abs() < 0.01, "malamute at {p}, the reference says 0.8085");
}
