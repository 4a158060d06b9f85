//! The settings whose defaults depend on the data: for photos (shorter side above 200 px)
//! ImageNet's centre crop (the shorter side to 8/7 of the input, its centre) at the network's
//! 224 px with photo augmentation when fine-tuning, at 288 px for a frozen backbone; for small
//! images such as Fruits-360's 100 px turntable frames 100 px and the whole centred square; a validation split by recording for video frames and
//! by group (photos of one sitting) otherwise; and for the frozen top, label smoothing for
//! video frames (near-copies of each other) only. Filled in before a run starts, so that
//! `config.json` holds the values, and said in the run's header.

use anyhow::Result;

use super::{Mode, TrainConfig};
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
        && config.optimization.label_smoothing.is_some()
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
        let (size, crop, whose) = match (photos, config.mode) {
            // ImageNet trained the network on random crops, in which things look larger than
            // in a centre crop of the same size; a frozen backbone sees photos best a little
            // larger than it was trained (measured: BENCHMARKS.md). Fine-tuning trains at the
            // size it is used at, and pays for every pixel.
            (true, Mode::Frozen) => (288, 0.875, ", seen by a frozen backbone"),
            (true, Mode::Finetune) => (224, 0.875, ""),
            (false, _) => (100, 1.0, ""),
        };
        let size = *images.image_size.get_or_insert(size);
        let crop = *images.crop.get_or_insert(crop);
        let view = if crop >= 1.0 {
            "the whole centred square".to_string()
        } else {
            format!("centre crop {crop}")
        };
        notes.push(format!("{size} px, {view}: {why}{whose}"));
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
    if config.optimization.label_smoothing.is_none() {
        // Measured: on Fruits-360 the frozen top gains 0.5 points with it; on clothing10's
        // photos it loses 2.7 (BENCHMARKS.md).
        let (smoothing, why) = if profile.is_video() {
            (0.1, "video frames, near-copies of each other")
        } else {
            (0.0, "not video frames")
        };
        notes.push(format!("label smoothing {smoothing}: {why}"));
        config.optimization.label_smoothing = Some(smoothing);
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Init, Overrides, Recipe, resolve as recipe};

    /// A dataset root of two classes of three `width` x `height` JPEGs named `names(i)`.
    fn dataset(width: u32, height: u32, names: fn(usize) -> String) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for class in ["a", "b"] {
            let folder = root.path().join("Training").join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..3 {
                image::RgbImage::new(width, height).save(folder.join(names(i))).unwrap();
            }
        }
        root
    }

    fn chosen(root: &tempfile::TempDir, mode: Mode) -> (TrainConfig, Vec<String>) {
        let mut config =
            recipe(Recipe::Default, mode, Init::Imagenet, root.path().into(), Overrides::default());
        let notes = resolve(&mut config).unwrap();
        (config, notes)
    }

    #[test]
    fn photos_get_224_px_fine_tuned_and_288_frozen_without_label_smoothing() {
        let root = dataset(400, 300, |i| format!("IMG_{i}.jpg"));
        let (frozen, notes) = chosen(&root, Mode::Frozen);
        let i = &frozen.images;
        assert_eq!(
            (i.image_size, i.crop, i.val_split),
            (Some(288), Some(0.875), Some(ValSplit::Groups(0.2)))
        );
        assert_eq!(frozen.optimization.label_smoothing, Some(0.0));
        assert!(
            notes[0].contains("288 px, centre crop 0.875: photos") && notes[0].contains("frozen"),
            "{notes:?}"
        );
        assert!(notes.iter().any(|n| n == "label smoothing 0: not video frames"), "{notes:?}");
        let (fine_tuned, _) = chosen(&root, Mode::Finetune);
        assert_eq!(
            (fine_tuned.images.image_size, fine_tuned.optimization.label_smoothing),
            (Some(224), Some(0.1))
        );
    }

    #[test]
    fn video_frames_keep_100_px_and_the_frozen_top_smooths_its_labels() {
        let root = dataset(100, 100, |i| format!("r_{i}_100.jpg"));
        let (frozen, _) = chosen(&root, Mode::Frozen);
        assert_eq!((frozen.images.image_size, frozen.images.crop), (Some(100), Some(1.0)));
        assert_eq!(frozen.images.val_split, Some(ValSplit::Blocks(0.2)));
        assert_eq!(frozen.optimization.label_smoothing, Some(0.1));
        // What the user gave is kept.
        let mut given = frozen.clone();
        given.optimization.label_smoothing = Some(0.0);
        assert!(resolve(&mut given).unwrap().is_empty());
        assert_eq!(given.optimization.label_smoothing, Some(0.0));
    }
}
