//! End-to-end tests of answers a person can trust: a trained run's calibration and its "none
//! of these" (fruits-360-mini against clothing photos), and `audit` finding images put in the
//! wrong folder.

mod common;

use serde_json::Value;

#[test]
fn a_trained_run_is_calibrated_and_says_none_of_these_to_other_things() {
    let dir = tempfile::tempdir().unwrap();
    let run = common::trained_run(dir.path());
    let trust = common::read_json(&run.join("trust.json"));
    let temperature = trust["temperature"].as_f64().unwrap();
    assert!(temperature.is_finite() && temperature > 0.0, "{trust}");
    let rate = trust["reject_rate"].as_f64().unwrap();
    for threshold in trust["thresholds"].as_array().unwrap() {
        let share = threshold["validation_rejected"].as_f64().unwrap();
        assert!(share <= rate, "{threshold} rejects more than {rate} of validation");
    }
    // The model is identified by its weights: the trust is of model-best.
    let model = trust["model"].as_str().unwrap();
    assert!(model.starts_with("sha256:"), "{model}");

    // Clothing photos are none of the ten fruits.
    let other = dir.path().join("clothing");
    common::clothing_sample("Test", &["hat", "shoes", "pants"], 8, &other);
    let evaluation = common::stdout_json(
        common::fruitlab()
            .args(["evaluate", "--json", "--run"])
            .arg(&run)
            .arg("--data")
            .arg(common::mini_dataset().join("Test"))
            .arg("--ood")
            .arg(&other),
    );
    assert_eq!(evaluation["images"], 130, "the evaluation stays at the top level");
    let calibration = &evaluation["calibration"];
    assert!(calibration["ece_after"].as_f64().unwrap() < 0.1, "{calibration}");
    let ood = &evaluation["ood"];
    assert_eq!(ood["images"], 24, "{ood}");
    assert!(ood["rejected"].as_u64().unwrap() >= 18, "{ood}");
    assert_eq!(ood["by_score"].as_array().unwrap().len(), 3, "{ood}");
    // At most the stated share of the fruit itself is rejected.
    assert!(evaluation["rejected"].as_f64().unwrap() <= 0.1, "{evaluation}");

    let hat = std::fs::read_dir(other.join("hat")).unwrap().next().unwrap().unwrap().path();
    let banana = common::mini_dataset().join("Test/Banana/141_100.jpg");
    let predict = |extra: &[&str]| -> Value {
        common::stdout_json(
            common::fruitlab()
                .args(["predict", "--json", "--run"])
                .arg(&run)
                .args(extra)
                .arg(&banana)
                .arg(&hat),
        )
    };
    let answers = predict(&[]);
    assert_eq!(
        (&answers[0]["top"][0]["class"], &answers[0]["unknown"]),
        (&"Banana".into(), &false.into())
    );
    assert_eq!(answers[1]["unknown"], true, "{answers}");
    let unfiltered = predict(&["--no-reject"]);
    assert!(unfiltered[1].get("unknown").is_none(), "{unfiltered}");
    // The last checkpoint is not the model the trust was fitted for, and is told so.
    let output = common::fruitlab()
        .args(["predict", "--json", "--last", "--run"])
        .arg(&run)
        .arg(&hat)
        .assert()
        .success()
        .get_output()
        .clone();
    let last: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(last[0].get("unknown").is_none(), "{last}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not calibrated"), "{stderr}");
}

#[test]
fn audit_finds_images_in_the_wrong_folder() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of the mini set with three bananas filed as kiwis.
    let data = dir.path().join("data");
    let mini = common::mini_dataset();
    for split in ["Training", "Test"] {
        for class in std::fs::read_dir(mini.join(split)).unwrap() {
            let class = class.unwrap().path();
            let to = data.join(split).join(class.file_name().unwrap());
            std::fs::create_dir_all(&to).unwrap();
            for file in std::fs::read_dir(&class).unwrap() {
                let file = file.unwrap().path();
                std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
            }
        }
    }
    let moved = ["0_100.jpg", "104_100.jpg", "123_100.jpg"];
    for name in moved {
        std::fs::rename(
            data.join("Training/Banana").join(name),
            data.join("Training/Kiwi").join(format!("banana_{name}")),
        )
        .unwrap();
    }
    common::cached_weights();
    let run = dir.path().join("run");
    common::fruitlab()
        .args(["train", "--mode", "frozen", "--epochs", "2", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .assert()
        .success();
    common::fruitlab().args(["audit", "--folds", "3", "--run"]).arg(&run).assert().success();
    let audit = common::read_json(&run.join("audit/audit.json"));
    assert!(run.join("audit/audit.html").exists());
    let suspects: Vec<&str> = audit["suspects"]
        .as_array()
        .unwrap()
        .iter()
        .take(10)
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    for name in moved {
        let wanted = format!("banana_{name}");
        let found = audit["suspects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["path"].as_str().unwrap().ends_with(&wanted));
        let found = found.unwrap_or_else(|| panic!("{wanted} not among the suspects {suspects:?}"));
        assert_eq!((&found["given"], &found["suggested"]), (&"Kiwi".into(), &"Banana".into()));
        assert_eq!(found["confident"], true, "{found}");
    }
    // They come first.
    let first: Vec<_> = suspects.iter().take(3).filter(|p| p.contains("banana_")).collect();
    assert_eq!(first.len(), 3, "{suspects:?}");
}
