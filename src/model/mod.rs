//! The networks: ResNet-50 backbone, classification heads, and the ImageNet model.

pub mod classifier;
pub mod fused;
pub mod resnet;

pub use classifier::{Classifier, Head, HeadKind};
pub use resnet::{BatchNormMode, Layout, ResNet50, TrainFrom};

crate::spelled_setting!(BatchNormMode, HeadKind, Layout, TrainFrom);
