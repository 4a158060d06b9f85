//! fruitlab: transfer learning for image classification with ResNet-50, on burn.

pub mod atomic_file;
pub mod cli;
pub mod device;
pub mod model;
pub mod preprocess;
pub mod weights;
