//! The audit as a page a person fixes the folders from: each suspect, duplicate group and
//! outlier with its thumbnail, its file and what the audit suggests.

use std::fmt::Write;
use std::path::Path;

use anyhow::Result;
use base64::Engine;

use super::{Audit, Split};
use crate::support::escape_html as escape;

/// Pixels of a thumbnail's side.
const THUMB: u32 = 72;
/// Images shown of a duplicate group.
const GROUP_SHOWN: usize = 8;

/// A small inline JPEG of the image at `path` (under `root` when relative), or nothing.
fn thumbnail(root: &Path, path: &Path) -> String {
    let file = if path.is_absolute() { path.to_path_buf() } else { root.join(path) };
    let Ok(image) = crate::preprocess::decode(&file) else { return String::new() };
    let small = crate::preprocess::resize_square(image, THUMB);
    let mut bytes = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80);
    if small.write_with_encoder(encoder).is_err() {
        return String::new();
    }
    format!(
        "<img alt=\"\" width=\"{THUMB}\" height=\"{THUMB}\" src=\"data:image/jpeg;base64,{}\">",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn split(split: Split) -> &'static str {
    match split {
        Split::Training => "training",
        Split::Validation => "validation",
        Split::Test => "test",
    }
}

/// The page of `audit` as HTML.
pub fn write_page(audit: &Audit, path: &Path) -> Result<()> {
    let root = &audit.dataset;
    let mut html = String::new();
    write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>fruitlab audit: {}</title><style>body{{font-family:system-ui,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d2330}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #e4e7ec;padding:4px 8px;text-align:left;vertical-align:middle}}code{{font-size:12px;word-break:break-all}}.note{{color:#667085}}.leak{{color:#9a3412;font-weight:600}}</style></head><body>",
        escape(&root.display().to_string())
    )?;
    write!(
        html,
        "<h1>Audit of {}</h1><p class=\"note\">{} images; out-of-sample probabilities from a linear top cross-fitted over {} folds of {} features.</p>",
        escape(&root.display().to_string()),
        audit.images,
        audit.folds,
        escape(&audit.features)
    )?;
    write!(
        html,
        "<h2>Possible label errors ({} found, {} of them confident; the {} most likely first)</h2><p class=\"note\">A model that never saw these images thinks they belong to another class; <em>confident</em> ones look as much like that class as its own images do. Look at each, and move it to the folder it belongs in.</p><table><tr><th></th><th>file</th><th>its folder</th><th>suggested</th><th>probabilities</th></tr>",
        audit.suspects_found,
        audit.confident_found,
        audit.suspects.len()
    )?;
    for s in &audit.suspects {
        write!(
            html,
            "<tr><td>{}</td><td><code>{}</code> ({})</td><td>{}</td><td><strong>{}</strong>{}</td><td>{:.0}% vs {:.0}%</td></tr>",
            thumbnail(root, &s.path),
            escape(&s.path.display().to_string()),
            split(s.split),
            escape(&s.given),
            escape(&s.suggested),
            if s.confident { " (confident)" } else { "" },
            100.0 * s.suggested_probability,
            100.0 * s.given_probability
        )?;
    }
    html.push_str("</table>");
    write!(
        html,
        "<h2>The same photo more than once ({} groups, {} across splits)</h2><p class=\"note\">A photo in training and in validation or test makes those figures flatter: keep each in one split.</p><table><tr><th>kind</th><th>images</th></tr>",
        audit.duplicate_groups_found, audit.leaking_groups_found
    )?;
    for g in &audit.duplicates {
        let mut cells = String::new();
        for (s, path, class) in g.images.iter().take(GROUP_SHOWN) {
            write!(
                cells,
                "{} <code>{}</code> ({}, {})<br>",
                thumbnail(root, path),
                escape(&path.display().to_string()),
                split(*s),
                escape(class)
            )?;
        }
        if g.images.len() > GROUP_SHOWN {
            write!(cells, "and {} more", g.images.len() - GROUP_SHOWN)?;
        }
        let leak = if g.leakage { " <span class=\"leak\">across splits</span>" } else { "" };
        write!(html, "<tr><td>{}{leak}</td><td>{cells}</td></tr>", g.kind)?;
    }
    html.push_str("</table><h2>Outliers</h2><p class=\"note\">The images least like the rest of their class: a wrong folder, a bad photo, or a kind of its own.</p><table><tr><th></th><th>file</th><th>class</th><th>distance</th></tr>");
    for o in &audit.outliers {
        write!(
            html,
            "<tr><td>{}</td><td><code>{}</code> ({})</td><td>{}</td><td>{:.3}</td></tr>",
            thumbnail(root, &o.path),
            escape(&o.path.display().to_string()),
            split(o.split),
            escape(&o.class),
            o.distance
        )?;
    }
    html.push_str("</table></body></html>");
    crate::support::atomic_file::write(path, html.as_bytes())
}
