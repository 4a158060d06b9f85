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
    common::read_json(&out.join("history.json"))
}

/// `predict --json --top-k TOP_K --run RUN IMAGES`, parsed.
fn predict_json(run: &Path, top_k: &str, images: &Path) -> Value {
    common::stdout_json(
        common::fruitlab()
            .args(["predict", "--json", "--top-k", top_k, "--run"])
            .arg(run)
            .arg(images),
    )
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
    common::stdout_json(
        common::fruitlab()
            .args(["evaluate", "--json", "--run"])
            .arg(run)
            .arg("--data")
            .arg(common::mini_dataset().join("Test")),
    )
}

#[test]
fn frozen_train_evaluate_predict() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("frozen");
    // The frozen default: a linear top on stored features, up to 10 epochs with early stopping
    // (seconds each here). Cut to 3 epochs, it reached only 94.6% on Test/.
    let history = train(&run, &["--mode", "frozen"]);
    // Chance is 10%; ImageNet features separate these 10 fruits easily.
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
    let config: Value = common::read_json(&run.join("config.json"));
    assert_eq!(config["config"]["mode"], "frozen");
    // The default validation: a contiguous run of 20% of every recording's frames.
    assert_eq!(config["config"]["val_split"], "blocks:0.2");
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
    for file in ["evaluation.json", "confusion.csv", "confusion.png", "per_class.csv", "errors.jpg"]
    {
        assert!(run.join("evaluation-test").join(file).exists(), "{file} missing");
    }
    // Every mistake names its file, relative to the dataset.
    let saved = common::read_json(&run.join("evaluation-test/evaluation.json"));
    for mistake in saved["mistakes"].as_array().unwrap() {
        let path = mistake["path"].as_str().unwrap();
        assert!(common::mini_dataset().join("Test").join(path).exists(), "{path}");
    }

    let banana = common::mini_dataset().join("Test/Banana/141_100.jpg");
    let predictions = predict_json(&run, "3", &banana);
    assert_eq!(predictions[0]["top"][0]["class"], "Banana", "{predictions}");
    assert_eq!(predictions[0]["top"].as_array().unwrap().len(), 3);

    // A folder is walked, as with --jsonl.
    let folder = common::mini_dataset().join("Test/Banana");
    let predictions = predict_json(&run, "1", &folder);
    let files = std::fs::read_dir(&folder).unwrap().count();
    assert_eq!(predictions.as_array().unwrap().len(), files, "{predictions}");
    let bananas = predictions.as_array().unwrap().iter();
    assert!(bananas.filter(|p| p["top"][0]["class"] == "Banana").count() * 10 >= files * 9);
}

#[test]
fn finetune_with_head_warmup_learns_in_a_few_steps() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("finetune");
    let history =
        train(&run, &["--epochs", "2", "--steps-per-epoch", "8", "--head-warmup-epochs", "1"]);
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(log.contains("head warm-up 1/1"), "{log}");
    // The fine-tuning default: stem and stage 2 keep their ImageNet weights.
    assert!(
        log.contains("trains   the backbone from stage3 on and the new mlp top (earlier layers fixed); label smoothing 0.1"),
        "{log}"
    );
    // Measured: 93-100% after 16 steps of 16 images from ImageNet weights.
    assert!(best_val_accuracy(&history) >= 0.8, "{history}");
    let epochs = history["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    assert_eq!(epochs[1]["images_seen"], 2 * 8 * 16);
    let evaluation = evaluate(&run);
    assert!(evaluation["accuracy"].as_f64().unwrap() >= 0.8, "{evaluation}");
}

#[test]
fn a_linear_top_is_fitted_by_lbfgs_before_fine_tuning() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("lp-ft");
    let history = train(
        &run,
        &[
            "--head",
            "linear",
            "--head-warmup-epochs",
            "2",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
        ],
    );
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(
        log.contains(
            "; first the top alone fitted by lbfgs on stored features (2 steps of 20 iterations)"
        ),
        "{log}"
    );
    let fitted = log
        .lines()
        .find(|l| l.contains("head warm-up 2/2 (lbfgs): "))
        .unwrap_or_else(|| panic!("{log}"));
    // 40 L-BFGS iterations over every training image's features fit the 10 fruits (with the
    // fine-tuning default's label smoothing 0.1 the loss cannot fall below 0.50).
    let accuracy: f64 =
        fitted.split("acc ").nth(1).unwrap().split('%').next().unwrap().parse().unwrap();
    assert!(accuracy >= 99.0, "{fitted}");
    // Two fine-tuning steps from the fitted top keep what it knows.
    assert!(best_val_accuracy(&history) >= 0.9, "{history}");
}

#[test]
fn the_screen_says_what_runs_and_stops_when_it_stops_improving() {
    common::cached_weights();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("early");
    let output = common::fruitlab()
        .args([
            "train",
            "--mode",
            "frozen",
            "--epochs",
            "30",
            "--patience",
            "1",
            "--patience-on",
            "accuracy",
            "--data",
        ])
        .arg(common::mini_dataset())
        .arg("--out")
        .arg(&run)
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in [
        "train a new top on the frozen ImageNet ResNet-50 ->",
        "  data     10 classes:",
        "  validate on a contiguous 20%",
        "  recipe   default: lbfgs over every training image at once, weight decay 1e-3, up to 30 steps of 20 iterations",
        "  trains   the new linear top only; label smoothing 0.1",
        "  compute  flex backend",
    ] {
        assert!(stderr.contains(line), "no `{line}` in:\n{stderr}");
    }
    let epochs: Vec<&str> =
        stderr.lines().filter(|l| l.starts_with("epoch ") && l.contains("val ")).collect();
    assert!(
        !epochs.is_empty() && epochs.len() < 30,
        "early stopping did not stop: {} epochs",
        epochs.len()
    );
    assert!(epochs.iter().all(|l| l.chars().count() <= 100 && l.contains("img/s")), "{epochs:?}");
    assert!(stderr.contains("has not improved for 1 epochs; stopping early"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("run folder:") && stdout.contains(" MB"), "{stdout}");
    // A finished run keeps no resume checkpoint (hundreds of MB) unless asked to.
    let leftovers = |run: &Path| {
        std::fs::read_dir(run.join("resume"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "bpk"))
            .count()
    };
    assert_eq!(leftovers(&run), 0);
    let kept = dir.path().join("kept");
    train(&kept, &["--mode", "frozen", "--epochs", "1", "--keep-resume"]);
    assert_eq!(leftovers(&kept), 2, "the model and the optimizer state");

    // The learning-rate finder: a curve and a suggestion (for a first-order optimizer: L-BFGS,
    // the frozen default, finds its own steps, and lr-find says so).
    let found = dir.path().join("lr");
    let refused = common::fruitlab()
        .args(["lr-find", "--mode", "frozen", "--data"])
        .arg(common::mini_dataset())
        .arg("--out")
        .arg(&found)
        .assert()
        .failure()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("pass --optimizer adam"), "{stderr}");
    let output = common::fruitlab()
        .args(["lr-find", "--mode", "frozen", "--optimizer", "adam", "--data"])
        .arg(common::mini_dataset())
        .arg("--out")
        .arg(&found)
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("suggested learning rate"), "{stdout}");
    for file in ["lr-find.png", "lr-find.svg", "lr-find.csv"] {
        assert!(found.join(file).exists(), "{file} missing");
    }
}

#[test]
fn every_flag_is_described_and_recipe_defaults_name_both_values() {
    let commands: [&[&str]; 12] = [
        &["train"],
        &["compare"],
        &["predict"],
        &["evaluate"],
        &["export"],
        &["serve"],
        &["bench"],
        &["lr-find"],
        &["cam"],
        &["report"],
        &["data", "inspect"],
        &["weights", "fetch"],
    ];
    for command in commands {
        let output =
            common::fruitlab().args(command).arg("--help").assert().success().get_output().clone();
        let help = String::from_utf8_lossy(&output.stdout).into_owned();
        // Each option line is followed (on the same line or the next) by its description.
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("--")
                || (trimmed.starts_with('-')
                    && trimmed.chars().nth(1).is_some_and(|c| c.is_alphabetic()))
            {
                let described = trimmed.split("  ").filter(|s| !s.trim().is_empty()).count() > 1
                    || lines.get(i + 1).is_some_and(|next| {
                        next.starts_with("          ") && !next.trim().is_empty()
                    });
                assert!(described, "{command:?}: `{trimmed}` has no description");
            }
        }
    }
    // Every setting of the configuration has its flag, and each printed default is the
    // recipes' value for it.
    let output =
        common::fruitlab().args(["train", "--help"]).assert().success().get_output().clone();
    let help = String::from_utf8_lossy(&output.stdout);
    let config = fruitlab::config::Recipe::Default.config(
        fruitlab::config::Mode::Finetune,
        fruitlab::config::Init::Imagenet,
        "data".into(),
    );
    let serde_json::Value::Object(settings) = serde_json::to_value(&config).unwrap() else {
        panic!("a configuration is a JSON object")
    };
    let mut checked = 0;
    for (name, value) in settings {
        if ["recipe", "init", "mode", "data"].contains(&name.as_str()) {
            continue;
        }
        let dashed = name.replace('_', "-");
        let flag = ["", "no-"]
            .iter()
            .flat_map(|no| [format!("      --{no}{dashed} "), format!("      --{no}{dashed}\n")])
            .into_iter()
            .find_map(|flag| help.find(&flag))
            .unwrap_or_else(|| panic!("the setting {name} has no flag in:\n{help}"));
        let text: String = help[flag..].lines().take(2).collect();
        if value.is_boolean() {
            continue; // a switch: its default is off
        }
        let expected = format!("[default: {}]", fruitlab::config::recipe::describe_default(&name));
        assert!(text.contains(&expected), "{name}: {text} lacks {expected}");
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} settings checked");
    for (flag, default) in [
        ("--lr ", "[default: 0.001; notebook recipe: 0.0001]"),
        ("--epochs ", "[default: 2 fine-tuning, 10 frozen; notebook recipe: 2]"),
    ] {
        let at = help.find(flag).unwrap_or_else(|| panic!("{flag}"));
        assert!(help[at..].lines().take(2).any(|l| l.contains(default)), "{flag}");
    }
    // predict without a model says both ways to give one.
    let output =
        common::fruitlab().args(["predict", "x.jpg"]).assert().failure().get_output().clone();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--run") && stderr.contains("--weights"), "{stderr}");
}
