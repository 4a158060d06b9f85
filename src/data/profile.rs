//! What a dataset's images are like, read from their names and a sample of their headers
//! (no pixel decoded): whether they are video frames (Fruits-360's `r_12_100.jpg`), and how
//! large. The defaults that depend on the data are chosen from it (see
//! `config::from_data`).

use std::path::Path;

use anyhow::Result;

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
        let images = folder.images.len();
        let frames = folder.images.iter().filter(|i| video_frame(&i.path).1.is_some()).count();
        let step = images.div_ceil(SAMPLE).max(1);
        let mut sides: Vec<u32> = folder
            .images
            .iter()
            .step_by(step)
            .filter_map(|image| image::image_dimensions(&image.path).ok())
            .map(|(w, h)| w.min(h))
            .collect();
        sides.sort_unstable();
        Ok(Self {
            images,
            frame_names: frames as f64 / images.max(1) as f64,
            median_shorter_side: sides.get(sides.len() / 2).copied().unwrap_or(0),
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
