//! End-to-end tests of the command line on fruits-360-mini (10 classes, 390 training and 130
//! test images): train in both modes, then evaluate and predict with the trained runs.

mod common;

use std::path::Path;

use serde_json::Value;

fn train(out: &Path, extra: &[&str]) -> Value {
    common::cached_weights();
    common::fruitlab()
        .args(["train", "--data"])
        .arg(common::mini_dataset())
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
        .success();
    let history: Value =
        serde_json::from_slice(&std::fs::read(out.join("history.json")).unwrap()).unwrap();
    history
}

fn best_val_accuracy(history: &Value) -> f64 {
    history["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["val_accuracy"].as_f64().unwrap())
        .fold(0.0, f64::max)
}

fn evaluate(run: &Path) -> Value {
    let output = common::fruitlab()
        .args(["evaluate", "--json", "--run"])
        .arg(run)
        .arg("--data")
        .arg(common::mini_dataset().join("Test"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&output).unwrap()
}

#[test]
fn frozen_train_evaluate_predict() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("frozen");
    let history = train(&run, &["--mode", "frozen", "--epochs", "3"]);
    // Measured: 100% after one epoch (ImageNet features separate these 10 fruits easily);
    // chance is 10%.
    assert!(best_val_accuracy(&history) >= 0.95, "{history}");
    for file in [
        "config.json",
        "classes.json",
        "history.csv",
        "train.log",
        "model-best.safetensors",
        "model-last.safetensors",
        "resume/state.json",
    ] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    let config: Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["mode"], "frozen");
    // The default validation: a contiguous run of 20% of every recording's frames.
    assert_eq!(config["dataset"]["validation"]["blocks"]["fraction"], 0.2);
    let train = config["dataset"]["train_images"].as_u64().unwrap();
    let val = config["dataset"]["val_images"].as_u64().unwrap();
    assert_eq!(train + val, 390);
    assert!((70..=90).contains(&val), "{val} validation images");
    assert_eq!(config["environment"]["backend"], "flex");

    let evaluation = evaluate(&run);
    assert_eq!(evaluation["images"], 130);
    assert!(evaluation["accuracy"].as_f64().unwrap() >= 0.95, "{evaluation}");
    assert!(
        evaluation["top5_accuracy"].as_f64().unwrap() >= evaluation["accuracy"].as_f64().unwrap()
    );
    assert_eq!(evaluation["per_class"].as_array().unwrap().len(), 10);
    for file in ["confusion.csv", "confusion.png", "per_class.csv", "errors.png"] {
        assert!(run.join("evaluation").join(file).exists(), "{file} missing");
    }

    let banana = common::mini_dataset().join("Test/Banana/141_100.jpg");
    let output = common::fruitlab()
        .args(["predict", "--json", "--top-k", "3", "--run"])
        .arg(&run)
        .arg(&banana)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let predictions: Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(predictions[0]["top"][0]["class"], "Banana", "{predictions}");
    assert_eq!(predictions[0]["top"].as_array().unwrap().len(), 3);
}

#[test]
fn finetune_with_head_warmup_learns_in_a_few_steps() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("finetune");
    let history =
        train(&run, &["--epochs", "2", "--steps-per-epoch", "8", "--head-warmup-epochs", "1"]);
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(log.contains("head warm-up 1/1"), "{log}");
    // Measured: 93-100% after 16 steps of 16 images from ImageNet weights.
    assert!(best_val_accuracy(&history) >= 0.8, "{history}");
    let epochs = history["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    assert_eq!(epochs[1]["images_seen"], 2 * 8 * 16);
    let evaluation = evaluate(&run);
    assert!(evaluation["accuracy"].as_f64().unwrap() >= 0.8, "{evaluation}");
}
