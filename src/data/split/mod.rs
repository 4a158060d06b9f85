//! Choosing the validation images (`--val-split`): the setting, reading a dataset's splits,
//! and the checks that a split can be trained on. How images are held out: [`frames`] for
//! video frames, [`sittings`] for photos.

mod frames;
mod sittings;

pub use frames::{hold_out_blocks, hold_out_last, hold_out_recordings};
pub use sittings::{LongSitting, hold_out_groups, sitting_folds};

use std::path::{Path, PathBuf};

use anyhow::{Result, bail, ensure};
use serde::{Deserialize, Serialize};

use super::dataset::{ImageFolder, LabeledImage, ensure_same_classes, training_folder};

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
