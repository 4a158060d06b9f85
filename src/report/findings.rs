//! What a comparison shows, in sentences computed from the runs' histories (never templated
//! claims): when each model reached 95% and 99% validation accuracy, where each ended, and
//! how far apart they are.

use super::runs::LoadedRun;

/// Accuracy levels the sentences speak of.
const LEVELS: [f64; 2] = [0.95, 0.99];

fn percent(value: f64) -> String {
    format!("{:.2}%", 100.0 * value)
}

fn images(n: u64) -> String {
    // Thousands separated, as people read counts.
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One sentence per run, then one comparing the best with the others.
pub fn findings(runs: &[LoadedRun]) -> Vec<String> {
    let mut sentences: Vec<String> = runs.iter().map(describe).collect();
    let best_of = |run: &LoadedRun| run.history.best().map_or(0.0, |e| e.val_accuracy);
    if runs.len() >= 2 {
        let mut order: Vec<&LoadedRun> = runs.iter().collect();
        order.sort_by(|a, b| best_of(b).total_cmp(&best_of(a)));
        let (first, second) = (order[0], order[1]);
        let gap = best_of(first) - best_of(second);
        sentences.push(if gap.abs() < 0.0005 {
            format!("{} and {} end level ({}).", first.label, second.label, percent(best_of(first)))
        } else {
            format!(
                "{} is ahead of {} by {:.2} points of validation accuracy ({} against {}).",
                first.label,
                second.label,
                100.0 * gap,
                percent(best_of(first)),
                percent(best_of(second))
            )
        });
    }
    sentences
}

/// When the run reached each level, and where it ended.
fn describe(run: &LoadedRun) -> String {
    let epochs = &run.history.epochs;
    let Some(last) = epochs.last() else { return format!("{} trained no epoch.", run.label) };
    let best = run.history.best().expect("a run with epochs has a best one");
    let mut parts = Vec::new();
    for level in LEVELS {
        match epochs.iter().find(|e| e.val_accuracy >= level) {
            Some(e) => parts.push(format!(
                "reached {:.0}% validation accuracy after {} training images (epoch {})",
                100.0 * level,
                images(e.images_seen),
                e.epoch
            )),
            None => {
                parts.push(format!("never reached {:.0}%", 100.0 * level));
                break;
            }
        }
    }
    let end = if best.epoch == last.epoch {
        format!("its best, {}, came at the last epoch", percent(best.val_accuracy))
    } else {
        format!(
            "its best, {} at epoch {}, was not improved on (last epoch: {})",
            percent(best.val_accuracy),
            best.epoch,
            percent(last.val_accuracy)
        )
    };
    format!(
        "{} {}; {}, after {} images in all.",
        run.label,
        parts.join(" and "),
        end,
        images(last.images_seen)
    )
}

#[cfg(test)]
mod tests {
    use super::images;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(images(15840), "15,840");
        assert_eq!(images(999), "999");
        assert_eq!(images(1_000_000), "1,000,000");
    }
}
