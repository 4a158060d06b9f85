//! What the server counts, in Prometheus' text format (`GET /metrics`): requests by route and
//! status, a latency histogram, batch sizes, images classified, queue depth.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Upper bounds of the batch-size buckets, in images.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (count, bound) in self.counts.iter_mut().zip(bounds) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let separator = if labels.is_empty() { "" } else { "," };
        for (i, bound) in bounds.iter().enumerate() {
            let count = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct State {
    /// (route, status) -> requests.
    requests: BTreeMap<(String, u16), u64>,
    /// Route -> latency.
    latency: BTreeMap<String, Histogram>,
    batches: Histogram,
    images: u64,
    /// Uncertain uploads kept, and not kept because the store was full.
    uncertain_kept: u64,
    uncertain_dropped: u64,
}

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
}

impl Metrics {
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        let mut state = self.lock();
        *state.requests.entry((route.to_string(), status)).or_default() += 1;
        state.latency.entry(route.to_string()).or_default().observe(&LATENCY_BUCKETS, seconds);
    }

    pub fn observe_batch(&self, images: usize) {
        let mut state = self.lock();
        state.batches.observe(&BATCH_BUCKETS, images as f64);
        state.images += images as u64;
    }

    /// An upload to keep for labelling: kept, or not (the store is full).
    pub fn observe_uncertain(&self, kept: bool) {
        let mut state = self.lock();
        if kept { state.uncertain_kept += 1 } else { state.uncertain_dropped += 1 }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The text exposition, with the queue depth read now.
    pub fn render(&self, queue_depth: usize) -> String {
        let state = self.lock();
        let mut out = String::new();
        out.push_str("# HELP fruitlab_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE fruitlab_requests_total counter\n");
        for ((route, status), count) in &state.requests {
            let _ = writeln!(
                out,
                "fruitlab_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP fruitlab_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE fruitlab_request_duration_seconds histogram\n");
        for (route, histogram) in &state.latency {
            histogram.render(
                &mut out,
                "fruitlab_request_duration_seconds",
                &format!("route=\"{route}\""),
                &LATENCY_BUCKETS,
            );
        }
        out.push_str("# HELP fruitlab_batch_images Images per forward pass.\n");
        out.push_str("# TYPE fruitlab_batch_images histogram\n");
        state.batches.render(&mut out, "fruitlab_batch_images", "", &BATCH_BUCKETS);
        out.push_str("# HELP fruitlab_images_total Images classified.\n");
        out.push_str("# TYPE fruitlab_images_total counter\n");
        let _ = writeln!(out, "fruitlab_images_total {}", state.images);
        out.push_str("# HELP fruitlab_queue_depth Requests waiting for the model.\n");
        out.push_str("# TYPE fruitlab_queue_depth gauge\n");
        let _ = writeln!(out, "fruitlab_queue_depth {queue_depth}");
        out.push_str("# HELP fruitlab_uncertain_uploads_total Uploads to keep for labelling (--save-uncertain), by outcome.\n");
        out.push_str("# TYPE fruitlab_uncertain_uploads_total counter\n");
        let _ = writeln!(
            out,
            "fruitlab_uncertain_uploads_total{{outcome=\"kept\"}} {}",
            state.uncertain_kept
        );
        let _ = writeln!(
            out,
            "fruitlab_uncertain_uploads_total{{outcome=\"store full\"}} {}",
            state.uncertain_dropped
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let metrics = Metrics::default();
        metrics.observe_request("/v1/predict", 200, 0.02);
        metrics.observe_request("/v1/predict", 200, 0.2);
        metrics.observe_request("/v1/predict", 413, 0.001);
        metrics.observe_batch(3);
        let text = metrics.render(2);
        assert!(text.contains("fruitlab_requests_total{route=\"/v1/predict\",status=\"200\"} 2"));
        assert!(text.contains("fruitlab_requests_total{route=\"/v1/predict\",status=\"413\"} 1"));
        assert!(text.contains(
            "fruitlab_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"0.025\"} 2"
        ));
        assert!(text.contains(
            "fruitlab_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains("fruitlab_batch_images_bucket{le=\"4\"} 1"));
        assert!(text.contains("fruitlab_images_total 3"));
        assert!(text.contains("fruitlab_queue_depth 2"));
    }
}
