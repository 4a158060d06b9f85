//! Validation for photos: whole sittings held out, or spread over the folds of a
//! cross-validation (how sittings are found and placed: [`crate::data::groups`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::dataset::LabeledImage;
use crate::data::groups;

use super::held_count;

/// The longest sitting of a class whose sittings are longer than the share of it to hold out
/// (see [`groups::held_out`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LongSitting {
    pub class: String,
    /// The images of that sitting.
    pub images: usize,
    /// The images of the class.
    pub of: usize,
}

/// Splits off whole sittings of photos, about `fraction` of each class (see
/// [`groups`]): their names, capture times and pictures (decoded small) decide. Also
/// returns the classes (of `classes`) whose longest sitting was too long to hold out whole.
pub fn hold_out_groups(
    images: &[LabeledImage],
    classes: &[String],
    fraction: f64,
) -> (Vec<LabeledImage>, Vec<LabeledImage>, Vec<LongSitting>) {
    let mut held = vec![false; images.len()];
    let mut long = Vec::new();
    for_each_class_sittings(images, classes.len(), |members, group_of, names| {
        for (&i, held_out) in members.iter().zip(groups::held_out(group_of, names, fraction)) {
            held[i] = held_out;
        }
        let longest = groups::longest(group_of);
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
        for (&i, fold) in members.iter().zip(groups::folds(group_of, names, folds)) {
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
        images.par_iter().map(|i| groups::picture_hash(&i.path).unwrap_or(0)).collect();
    let taken: Vec<Option<i64>> =
        images.par_iter().map(|i| groups::capture_time(&i.path)).collect();
    for label in 0..num_classes {
        let members: Vec<usize> = (0..images.len()).filter(|&i| images[i].label == label).collect();
        let class: Vec<&LabeledImage> = members.iter().map(|&i| &images[i]).collect();
        let class_pictures: Vec<u64> = members.iter().map(|&i| pictures[i]).collect();
        let class_taken: Vec<Option<i64>> = members.iter().map(|&i| taken[i]).collect();
        let group_of = groups::groups(&class, &class_pictures, &class_taken);
        let names: Vec<&Path> = class.iter().map(|i| i.path.as_path()).collect();
        each(&members, &group_of, &names);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
        assert_eq!((train.len(), held(0), held(1)), (24, 4, 2), "{val:?}");
        // Unreadable files all look alike (no picture): class 1 is one sitting by its pictures.
        let sitting = |class: &str, n| LongSitting { class: class.into(), images: n, of: n };
        assert_eq!(long, vec![sitting("a", 20), sitting("b", 10)]);
    }
}
