//! Random image augmentation with the semantics of Keras' `ImageDataGenerator`
//! (`random_transform` + `apply_affine_transform`, bilinear, `fill_mode="nearest"`), applied on
//! the fly to training images, straight into normalised network input.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::preprocess::Normalization;

/// Augmentation ranges, named and measured as Keras names and measures them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Rotation range in degrees.
    pub rotation: f32,
    /// Width shift as a fraction of the width.
    pub width_shift: f32,
    /// Height shift as a fraction of the height.
    pub height_shift: f32,
    /// Shear angle range in degrees (Keras >= 2.2 measures `shear_range` in degrees).
    pub shear: f32,
    /// Zoom range: each axis scaled by a factor in `[1 - zoom, 1 + zoom]`.
    pub zoom: f32,
    /// Flip left-right with probability 1/2.
    pub horizontal_flip: bool,
    /// Brightness factor range, e.g. `(0.8, 1.2)`.
    pub brightness: Option<(f32, f32)>,
    /// Colour jitter: each channel scaled by its own factor in `[1 - color, 1 + color]`.
    pub color: f32,
    /// Random resized crops (torchvision's `RandomResizedCrop`): a crop of this range of the
    /// image's area, of aspect ratio 3/4 to 4/3, anywhere in it, stretched to the whole
    /// image (then zoom and shift are not drawn).
    pub crop: Option<(f32, f32)>,
}

impl Augment {
    /// The notebook's generator: `shear_range=0.2, zoom_range=0.2, horizontal_flip=True`.
    pub fn notebook() -> Self {
        Self { shear: 0.2, zoom: 0.2, horizontal_flip: true, ..Self::default() }
    }

    /// For photos: random resized crops of a quarter of the area or more, flips, brightness
    /// and colour jitter (what ImageNet training uses, milder crops for small datasets).
    pub fn photo() -> Self {
        Self {
            crop: Some((0.25, 1.0)),
            horizontal_flip: true,
            brightness: Some((0.8, 1.2)),
            color: 0.1,
            ..Self::default()
        }
    }

    pub fn is_identity(&self) -> bool {
        *self == Self::default()
    }

    /// What is out of range, in words (empty when the ranges make sense).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut range = |name: &str, value: f32, low: f32, high: f32, open: bool| {
            let ok = value.is_finite()
                && value >= low
                && if open { value < high } else { value <= high };
            if !ok {
                let bracket = if open { ")" } else { "]" };
                problems.push(format!("{name} must be in [{low}, {high}{bracket}, got {value}"));
            }
        };
        range("rotation", self.rotation, 0.0, 180.0, false);
        range("shear", self.shear, 0.0, 90.0, true);
        range("zoom", self.zoom, 0.0, 1.0, true);
        range("color", self.color, 0.0, 1.0, true);
        range("width_shift", self.width_shift, 0.0, 1.0, false);
        range("height_shift", self.height_shift, 0.0, 1.0, false);
        let mut ordered = Vec::new();
        if let Some((low, high)) = self.crop {
            range("crop (low)", low, 0.01, 1.0, false);
            range("crop (high)", high, 0.01, 1.0, false);
            ordered.push(("crop", low, high));
        }
        if let Some((low, high)) = self.brightness {
            range("brightness (low)", low, 0.0, 10.0, false);
            range("brightness (high)", high, 0.0, 10.0, false);
            ordered.push(("brightness", low, high));
        }
        for (name, low, high) in ordered {
            if low > high {
                problems.push(format!("{name} range {low}:{high} has low above high"));
            }
        }
        problems
    }

    /// Draws one random transform, in Keras' order of draws.
    pub fn sample(&self, rng: &mut impl Rng) -> Transform {
        let mut uniform =
            |range: f32| if range > 0.0 { rng.random_range(-range..=range) } else { 0.0 };
        let rotation = uniform(self.rotation);
        let shift_rows = uniform(self.height_shift);
        let shift_cols = uniform(self.width_shift);
        let shear = uniform(self.shear);
        let (zoom_rows, zoom_cols) = if self.zoom > 0.0 {
            let range = (1.0 - self.zoom)..=(1.0 + self.zoom);
            (rng.random_range(range.clone()), rng.random_range(range))
        } else {
            (1.0, 1.0)
        };
        let flip = self.horizontal_flip && rng.random_bool(0.5);
        let brightness = self.brightness.map_or(1.0, |(low, high)| rng.random_range(low..=high));
        // Drawn last, and only when asked for, so that the other draws stay as they were.
        let color = if self.color > 0.0 {
            [(); 3].map(|_| rng.random_range((1.0 - self.color)..=(1.0 + self.color)))
        } else {
            [1.0; 3]
        };
        // Drawn after the others, for the same reason.
        let (zoom_rows, zoom_cols, shift_rows, shift_cols) = match self.crop {
            Some(scale) => random_resized_crop(rng, scale),
            None => (zoom_rows, zoom_cols, shift_rows, shift_cols),
        };
        Transform {
            rotation,
            shift_rows,
            shift_cols,
            shear,
            zoom_rows,
            zoom_cols,
            flip,
            brightness,
            color,
        }
    }
}

/// A random resized crop as the affine's zoom (the crop's height and width as fractions of the
/// image's) and shift (its centre's offset), as torchvision draws it: an area fraction in
/// `scale`, a log-uniform aspect ratio in 3/4..4/3, a place anywhere inside; after ten misses
/// the whole image.
fn random_resized_crop(rng: &mut impl Rng, (low, high): (f32, f32)) -> (f32, f32, f32, f32) {
    let ratio = (0.75f32.ln(), (4.0f32 / 3.0).ln());
    for _ in 0..10 {
        let area = rng.random_range(low..=high);
        let aspect = rng.random_range(ratio.0..=ratio.1).exp();
        let (width, height) = ((area * aspect).sqrt(), (area / aspect).sqrt());
        if width <= 1.0 && height <= 1.0 {
            let mut place = |side: f32| {
                let room = (1.0 - side) / 2.0;
                if room > 0.0 { rng.random_range(-room..=room) } else { 0.0 }
            };
            let (rows, cols) = (place(height), place(width));
            return (height, width, rows, cols);
        }
    }
    (1.0, 1.0, 0.0, 0.0)
}

impl std::str::FromStr for Augment {
    type Err = String;

    /// `none`, `notebook`, or a comma list such as
    /// `shear=0.2,zoom=0.2,flip,rotation=10,shift=0.1,brightness=0.8:1.2`.
    fn from_str(spec: &str) -> Result<Self, String> {
        match spec {
            "none" => return Ok(Self::default()),
            "notebook" => return Ok(Self::notebook()),
            "photo" => return Ok(Self::photo()),
            _ => {}
        }
        let mut augment = Self::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item.split_once('=').unwrap_or((item, ""));
            let number = || value.parse::<f32>().map_err(|_| format!("`{item}` needs a number"));
            match key {
                "flip" => augment.horizontal_flip = true,
                "rotation" => augment.rotation = number()?,
                "shear" => augment.shear = number()?,
                "zoom" => augment.zoom = number()?,
                "shift" => (augment.width_shift, augment.height_shift) = (number()?, number()?),
                "width_shift" => augment.width_shift = number()?,
                "height_shift" => augment.height_shift = number()?,
                "color" => augment.color = number()?,
                "crop" => {
                    let (low, high) = value
                        .split_once(':')
                        .and_then(|(l, h)| Some((l.parse().ok()?, h.parse().ok()?)))
                        .ok_or_else(|| format!("`{item}`: use crop=LOW:HIGH (area fractions)"))?;
                    augment.crop = Some((low, high));
                }
                "brightness" => {
                    let (low, high) = value
                        .split_once(':')
                        .and_then(|(l, h)| Some((l.parse().ok()?, h.parse().ok()?)))
                        .ok_or_else(|| format!("`{item}`: use brightness=LOW:HIGH"))?;
                    augment.brightness = Some((low, high));
                }
                _ => {
                    return Err(format!(
                        "unknown augmentation `{key}`: use none, notebook, photo, or a list of flip, rotation=, shear=, zoom=, shift=, width_shift=, height_shift=, crop=LOW:HIGH, brightness=LOW:HIGH, color="
                    ));
                }
            }
        }
        Ok(augment)
    }
}

impl std::fmt::Display for Augment {
    /// The text form [`FromStr`](std::str::FromStr) reads: `none`, `notebook`, or the list.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_identity() {
            return write!(f, "none");
        }
        if *self == Self::notebook() {
            return write!(f, "notebook");
        }
        if *self == Self::photo() {
            return write!(f, "photo");
        }
        let mut items = Vec::new();
        if self.horizontal_flip {
            items.push("flip".to_string());
        }
        for (name, value) in [
            ("rotation", self.rotation),
            ("shear", self.shear),
            ("zoom", self.zoom),
            ("width_shift", self.width_shift),
            ("height_shift", self.height_shift),
            ("color", self.color),
        ] {
            if value != 0.0 {
                items.push(format!("{name}={value}"));
            }
        }
        if let Some((low, high)) = self.crop {
            items.push(format!("crop={low}:{high}"));
        }
        if let Some((low, high)) = self.brightness {
            items.push(format!("brightness={low}:{high}"));
        }
        write!(f, "{}", items.join(","))
    }
}

impl crate::support::settings::SettingText for Augment {
    fn setting_text(&self) -> String {
        self.to_string()
    }
}

/// One drawn transform.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transform {
    pub rotation: f32,
    pub shift_rows: f32,
    pub shift_cols: f32,
    pub shear: f32,
    pub zoom_rows: f32,
    pub zoom_cols: f32,
    pub flip: bool,
    pub brightness: f32,
    /// Per-channel factors (R, G, B) of the colour jitter.
    pub color: [f32; 3],
}

type Matrix = [[f32; 3]; 3];

fn multiply(a: &Matrix, b: &Matrix) -> Matrix {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, value) in row.iter_mut().enumerate() {
            *value = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

impl Transform {
    /// Keras' matrix from output (row, col) to input (row, col): rotation . shift . shear . zoom,
    /// centred with Keras' own offset of `size / 2 + 0.5`.
    fn matrix(&self, size: usize) -> Matrix {
        let (sin, cos) = self.rotation.to_radians().sin_cos();
        let rotation = [[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]];
        let shift = [
            [1.0, 0.0, self.shift_rows * size as f32],
            [0.0, 1.0, self.shift_cols * size as f32],
            [0.0, 0.0, 1.0],
        ];
        let (shear_sin, shear_cos) = self.shear.to_radians().sin_cos();
        let shear = [[1.0, -shear_sin, 0.0], [0.0, shear_cos, 0.0], [0.0, 0.0, 1.0]];
        let zoom = [[self.zoom_rows, 0.0, 0.0], [0.0, self.zoom_cols, 0.0], [0.0, 0.0, 1.0]];
        let centre = size as f32 / 2.0 + 0.5;
        let offset = [[1.0, 0.0, centre], [0.0, 1.0, centre], [0.0, 0.0, 1.0]];
        let reset = [[1.0, 0.0, -centre], [0.0, 1.0, -centre], [0.0, 0.0, 1.0]];
        let m = multiply(&multiply(&multiply(&rotation, &shift), &shear), &zoom);
        multiply(&multiply(&offset, &m), &reset)
    }

    /// Writes the transformed image (interleaved RGB `size*size*3` bytes in) as normalised
    /// network input (`size*size*3` floats out, channels last).
    pub fn apply(&self, rgb: &[u8], size: usize, normalization: Normalization, out: &mut [f32]) {
        let m = self.matrix(size);
        let max = (size - 1) as f32;
        let pixel = |r: usize, c: usize, ch: usize| rgb[(r * size + c) * 3 + ch] as f32;
        for row in 0..size {
            for col in 0..size {
                let (r, c) = (row as f32, col as f32);
                // fill_mode="nearest": clamp the sampling point to the image.
                let src_r = (m[0][0] * r + m[0][1] * c + m[0][2]).clamp(0.0, max);
                let src_c = (m[1][0] * r + m[1][1] * c + m[1][2]).clamp(0.0, max);
                let (r0, c0) = (src_r.floor() as usize, src_c.floor() as usize);
                let (r1, c1) = ((r0 + 1).min(size - 1), (c0 + 1).min(size - 1));
                let (fr, fc) = (src_r - r0 as f32, src_c - c0 as f32);
                let mut value = [0.0f32; 3];
                for (ch, v) in value.iter_mut().enumerate() {
                    let top = pixel(r0, c0, ch) * (1.0 - fc) + pixel(r0, c1, ch) * fc;
                    let bottom = pixel(r1, c0, ch) * (1.0 - fc) + pixel(r1, c1, ch) * fc;
                    let scale = self.brightness * self.color[ch];
                    *v = ((top * (1.0 - fr) + bottom * fr) * scale).min(255.0);
                }
                let out_col = if self.flip { size - 1 - col } else { col };
                let at = (row * size + out_col) * 3;
                out[at..at + 3].copy_from_slice(&normalization.channels(value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn gradient_image(size: usize) -> Vec<u8> {
        (0..size * size).flat_map(|i| [(i % size * 10) as u8, (i / size * 10) as u8, 7]).collect()
    }

    #[test]
    fn identity_transform_reproduces_the_plain_normalisation() {
        let size = 8;
        let rgb = gradient_image(size);
        let mut expected = vec![0.0; rgb.len()];
        Normalization::Caffe.write_input(&rgb, &mut expected);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut out = vec![0.0; rgb.len()];
        Augment::default().sample(&mut rng).apply(&rgb, size, Normalization::Caffe, &mut out);
        for (a, b) in out.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn flip_mirrors_columns() {
        let size = 8;
        let rgb = gradient_image(size);
        let flip = Transform {
            rotation: 0.0,
            shift_rows: 0.0,
            shift_cols: 0.0,
            shear: 0.0,
            zoom_rows: 1.0,
            zoom_cols: 1.0,
            flip: true,
            brightness: 1.0,
            color: [1.0; 3],
        };
        let mut out = vec![0.0; rgb.len()];
        flip.apply(&rgb, size, Normalization::Rescale, &mut out);
        // Red grows with the column; flipped, column 0 holds the last column's red.
        assert!((out[0] - 70.0 / 255.0).abs() < 1e-5);
        assert!((out[3 * (size - 1)] - 0.0).abs() < 1e-5);
    }

    #[test]
    fn zoom_stays_within_range_and_draws_are_seeded() {
        let augment = Augment::notebook();
        let draw = |seed| augment.sample(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(draw(3), draw(3));
        for seed in 0..50 {
            let t = draw(seed);
            assert!((0.8..=1.2).contains(&t.zoom_rows) && (0.8..=1.2).contains(&t.zoom_cols));
            assert!(t.shear.abs() <= 0.2);
        }
    }

    #[test]
    fn random_resized_crops_stay_inside_the_image() {
        let augment = Augment { crop: Some((0.25, 1.0)), ..Augment::default() };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..500 {
            let t = augment.sample(&mut rng);
            let area = t.zoom_rows * t.zoom_cols;
            assert!((0.2499..=1.0001).contains(&area), "area {area}");
            assert!(t.shift_rows.abs() <= (1.0 - t.zoom_rows) / 2.0 + 1e-6);
            assert!(t.shift_cols.abs() <= (1.0 - t.zoom_cols) / 2.0 + 1e-6);
            let aspect = t.zoom_cols / t.zoom_rows;
            assert!((0.7499..=1.3334).contains(&aspect) || area > 0.999, "aspect {aspect}");
        }
    }

    #[test]
    fn parses_specs() {
        assert_eq!("notebook".parse::<Augment>().unwrap(), Augment::notebook());
        let a: Augment = "rotation=10,shift=0.1,brightness=0.8:1.2,flip".parse().unwrap();
        assert_eq!(a.rotation, 10.0);
        assert_eq!((a.width_shift, a.height_shift), (0.1, 0.1));
        assert_eq!(a.brightness, Some((0.8, 1.2)));
        assert!(a.horizontal_flip);
        assert!("wobble=3".parse::<Augment>().is_err());
        for spec in
            ["none", "notebook", "flip,rotation=10,zoom=0.3,brightness=0.8:1.2", "color=0.1"]
        {
            let augment: Augment = spec.parse().unwrap();
            assert_eq!(augment.to_string().parse::<Augment>().unwrap(), augment, "{spec}");
        }
    }
}
