//! Line charts of training curves, as PNG and SVG.

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{FONT, drawing_error, register_font, write_image};

/// Default figure size, legible at 100%.
pub const SIZE: (u32, u32) = (1000, 620);

/// One curve.
pub struct Series {
    pub label: String,
    pub color: RGBColor,
    pub dashed: bool,
    /// `(x, y)` points in x order.
    pub points: Vec<(f64, f64)>,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// A logarithmic y axis: curves that differ by orders of magnitude (a diverging model's
    /// loss beside a converged one's) stay readable.
    pub log_y: bool,
    /// A logarithmic x axis (a learning-rate sweep); otherwise x counts epochs.
    pub log_x: bool,
}

/// A value of a logarithmic axis, written plainly (0.01, 0.5, 20).
fn log_tick(exponent: f64) -> String {
    let value = 10f64.powf(exponent);
    if value >= 10.0 {
        format!("{value:.0}")
    } else if value >= 0.1 {
        format!("{value:.1}")
    } else {
        format!("{value:.0e}")
    }
}

/// A short tick label with as many decimals as the axis span needs.
fn tick_label(value: f64, span: f64) -> String {
    if value.abs() >= 1e4 {
        format!("{value:.1e}")
    } else if span >= 20.0 {
        format!("{value:.0}")
    } else if span >= 2.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

impl Chart {
    /// The plotted points: y in log10 on a logarithmic axis.
    fn plotted(&self, series: &Series) -> Vec<(f64, f64)> {
        let log = |v: f64| v.max(1e-12).log10();
        series
            .points
            .iter()
            .map(|&(x, y)| {
                (if self.log_x { log(x) } else { x }, if self.log_y { log(y) } else { y })
            })
            .collect()
    }

    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let plotted: Vec<(f64, f64)> = self.series.iter().flat_map(|s| self.plotted(s)).collect();
        let points = plotted.iter();
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if x0 > x1 {
            return ((0.0, 1.0), (0.0, 1.0));
        }
        let pad_y = ((y1 - y0) * 0.08).max(1e-3);
        let x_range = if x1 - x0 < 1e-9 { (x0 - 1.0, x1 + 1.0) } else { (x0, x1) };
        (x_range, (y0 - pad_y, y1 + pad_y))
    }

    /// Writes the chart as PNG and SVG.
    pub fn draw(&self, png: &Path, svg: &Path) -> Result<()> {
        register_font();
        let (w, h) = SIZE;
        let mut rgb = vec![255u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
            self.render(&root)?;
            root.present().map_err(drawing_error)?;
        }
        write_image(png, w, h, rgb)?;
        let mut text = String::new();
        {
            let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
            self.render(&root)?;
            root.present().map_err(drawing_error)?;
        }
        crate::support::atomic_file::write(svg, text.as_bytes())
    }

    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(drawing_error)?;
        // The legend gets its own strip under the plot, so it never hides a curve.
        let rows = self.series.len().div_ceil(2) as u32;
        let (plot, legend) = root.split_vertically(SIZE.1 - 16 - 26 * rows);
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut chart = ChartBuilder::on(&plot)
            .caption(&self.title, (FONT, 24).into_font())
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(drawing_error)?;
        let whole_steps = (x1 - x0).round().clamp(1.0, 12.0) as usize + 1;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_labels(whole_steps)
            // Epochs are whole numbers: label only those.
            .x_label_formatter(&|x| {
                if self.log_x {
                    log_tick(*x)
                } else if (x - x.round()).abs() < 1e-6 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| if self.log_y { log_tick(*y) } else { tick_label(*y, y1 - y0) })
            .axis_desc_style((FONT, 20))
            .label_style((FONT, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(drawing_error)?;
        for series in &self.series {
            let style = series.color.stroke_width(3);
            let points = self.plotted(series);
            if series.dashed {
                chart
                    .draw_series(DashedLineSeries::new(points.clone(), 10, 6, style))
                    .map_err(drawing_error)?;
            } else {
                chart.draw_series(LineSeries::new(points.clone(), style)).map_err(drawing_error)?;
            }
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, series.color.filled())))
                .map_err(drawing_error)?;
        }
        let text = TextStyle::from((FONT, 18).into_font());
        for (i, series) in self.series.iter().enumerate() {
            let x = 100 + (i % 2) as i32 * 440;
            let y = 8 + (i / 2) as i32 * 26;
            let style = series.color.stroke_width(3);
            let sample: Vec<(i32, i32)> = vec![(x, y + 9), (x + 44, y + 9)];
            if series.dashed {
                for dash in 0..3 {
                    let start = x + dash * 16;
                    legend
                        .draw(&PathElement::new(vec![(start, y + 9), (start + 10, y + 9)], style))
                        .map_err(drawing_error)?;
                }
            } else {
                legend.draw(&PathElement::new(sample, style)).map_err(drawing_error)?;
            }
            legend
                .draw(&Text::new(series.label.clone(), (x + 54, y), text.clone()))
                .map_err(drawing_error)?;
        }
        Ok(())
    }
}
