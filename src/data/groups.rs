//! Validation by group for photos: photos of one sitting (the same pile of fruit, the same
//! shelf, the same light) are held out together, never split between training and validation,
//! so that validation meets new sittings as a test set does. Two photos are of one sitting
//! when (transitively) their names are neighbours of one numbered run (`IMG_0041.jpg`,
//! `IMG_0042.jpg`), or their cameras recorded them within [`SITTING_SECONDS`] of each other,
//! or they are nearly the same picture (difference hashes at most [`SAME_PICTURE_BITS`] apart).

use std::collections::HashMap;
use std::path::Path;

use super::dataset::LabeledImage;

/// Photos taken this close together (by their EXIF capture time) are one sitting.
pub const SITTING_SECONDS: i64 = 120;
/// Numbered names this close are one run.
const NAME_GAP: u64 = 2;
/// Difference hashes this close are the same picture.
pub const SAME_PICTURE_BITS: u32 = 6;

/// Disjoint sets of images (union-find).
struct Sets(Vec<usize>);

impl Sets {
    fn new(n: usize) -> Self {
        Self((0..n).collect())
    }

    fn root(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.root(a), self.root(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// A name's stem split into the text before its last run of digits and that number:
/// `IMG_0042` is (`IMG_`, 42).
fn numbered(path: &Path) -> Option<(String, u64)> {
    let stem = path.file_stem()?.to_string_lossy();
    let digits = stem.len() - stem.chars().rev().take_while(|c| c.is_ascii_digit()).count();
    let number = stem[digits..].parse().ok()?;
    Some((stem[..digits].to_string(), number))
}

/// The groups of the images of one class: a group number for each image.
pub fn groups(images: &[&LabeledImage], pictures: &[u64], taken: &[Option<i64>]) -> Vec<usize> {
    let n = images.len();
    let mut sets = Sets::new(n);
    // Numbered runs: neighbours in number order with the same prefix.
    let mut runs: Vec<(String, u64, usize)> =
        (0..n).filter_map(|i| numbered(&images[i].path).map(|(p, k)| (p, k, i))).collect();
    runs.sort();
    for pair in runs.windows(2) {
        if pair[0].0 == pair[1].0 && pair[1].1 - pair[0].1 <= NAME_GAP {
            sets.join(pair[0].2, pair[1].2);
        }
    }
    // Capture times: neighbours in time order.
    let mut times: Vec<(i64, usize)> = (0..n).filter_map(|i| taken[i].map(|t| (t, i))).collect();
    times.sort();
    for pair in times.windows(2) {
        if pair[1].0 - pair[0].0 <= SITTING_SECONDS {
            sets.join(pair[0].1, pair[1].1);
        }
    }
    // Nearly the same picture.
    for i in 0..n {
        for j in i + 1..n {
            if (pictures[i] ^ pictures[j]).count_ones() <= SAME_PICTURE_BITS {
                sets.join(i, j);
            }
        }
    }
    let mut numbers: HashMap<usize, usize> = HashMap::new();
    (0..n)
        .map(|i| {
            let root = sets.root(i);
            let next = numbers.len();
            *numbers.entry(root).or_insert(next)
        })
        .collect()
}

/// The groups of one class in the order they are placed in validation or folds: by the file
/// name of each group's first image, a fixed pseudo-random order (the same whatever the seed,
/// and wherever the data lives: its folder is not part of the key).
fn placement_order(group_of: &[usize], names: &[&Path]) -> Vec<usize> {
    let groups = group_of.iter().copied().max().map_or(0, |g| g + 1);
    let mut order: Vec<(u64, usize)> = (0..groups)
        .map(|g| {
            let first = group_of.iter().position(|&x| x == g).expect("every group has an image");
            let name = names[first].file_name().unwrap_or(names[first].as_os_str());
            let key = name
                .to_string_lossy()
                .bytes()
                .fold(0x5EED_u64, |acc, b| super::loader::mix(acc, b as u64));
            (key, g)
        })
        .collect();
    order.sort();
    order.into_iter().map(|(_, g)| g).collect()
}

/// The number of images in the largest group.
pub fn longest(group_of: &[usize]) -> usize {
    let mut sizes: HashMap<usize, usize> = HashMap::new();
    for &g in group_of {
        *sizes.entry(g).or_default() += 1;
    }
    sizes.into_values().max().unwrap_or(0)
}

/// `group_of` with every group of more than `most` images cut, in name order, into contiguous
/// blocks of at most `most` (new group numbers follow the existing ones). A sitting that long
/// cannot be held out whole without taking far more than the share asked for: a class shot in
/// one long numbered run, or a folder numbered straight through. A block of it is held out
/// instead, as a block of a video's frames is; its neighbours in name are on one side of the
/// cut, all but those at its two ends.
fn cut_long_sittings(group_of: &[usize], names: &[&Path], most: usize) -> Vec<usize> {
    let most = most.max(1);
    let groups = group_of.iter().max().map_or(0, |g| g + 1);
    let mut members = vec![Vec::new(); groups];
    for (i, &g) in group_of.iter().enumerate() {
        members[g].push(i);
    }
    let mut cut = group_of.to_vec();
    let mut next = groups;
    for mut group in members.into_iter().filter(|m| m.len() > most) {
        group.sort_by_key(|&i| (numbered(names[i]), names[i].file_name()));
        for block in group.chunks(most).skip(1) {
            for &i in block {
                cut[i] = next;
            }
            next += 1;
        }
    }
    cut
}

/// Which images of one class to hold out: whole groups, in [`placement_order`], until at least
/// `fraction` of the class is held out; a group is skipped when holding it out would leave the
/// class no training image or overshoot the share by more than it still lacks, and a group
/// longer than the share is first cut into blocks of that share (see [`cut_long_sittings`]).
pub fn held_out(group_of: &[usize], names: &[&Path], fraction: f64) -> Vec<bool> {
    let n = group_of.len();
    let wanted = super::split::held_count(n, fraction);
    let group_of = &cut_long_sittings(group_of, names, wanted);
    let mut held = vec![false; n];
    let mut count = 0;
    for g in placement_order(group_of, names) {
        if count >= wanted {
            break;
        }
        let size = group_of.iter().filter(|&&x| x == g).count();
        // Never hold out every image of the class, nor a group that would pass the share by
        // more than it still lacks.
        if count + size >= n || 2 * count + size > 2 * wanted {
            continue;
        }
        for i in 0..n {
            if group_of[i] == g {
                held[i] = true;
            }
        }
        count += size;
    }
    held
}

/// A fold (of `folds`) for each image of one class: whole groups, the largest first (ties in
/// [`placement_order`]), each to the fold with the fewest images so far, so that the folds of
/// a class differ by at most its largest group (a class of fewer groups than folds leaves some
/// folds without it); a group longer than a fold is first cut into blocks of a fold (see
/// [`cut_long_sittings`]).
pub fn folds(group_of: &[usize], names: &[&Path], folds: usize) -> Vec<usize> {
    let group_of = &cut_long_sittings(group_of, names, group_of.len().div_ceil(folds));
    let size = |g: usize| group_of.iter().filter(|&&x| x == g).count();
    let mut order = placement_order(group_of, names);
    order.sort_by_key(|&g| std::cmp::Reverse(size(g)));
    let mut sizes = vec![0usize; folds];
    let mut fold_of_group = vec![0usize; order.len()];
    for g in order {
        let fold = (0..folds).min_by_key(|&f| sizes[f]).expect("at least one fold");
        fold_of_group[g] = fold;
        sizes[fold] += size(g);
    }
    group_of.iter().map(|&g| fold_of_group[g]).collect()
}

/// A 64-bit difference hash of an image: whether brightness falls from each cell of a 9 x 8
/// grid to its right neighbour. Nearly the same picture gives nearly the same bits.
pub fn difference_hash(image: &image::RgbImage) -> u64 {
    let small = image::imageops::resize(image, 9, 8, image::imageops::FilterType::Triangle);
    let gray = |x: u32, y: u32| {
        let p = small.get_pixel(x, y).0;
        0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
    };
    let mut hash = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            hash = (hash << 1) | (gray(x, y) > gray(x + 1, y)) as u64;
        }
    }
    hash
}

/// The difference hash of the image file at `path` (decoded small), if it can be read.
pub fn picture_hash(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    crate::preprocess::decode_bytes_at(&bytes, Some(16)).ok().map(|image| difference_hash(&image))
}

/// The EXIF capture time (`DateTimeOriginal`) of the image file at `path`, in seconds, if it
/// records one.
pub fn capture_time(path: &Path) -> Option<i64> {
    use std::io::Read;
    // EXIF sits at the start of a JPEG: the first 128 KiB hold it.
    let mut head = Vec::new();
    std::fs::File::open(path).ok()?.take(128 << 10).read_to_end(&mut head).ok()?;
    let exif = exif::Reader::new().read_from_container(&mut std::io::Cursor::new(&head)).ok()?;
    let field = exif.get_field(exif::Tag::DateTimeOriginal, exif::In::PRIMARY)?;
    let exif::Value::Ascii(ref text) = field.value else { return None };
    let time = exif::DateTime::from_ascii(text.first()?).ok()?;
    let days = days_from_civil(time.year as i64, time.month as i64, time.day as i64);
    Some(days * 86_400 + time.hour as i64 * 3600 + time.minute as i64 * 60 + time.second as i64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn images(names: &[&str]) -> Vec<LabeledImage> {
        names.iter().map(|n| LabeledImage { path: PathBuf::from(n), label: 0 }).collect()
    }

    #[test]
    fn neighbours_in_name_time_or_picture_are_one_sitting() {
        let files =
            images(&["IMG_0041.jpg", "IMG_0042.jpg", "IMG_0050.jpg", "a.jpg", "b.jpg", "c.jpg"]);
        let refs: Vec<&LabeledImage> = files.iter().collect();
        // Pictures 8 or more bits apart except 3 and 4 (one bit).
        let pictures = [
            0xFF,
            0xFF00_0000,
            0xFF_0000_0000_0000,
            0xFFFF << 48,
            (0xFFFF << 48) | 1,
            0xFFFF << 32,
        ];
        let taken = [None, None, Some(1000), None, None, Some(1060)];
        let g = groups(&refs, &pictures, &taken);
        assert_eq!(g[0], g[1], "a numbered run");
        assert_eq!(g[3], g[4], "the same picture");
        assert_eq!(g[2], g[5], "one minute apart");
        assert_ne!(g[0], g[2]);
        assert_ne!(g[0], g[3]);
    }

    #[test]
    fn whole_groups_are_held_out_and_never_the_whole_class() {
        let group_of = [0, 0, 0, 1, 1, 2, 3, 3, 4, 5];
        let names: Vec<PathBuf> = (0..10).map(|i| PathBuf::from(format!("{i}.jpg"))).collect();
        let refs: Vec<&Path> = names.iter().map(PathBuf::as_path).collect();
        let held = held_out(&group_of, &refs, 0.2);
        for g in 0..6 {
            let members: Vec<bool> =
                (0..10).filter(|&i| group_of[i] == g).map(|i| held[i]).collect();
            assert!(members.iter().all(|&h| h == members[0]), "group {g} split: {held:?}");
        }
        let count = held.iter().filter(|&&h| h).count();
        assert!((2..=4).contains(&count), "{count} held");
        assert_eq!(held, held_out(&group_of, &refs, 0.2), "fixed");
    }

    #[test]
    fn the_share_held_out_is_never_passed_by_more_than_it_lacked() {
        // 100 photos: six sittings of 15 and ten single photos; a fifth is 20.
        let group_of: Vec<usize> = (0..100).map(|i| if i < 90 { i / 15 } else { i - 84 }).collect();
        let names: Vec<PathBuf> = (0..100).map(|i| PathBuf::from(format!("{i}.jpg"))).collect();
        let refs: Vec<&Path> = names.iter().map(PathBuf::as_path).collect();
        let held = held_out(&group_of, &refs, 0.2);
        let count = held.iter().filter(|&&h| h).count();
        // Two sittings of 15 (30) would pass 20 by more than the 5 it lacked after one.
        assert!((20..=25).contains(&count), "{count} held");
    }

    /// `IMG_0001.jpg` ... in a shuffled order, as a folder may list them.
    fn one_numbered_run(n: usize) -> Vec<PathBuf> {
        (0..n).map(|i| PathBuf::from(format!("IMG_{:04}.jpg", (i * 7) % n + 1))).collect()
    }

    #[test]
    fn a_sitting_longer_than_the_share_gives_a_contiguous_block_of_it() {
        let names = one_numbered_run(50);
        let refs: Vec<&Path> = names.iter().map(PathBuf::as_path).collect();
        let files: Vec<LabeledImage> =
            names.iter().map(|p| LabeledImage { path: p.clone(), label: 0 }).collect();
        let files: Vec<&LabeledImage> = files.iter().collect();
        let group_of = groups(&files, &[0; 50], &[None; 50]);
        assert_eq!(longest(&group_of), 50, "one numbered run is one sitting");
        let held = held_out(&group_of, &refs, 0.2);
        let mut numbers: Vec<usize> =
            (0..50).filter(|&i| held[i]).map(|i| numbered(refs[i]).unwrap().1 as usize).collect();
        numbers.sort();
        assert_eq!(numbers.len(), 10, "a fifth of the class, not all but one image: {numbers:?}");
        assert_eq!(numbers[9] - numbers[0], 9, "contiguous: {numbers:?}");
        let single = held_out(&[0, 0, 0], &refs[..3], 0.2);
        assert_eq!(single.iter().filter(|&&h| h).count(), 1, "never the whole class: {single:?}");
    }

    #[test]
    fn a_sitting_longer_than_a_fold_is_cut_into_contiguous_folds() {
        let names = one_numbered_run(12);
        let refs: Vec<&Path> = names.iter().map(PathBuf::as_path).collect();
        let fold_of = folds(&[0; 12], &refs, 3);
        for fold in 0..3 {
            let mut numbers: Vec<u64> = (0..12)
                .filter(|&i| fold_of[i] == fold)
                .map(|i| numbered(refs[i]).unwrap().1)
                .collect();
            numbers.sort();
            assert_eq!(numbers.len(), 4, "fold {fold}: {fold_of:?}");
            assert_eq!(numbers[3] - numbers[0], 3, "fold {fold} is contiguous: {numbers:?}");
        }
    }

    #[test]
    fn folds_keep_groups_whole_and_even() {
        let group_of = [0, 0, 0, 1, 1, 2, 3, 3, 4, 5, 6, 7];
        let names: Vec<PathBuf> = (0..12).map(|i| PathBuf::from(format!("{i}.jpg"))).collect();
        let refs: Vec<&Path> = names.iter().map(PathBuf::as_path).collect();
        let fold_of = folds(&group_of, &refs, 3);
        for g in 0..8 {
            let members: Vec<usize> =
                (0..12).filter(|&i| group_of[i] == g).map(|i| fold_of[i]).collect();
            assert!(members.iter().all(|&f| f == members[0]), "group {g} split: {fold_of:?}");
        }
        let mut sizes = [0usize; 3];
        for &f in &fold_of {
            sizes[f] += 1;
        }
        assert!(sizes.iter().all(|&n| (3..=5).contains(&n)), "uneven folds {sizes:?}");
        assert_eq!(fold_of, folds(&group_of, &refs, 3), "fixed");
    }

    #[test]
    fn the_split_and_folds_do_not_depend_on_where_the_data_lives() {
        let group_of = [0, 0, 1, 2, 2, 3, 4, 5, 6, 6, 7, 8];
        let names_in = |folder: &str| -> Vec<PathBuf> {
            (0..12).map(|i| Path::new(folder).join(format!("IMG_{}.jpg", 10 * i))).collect()
        };
        let (here, there) =
            (names_in("../data/Training/cat"), names_in("/srv/photos/Training/cat"));
        let here: Vec<&Path> = here.iter().map(PathBuf::as_path).collect();
        let there: Vec<&Path> = there.iter().map(PathBuf::as_path).collect();
        assert_eq!(held_out(&group_of, &here, 0.3), held_out(&group_of, &there, 0.3));
        assert_eq!(folds(&group_of, &here, 4), folds(&group_of, &there, 4));
    }

    #[test]
    fn a_picture_and_its_mirror_hash_apart() {
        let gradient = image::RgbImage::from_fn(16, 16, |x, _| image::Rgb([(x * 16) as u8; 3]));
        let mirrored = image::imageops::flip_horizontal(&gradient);
        assert_eq!(difference_hash(&gradient), difference_hash(&gradient.clone()));
        assert_eq!((difference_hash(&gradient), difference_hash(&mirrored)), (0, u64::MAX));
    }

    #[test]
    fn dates_count_days_from_1970() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
