//! Reliability, round two: failures a user cannot see. Metrics never count NaN or ties as
//! right; a run folder has one writer; caches and checkpoints are verified and a corrupt one is
//! named (and rebuilt where it can be); no value a user can type panics; Ctrl-C stops every
//! phase and leaves a resumable run; data the program would silently drop is reported.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Runs the command, expects exit status 1 and no panic; returns stderr.
fn fails(command: &mut assert_cmd::Command) -> String {
    let output = command.assert().failure().code(1).get_output().clone();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "a panic instead of an error: {stderr}");
    stderr
}

fn train(args: &[&str], out: &Path) -> assert_cmd::Command {
    let mut command = common::fruitlab();
    command.arg("train").arg("--data").arg(common::mini_dataset()).arg("--out").arg(out).args(args);
    command
}

/// A cache folder of its own holding a copy of the ImageNet weights (nothing else: they are
/// checked against the checksums pinned in the code), so a test can corrupt it or start
/// without cached features.
fn private_cache() -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    let weights = common::cached_weights();
    // Verifies the shared cache.
    common::fruitlab().args(["weights", "fetch", "resnet50"]).assert().success();
    std::fs::copy(&weights, cache.path().join(weights.file_name().unwrap())).unwrap();
    cache
}

fn flip_byte(path: &Path, from_end: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() - from_end;
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_diverged_run_fails_and_never_becomes_the_best_model() {
    common::cached_weights();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("diverged");
    let stderr =
        fails(&mut train(&["--lr", "10", "--epochs", "2", "--steps-per-epoch", "6"], &out));
    assert!(stderr.contains("diverged") || stderr.contains("not finite"), "{stderr}");
    assert!(!out.join("model-best.safetensors").exists(), "a diverged model was kept as best");
}

#[test]
fn broken_model_outputs_are_an_error_not_a_percentage() {
    common::cached_weights();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("frozen");
    train(&["--mode", "frozen", "--epochs", "1"], &run).assert().success();
    // A model whose output layer holds NaN, saved as a checkpoint with a valid checksum.
    let device = burn::tensor::Device::flex();
    let classes = 10;
    let template = fruitlab::model::Classifier::new(
        fruitlab::model::Layout::Keras,
        // The frozen default's top.
        fruitlab::model::HeadKind::Linear,
        classes,
        &device,
    );
    let best = run.join("model-best.safetensors");
    let mut model = fruitlab::weights::checkpoint::load(template, &best).unwrap();
    let bias = model.head.output.bias.take().unwrap().val();
    model.head.output.bias = Some(burn::module::Param::from_tensor(bias.mul_scalar(f32::NAN)));
    fruitlab::weights::checkpoint::save(&model, &best, &Default::default()).unwrap();

    let image = common::mini_dataset().join("Test/Banana/141_100.jpg");
    let stderr = fails(common::fruitlab().args(["predict", "--run"]).arg(&run).arg(&image));
    assert!(stderr.contains("not finite"), "{stderr}");
    let output =
        common::fruitlab().args(["predict", "--run"]).arg(&run).arg(&image).output().unwrap();
    assert!(!String::from_utf8_lossy(&output.stdout).contains("NaN"));
    let stderr = fails(common::fruitlab().args(["evaluate", "--run"]).arg(&run));
    assert!(stderr.contains("not finite"), "{stderr}");
}

#[test]
fn a_run_folder_has_one_writer_and_its_foreign_files_are_kept() {
    common::cached_weights();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let args = ["--epochs", "2", "--steps-per-epoch", "6", "--batch-size", "8"];
    let mut first = Command::new(env!("CARGO_BIN_EXE_fruitlab"))
        .arg("train")
        .arg("--data")
        .arg(common::mini_dataset())
        .arg("--out")
        .arg(&out)
        .args(args)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !out.join("classes.json").exists() {
        assert!(first.try_wait().unwrap().is_none(), "the first run ended early");
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = fails(common::fruitlab().args(["train", "--resume"]).arg(&out));
    assert!(
        second.contains("being written by another fruitlab process")
            && second.contains(&first.id().to_string()),
        "{second}"
    );
    assert!(first.wait().unwrap().success());
    assert_eq!(common::read_json(&out.join("history.json"))["epochs"].as_array().unwrap().len(), 2);

    // A folder of the user's own files is never turned into a run folder.
    let theirs = dir.path().join("photos");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("notes.txt"), b"mine").unwrap();
    let stderr = fails(&mut train(&["--mode", "frozen"], &theirs));
    assert!(stderr.contains("not a fruitlab run"), "{stderr}");
    assert_eq!(std::fs::read(theirs.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn stale_temporaries_go_and_foreign_files_stay_when_a_run_resumes() {
    common::cached_weights();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    train(&["--mode", "frozen", "--epochs", "1"], &out).assert().success();
    // What a kill during a checkpoint write leaves, and a file of the user's own.
    let stale = out.join(".model-last.safetensors.4242.tmp");
    std::fs::write(&stale, b"half a model").unwrap();
    std::fs::write(out.join("resume/notes.txt"), b"mine").unwrap();
    // The next writer cleans up (here a resume of the finished run).
    common::fruitlab().args(["train", "--resume"]).arg(&out).assert().success();
    assert!(!stale.exists(), "the killed write's temporary file is still there");
    assert_eq!(std::fs::read(out.join("resume/notes.txt")).unwrap(), b"mine");
}

/// Values of every kind a user can type where a number is expected.
const NUMBERS: [&str; 16] = [
    "0",
    "1",
    "-1",
    "2",
    "7",
    "0.5",
    "1e-9",
    "1e300",
    "NaN",
    "inf",
    "-inf",
    "-0",
    "4294967297",
    "18446744073709551615",
    "99999999999999999999999",
    "x",
];

#[test]
fn random_flag_values_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let numeric = [
        "--epochs",
        "--batch-size",
        "--steps-per-epoch",
        "--lr",
        "--backbone-lr-scale",
        "--momentum",
        "--weight-decay",
        "--warmup-steps",
        "--head-warmup-epochs",
        "--image-size",
        "--frame-stride",
        "--stop-at-accuracy",
        "--seed",
        "--threads",
    ];
    let texts = [
        (
            "--val-split",
            ["blocks:0.3", "blocks:2", "tail:-1", "recordings", "test", "0", "1", "NaN"],
        ),
        (
            "--augment",
            [
                "zoom=5",
                "shear=-3",
                "brightness=2:1",
                "rotation=NaN",
                "flip",
                "x=1",
                "",
                "shift=inf",
            ],
        ),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for case in 0..120 {
        let mut args: Vec<String> = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            if rng.random_bool(0.8) {
                args.push(numeric[rng.random_range(0..numeric.len())].into());
                args.push(NUMBERS[rng.random_range(0..NUMBERS.len())].into());
            } else {
                let (flag, values) = texts[rng.random_range(0..texts.len())];
                args.push(flag.into());
                args.push(values[rng.random_range(0..values.len())].into());
            }
        }
        // The data folder does not exist: a configuration that passes validation stops there,
        // quickly; every earlier stage (parsing, resolving, validating) must not panic.
        let output = common::fruitlab()
            .arg("train")
            .arg("--data")
            .arg(dir.path().join("missing"))
            .arg("--out")
            .arg(dir.path().join(format!("run{case}")))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            matches!(output.status.code(), Some(1 | 2)) && !stderr.contains("panicked"),
            "{args:?} gave {:?}: {stderr}",
            output.status.code()
        );
    }
    // Commands other than train.
    for args in [
        vec!["predict", "--weights", "imagenet", "--top-k", "0", "x.jpg"],
        vec!["predict", "--weights", "imagenet", "--top-k", "-3", "x.jpg"],
        vec!["predict", "--weights", "imagenet", "--jsonl", "--shard", "5/3", "x"],
        vec!["bench", "--batch-size", "0"],
        vec!["bench", "--image-size", "1"],
        vec!["bench", "--runs", "0"],
    ] {
        let output = common::fruitlab().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            matches!(output.status.code(), Some(1 | 2)) && !stderr.contains("panicked"),
            "{args:?} gave {:?}: {stderr}",
            output.status.code()
        );
    }
}

#[test]
fn corrupt_caches_are_named_and_rebuilt_and_corrupt_checkpoints_refused() {
    let cache = private_cache();
    let weights = cache.path().join("resnet50-imagenet-keras.safetensors");
    let with_cache = |args: &[&str]| {
        let mut command = common::fruitlab();
        command.env("FRUITLAB_CACHE", cache.path()).args(args);
        command
    };

    // Bit-flipped weights: named, fetched again, and right again.
    flip_byte(&weights, 1000);
    let output =
        with_cache(&["weights", "fetch", "resnet50"]).assert().success().get_output().clone();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("corrupt") && stderr.contains("fetching them again"), "{stderr}");
    let dog = common::testdata("dog.jpg");
    let predictions =
        common::stdout_json(with_cache(&["predict", "--weights", "imagenet", "--json"]).arg(&dog));
    assert_eq!(predictions[0]["top"][0]["index"], 249, "malamute");

    // A corrupted feature store: reported, recomputed, the run succeeds.
    let runs = tempfile::tempdir().unwrap();
    let train_frozen = |name: &str| {
        let mut command =
            with_cache(&["train", "--mode", "frozen", "--epochs", "1", "--keep-resume", "--data"]);
        command.arg(common::mini_dataset()).arg("--out").arg(runs.path().join(name));
        command
    };
    train_frozen("first").assert().success();
    let segments = common::feature_segments(cache.path());
    flip_byte(&segments[0], 5000);
    let output = train_frozen("second").assert().success().get_output().clone();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("feature cache") && stderr.contains("checksum"), "{stderr}");

    // A saved model whose bytes changed is refused by name, not evaluated.
    let best = runs.path().join("second/model-best.safetensors");
    flip_byte(&best, 100);
    let stderr = fails(with_cache(&["evaluate", "--run"]).arg(runs.path().join("second")));
    assert!(
        stderr.contains("model-best.safetensors") && stderr.contains("checksum mismatch"),
        "{stderr}"
    );

    // So is a resume checkpoint.
    let first = runs.path().join("first");
    let mut state = common::read_json(&first.join("resume/state.json"));
    state["finished"] = Value::Bool(false);
    std::fs::write(first.join("resume/state.json"), state.to_string()).unwrap();
    let model_file = first.join("resume").join(state["model_file"].as_str().unwrap());
    flip_byte(&model_file, 100);
    let stderr = fails(with_cache(&["train", "--resume"]).arg(&first));
    assert!(stderr.contains("checksum mismatch") && stderr.contains(".bpk"), "{stderr}");
}

/// Starts `fruitlab train` with `args`, waits until it has decoded its data (classes.json
/// written), sends Ctrl-C shortly after, and returns the exit status and how long it took to
/// stop.
fn interrupt_after_decoding(cache: &Path, out: &Path, args: &[&str]) -> (Option<i32>, Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fruitlab"))
        .env("FRUITLAB_CACHE", cache)
        .arg("train")
        .arg("--data")
        .arg(common::mini_dataset())
        .arg("--out")
        .arg(out)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !out.join("classes.json").exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before decoding finished");
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    assert!(
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success()
    );
    let status = child.wait().unwrap();
    (status.code(), signalled.elapsed())
}

#[test]
fn ctrl_c_stops_feature_extraction_and_head_warm_up_at_once_and_the_run_resumes() {
    for (name, args) in [
        ("frozen", vec!["--mode", "frozen", "--epochs", "2"]),
        ("warm-up", vec!["--head-warmup-epochs", "2", "--epochs", "1", "--steps-per-epoch", "2"]),
    ] {
        // A fresh cache: the features must be computed, which takes seconds.
        let cache = private_cache();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join(name);
        let (code, took) = interrupt_after_decoding(cache.path(), &out, &args);
        assert_eq!(code, Some(130), "{name}: Ctrl-C gave {code:?}");
        assert!(took < Duration::from_secs(5), "{name}: took {took:?} to stop");
        common::fruitlab()
            .env("FRUITLAB_CACHE", cache.path())
            .args(["train", "--resume"])
            .arg(&out)
            .assert()
            .success();
        let history = common::read_json(&out.join("history.json"));
        let epochs = history["epochs"].as_array().unwrap();
        assert_eq!(
            epochs.len(),
            args[args.iter().position(|a| *a == "--epochs").unwrap() + 1].parse::<usize>().unwrap()
        );
        assert!(epochs.iter().all(|e| e["lr"].as_f64().unwrap() > 0.0), "{history}");
    }
}

#[test]
fn data_the_program_would_drop_is_reported() {
    let data = tempfile::tempdir().unwrap();
    let source: Vec<PathBuf> = std::fs::read_dir(common::mini_dataset().join("Training/Kiwi"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let fill = |folder: &Path, n: usize| {
        std::fs::create_dir_all(folder).unwrap();
        for (i, file) in source.iter().take(n).enumerate() {
            std::fs::copy(file, folder.join(format!("{i}_100.jpg"))).unwrap();
        }
    };
    fill(&data.path().join("Training/A"), 8);
    fill(&data.path().join("Training/A/more"), 3);
    fill(&data.path().join("Training/B"), 8);
    let report = common::stdout_json(
        common::fruitlab().args(["data", "inspect", "--json"]).arg(data.path()),
    );
    assert_eq!(report["splits"][0]["nested_images"].as_array().unwrap().len(), 3);
    assert!(report["problems"].to_string().contains("sub-folders"), "{report}");

    // A class that the validation split leaves without training images, and a single class.
    let one = data.path().join("Training/C");
    fill(&one, 1);
    let runs = tempfile::tempdir().unwrap();
    let stderr = fails(
        common::fruitlab()
            .args(["train", "--mode", "frozen", "--data"])
            .arg(data.path())
            .arg("--out")
            .arg(runs.path().join("a")),
    );
    assert!(stderr.contains("no training images left") && stderr.contains('C'), "{stderr}");
    std::fs::remove_dir_all(&one).unwrap();
    std::fs::remove_dir_all(data.path().join("Training/B")).unwrap();
    let stderr = fails(
        common::fruitlab()
            .args(["train", "--mode", "frozen", "--data"])
            .arg(data.path())
            .arg("--out")
            .arg(runs.path().join("b")),
    );
    assert!(stderr.contains("at least two"), "{stderr}");

    // predict goes on past a bad file, names it, and fails at the end.
    let banana = common::mini_dataset().join("Test/Banana/141_100.jpg");
    let broken = data.path().join("broken.jpg");
    std::fs::write(&broken, b"not an image").unwrap();
    let output = common::fruitlab()
        .args(["predict", "--weights", "imagenet", "--json"])
        .arg(&broken)
        .arg(&banana)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken.jpg") && stderr.contains("1 of 2"), "{stderr}");
    let predictions: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(predictions.as_array().unwrap().len(), 1, "the good image is still classified");
}
