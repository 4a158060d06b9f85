//! The settings whose defaults depend on the data: for photos (shorter side above 200 px) the
//! network's full 224 px with ImageNet's centre crop (the shorter side to 256, the centre 224)
//! and photo augmentation; for small images such as Fruits-360's 100 px turntable frames
//! 100 px and the whole centred square; a validation split by recording for video frames and
//! by group (photos of one sitting) otherwise. Filled in before a run starts, so that
//! `config.json` holds the values, and said in the run's header.

use anyhow::Result;

use super::TrainConfig;
use crate::data::profile::{DataProfile, PHOTO_SIDE};
use crate::data::{Augment, ValSplit};

/// Fills in every setting left to the data; returns what was chosen and why, in words (empty
/// when nothing was left).
pub fn resolve(config: &mut TrainConfig) -> Result<Vec<String>> {
    let images = &config.images;
    if images.image_size.is_some()
        && images.crop.is_some()
        && images.val_split.is_some()
        && images.augment.is_some()
    {
        return Ok(Vec::new());
    }
    let profile = DataProfile::of(&config.data)?;
    let photos = profile.is_photos();
    let why = if photos {
        format!(
            "photos (median shorter side {} px, above {PHOTO_SIDE})",
            profile.median_shorter_side
        )
    } else {
        format!("small images (median shorter side {} px)", profile.median_shorter_side)
    };
    let mut notes = Vec::new();
    let images = &mut config.images;
    if images.image_size.is_none() || images.crop.is_none() {
        let (size, crop) = if photos { (224, 0.875) } else { (100, 1.0) };
        let size = *images.image_size.get_or_insert(size);
        let crop = *images.crop.get_or_insert(crop);
        let view = if crop >= 1.0 {
            "the whole centred square".to_string()
        } else {
            format!("centre crop {crop}")
        };
        notes.push(format!("{size} px, {view}: {why}"));
    }
    if images.val_split.is_none() {
        let split = if profile.is_video() { ValSplit::Blocks(0.2) } else { ValSplit::Groups(0.2) };
        let kind = if profile.is_video() {
            format!(
                "video frames ({:.0}% of the names are frame numbers)",
                100.0 * profile.frame_names
            )
        } else {
            "not video frames: photos of one sitting are held out together".to_string()
        };
        images.val_split = Some(split);
        notes.push(format!("validation {split}: {kind}"));
    }
    if images.augment.is_none() {
        let augment = if photos { Augment::photo() } else { Augment::notebook() };
        notes.push(format!("augmentation {augment}: {why}"));
        images.augment = Some(augment);
    }
    Ok(notes)
}
