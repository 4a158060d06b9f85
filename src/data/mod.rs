//! Data: image folders and splits, decoding, augmentation, batching, and dataset inspection.

pub mod augment;
pub mod dataset;
pub mod decoded;
pub mod groups;
pub mod image_cache;
pub mod inspect;
pub mod loader;
pub mod profile;
pub mod split;

pub use augment::Augment;
pub use dataset::{ImageFolder, LabeledImage};
pub use decoded::{BadImage, ContentHash, Decoded, DecodedImages, decode_all, decode_labeled};
pub use loader::{Batch, BatchRecipe, Batches, SampleStream};
pub use split::{DataSplits, ValSplit, load_splits};
