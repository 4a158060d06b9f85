//! Interruption and reproducibility: the same seed gives the same history; a run killed with
//! SIGKILL or stopped with Ctrl-C (SIGINT) and resumed ends exactly where an uninterrupted run
//! ends; a full disk while writing checkpoints is an error, not a corrupt file.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A short fine-tuning run: 3 epochs of 4 steps of 8 images.
const RUN_FLAGS: [&str; 8] =
    ["--epochs", "3", "--steps-per-epoch", "4", "--batch-size", "8", "--warmup-steps", "2"];

fn train_command(out: &Path) -> Command {
    seeded_train_command(out, 7)
}

fn seeded_train_command(out: &Path, seed: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fruitlab"));
    command
        .arg("train")
        .arg("--data")
        .arg(common::mini_dataset())
        .arg("--out")
        .arg(out)
        .args(RUN_FLAGS);
    command.arg("--seed").arg(seed.to_string());
    command.stdout(Stdio::null()).stderr(Stdio::null());
    command
}

fn resume_command(out: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fruitlab"));
    command.args(["train", "--resume"]).arg(out).stdout(Stdio::null());
    command
}

/// The history without wall-clock fields, which legitimately differ between runs.
fn history(out: &Path) -> Vec<Value> {
    let history: Value = common::read_json(&out.join("history.json"));
    history["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let keep = [
                "epoch",
                "images_seen",
                "train_loss",
                "train_accuracy",
                "val_loss",
                "val_accuracy",
                "val_top5_accuracy",
                "lr",
            ];
            keep.iter()
                .map(|k| (k.to_string(), e[k].clone()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect()
}

fn wait_for(child: &mut Child, what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before {what}");
        assert!(started.elapsed() < Duration::from_secs(600), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn epochs_done(out: &Path) -> u64 {
    std::fs::read(out.join("resume/state.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|state| state["epochs_done"].as_u64())
        .unwrap_or(0)
}

#[test]
fn same_seed_same_history_and_interrupted_runs_resume_exactly() {
    common::cached_weights();
    let dir = tempfile::tempdir().unwrap();
    let reference_run = dir.path().join("reference");
    assert!(train_command(&reference_run).status().unwrap().success());
    let reference = history(&reference_run);
    assert_eq!(reference.len(), 3);
    let other_seed = dir.path().join("other-seed");
    assert!(seeded_train_command(&other_seed, 8).status().unwrap().success());
    assert_ne!(history(&other_seed), reference, "the seed matters");

    // The same seed again, interrupted twice. First kill -9 after the first epoch's checkpoint.
    let run = dir.path().join("interrupted");
    let mut child = train_command(&run).spawn().unwrap();
    wait_for(&mut child, "the first checkpoint", || epochs_done(&run) >= 1);
    child.kill().unwrap();
    child.wait().unwrap();
    // Then Ctrl-C in the middle of the third epoch: a checkpoint of the partial epoch, exit 130.
    let mut child = resume_command(&run).spawn().unwrap();
    wait_for(&mut child, "the second checkpoint", || epochs_done(&run) >= 2);
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    let state = common::read_json(&run.join("resume/state.json"));
    if status.code() == Some(130) {
        assert!(!state["finished"].as_bool().unwrap(), "{state}");
    } else {
        assert!(status.success(), "SIGINT gave {status}");
    }
    // Resumed, it ends bit for bit where the uninterrupted run ended (flex is deterministic):
    // the same seed gives the same history, and neither interruption lost or repeated a step.
    let status = resume_command(&run).status().unwrap();
    assert!(status.success(), "resume failed: {status}");
    assert_eq!(history(&run), reference, "the same seed, interrupted twice and resumed");
}

#[test]
fn full_disk_is_an_error_and_leaves_no_partial_files() {
    common::cached_weights();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // A 20 MB file-size limit makes the 98 MB model write fail mid-file, as a full disk does.
    let script = format!(
        "trap '' XFSZ; ulimit -f 20000; exec '{}' train --mode frozen --epochs 1 --data '{}' --out '{}'",
        env!("CARGO_BIN_EXE_fruitlab"),
        common::mini_dataset().display(),
        out.display()
    );
    let output = Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write") && stderr.contains("file-size limit"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The failed run trained nothing, so the folder it made is gone with its files; nothing
    // partial or temporary is left in any case.
    let leftovers: Vec<String> = std::fs::read_dir(&out)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp") || name.ends_with(".safetensors"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    assert!(!out.exists(), "the untrained run's folder is left behind");
}
