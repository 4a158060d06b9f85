//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// `../shared` beside the project root, where the datasets and reference outputs live.
pub fn shared() -> PathBuf {
    std::env::var_os("FRUITLAB_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

pub fn testdata(name: &str) -> PathBuf {
    shared().join("testdata").join(name)
}

pub fn mini_dataset() -> PathBuf {
    shared().join("datasets/fruits-360-mini")
}

/// Real phone photos, 10 uneven classes (`Training/` and `Test/`).
pub fn clothing10() -> PathBuf {
    shared().join("datasets/clothing10")
}

/// The first `n` images (by name) of each of the clothing10 `split` classes `classes`,
/// copied under `out/<class>/`.
pub fn clothing_sample(split: &str, classes: &[&str], n: usize, out: &Path) {
    for class in classes {
        let mut names: Vec<_> = std::fs::read_dir(clothing10().join(split).join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        std::fs::create_dir_all(out.join(class)).unwrap();
        for path in names.into_iter().take(n) {
            std::fs::copy(&path, out.join(class).join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// The cached ImageNet weights; the tests need them (`.ci/run` fetches them first).
pub fn cached_weights() -> PathBuf {
    let path = fruitlab::weights::fetch::cached_weights_path().unwrap();
    assert!(
        path.exists(),
        "ImageNet weights missing at {}: run `fruitlab weights fetch resnet50` (as .ci/run does)",
        path.display()
    );
    path
}

pub fn fruitlab() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("fruitlab").unwrap()
}

/// The JSON file at `path`, parsed.
pub fn read_json(path: &Path) -> Value {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Runs `command`, which must succeed, and parses what it printed as JSON.
pub fn stdout_json(command: &mut assert_cmd::Command) -> Value {
    let stdout = command.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!("the output is not JSON ({e}): {}", String::from_utf8_lossy(&stdout))
    })
}

/// A running server, stopped (SIGTERM) when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    /// Starts `fruitlab serve` on a free port with `args` and waits until it listens.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fruitlab"))
            .args(["serve", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{line}"))
            .to_string();
        Self { child, url }
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

/// A trained run on the mini set (frozen, two epochs), in `dir/run`: a copy of one run trained
/// once per test binary, so that each test owns its folder without paying for a training.
pub fn trained_run(dir: &Path) -> PathBuf {
    static TEMPLATE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        cached_weights();
        // Under the target folder (a static is never dropped, so no temporary folder would
        // be removed); one folder per test binary, replaced each time it runs.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(concat!("trained-run-", env!("CARGO_CRATE_NAME")));
        let _ = std::fs::remove_dir_all(&root);
        let run = root.join("run");
        fruitlab()
            .args(["train", "--mode", "frozen", "--epochs", "2", "--data"])
            .arg(mini_dataset())
            .arg("--out")
            .arg(&run)
            .assert()
            .success();
        run
    });
    let run = dir.join("run");
    copy_folder(template, &run);
    run
}

/// Copies the folder `from` to `to`, recursively.
pub fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The segment files of every feature store in the cache folder `cache`, in name order.
pub fn feature_segments(cache: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(cache.join("features"))
        .unwrap()
        .map(|store| store.unwrap().path())
        .filter(|store| store.is_dir())
        .flat_map(|store| std::fs::read_dir(store).unwrap().map(|e| e.unwrap().path()))
        .filter(|path| path.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    segments.sort();
    assert!(!segments.is_empty(), "no feature store in {}", cache.display());
    segments
}
