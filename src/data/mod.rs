//! Data: image folders and splits, decoding, augmentation, batching, and dataset inspection.

pub mod augment;
pub mod dataset;
pub mod decoded;
pub mod inspect;
pub mod loader;

pub use augment::Augment;
pub use dataset::{DataSplits, ImageFolder, LabeledImage, Validation, load_splits};
pub use decoded::{BadImage, DecodedImages, decode_all};
pub use loader::{Batch, BatchRecipe, Batches, SampleStream};
