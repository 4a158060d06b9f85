//! Training: configuration, the training loop, features, optimizers, history and run folders.

pub mod config;
pub mod features;
pub mod history;
pub mod optim;
pub mod run_dir;
pub mod steps;
pub mod trainer;

pub use config::TrainConfig;
pub use history::{EpochRecord, History};
pub use run_dir::RunDir;
