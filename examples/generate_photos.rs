//! Generates a folder of photo-like JPEGs for measuring memory and speed on large datasets:
//! `Training/` and `Test/`, one folder per class, images of varied sizes (portrait and
//! landscape, 256 to 480 px a side), each a lit background with a class-coloured shape at a
//! random place and scale, and sensor noise. Reproducible from the seed.
//!
//!     cargo run --release --example generate_photos -- OUT TRAIN_IMAGES [TEST_IMAGES] [CLASSES]

use std::path::Path;

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

const SEED: u64 = 2026;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| -> Result<usize> {
        args.get(i)
            .map_or(Ok(default), |a| a.parse().with_context(|| format!("`{a}` is not a count")))
    };
    let Some(out) = args.first() else {
        bail!("usage: generate_photos OUT TRAIN_IMAGES [TEST_IMAGES] [CLASSES]");
    };
    let (train, test, classes) = (number(1, 10_000)?, number(2, 500)?, number(3, 20)?);
    for (split, count, stream) in [("Training", train, 0), ("Test", test, 1)] {
        for class in 0..classes {
            std::fs::create_dir_all(Path::new(out).join(split).join(format!("class{class:02}")))?;
        }
        (0..count).into_par_iter().try_for_each(|i| -> Result<()> {
            let class = i % classes;
            let path = Path::new(out)
                .join(split)
                .join(format!("class{class:02}"))
                .join(format!("photo{i:06}.jpg"));
            let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ (stream << 40) ^ i as u64);
            let (width, height, pixels) = photo(&mut rng, class, classes);
            let encoder = jpeg_encoder::Encoder::new_file(&path, 85)?;
            encoder.encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)?;
            Ok(())
        })?;
        println!("{count} images in {out}/{split}");
    }
    Ok(())
}

/// One photo of `class`: width, height and RGB pixels.
fn photo(rng: &mut ChaCha8Rng, class: usize, classes: usize) -> (u16, u16, Vec<u8>) {
    let (long, short) = (rng.random_range(320..=480u32), rng.random_range(256..=360u32));
    let (width, height) = if rng.random_bool(0.5) { (long, short) } else { (short, long) };
    let hue = class as f32 / classes as f32;
    let colour = [hue, (hue + 0.33) % 1.0, (hue + 0.67) % 1.0].map(|c| 60.0 + 180.0 * c);
    let background: [f32; 3] = std::array::from_fn(|_| rng.random_range(90.0..200.0));
    let (cx, cy) =
        (rng.random_range(0.3..0.7) * width as f32, rng.random_range(0.3..0.7) * height as f32);
    let radius = rng.random_range(0.15..0.35) * width.min(height) as f32;
    let square = class % 2 == 1;
    let mut noise_state: u32 = rng.random();
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        let light = 0.8 + 0.4 * y as f32 / height as f32;
        for x in 0..width {
            let (dx, dy) = ((x as f32 - cx).abs(), (y as f32 - cy).abs());
            let inside =
                if square { dx.max(dy) < radius } else { dx * dx + dy * dy < radius * radius };
            let base = if inside { colour } else { background };
            // xorshift: per-pixel noise at a fraction of a seeded generator's cost
            noise_state ^= noise_state << 13;
            noise_state ^= noise_state >> 17;
            noise_state ^= noise_state << 5;
            let noise = (noise_state >> 28) as f32 - 8.0;
            pixels.extend(base.map(|c| (c * light + noise).clamp(0.0, 255.0) as u8));
        }
    }
    (width as u16, height as u16, pixels)
}
