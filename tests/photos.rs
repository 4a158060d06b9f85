//! End-to-end tests of folders of photos (clothing10): the photo preprocessing chosen from the
//! data, K-fold cross-validation of the frozen top, and the balanced sampler.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A small set of photos: `n` of each of three clothing10 classes under `dir/photos/Training`.
fn photos(dir: &Path, n: usize) -> PathBuf {
    let data = dir.join("photos");
    common::clothing_sample("Training", &["hat", "shoes", "pants"], n, &data.join("Training"));
    common::cached_weights();
    data
}

/// `fruitlab train --mode frozen --data DATA --out RUN ARGS`, which must succeed; its stderr.
fn train_frozen(data: &Path, run: &Path, args: &[&str]) -> String {
    let output = common::fruitlab()
        .args(["train", "--mode", "frozen", "--data"])
        .arg(data)
        .arg("--out")
        .arg(run)
        .args(args)
        .assert()
        .success()
        .get_output()
        .stderr
        .clone();
    String::from_utf8_lossy(&output).into_owned()
}

#[test]
fn photos_get_the_full_resolution_and_a_split_by_sitting() {
    let dir = tempfile::tempdir().unwrap();
    let data = photos(dir.path(), 12);
    let run = dir.path().join("run");
    let stderr = train_frozen(&data, &run, &["--epochs", "2"]);
    assert!(stderr.contains("from the data: 224 px, centre crop 0.875: photos"), "{stderr}");
    assert!(stderr.contains("groups:0.2"), "{stderr}");
    let config = json(&run.join("config.json"));
    let c = &config["config"];
    assert_eq!(
        (&c["image_size"], &c["crop"], &c["val_split"]),
        (&224.into(), &0.875.into(), &"groups:0.2".into())
    );
    // A prediction cuts the same centre as training.
    let photo =
        std::fs::read_dir(data.join("Training/hat")).unwrap().next().unwrap().unwrap().path();
    common::fruitlab().args(["predict", "--run"]).arg(&run).arg(&photo).assert().success();
}

#[test]
fn folds_cross_validate_the_frozen_top_over_every_image() {
    let dir = tempfile::tempdir().unwrap();
    let data = photos(dir.path(), 12);
    let run = dir.path().join("run");
    // Ten epochs: with one or two (a step or two each on 24 photos) the tops are barely
    // better than a guess, and the accuracy below would sit at its threshold.
    let stderr = train_frozen(&data, &run, &["--epochs", "10", "--folds", "3"]);
    assert!(stderr.contains("then 3-fold cross-validation of the top"), "{stderr}");
    assert!(stderr.contains("cross-validation: "), "{stderr}");
    let cv = json(&run.join("cross-validation.json"));
    // Every one of the 36 training and validation photos is scored once, out of fold.
    assert_eq!((&cv["folds"], &cv["images"]), (&3.into(), &36.into()), "{cv}");
    let sizes: Vec<u64> =
        cv["fold_images"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
    assert_eq!(sizes.iter().sum::<u64>(), 36, "{cv}");
    assert!(sizes.iter().all(|&n| n > 0), "{cv}");
    // The pooled accuracy is the folds' accuracies weighed by their sizes.
    let accuracies = cv["fold_accuracies"].as_array().unwrap();
    let pooled: f64 =
        accuracies.iter().zip(&sizes).map(|(a, &n)| a.as_f64().unwrap() * n as f64).sum::<f64>()
            / 36.0;
    let accuracy = cv["accuracy"].as_f64().unwrap();
    assert!((pooled - accuracy).abs() < 1e-9, "{cv}");
    // Three classes that look nothing alike: far above a guess's third (89% when written).
    assert!(accuracy > 0.6, "{cv}");
    // Each fold's top trains as many epochs as the run's best model (the first best).
    let history = json(&run.join("history.json"));
    let mut best = (f64::MIN, 0);
    for epoch in history["epochs"].as_array().unwrap() {
        let accuracy = epoch["val_accuracy"].as_f64().unwrap();
        if accuracy > best.0 {
            best = (accuracy, epoch["epoch"].as_u64().unwrap());
        }
    }
    assert_eq!(cv["epochs"], best.1, "{cv}");
    assert_eq!(json(&run.join("config.json"))["config"]["folds"], 3);
    // The report shows it.
    let report = dir.path().join("report");
    common::fruitlab().arg("report").arg(&run).arg("--out").arg(&report).assert().success();
    assert_eq!(json(&report.join("summary.json"))["models"][0]["cross_validation"], cv);
    let page = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(page.contains("3-fold cross-validation of the top"), "the report omits it");
}

#[test]
fn folds_need_a_frozen_run_and_at_least_two() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::mini_dataset();
    for (args, says) in [
        (vec!["--mode", "finetune", "--folds", "3"], "it needs --mode frozen"),
        (vec!["--mode", "frozen", "--folds", "1"], "--folds must be between 2 and 50"),
    ] {
        let output = common::fruitlab()
            .args(["train", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(dir.path().join("run"))
            .args(&args)
            .assert()
            .failure()
            .get_output()
            .stderr
            .clone();
        let stderr = String::from_utf8_lossy(&output);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!dir.path().join("run").exists(), "a refused run leaves nothing: {args:?}");
    }
}

#[test]
fn the_balanced_sampler_trains_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = photos(dir.path(), 6);
    // Uneven: hats get twelve photos, shoes and pants six.
    common::clothing_sample("Test", &["hat"], 6, &data.join("Training"));
    let run = dir.path().join("run");
    let stderr = train_frozen(&data, &run, &["--epochs", "1", "--class-balance", "sampler"]);
    assert!(stderr.contains("every class drawn equally often"), "{stderr}");
    assert_eq!(json(&run.join("config.json"))["config"]["class_balance"], "sampler");
}
