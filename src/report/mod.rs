//! Reports a person wants to look at: curves, confusion matrices, image grids, CSV tables and
//! the self-contained HTML report.

pub mod build;
pub mod charts;
pub mod confusion;
pub mod evaluation;
pub mod findings;
pub mod grid;
pub mod html;
pub mod runs;
pub mod summary;
pub mod tables;

use std::sync::Once;

use anyhow::Result;
use plotters::style::FontStyle;

/// The font family every figure uses (DejaVu Sans, embedded: no system fonts needed).
pub const FONT: &str = "sans-serif";

/// Registers the embedded font with plotters, once per process.
pub fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The embedded font is a valid TrueType file; failure would be a build defect.
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("embedded DejaVu Sans font is invalid"));
        plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
            .unwrap_or_else(|_| panic!("embedded DejaVu Sans Bold font is invalid"));
    });
}

/// Turns a plotters drawing error into an anyhow error.
pub fn drawing_error<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow::anyhow!("drawing failed: {error:?}")
}

/// Encodes an RGB buffer as PNG, or as JPEG (quality 85: photographs, a fraction of the
/// size) when the file name ends in `.jpg`, atomically.
pub fn write_image(path: &std::path::Path, width: u32, height: u32, rgb: Vec<u8>) -> Result<()> {
    let image = image::RgbImage::from_raw(width, height, rgb).expect("buffer matches its size");
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "jpg") {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85);
        image.write_with_encoder(encoder)?;
    } else {
        image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    }
    crate::support::atomic_file::write(path, &bytes)
}
