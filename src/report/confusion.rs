//! Confusion-matrix heat maps, legible with a hundred classes: classes in name order (so
//! varieties of a fruit sit together), rows normalised to the true class, and a square-root
//! colour scale so that rare confusions stand out against the diagonal.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{FONT, drawing_error, register_font, write_image};

/// Colour of a row-normalised fraction.
fn colour(fraction: f64) -> RGBColor {
    if fraction <= 0.0 {
        return RGBColor(248, 248, 248);
    }
    ViridisRGB.get_color(fraction.sqrt().clamp(0.0, 1.0))
}

/// Draws `confusion[true][predicted]` counts with class names on both axes.
pub fn draw(path: &Path, confusion: &[Vec<usize>], classes: &[String], title: &str) -> Result<()> {
    register_font();
    let n = classes.len().max(1);
    let cell = (900 / n).clamp(9, 60) as i32;
    let label_font = (cell as f64 * 0.9).clamp(10.0, 16.0);
    let longest = classes.iter().map(|c| c.chars().count()).max().unwrap_or(4) as f64;
    let label_space = (longest * label_font * 0.6) as i32 + 16;
    let (left, top) = (label_space + 30, label_space + 60);
    let matrix = cell * n as i32;
    let bar_space = 130;
    let (w, h) = ((left + matrix + bar_space) as u32, (top + matrix + 50) as u32);
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing_error)?;
        let title_style =
            TextStyle::from((FONT, 22).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(title.to_string(), ((w / 2) as i32, 12), title_style))
            .map_err(drawing_error)?;
        let axis = TextStyle::from((FONT, 16).into_font());
        root.draw(&Text::new("predicted class \u{2192}", (left, 40), axis.clone()))
            .map_err(drawing_error)?;
        root.draw(&Text::new(
            "true class \u{2192}",
            (8, top + matrix / 2),
            axis.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(drawing_error)?;
        let label = TextStyle::from((FONT, label_font).into_font());
        for (i, class) in classes.iter().enumerate() {
            let centre = i as i32 * cell + cell / 2;
            let row_style = label.clone().pos(Pos::new(HPos::Right, VPos::Center));
            root.draw(&Text::new(class.clone(), (left - 6, top + centre), row_style))
                .map_err(drawing_error)?;
            let column_style = label
                .clone()
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(class.clone(), (left + centre, top - 6), column_style))
                .map_err(drawing_error)?;
        }
        for (t, row) in confusion.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let fraction = count as f64 / total.max(1) as f64;
                let (x, y) = (left + p as i32 * cell, top + t as i32 * cell);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell - 1, y + cell - 1)],
                    colour(fraction).filled(),
                ))
                .map_err(drawing_error)?;
                if cell >= 28 && count > 0 {
                    let text_colour = if fraction.sqrt() > 0.6 { BLACK } else { WHITE };
                    let style = TextStyle::from((FONT, (cell / 3).max(10)).into_font())
                        .color(&text_colour)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    root.draw(&Text::new(count.to_string(), (x + cell / 2, y + cell / 2), style))
                        .map_err(drawing_error)?;
                }
            }
        }
        draw_colour_bar(&root, left + matrix + 30, top, matrix.max(200))?;
    }
    write_image(path, w, h, rgb)
}

fn draw_colour_bar<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    x: i32,
    top: i32,
    height: i32,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let width = 22;
    for i in 0..height {
        let value = 1.0 - i as f64 / (height - 1).max(1) as f64;
        let fraction = value * value; // position is sqrt(fraction)
        root.draw(&Rectangle::new(
            [(x, top + i), (x + width, top + i + 1)],
            colour(fraction.max(1e-9)).filled(),
        ))
        .map_err(drawing_error)?;
    }
    let style = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for fraction in [1.0, 0.5, 0.25, 0.1, 0.01, 0.0] {
        let y = top + ((1.0 - f64::sqrt(fraction)) * (height - 1) as f64) as i32;
        let text = format!("{}%", fraction * 100.0);
        root.draw(&Text::new(text, (x + width + 6, y), style.clone())).map_err(drawing_error)?;
    }
    let caption = TextStyle::from((FONT, 14).into_font());
    root.draw(&Text::new("of true class", (x - 10, top + height + 12), caption))
        .map_err(drawing_error)?;
    Ok(())
}
