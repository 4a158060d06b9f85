//! Validation for video frames. Fruits-360 photographs each fruit in a few short videos
//! (recordings) while it turns; neighbouring frames are near-copies, and a new split (its own
//! `Test/`) holds whole arcs of a turn that training never saw. So validation holds out
//! contiguous runs of frames, or whole recordings, never scattered frames.

use crate::data::dataset::{LabeledImage, video_frame};
use crate::data::loader::mix;

use super::held_count;

/// Splits off the last `fraction` of each class. `images` must be grouped by class in frame
/// order, as [`crate::data::ImageFolder::scan`] returns them.
pub fn hold_out_last(
    images: &[LabeledImage],
    num_classes: usize,
    fraction: f64,
) -> (Vec<LabeledImage>, Vec<LabeledImage>) {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for label in 0..num_classes {
        let class: Vec<&LabeledImage> = images.iter().filter(|i| i.label == label).collect();
        let held = held_count(class.len(), fraction);
        let (keep, hold) = class.split_at(class.len() - held);
        train.extend(keep.iter().map(|&i| i.clone()));
        val.extend(hold.iter().map(|&i| i.clone()));
    }
    (train, val)
}

/// The recordings of one class: its images grouped by recording, each in frame order.
fn recordings(class: &[&LabeledImage]) -> Vec<(String, Vec<LabeledImage>)> {
    let mut groups: Vec<(String, Vec<LabeledImage>)> = Vec::new();
    for image in class {
        let (recording, _) = video_frame(&image.path);
        match groups.iter_mut().find(|(name, _)| *name == recording) {
            Some((_, frames)) => frames.push((*image).clone()),
            None => groups.push((recording, vec![(*image).clone()])),
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    groups
}

/// A stable pseudo-random number for a class and recording: the same split in every run,
/// whatever the training seed, so runs are compared on the same images.
fn place(label: usize, recording: &str) -> u64 {
    recording.bytes().fold(mix(0x5EED, label as u64), |acc, b| mix(acc, b as u64))
}

/// Splits off one contiguous run of `fraction` of every recording's frames, at a place in
/// the turn fixed per class and recording.
pub fn hold_out_blocks(
    images: &[LabeledImage],
    num_classes: usize,
    fraction: f64,
) -> (Vec<LabeledImage>, Vec<LabeledImage>) {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for label in 0..num_classes {
        let class: Vec<&LabeledImage> = images.iter().filter(|i| i.label == label).collect();
        for (recording, frames) in recordings(&class) {
            let held = held_count(frames.len(), fraction);
            let start = (place(label, &recording) % (frames.len() - held + 1) as u64) as usize;
            for (i, image) in frames.into_iter().enumerate() {
                if (start..start + held).contains(&i) { val.push(image) } else { train.push(image) }
            }
        }
    }
    (train, val)
}

/// Splits off one whole recording of each class that has several (chosen per class, fixed);
/// a class with a single recording gives a block of 20% of it instead.
pub fn hold_out_recordings(
    images: &[LabeledImage],
    num_classes: usize,
) -> (Vec<LabeledImage>, Vec<LabeledImage>) {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for label in 0..num_classes {
        let class: Vec<&LabeledImage> = images.iter().filter(|i| i.label == label).collect();
        let groups = recordings(&class);
        if groups.len() < 2 {
            let owned: Vec<LabeledImage> = class.into_iter().cloned().collect();
            let (t, v) = hold_out_blocks(&owned, num_classes, 0.2);
            train.extend(t);
            val.extend(v);
            continue;
        }
        let chosen = (place(label, "recording") % groups.len() as u64) as usize;
        for (i, (_, frames)) in groups.into_iter().enumerate() {
            if i == chosen { val.extend(frames) } else { train.extend(frames) }
        }
    }
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Two classes, each with two recordings of 10 frames.
    fn images() -> Vec<LabeledImage> {
        let mut images = Vec::new();
        for label in 0..2 {
            for i in 0..10 {
                for prefix in ["", "r_"] {
                    let path = PathBuf::from(format!("{label}/{prefix}{i}_100.jpg"));
                    images.push(LabeledImage { path, label });
                }
            }
        }
        images
    }

    fn names(images: &[LabeledImage]) -> Vec<String> {
        images.iter().map(|i| i.path.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn tail_takes_the_last_frames_of_each_class() {
        let (train, val) = hold_out_last(&images(), 2, 0.2);
        assert_eq!(train.len(), 32);
        assert_eq!(
            names(&val)[..4],
            ["0/8_100.jpg", "0/r_8_100.jpg", "0/9_100.jpg", "0/r_9_100.jpg"]
        );
    }

    #[test]
    fn blocks_hold_out_a_contiguous_run_of_every_recording() {
        let (train, val) = hold_out_blocks(&images(), 2, 0.3);
        assert_eq!((train.len(), val.len()), (28, 12));
        for label in 0..2 {
            for prefix in ["", "r_"] {
                let frames: Vec<u64> = val
                    .iter()
                    .filter(|i| {
                        i.label == label && video_frame(&i.path).0 == prefix.trim_end_matches('_')
                    })
                    .filter_map(|i| video_frame(&i.path).1)
                    .collect();
                assert_eq!(frames.len(), 3, "{label} {prefix:?}");
                assert!(
                    frames.windows(2).all(|w| w[1] == w[0] + 1),
                    "{frames:?} is not contiguous"
                );
            }
        }
        assert_eq!(hold_out_blocks(&images(), 2, 0.3).1, val, "the split is fixed");
    }

    #[test]
    fn recordings_hold_out_whole_videos() {
        let (train, val) = hold_out_recordings(&images(), 2);
        assert_eq!((train.len(), val.len()), (20, 20));
        for label in 0..2 {
            let held: std::collections::BTreeSet<String> =
                val.iter().filter(|i| i.label == label).map(|i| video_frame(&i.path).0).collect();
            assert_eq!(held.len(), 1, "one recording per class");
        }
    }
}
