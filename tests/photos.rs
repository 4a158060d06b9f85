//! End-to-end tests of folders of photos (clothing10): the photo preprocessing chosen from the
//! data, K-fold cross-validation of the frozen top, and the balanced sampler.

mod common;

use std::path::{Path, PathBuf};

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
    // The hats numbered straight through, as a camera names them: one sitting of 12.
    let hats = data.join("Training/hat");
    let mut names: Vec<PathBuf> =
        std::fs::read_dir(&hats).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for (i, name) in names.iter().enumerate() {
        std::fs::rename(name, hats.join(format!("IMG_{:04}.jpg", i + 1))).unwrap();
    }
    let run = dir.path().join("run");
    let stderr = train_frozen(&data, &run, &["--epochs", "2"]);
    assert!(stderr.contains("from the data: 288 px, centre crop 0.875: photos"), "{stderr}");
    assert!(stderr.contains("groups:0.2"), "{stderr}");
    assert!(stderr.contains("the longest: 12 of the 12 photos of hat"), "{stderr}");
    let config = common::read_json(&run.join("config.json"));
    let c = &config["config"];
    assert_eq!(
        (&c["image_size"], &c["crop"], &c["val_split"]),
        (&288.into(), &0.875.into(), &"groups:0.2".into())
    );
    let long = &config["dataset"]["long_sittings"];
    assert_eq!(long, &serde_json::json!([{"class": "hat", "images": 12, "of": 12}]), "{config}");
    // The hats still give validation photos: a contiguous block of the run.
    let val: Vec<String> = common::read_json(&run.join("dataset.json"))["val"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .filter(|path| path.contains("IMG_"))
        .collect();
    assert_eq!(val.len(), 2, "{val:?}");
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
    let cv = common::read_json(&run.join("cross-validation.json"));
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
    let history = common::read_json(&run.join("history.json"));
    let mut best = (f64::MIN, 0);
    for epoch in history["epochs"].as_array().unwrap() {
        let accuracy = epoch["val_accuracy"].as_f64().unwrap();
        if accuracy > best.0 {
            best = (accuracy, epoch["epoch"].as_u64().unwrap());
        }
    }
    assert_eq!(cv["epochs"], best.1, "{cv}");
    assert_eq!(common::read_json(&run.join("config.json"))["config"]["folds"], 3);
    // The report shows it.
    let report = dir.path().join("report");
    common::fruitlab().arg("report").arg(&run).arg("--out").arg(&report).assert().success();
    assert_eq!(
        common::read_json(&report.join("summary.json"))["models"][0]["cross_validation"],
        cv
    );
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
    // The sampler draws batches: a first-order optimizer (L-BFGS takes every image at once).
    let args = ["--epochs", "1", "--class-balance", "sampler", "--optimizer", "adam"];
    let stderr = train_frozen(&data, &run, &args);
    assert!(stderr.contains("every class drawn equally often"), "{stderr}");
    assert_eq!(common::read_json(&run.join("config.json"))["config"]["class_balance"], "sampler");
}

#[test]
fn decoded_photos_stay_on_disk_and_are_checked_when_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = photos(dir.path(), 6);
    // A private cache (the weights linked in), so that its image cache starts empty.
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let weights = common::cached_weights();
    std::os::unix::fs::symlink(&weights, cache.join(weights.file_name().unwrap())).unwrap();
    let train = |run: &str, limit_gib: Option<&str>| {
        let mut command = common::fruitlab();
        command.env("FRUITLAB_CACHE", &cache);
        if let Some(gib) = limit_gib {
            command.env("FRUITLAB_IMAGE_CACHE_GIB", gib);
        }
        // Without the feature store, every epoch reads the decoded images (and the top trains
        // with a first-order optimizer: L-BFGS needs stored features).
        let args = [
            "--mode",
            "frozen",
            "--no-feature-cache",
            "--optimizer",
            "adam",
            "--image-size",
            "64",
            "--epochs",
            "1",
        ];
        command.arg("train").args(args).arg("--data").arg(&data);
        command.arg("--out").arg(dir.path().join(run)).output().unwrap()
    };
    let succeeds = |run: &str, limit_gib: Option<&str>| {
        let output = train(run, limit_gib);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        let history = common::read_json(&dir.path().join(run).join("history.json"));
        (stderr, history["epochs"][0]["val_loss"].as_f64().unwrap())
    };
    let pixel_files = || -> Vec<PathBuf> {
        let files = std::fs::read_dir(cache.join("images")).unwrap().map(|e| e.unwrap().path());
        files.filter(|p| p.extension().unwrap() == "pixels").collect()
    };

    let (stderr, loss) = succeeds("first", None);
    assert!(stderr.contains("decoded into the image cache"), "{stderr}");
    assert_eq!(pixel_files().len(), 2, "training and validation images");
    let (stderr, again) = succeeds("again", None);
    assert!(stderr.contains("read from the image cache"), "{stderr}");
    assert_eq!(again, loss);

    // A flipped bit is found when the cache is opened: decoded anew, the same run.
    for file in pixel_files() {
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[100] ^= 0x40;
        std::fs::write(&file, bytes).unwrap();
    }
    let (stderr, repaired) = succeeds("repaired", None);
    assert!(stderr.contains("unusable") && stderr.contains("decoding again"), "{stderr}");
    assert!(stderr.contains("decoded into the image cache"), "{stderr}");
    assert_eq!(repaired, loss);

    let (stderr, in_memory) = succeeds("in-memory", Some("0"));
    assert!(stderr.contains("decoded into memory"), "{stderr}");
    assert_eq!(in_memory, loss);
    let output = train("refused", Some("lots"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FRUITLAB_IMAGE_CACHE_GIB=\"lots\" is not a size in GiB"), "{stderr}");
}
