//! The exported ONNX model against fruitlab itself, in a second runtime (tract, pure Rust):
//! for every image of the mini `Test/`, the same top-1 class as `fruitlab predict` and
//! probabilities within 1e-4, on the same decoded pixels; a dynamic batch; the metadata.
//! (`bench/onnx_runtime_check.py` does the same with ONNX Runtime.)

mod common;

use std::path::PathBuf;

use fruitlab::inference::Predictor;
use fruitlab::run::Checkpoint;
use tract_onnx::prelude::*;

/// Largest difference allowed between fruitlab's and tract's probabilities: both compute in
/// f32, in different orders.
const TOLERANCE: f32 = 1e-4;

#[test]
fn exported_model_predicts_what_fruitlab_predicts() {
    common::cached_weights();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    common::fruitlab()
        .args(["train", "--mode", "frozen", "--epochs", "1", "--data"])
        .arg(common::mini_dataset())
        .arg("--out")
        .arg(&run)
        .assert()
        .success();
    let onnx = dir.path().join("model.onnx");
    common::fruitlab()
        .args(["export", "--format", "onnx", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&onnx)
        .assert()
        .success();

    let model = tract_onnx::onnx().model_for_path(&onnx).unwrap();
    // tract's optimiser trips over the strided 1x1 convolutions after a residual add (its
    // "pull downsample" pass); the typed graph runs as it is.
    let plan = model.into_typed().unwrap().into_runnable().unwrap();

    let device = burn::tensor::Device::flex();
    let predictor =
        Predictor::from_run(&fruitlab::run::RunDir::open(&run).unwrap(), Checkpoint::Best, &device)
            .unwrap();
    let mut images: Vec<PathBuf> = walk(&common::mini_dataset().join("Test"));
    images.sort();
    assert_eq!(images.len(), 130);
    let size = predictor.input.size;
    // Batches of 7: the batch dimension is dynamic, and a batch need not divide the images.
    for chunk in images.chunks(7) {
        let pixels: Vec<u8> =
            chunk.iter().flat_map(|path| predictor.input.load(path).unwrap().into_raw()).collect();
        let input = Tensor::from_shape(&[chunk.len(), size, size, 3], &pixels).unwrap();
        let outputs = plan.run(tvec!(input.into())).unwrap();
        let onnx: Vec<f32> =
            outputs[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect();
        let ours = predictor.classify_files(chunk, predictor.classes.len()).unwrap();
        for ((path, row), prediction) in
            chunk.iter().zip(onnx.chunks_exact(predictor.classes.len())).zip(ours)
        {
            let prediction = prediction.unwrap();
            let top = fruitlab::inference::argmax(row);
            assert_eq!(top, prediction.top[0].index, "{}: top-1 differs", path.display());
            for guess in &prediction.top {
                let difference = (row[guess.index] - guess.probability).abs();
                assert!(
                    difference < TOLERANCE,
                    "{}: probability differs by {difference}",
                    path.display()
                );
            }
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

#[test]
fn the_model_says_what_it_expects_and_which_classes_it_knows() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("imagenet.onnx");
    common::cached_weights();
    common::fruitlab()
        .args(["export", "--weights", "imagenet", "--out"])
        .arg(&onnx)
        .assert()
        .success();
    let model = tract_onnx::onnx().model_for_path(&onnx).unwrap();
    let property = |key: &str| -> String {
        let tensor = model.properties.get(&format!("onnx.metadata_props.{key}")).expect(key);
        tensor.try_as_plain_ram().unwrap().to_scalar::<String>().unwrap().clone()
    };
    let classes: Vec<String> = serde_json::from_str(&property("classes")).unwrap();
    assert_eq!(classes.len(), 1000);
    assert_eq!(classes[249], "malamute");
    assert_eq!(property("image_size"), "224");
}
