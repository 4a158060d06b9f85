//! Progress reporting: a live bar on a terminal, plain periodic lines otherwise (logs, CI).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Interval between plain progress lines when stderr is not a terminal.
const LINE_INTERVAL: Duration = Duration::from_secs(20);

/// What a bar counts: images (its rate is shown in img/s), or optimizer steps (the caller's
/// message carries the rate in images).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Images,
    Steps,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    unit: Unit,
    total: u64,
    /// Items already done when this bar started (a resumed epoch): not counted in the rate.
    initial: u64,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl Progress {
    /// A bar over `total` images.
    pub fn new(label: &str, total: u64) -> Self {
        Self::counting(label, total, Unit::Images)
    }

    /// A counter of images without a known total (a folder being walked).
    pub fn open_ended(label: &str) -> Self {
        Self::counting(label, 0, Unit::Images)
    }

    /// A bar over `total` optimizer steps.
    pub fn steps(label: &str, total: u64) -> Self {
        Self::counting(label, total, Unit::Steps)
    }

    fn counting(label: &str, total: u64, unit: Unit) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = if total == 0 { ProgressBar::new_spinner() } else { ProgressBar::new(total) };
            let template = match (unit, total) {
                (Unit::Images, 0) => "{prefix:>14} {pos} images {rate} {msg}",
                (Unit::Images, _) => "{prefix:>14} [{bar:30}] {pos}/{len} {rate} ETA {eta} {msg}",
                (Unit::Steps, _) => "{prefix:>14} [{bar:30}] {pos}/{len} steps ETA {eta} {msg}",
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .with_key(
                        "rate",
                        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{:.0} img/s", state.per_sec());
                        },
                    )
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            label: label.to_string(),
            unit,
            total,
            initial: 0,
            started: now,
            last_line: Mutex::new(now),
        }
    }

    /// Starts the bar at `done` items (a resumed epoch), keeping its rate and ETA to the items
    /// processed from now on.
    pub fn starting_at(mut self, done: u64) -> Self {
        self.initial = done;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.reset_eta();
        }
        self
    }

    /// Reports `position` items done, with a short status message. Callable from any thread.
    pub fn update(&self, position: u64, message: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
            bar.set_message(message());
            return;
        }
        let mut last = self.last_line.lock().expect("progress lock");
        if last.elapsed() >= LINE_INTERVAL && (position < self.total || self.total == 0) {
            *last = Instant::now();
            let line = self.plain_line(position, self.started.elapsed().as_secs_f64());
            eprintln!("{line} {}", message());
        }
    }

    /// `label: position/total (percent) [rate] ETA`, the rate and ETA counting only the items
    /// done since this bar started.
    fn plain_line(&self, position: u64, elapsed_seconds: f64) -> String {
        let rate = position.saturating_sub(self.initial) as f64 / elapsed_seconds.max(1e-9);
        let eta = self.total.saturating_sub(position) as f64 / rate.max(1e-9);
        let rate = match self.unit {
            Unit::Images => format!(" {rate:.0} img/s"),
            Unit::Steps => String::new(),
        };
        if self.total == 0 {
            return format!("{}: {position} images{rate}", self.label);
        }
        format!(
            "{}: {position}/{} ({:.0}%){rate} ETA {eta:.0}s",
            self.label,
            self.total,
            100.0 * position as f64 / self.total.max(1) as f64,
        )
    }

    /// Prints a line without breaking the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_bar_counts_only_the_items_done_since_it_started() {
        let fresh = Progress::steps("epoch 1/2", 500);
        assert_eq!(fresh.plain_line(100, 10.0), "epoch 1/2: 100/500 (20%) ETA 40s");
        let resumed = Progress::steps("epoch 1/2", 500).starting_at(300);
        assert_eq!(resumed.plain_line(400, 10.0), "epoch 1/2: 400/500 (80%) ETA 10s");
        let images = Progress::new("features", 1000);
        assert_eq!(images.plain_line(500, 10.0), "features: 500/1000 (50%) 50 img/s ETA 10s");
    }
}
