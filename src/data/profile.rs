//! What a dataset's images are like, read from their names and a sample of their headers
//! (no pixel decoded): whether they are video frames (Fruits-360's `r_12_100.jpg`), and how
//! large. The defaults that depend on the data are chosen from it (see
//! `config::from_data`).

use std::path::Path;

use anyhow::{Result, bail};

use super::dataset::{ImageFolder, training_folder, video_frame};

/// Image headers read for the size.
const SAMPLE: usize = 256;

/// A dataset's images, in brief.
#[derive(Clone, Debug, PartialEq)]
pub struct DataProfile {
    pub images: usize,
    /// The share of file names that are video frames.
    pub frame_names: f64,
    /// The median shorter side of a sample of the images, in pixels.
    pub median_shorter_side: u32,
}

impl DataProfile {
    /// Reads the training images of the dataset root `root`.
    pub fn of(root: &Path) -> Result<Self> {
        let folder = ImageFolder::scan(&training_folder(root))?;
        folder.ensure_trainable()?;
        let images = folder.images.len();
        let frames = folder.images.iter().filter(|i| video_frame(&i.path).1.is_some()).count();
        let step = images.div_ceil(SAMPLE).max(1);
        let sample: Vec<_> = folder.images.iter().step_by(step).collect();
        let mut sides: Vec<u32> = sample
            .iter()
            .filter_map(|image| image::image_dimensions(&image.path).ok())
            .map(|(w, h)| w.min(h))
            .collect();
        if sides.is_empty() {
            // Not one size to choose from: say why with the first image's own error.
            let first = &sample[0].path;
            let error = image::image_dimensions(first).unwrap_err();
            bail!(
                "none of the {} images sampled for their size could be read; {}: {error}",
                sample.len(),
                first.display()
            );
        }
        sides.sort_unstable();
        Ok(Self {
            images,
            frame_names: frames as f64 / images.max(1) as f64,
            median_shorter_side: sides[sides.len() / 2],
        })
    }

    /// Whether the images are frames of videos (names with frame numbers).
    pub fn is_video(&self) -> bool {
        self.frame_names >= 0.9
    }

    /// Whether the images are photographs large enough for a network's full resolution.
    pub fn is_photos(&self) -> bool {
        self.median_shorter_side > PHOTO_SIDE
    }
}

/// Images with a shorter side above this many pixels are photos (Fruits-360's frames are 100).
pub const PHOTO_SIDE: u32 = 200;
