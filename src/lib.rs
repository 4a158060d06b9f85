//! fruitlab: transfer learning for image classification with ResNet-50, on burn.

pub mod audit;
pub mod bench;
pub mod cam;
pub mod cli;
pub mod compute;
pub mod config;
pub mod data;
pub mod eval;
pub mod export;
pub mod features;
pub mod inference;
pub mod lr_find;
pub mod model;
pub mod preprocess;
pub mod report;
pub mod run;
pub mod serve;
pub mod support;
pub mod train;
pub mod trust;
pub mod weights;

/// The burn release fruitlab is built and tested with (pinned in Cargo.toml).
pub const BURN_VERSION: &str = "0.22.1";
