//! The self-contained HTML report: every figure embedded, no external files or scripts.

use std::fmt::Write;
use std::path::Path;

use anyhow::Result;
use base64::Engine;

use super::summary::Summary;
use crate::config::TrainConfig;

/// A figure of the report: a PNG file and its caption.
pub struct Figure {
    pub title: String,
    pub png: std::path::PathBuf,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn percent(value: f64) -> String {
    format!("{:.2}%", 100.0 * value)
}

fn embedded(png: &Path) -> Result<String> {
    let bytes = std::fs::read(png)?;
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

/// Renders the report page.
pub fn render(
    summary: &Summary,
    configs: &[(String, TrainConfig)],
    sections: &[(String, Vec<Figure>)],
) -> Result<String> {
    let mut html = String::new();
    let title = format!("fruitlab: pretrained vs vanilla on {}", summary.dataset.display());
    write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:'DejaVu Sans',Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.35em .7em;text-align:right}}\
         th{{background:#f2f2f2}}td:first-child,th:first-child{{text-align:left}}img{{max-width:100%;border:1px solid #eee}}\
         figure{{margin:1.5em 0}}figcaption{{color:#555;margin-top:.3em}}code{{background:#f6f6f6;padding:0 .2em}}\
         </style></head><body><h1>{}</h1><p>Generated {}.</p>",
        escape(&title),
        escape(&title),
        escape(&summary.generated)
    )?;

    html.push_str("<h2>Results</h2><table><tr><th>model</th><th>best val acc</th><th>final val acc</th><th>final val loss</th><th>top-5 (best model)</th><th>epoch reached 95%</th><th>epoch reached 99%</th><th>epochs</th><th>images seen</th><th>s / epoch</th><th>train img/s</th><th>total time</th></tr>");
    for m in &summary.models {
        let epoch = |e: Option<usize>| e.map_or("never".to_string(), |e| e.to_string());
        write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.1}</td><td>{:.1} min</td></tr>",
            escape(&m.label),
            percent(m.best_val_accuracy),
            percent(m.final_val_accuracy),
            m.final_val_loss,
            m.evaluation.map_or("-".to_string(), |e| percent(e.top5_accuracy)),
            epoch(m.epoch_reached_95),
            epoch(m.epoch_reached_99),
            m.epochs,
            m.images_seen,
            m.seconds_per_epoch,
            m.train_images_per_second,
            m.total_seconds / 60.0
        )?;
    }
    html.push_str("</table>");

    for (section, figures) in sections {
        write!(html, "<h2>{}</h2>", escape(section))?;
        for figure in figures {
            write!(
                html,
                "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
                embedded(&figure.png)?,
                escape(&figure.title),
                escape(&figure.title)
            )?;
        }
    }

    html.push_str("<h2>Configuration</h2>");
    for (label, config) in configs {
        write!(
            html,
            "<h3>{}</h3><pre><code>{}</code></pre>",
            escape(label),
            escape(&serde_json::to_string_pretty(config)?)
        )?;
    }
    html.push_str("</body></html>\n");
    Ok(html)
}
