//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;

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
