//! Grids of labelled images: dataset samples, and the worst misclassified images.

use std::path::{Path, PathBuf};

use anyhow::Result;
use image::RgbImage;
use image::imageops::FilterType;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{FONT, drawing_error, register_font, write_image};
use crate::data::ImageFolder;
use crate::eval::Mistake;
use crate::preprocess;

/// Pixels of a thumbnail, and room around it for captions.
const THUMB: u32 = 120;
const TILE_W: u32 = 160;
const CAPTION_LINES: u32 = 3;
const LINE_H: u32 = 16;
/// Characters of a caption line that fit under a tile.
const CAPTION_CHARS: usize = 24;

/// One image and the lines written under it.
pub struct Tile {
    pub image: RgbImage,
    pub caption: Vec<String>,
}

fn fit(text: &str) -> String {
    if text.chars().count() <= CAPTION_CHARS {
        return text.to_string();
    }
    let mut short: String = text.chars().take(CAPTION_CHARS - 1).collect();
    short.push('\u{2026}');
    short
}

/// Draws tiles in rows of `columns` under a title.
pub fn draw(path: &Path, title: &str, tiles: &[Tile], columns: usize) -> Result<()> {
    register_font();
    let columns = columns.clamp(1, tiles.len().max(1)) as u32;
    let rows = (tiles.len() as u32).div_ceil(columns).max(1);
    let tile_h = THUMB + 8 + CAPTION_LINES * LINE_H + 10;
    let (w, h) = ((columns * TILE_W).max(400), 50 + rows * tile_h);
    let mut canvas = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    for (i, tile) in tiles.iter().enumerate() {
        let (col, row) = (i as u32 % columns, i as u32 / columns);
        let thumb = image::imageops::resize(&tile.image, THUMB, THUMB, FilterType::Triangle);
        let x = col * TILE_W + (TILE_W - THUMB) / 2;
        image::imageops::overlay(&mut canvas, &thumb, x as i64, (50 + row * tile_h) as i64);
    }
    let mut rgb = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        let title_style =
            TextStyle::from((FONT, 20).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(title.to_string(), ((w / 2) as i32, 12), title_style))
            .map_err(drawing_error)?;
        let style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (i, tile) in tiles.iter().enumerate() {
            let (col, row) = (i as u32 % columns, i as u32 / columns);
            let centre = (col * TILE_W + TILE_W / 2) as i32;
            let mut y = (50 + row * tile_h + THUMB + 6) as i32;
            for line in tile.caption.iter().take(CAPTION_LINES as usize) {
                root.draw(&Text::new(fit(line), (centre, y), style.clone()))
                    .map_err(drawing_error)?;
                y += LINE_H as i32;
            }
        }
        root.present().map_err(drawing_error)?;
    }
    write_image(path, w, h, rgb)
}

/// The most confident mistakes (at most `MAX_MISTAKES`), with true and predicted classes and
/// the file each came from; `paths` are where to read the images.
pub fn draw_mistakes(path: &Path, mistakes: &[Mistake], paths: &[PathBuf]) -> Result<()> {
    const MAX_MISTAKES: usize = 24;
    let tiles = mistakes
        .iter()
        .zip(paths)
        .take(MAX_MISTAKES)
        .map(|(mistake, path)| {
            Ok(Tile {
                image: preprocess::decode(path)?,
                caption: vec![
                    format!("true: {}", mistake.true_class),
                    format!("pred: {} {:.0}%", mistake.predicted_class, 100.0 * mistake.confidence),
                    short_path(&mistake.path),
                ],
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let title = if tiles.is_empty() {
        "No misclassified images".to_string()
    } else {
        format!("Most confident mistakes ({} of {})", tiles.len(), mistakes.len())
    };
    draw(path, &title, &tiles, 8)
}

/// A file path shortened from the left to fit under a tile (the file name matters most).
fn short_path(path: &Path) -> String {
    let text = path.display().to_string();
    let count = text.chars().count();
    if count <= CAPTION_CHARS {
        return text;
    }
    let tail: String = text.chars().skip(count - (CAPTION_CHARS - 1)).collect();
    format!("\u{2026}{tail}")
}

/// One image per class (the middle frame), captioned with the class and its image count.
pub fn draw_samples(path: &Path, folder: &ImageFolder) -> Result<()> {
    let counts = folder.count_per_class();
    let mut tiles = Vec::new();
    for (label, class) in folder.classes.iter().enumerate() {
        let images: Vec<_> = folder.images.iter().filter(|i| i.label == label).collect();
        let Some(sample) = images.get(images.len() / 2) else { continue };
        tiles.push(Tile {
            image: preprocess::decode(&sample.path)?,
            caption: vec![class.clone(), format!("{} images", counts[label])],
        });
    }
    let title = format!("{}: one image per class", folder.root.display());
    draw(path, &title, &tiles, 10)
}

/// A class activation map as a person reads it: the photo beside the map over it, the
/// predicted class and its probability, and the colour scale of the map.
pub fn cam_panel(photo: &RgbImage, overlay: &RgbImage, caption: &[String]) -> Result<RgbImage> {
    use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
    register_font();
    let side = overlay.width();
    let photo = image::imageops::resize(photo, side, side, FilterType::Triangle);
    let (gap, margin) = (8, 12);
    let text_h = caption.len() as u32 * 20 + 6;
    let (w, h) = (2 * side + gap + 2 * margin, side + text_h + 46 + 2 * margin);
    let mut canvas = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    image::imageops::overlay(&mut canvas, &photo, margin as i64, margin as i64);
    image::imageops::overlay(&mut canvas, overlay, (margin + side + gap) as i64, margin as i64);
    // The colour scale: the map's colours from no evidence to the strongest.
    let (bar_y, bar_w) = (margin + side + text_h + 4, 2 * side + gap);
    for x in 0..bar_w {
        let colour = ViridisRGB.get_color(x as f64 / (bar_w - 1).max(1) as f64);
        for y in bar_y..bar_y + 12 {
            canvas.put_pixel(margin + x, y, image::Rgb([colour.0, colour.1, colour.2]));
        }
    }
    let mut rgb = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        let style = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Left, VPos::Top));
        for (i, line) in caption.iter().enumerate() {
            let y = (margin + side + 6 + 20 * i as u32) as i32;
            root.draw(&Text::new(line.clone(), (margin as i32, y), style.clone()))
                .map_err(drawing_error)?;
        }
        let small = TextStyle::from((FONT, 12).into_font());
        let y = (bar_y + 16) as i32;
        root.draw(&Text::new(
            "no evidence",
            (margin as i32, y),
            small.clone().pos(Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(drawing_error)?;
        let right = (margin + bar_w) as i32;
        let label = "strongest evidence for the predicted class";
        root.draw(&Text::new(label, (right, y), small.pos(Pos::new(HPos::Right, VPos::Top))))
            .map_err(drawing_error)?;
        root.present().map_err(drawing_error)?;
    }
    Ok(RgbImage::from_raw(w, h, rgb).expect("buffer matches its size"))
}
