//! Choosing the validation images. Fruits-360 photographs each fruit in a few short videos
//! (recordings) while it turns; neighbouring frames are near-copies, and a new split (its own
//! `Test/`) holds whole arcs of a turn that training never saw. So validation holds out
//! contiguous runs of frames, or whole recordings, never scattered frames.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail, ensure};
use serde::{Deserialize, Serialize};

use super::dataset::{
    ImageFolder, LabeledImage, ensure_same_classes, training_folder, video_frame,
};
use super::loader::mix;

/// How the validation images are chosen (`--val-split`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValSplit {
    /// The dataset's own `Test/` folder.
    Test,
    /// The last fraction of each class's frames: the end of every recording.
    Tail(f64),
    /// In every recording, one contiguous run of frames (this fraction of it) at a fixed,
    /// pseudo-random place in the turn.
    Blocks(f64),
    /// Whole recordings: one of each class's recordings (classes with a single recording
    /// fall back to a block of 20% of it).
    Recordings,
    /// Photos: whole sittings (see [`super::groups`]), about this fraction of each class.
    Groups(f64),
}

/// Training and validation images with their shared class list.
#[derive(Clone, Debug)]
pub struct DataSplits {
    pub classes: Vec<String>,
    pub train: Vec<LabeledImage>,
    pub val: Vec<LabeledImage>,
    pub ignored: Vec<PathBuf>,
    /// Images in sub-folders of class folders (not used).
    pub nested: Vec<PathBuf>,
    /// Image files whose names are not UTF-8 (unreadable images).
    pub bad_names: Vec<PathBuf>,
    /// Sittings too long to hold out whole (`groups`): a block of each was held out instead.
    pub long_sittings: Vec<LongSitting>,
}

/// The longest sitting of a class whose sittings are longer than the share of it to hold out
/// (see [`super::groups::held_out`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LongSitting {
    pub class: String,
    /// The images of that sitting.
    pub images: usize,
    /// The images of the class.
    pub of: usize,
}

impl std::str::FromStr for ValSplit {
    type Err = String;

    /// `test`, `recordings` (or `video`), `blocks:F`, `tail:F`, or a bare fraction `F` (tail).
    fn from_str(text: &str) -> Result<Self, String> {
        let fraction = |value: &str| -> Result<f64, String> {
            let f: f64 = value.parse().map_err(|_| format!("`{value}` is not a fraction"))?;
            if f > 0.0 && f < 1.0 {
                Ok(f)
            } else {
                Err(format!("the fraction must be in (0, 1), got {value}"))
            }
        };
        match text {
            "test" => Ok(ValSplit::Test),
            "recordings" | "video" => Ok(ValSplit::Recordings),
            _ => match text.split_once(':') {
                Some(("blocks", value)) => Ok(ValSplit::Blocks(fraction(value)?)),
                Some(("tail", value)) => Ok(ValSplit::Tail(fraction(value)?)),
                Some(("groups", value)) => Ok(ValSplit::Groups(fraction(value)?)),
                None => fraction(text).map(ValSplit::Tail).map_err(|error| {
                    format!(
                        "{error}: use blocks:F, groups:F, tail:F, recordings, test or a fraction"
                    )
                }),
                _ => Err(format!(
                    "`{text}`: use blocks:F, groups:F, tail:F, recordings, test or a fraction"
                )),
            },
        }
    }
}

impl ValSplit {
    /// Whether the validation images are the dataset's `Test/` folder.
    pub fn uses_test(&self) -> bool {
        matches!(self, ValSplit::Test)
    }

    /// What is held out, in words: "a contiguous 20% of every recording's frames".
    pub fn describe(&self) -> String {
        match self {
            ValSplit::Test => "the Test/ folder".into(),
            ValSplit::Tail(fraction) => {
                format!("the last {:.0}% of each class's frames", 100.0 * fraction)
            }
            ValSplit::Blocks(fraction) => {
                format!("a contiguous {:.0}% of every recording's frames", 100.0 * fraction)
            }
            ValSplit::Recordings => "one whole recording of each class".into(),
            ValSplit::Groups(fraction) => format!(
                "whole sittings of photos (numbered name runs, capture times within {} s, near-identical pictures), {:.0}% of each class",
                super::groups::SITTING_SECONDS,
                100.0 * fraction
            ),
        }
    }
}

impl std::fmt::Display for ValSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValSplit::Test => write!(f, "test"),
            ValSplit::Tail(fraction) => write!(f, "tail:{fraction}"),
            ValSplit::Blocks(fraction) => write!(f, "blocks:{fraction}"),
            ValSplit::Recordings => write!(f, "recordings"),
            ValSplit::Groups(fraction) => write!(f, "groups:{fraction}"),
        }
    }
}

impl Serialize for ValSplit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ValSplit {
    /// The text form, as [`Serialize`] writes it.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

impl crate::support::settings::SettingText for ValSplit {
    fn setting_text(&self) -> String {
        self.to_string()
    }
}

/// Reads a dataset root (`Training/` and maybe `Test/`, or a folder of class folders) and
/// chooses the validation images.
pub fn load_splits(root: &Path, split: ValSplit) -> Result<DataSplits> {
    let training = ImageFolder::scan(&training_folder(root))?;
    training.ensure_trainable()?;
    // A Test/ folder must name the same classes, whether or not it validates: it is what the
    // model will be evaluated on.
    let folder = root.join("Test");
    let test = if folder.is_dir() && training.root != root {
        let test = ImageFolder::scan(&folder)?;
        ensure_same_classes(&training, &test)?;
        Some(test)
    } else {
        None
    };
    let classes = training.classes.len();
    let mut long_sittings = Vec::new();
    let (train, val) = match split {
        ValSplit::Test => {
            let Some(test) = test else {
                bail!(
                    "{} has no Test/ folder to validate on: use --val-split blocks:0.2",
                    root.display()
                );
            };
            test.ensure_trainable()?;
            return Ok(DataSplits {
                classes: training.classes,
                train: training.images,
                val: test.images,
                ignored: [training.ignored, test.ignored].concat(),
                nested: [training.nested, test.nested].concat(),
                bad_names: [training.bad_names, test.bad_names].concat(),
                long_sittings: Vec::new(),
            });
        }
        ValSplit::Tail(fraction) => hold_out_last(&training.images, classes, fraction),
        ValSplit::Blocks(fraction) => hold_out_blocks(&training.images, classes, fraction),
        ValSplit::Recordings => hold_out_recordings(&training.images, classes),
        ValSplit::Groups(fraction) => {
            let (train, val, long) = hold_out_groups(&training.images, &training.classes, fraction);
            long_sittings = long;
            (train, val)
        }
    };
    Ok(DataSplits {
        classes: training.classes,
        train,
        val,
        ignored: training.ignored,
        nested: training.nested,
        bad_names: training.bad_names,
        long_sittings,
    })
}

/// Images held out of one group of frames (or of one class's photos): at least one, and never
/// all of them.
pub(super) fn held_count(frames: usize, fraction: f64) -> usize {
    ((frames as f64 * fraction).round() as usize).clamp(1, frames.saturating_sub(1).max(1))
}

/// Splits off the last `fraction` of each class. `images` must be grouped by class in frame
/// order, as [`ImageFolder::scan`] returns them.
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

/// Splits off whole sittings of photos, about `fraction` of each class (see
/// [`super::groups`]): their names, capture times and pictures (decoded small) decide. Also
/// returns the classes (of `classes`) whose longest sitting was too long to hold out whole.
pub fn hold_out_groups(
    images: &[LabeledImage],
    classes: &[String],
    fraction: f64,
) -> (Vec<LabeledImage>, Vec<LabeledImage>, Vec<LongSitting>) {
    let mut held = vec![false; images.len()];
    let mut long = Vec::new();
    for_each_class_sittings(images, classes.len(), |members, group_of, names| {
        for (&i, held_out) in members.iter().zip(super::groups::held_out(group_of, names, fraction))
        {
            held[i] = held_out;
        }
        let longest = super::groups::longest(group_of);
        if longest > held_count(members.len(), fraction) {
            let class = classes[images[members[0]].label].clone();
            long.push(LongSitting { class, images: longest, of: members.len() });
        }
    });
    let (val, train): (Vec<_>, Vec<_>) =
        images.iter().cloned().zip(held).partition(|(_, held)| *held);
    (train.into_iter().map(|(i, _)| i).collect(), val.into_iter().map(|(i, _)| i).collect(), long)
}

/// A fold (of `folds`) for each image: whole sittings (as [`hold_out_groups`] finds them), each
/// class spread over the folds as evenly as its sittings allow.
pub fn sitting_folds(images: &[LabeledImage], num_classes: usize, folds: usize) -> Vec<usize> {
    let mut fold_of = vec![0; images.len()];
    for_each_class_sittings(images, num_classes, |members, group_of, names| {
        for (&i, fold) in members.iter().zip(super::groups::folds(group_of, names, folds)) {
            fold_of[i] = fold;
        }
    });
    fold_of
}

/// Calls `each` with every class's images (indices into `images`), their sittings (a group
/// number for each) and their names.
fn for_each_class_sittings(
    images: &[LabeledImage],
    num_classes: usize,
    mut each: impl FnMut(&[usize], &[usize], &[&Path]),
) {
    use rayon::prelude::*;
    let pictures: Vec<u64> =
        images.par_iter().map(|i| super::groups::picture_hash(&i.path).unwrap_or(0)).collect();
    let taken: Vec<Option<i64>> =
        images.par_iter().map(|i| super::groups::capture_time(&i.path)).collect();
    for label in 0..num_classes {
        let members: Vec<usize> = (0..images.len()).filter(|&i| images[i].label == label).collect();
        let class: Vec<&LabeledImage> = members.iter().map(|&i| &images[i]).collect();
        let class_pictures: Vec<u64> = members.iter().map(|&i| pictures[i]).collect();
        let class_taken: Vec<Option<i64>> = members.iter().map(|&i| taken[i]).collect();
        let group_of = super::groups::groups(&class, &class_pictures, &class_taken);
        let names: Vec<&Path> = class.iter().map(|i| i.path.as_path()).collect();
        each(&members, &group_of, &names);
    }
}

/// Checks a split for what would make training or validation mean little, in words.
pub fn ensure_usable(splits: &DataSplits) -> Result<()> {
    ensure!(
        splits.classes.len() >= 2,
        "the dataset has {} class: a classifier needs at least two",
        splits.classes.len()
    );
    let mut train_counts = vec![0usize; splits.classes.len()];
    for image in &splits.train {
        train_counts[image.label] += 1;
    }
    let empty: Vec<&String> = splits
        .classes
        .iter()
        .zip(&train_counts)
        .filter(|(_, n)| **n == 0)
        .map(|(c, _)| c)
        .collect();
    ensure!(
        empty.is_empty(),
        "{} class(es) have no training images left after holding out validation images: {} (add images, or validate on a Test/ folder)",
        empty.len(),
        empty.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_class_numbered_straight_through_gives_a_fifth_and_is_reported() {
        // Class 0: one numbered run of 20 photos; class 1: 10 photos four numbers apart.
        let image = |label, number| LabeledImage {
            path: PathBuf::from(format!("missing/{label}/IMG_{number:04}.jpg")),
            label,
        };
        let mut images: Vec<LabeledImage> = (1..=20).map(|n| image(0, n)).collect();
        images.extend((1..=10).map(|n| image(1, 4 * n)));
        let classes = ["a".to_string(), "b".to_string()];
        let (train, val, long) = hold_out_groups(&images, &classes, 0.2);
        let held = |label| val.iter().filter(|i| i.label == label).count();
        assert_eq!((train.len(), held(0), held(1)), (24, 4, 2), "{:?}", names(&val));
        // Unreadable files all look alike (no picture): class 1 is one sitting by its pictures.
        let sitting = |class: &str, n| LongSitting { class: class.into(), images: n, of: n };
        assert_eq!(long, vec![sitting("a", 20), sitting("b", 10)]);
    }

    #[test]
    fn split_specs_parse_and_round_trip() {
        assert_eq!("blocks:0.2".parse::<ValSplit>().unwrap(), ValSplit::Blocks(0.2));
        assert_eq!("0.25".parse::<ValSplit>().unwrap(), ValSplit::Tail(0.25));
        assert_eq!("video".parse::<ValSplit>().unwrap(), ValSplit::Recordings);
        for bad in ["1.5", "blocks:0", "blocks:x", "frames", "-0.1", "NaN"] {
            assert!(bad.parse::<ValSplit>().is_err(), "{bad}");
        }
        for split in
            [ValSplit::Blocks(0.2), ValSplit::Tail(0.25), ValSplit::Recordings, ValSplit::Test]
        {
            let text = serde_json::to_string(&split).unwrap();
            assert_eq!(serde_json::from_str::<ValSplit>(&text).unwrap(), split, "{text}");
        }
        assert_eq!(serde_json::to_string(&ValSplit::Blocks(0.2)).unwrap(), "\"blocks:0.2\"");
    }
}
