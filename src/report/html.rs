//! The self-contained HTML report: every figure embedded (charts as inline SVG, pictures as
//! data URLs), no external files or scripts, readable at desktop and phone widths.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use base64::Engine;

use super::runs::LoadedRun;
use super::summary::{ModelSummary, Summary};

/// A figure of the report and its caption.
pub struct Figure {
    pub title: String,
    pub file: PathBuf,
    /// Inline SVG (sharp at any size) rather than an embedded picture.
    pub svg: bool,
}

impl Figure {
    pub fn image(title: impl Into<String>, file: PathBuf) -> Self {
        Self { title: title.into(), file, svg: false }
    }

    pub fn svg(title: impl Into<String>, file: PathBuf) -> Self {
        Self { title: title.into(), file, svg: true }
    }

    fn render(&self, html: &mut String) -> Result<()> {
        let body = if self.svg {
            // Scales with the page: the fixed width and height go, the viewBox stays.
            let text = std::fs::read_to_string(&self.file)?;
            match text.split_once('>') {
                Some((open, rest)) if open.starts_with("<svg") => {
                    let open = open
                        .split_whitespace()
                        .filter(|a| !a.starts_with("width=") && !a.starts_with("height="))
                        .collect::<Vec<_>>()
                        .join(" ");
                    format!("{open} role=\"img\" aria-label=\"{}\">{rest}", escape(&self.title))
                }
                _ => text,
            }
        } else {
            format!("<img src=\"{}\" alt=\"{}\">", data_url(&self.file)?, escape(&self.title))
        };
        write!(html, "<figure>{body}<figcaption>{}</figcaption></figure>", escape(&self.title))?;
        Ok(())
    }
}

/// Everything the page shows.
pub struct Page<'a> {
    pub summary: &'a Summary,
    pub runs: &'a [LoadedRun],
    pub curves: Vec<Figure>,
    pub per_model: Vec<Figure>,
    pub activation_maps: Figure,
    pub samples: Figure,
}

use crate::support::escape_html as escape;

fn percent(value: f64) -> String {
    format!("{:.2}%", 100.0 * value)
}

fn data_url(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)?;
    let mime =
        if path.extension().is_some_and(|e| e == "jpg") { "image/jpeg" } else { "image/png" };
    Ok(format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

const STYLE: &str = "body{font-family:'DejaVu Sans',system-ui,Arial,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#1d2330;line-height:1.45}\
h1{margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #e4e7ec;padding-bottom:.2em}.meta{color:#667085;margin-top:0}\
.lead{background:#f2f7f4;border-left:4px solid #2e7d4f;padding:.6em 1em;margin:1em 0}.lead p{margin:.3em 0}\
.scroll{overflow-x:auto}table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d0d5dd;padding:.35em .6em;text-align:right;vertical-align:top;white-space:nowrap}\
th{background:#f2f4f7;font-weight:600}td:first-child,th:first-child{text-align:left}th.group{text-align:center}\
img,svg{max-width:100%;height:auto;border:1px solid #eaecf0}figure{margin:1.4em 0}figcaption{color:#475467;margin-top:.3em;font-size:.95em}\
code,pre{background:#f6f7f9;padding:0 .2em;font-size:.9em}pre{padding:.6em;overflow-x:auto}details{margin:.5em 0}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dt{color:#475467}dd{margin:0}\
.note{color:#475467;font-size:.93em}";

/// Renders the report page.
pub fn render(page: &Page) -> Result<String> {
    let summary = page.summary;
    let mut html = String::new();
    let title = format!("fruitlab report: {}", summary.dataset_name);
    write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{0}</title><style>{STYLE}</style></head><body><h1>{0}</h1><p class=\"meta\">{1} compared on {2}, generated {3} by fruitlab {4}.</p>",
        escape(&title),
        summary.models.iter().map(|m| escape(&m.label)).collect::<Vec<_>>().join(", "),
        escape(&summary.dataset.display().to_string()),
        escape(&summary.generated),
        env!("CARGO_PKG_VERSION"),
    )?;
    html.push_str("<div class=\"lead\">");
    for sentence in &summary.findings {
        write!(html, "<p>{}</p>", escape(sentence))?;
    }
    html.push_str("</div>");
    results(&mut html, &summary.models)?;
    dataset(&mut html, page)?;
    html.push_str("<h2>Training curves</h2>");
    for figure in &page.curves {
        figure.render(&mut html)?;
    }
    html.push_str("<h2>Confusion and mistakes</h2>");
    for figure in &page.per_model {
        figure.render(&mut html)?;
    }
    mistakes(&mut html, page.runs)?;
    html.push_str("<h2>Where the network looks</h2>");
    page.activation_maps.render(&mut html)?;
    commands(&mut html, page.runs)?;
    configuration(&mut html, page.runs)?;
    html.push_str("</body></html>\n");
    Ok(html)
}

/// The results table: best checkpoint and final epoch kept apart, other evaluations (Test/)
/// when there are any.
fn results(html: &mut String, models: &[ModelSummary]) -> Result<()> {
    let others: Vec<String> = {
        let mut names: Vec<String> = models
            .iter()
            .flat_map(|m| m.other_evaluations.iter().map(|(n, _)| n.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    };
    html.push_str("<h2>Results</h2><div class=\"scroll\"><table><tr><th rowspan=\"2\">model</th><th class=\"group\" colspan=\"5\">best checkpoint, validation</th><th class=\"group\" colspan=\"2\">final epoch, validation</th>");
    for name in &others {
        write!(html, "<th class=\"group\" colspan=\"2\">best checkpoint, {}</th>", escape(name))?;
    }
    html.push_str("<th class=\"group\" colspan=\"5\">training</th></tr><tr><th>accuracy</th><th>top-5</th><th>balanced</th><th>macro-F1</th><th>epoch</th><th>accuracy</th><th>loss</th>");
    for _ in &others {
        html.push_str("<th>accuracy</th><th>top-5</th>");
    }
    html.push_str("<th>images to 99%</th><th>images seen</th><th>img/s</th><th>time</th><th>run folder</th></tr>");
    for m in models {
        write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td>",
            escape(&m.label),
            percent(m.best_val_accuracy),
            m.evaluation.map_or("-".into(), |e| percent(e.top5_accuracy)),
            percent(m.balanced_accuracy),
            percent(m.macro_f1),
            m.best_epoch,
            percent(m.final_val_accuracy),
            m.final_val_loss
        )?;
        for name in &others {
            match m.other_evaluations.iter().find(|(n, _)| n == name) {
                Some((_, e)) => write!(
                    html,
                    "<td>{}</td><td>{}</td>",
                    percent(e.accuracy),
                    percent(e.top5_accuracy)
                )?,
                None => html.push_str("<td>-</td><td>-</td>"),
            }
        }
        write!(
            html,
            "<td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1} min</td><td>{:.0} MB</td></tr>",
            m.images_to_99.map_or("never".into(), |n| n.to_string()),
            m.images_seen,
            m.train_images_per_second,
            m.total_seconds / 60.0,
            m.folder_bytes as f64 / 1e6
        )?;
    }
    html.push_str("</table></div>");
    for m in models {
        if let Some(cv) = &m.cross_validation {
            write!(
                html,
                "<p>{}: {}-fold cross-validation of the top over whole sittings of all {} training and validation images (each scored once by a top that never saw it): <strong>{} &plusmn; {:.2} points</strong> (standard error; balanced accuracy {}, macro-F1 {}).</p>",
                escape(&m.label),
                cv.folds,
                cv.images,
                percent(cv.accuracy),
                100.0 * cv.standard_error,
                percent(cv.balanced_accuracy),
                percent(cv.macro_f1)
            )?;
        }
    }
    html.push_str("<p class=\"note\">The best checkpoint is <code>model-best.safetensors</code>, the epoch with the highest validation accuracy: the model that <code>predict</code>, <code>evaluate</code>, <code>serve</code> and <code>export</code> use. The final epoch is where training stopped. Validation images are held out of training, but they come from the same videos as the training images, so they do not replace an evaluation on a new split (<code>fruitlab evaluate --data ROOT</code> uses its <code>Test/</code>).</p>");
    Ok(())
}

fn dataset(html: &mut String, page: &Page) -> Result<()> {
    html.push_str("<h2>The data</h2>");
    let run = &page.runs[0];
    if let Some(data) = &run.record.dataset {
        write!(
            html,
            "<dl><dt>folder</dt><dd><code>{}</code></dd><dt>classes</dt><dd>{}</dd><dt>training images</dt><dd>{}</dd><dt>validation images</dt><dd>{}: {}</dd>",
            escape(&page.summary.dataset.display().to_string()),
            data.classes,
            data.train_images,
            data.val_images,
            escape(&run.config().images.split().describe())
        )?;
        if !data.skipped_images.is_empty() || !data.ignored_files.is_empty() {
            write!(
                html,
                "<dt>left out</dt><dd>{} unreadable image(s), {} non-image file(s)</dd>",
                data.skipped_images.len(),
                data.ignored_files.len()
            )?;
        }
        html.push_str("</dl>");
    }
    page.samples.render(html)
}

/// The most confident mistakes of each model, with their files.
fn mistakes(html: &mut String, runs: &[LoadedRun]) -> Result<()> {
    for run in runs {
        let shown: Vec<_> = run.evaluation.mistakes.iter().take(10).collect();
        if shown.is_empty() {
            continue;
        }
        write!(
            html,
            "<details><summary>{}: the {} most confident of {} mistakes, by file</summary><div class=\"scroll\"><table><tr><th>file</th><th>true class</th><th>predicted</th><th>confidence</th></tr>",
            escape(&run.label),
            shown.len(),
            run.evaluation.mistakes.len()
        )?;
        for m in shown {
            write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&m.path.display().to_string()),
                escape(&m.true_class),
                escape(&m.predicted_class),
                percent(m.confidence as f64)
            )?;
        }
        html.push_str("</table></div></details>");
    }
    Ok(())
}

fn commands(html: &mut String, runs: &[LoadedRun]) -> Result<()> {
    html.push_str("<h2>Commands</h2><p class=\"note\">As each run was started (<code>config.json</code> keeps them):</p>");
    for run in runs {
        let line: Vec<String> =
            run.record.environment.command_line.iter().map(|a| shell_word(a)).collect();
        write!(
            html,
            "<p><strong>{}</strong>, {} on {} ({} threads):</p><pre><code>{}</code></pre>",
            escape(&run.label),
            escape(&run.record.environment.started),
            escape(&run.record.environment.cpu),
            run.record.environment.threads,
            escape(&line.join(" "))
        )?;
    }
    Ok(())
}

/// `word` as a shell would need it written.
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,+".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The settings in which the runs differ, then each full configuration folded away.
fn configuration(html: &mut String, runs: &[LoadedRun]) -> Result<()> {
    html.push_str("<h2>Configuration</h2>");
    let values: Vec<serde_json::Map<String, serde_json::Value>> = runs
        .iter()
        .map(|r| match serde_json::to_value(r.config()) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => Default::default(),
        })
        .collect();
    let keys: Vec<&String> = values[0]
        .keys()
        .filter(|k| values.iter().any(|v| v.get(*k) != values[0].get(*k)))
        .collect();
    if keys.is_empty() {
        html.push_str("<p>The runs have the same configuration.</p>");
    } else {
        html.push_str("<p>Settings that differ between the runs (everything else is the same):</p><div class=\"scroll\"><table><tr><th>setting</th>");
        for run in runs {
            write!(html, "<th>{}</th>", escape(&run.label))?;
        }
        html.push_str("</tr>");
        for key in keys {
            write!(html, "<tr><td><code>{}</code></td>", escape(key))?;
            for value in &values {
                let text = value.get(key).map_or("-".into(), |v| v.to_string());
                write!(html, "<td><code>{}</code></td>", escape(&text))?;
            }
            html.push_str("</tr>");
        }
        html.push_str("</table></div>");
    }
    for run in runs {
        write!(
            html,
            "<details><summary>{}: full configuration</summary><pre><code>{}</code></pre></details>",
            escape(&run.label),
            escape(&serde_json::to_string_pretty(run.config())?)
        )?;
    }
    Ok(())
}
