//! Reliability, round three: a user's file is never changed unless it is ours, things that do
//! not belong together are never mixed silently, and every answer is in its documented form.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Runs the command, expects exit status 1 and no panic; returns stderr.
fn fails(command: &mut assert_cmd::Command) -> String {
    let output = command.assert().failure().code(1).get_output().clone();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "a panic instead of an error: {stderr}");
    stderr
}

fn stdout(command: &mut assert_cmd::Command) -> String {
    let output = command.assert().success().get_output().clone();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A copy of the mini set's `Training/` (only), to change without touching the shared one.
fn training_copy(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    common::copy_folder(&common::mini_dataset().join("Training"), &root.join("Training"));
    root
}

fn kiwis() -> PathBuf {
    common::mini_dataset().join("Test/Kiwi")
}

#[test]
fn skip_done_only_reads_and_refuses_what_is_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    let run = common::trained_run(dir.path());
    let predict = |skip: &Path, images: &Path| {
        let mut command = common::fruitlab();
        command.args(["predict", "--run"]).arg(&run).arg(images).args(["--jsonl", "--skip-done"]);
        command.arg(skip);
        command
    };
    // Files that are not our output: refused by name, left byte for byte as they were.
    for (name, bytes) in [
        ("notes.txt", &b"my notes\nabout kiwis\n"[..]),
        ("blob.bin", &[0xff, 0xd8, 0x00, 0x9c, 0x41]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let stderr = fails(&mut predict(&path, &kiwis()));
        assert!(stderr.contains(name) && stderr.contains("not an output"), "{stderr}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name} was changed");
    }
    // Our output with a line cut short by a kill: read, not truncated; the cut image redone.
    let out = dir.path().join("out.jsonl");
    let full =
        stdout(common::fruitlab().args(["predict", "--run"]).arg(&run).arg(kiwis()).arg("--jsonl"));
    let lines: Vec<&str> = full.lines().collect();
    assert_eq!(lines.len(), 13);
    let cut = format!("{}\n{}", lines[..5].join("\n"), &lines[5][..20]);
    std::fs::write(&out, &cut).unwrap();
    let resumed = stdout(&mut predict(&out, &kiwis()));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), cut, "the skip-done file was changed");
    assert_eq!(resumed.lines().count(), 8, "{resumed}");
    // `./DIR` and `DIR` are the same images.
    let dotted = PathBuf::from(format!("{}/./", kiwis().display()));
    std::fs::write(&out, &full).unwrap();
    assert_eq!(stdout(&mut predict(&out, &dotted)).lines().count(), 0);
    // Lines another model wrote are never taken for this one's.
    let imagenet = dir.path().join("imagenet.jsonl");
    let other = stdout(
        common::fruitlab().args(["predict", "--weights", "imagenet"]).arg(kiwis()).arg("--jsonl"),
    );
    std::fs::write(&imagenet, other).unwrap();
    let stderr = fails(&mut predict(&imagenet, &kiwis()));
    assert!(stderr.contains("another model") && stderr.contains("imagenet.jsonl"), "{stderr}");
}

#[test]
fn outputs_are_never_written_into_run_folders_or_over_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = common::trained_run(dir.path());
    let best = run.join("model-best.safetensors");
    let before = std::fs::read(&best).unwrap();
    let export = |out: &Path| {
        let mut command = common::fruitlab();
        command.args(["export", "--run"]).arg(&run).arg("--out").arg(out);
        command
    };
    let stderr = fails(&mut export(&best));
    assert!(stderr.contains("inside the run folder"), "{stderr}");
    assert_eq!(std::fs::read(&best).unwrap(), before, "the run's best model was changed");
    let notes = dir.path().join("notes.onnx");
    std::fs::write(&notes, b"not a model").unwrap();
    let stderr = fails(&mut export(&notes));
    assert!(stderr.contains("not a model fruitlab exported"), "{stderr}");
    assert_eq!(std::fs::read(&notes).unwrap(), b"not a model");
    let ours = dir.path().join("model.onnx");
    export(&ours).assert().success();
    export(&ours).assert().success(); // our own export may be replaced
    for args in [&["cam", "--run"][..], &["evaluate", "--run"]] {
        let mut command = common::fruitlab();
        command.args(args).arg(&run).arg("--out").arg(run.join("elsewhere"));
        if args[0] == "cam" {
            command
                .arg(kiwis().join(
                    std::fs::read_dir(kiwis()).unwrap().next().unwrap().unwrap().file_name(),
                ));
        }
        let stderr = fails(&mut command);
        assert!(stderr.contains("inside the run folder"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_refused_train_leaves_nothing_behind() {
    common::cached_weights();
    let dir = tempfile::tempdir().unwrap();
    let data = training_copy(dir.path());
    let inside = data.join("Training/zz");
    let stderr = fails(
        common::fruitlab()
            .args(["train", "--mode", "frozen", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&inside),
    );
    assert!(stderr.contains("inside the dataset"), "{stderr}");
    assert!(!inside.exists(), "the refused run left its folder behind");
    // Refused later, while reading the data (a class folder without images): no folder left.
    std::fs::create_dir_all(data.join("Training/Empty")).unwrap();
    let out = dir.path().join("run");
    let stderr = fails(
        common::fruitlab()
            .args(["train", "--mode", "frozen", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&out),
    );
    assert!(stderr.contains("without images"), "{stderr}");
    assert!(!out.exists(), "the refused run left {} behind", out.display());
}

#[test]
fn evaluate_waits_its_turn_and_says_when_images_are_not_unseen() {
    let dir = tempfile::tempdir().unwrap();
    let run = common::trained_run(dir.path());
    // A training process holds the run: evaluate does not write into it.
    let lock = std::fs::OpenOptions::new().write(true).open(run.join(".lock")).unwrap();
    lock.lock().unwrap();
    let stderr = fails(common::fruitlab().args(["evaluate", "--run"]).arg(&run));
    assert!(stderr.contains("being written") && stderr.contains("--out"), "{stderr}");
    let elsewhere = dir.path().join("evaluation");
    common::fruitlab()
        .args(["evaluate", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&elsewhere)
        .assert()
        .success();
    assert!(elsewhere.join("evaluation.json").exists());
    drop(lock);
    // The run's own training images: evaluated, and marked as no evaluation on unseen images.
    let text = stdout(
        common::fruitlab()
            .args(["evaluate", "--run"])
            .arg(&run)
            .arg("--data")
            .arg(common::mini_dataset().join("Training")),
    );
    assert!(text.contains("NOT unseen") && text.contains("training images of the run"), "{text}");
    let evaluation = common::read_json(&run.join("evaluation-training/evaluation.json"));
    assert!(evaluation["overlap"]["training"].as_u64().unwrap() > 250, "{}", evaluation["overlap"]);
    let test = stdout(
        common::fruitlab()
            .args(["evaluate", "--run"])
            .arg(&run)
            .arg("--data")
            .arg(common::mini_dataset()),
    );
    assert!(!test.contains("NOT unseen"), "{test}");
}

#[test]
fn a_changed_dataset_is_never_resumed_and_runs_of_other_data_never_compared() {
    common::cached_weights();
    let dir = tempfile::tempdir().unwrap();
    let data = training_copy(dir.path());
    let run = dir.path().join("run");
    common::fruitlab()
        .args(["train", "--mode", "frozen", "--epochs", "1", "--keep-resume", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .assert()
        .success();
    // Pretend it was interrupted, then add an image to a class.
    let state_path = run.join("resume/state.json");
    let mut state: Value = common::read_json(&state_path);
    state["finished"] = Value::Bool(false);
    std::fs::write(&state_path, state.to_string()).unwrap();
    let kiwi = std::fs::read_dir(kiwis()).unwrap().next().unwrap().unwrap().path();
    std::fs::copy(&kiwi, data.join("Training/Kiwi/extra_100.jpg")).unwrap();
    let stderr = fails(common::fruitlab().args(["train", "--resume"]).arg(&run));
    assert!(
        stderr.contains("has changed")
            && stderr.contains("1 added")
            && stderr.contains("extra_100.jpg"),
        "{stderr}"
    );

    // A run on another dataset is not compared with it.
    let other = common::trained_run(&dir.path().join("other"));
    let stderr = fails(
        common::fruitlab()
            .arg("report")
            .arg(&run)
            .arg(&other)
            .arg("--out")
            .arg(dir.path().join("report")),
    );
    assert!(stderr.contains("different datasets"), "{stderr}");

    // A history with values no run writes is refused, and so is one without epochs.
    let history_path = other.join("history.json");
    let mut history: Value = common::read_json(&history_path);
    history["epochs"][0]["val_accuracy"] = Value::from(5.0);
    std::fs::write(&history_path, history.to_string()).unwrap();
    let report = |runs: &[&Path]| {
        let mut command = common::fruitlab();
        command.arg("report").args(runs).arg("--out").arg(dir.path().join("report"));
        command
    };
    let stderr = fails(&mut report(&[&other, &other]));
    assert!(stderr.contains("history.json") && stderr.contains("val_accuracy is 5"), "{stderr}");
    history["epochs"] = Value::Array(Vec::new());
    std::fs::write(&history_path, history.to_string()).unwrap();
    let stderr = fails(&mut report(&[&other, &other]));
    assert!(stderr.contains("not finished an epoch"), "{stderr}");
}

#[test]
fn feature_store_writers_merge_and_images_are_known_by_content() {
    common::cached_weights();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::copy(common::cached_weights(), cache.join("resnet50-imagenet-keras.safetensors"))
        .unwrap();
    // A second dataset of other content: every image mirrored.
    let mirrored = training_copy(&dir.path().join("mirrored"));
    for class in std::fs::read_dir(mirrored.join("Training")).unwrap() {
        for image in std::fs::read_dir(class.unwrap().path()).unwrap() {
            let path = image.unwrap().path();
            image::open(&path).unwrap().fliph().save(&path).unwrap();
        }
    }
    let train = |data: &Path, out: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fruitlab"))
            .env("FRUITLAB_CACHE", &cache)
            .args(["train", "--mode", "frozen", "--epochs", "1", "--data"])
            .arg(data)
            .arg("--out")
            .arg(dir.path().join(out))
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Both at once, into the same store.
    let (mut a, mut b) = (train(&common::mini_dataset(), "a"), train(&mirrored, "b"));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let mut images = std::collections::HashSet::new();
    for segment in common::feature_segments(&cache) {
        let tensors = fruitlab::weights::NamedTensors::read_safetensors(&segment).unwrap();
        images.extend(serde_json::from_str::<Vec<String>>(&tensors.metadata["images"]).unwrap());
    }
    assert_eq!(images.len(), 2 * 390, "both runs' features are kept");
}

#[test]
fn odd_names_empty_shards_and_link_loops_are_handled_one_by_one() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let run = common::trained_run(dir.path());
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for (i, image) in std::fs::read_dir(kiwis()).unwrap().take(3).enumerate() {
        std::fs::copy(image.unwrap().path(), photos.join(format!("{i}.jpg"))).unwrap();
    }
    let odd = photos.join(std::ffi::OsStr::from_bytes(b"bad-\xff-name.jpg"));
    std::fs::copy(photos.join("0.jpg"), &odd).unwrap();
    let output = common::fruitlab()
        .args(["predict", "--run"])
        .arg(&run)
        .arg(&photos)
        .arg("--jsonl")
        .assert()
        .failure()
        .code(1)
        .get_output()
        .clone();
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "every file has its line");
    let bad: Vec<&Value> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    assert_eq!(bad.len(), 1);
    assert!(bad[0]["error"].as_str().unwrap().contains("UTF-8"), "{}", bad[0]);
    // A shard with no share of a non-empty walk has nothing to do: success, no lines.
    let empty = stdout(
        common::fruitlab()
            .args(["predict", "--run"])
            .arg(&run)
            .arg(kiwis())
            .args(["--jsonl", "--shard", "30/40"]),
    );
    assert!(empty.is_empty(), "{empty}");
    // A symbolic link back up from a class folder: each nested file counted once.
    let data = training_copy(dir.path());
    std::os::unix::fs::symlink("..", data.join("Training/Kiwi/loop")).unwrap();
    let report = stdout(common::fruitlab().args(["data", "inspect"]).arg(&data));
    let counted: usize = report
        .lines()
        .find(|l| l.contains("sub-folders"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.parse().ok()))
        .unwrap_or(0);
    assert!(counted > 0 && counted <= 390, "{counted} nested images counted:\n{report}");
}
