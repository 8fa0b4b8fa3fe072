//! `signpost_request_duration_seconds{kind,action}`: a histogram counted in plain atomics
//! found by the kind's number and the action's, and written only when `/metrics` is read.
//!
//! Through the prometheus crate's `HistogramVec` each request hashed its two label strings
//! and took the vector's read lock (one cache line every worker writes) to find its series,
//! then cloned and dropped the series' handle: about 200 instructions and a lock on every
//! request, for a handful of series that exist from the first requests on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::exposition;
use crate::table::{action_number, Kind, ACTIONS, MAX_KINDS};

const NAME: &str = "signpost_request_duration_seconds";
const BUCKET: &str = "signpost_request_duration_seconds_bucket";
const SUM: &str = "signpost_request_duration_seconds_sum";
const COUNT: &str = "signpost_request_duration_seconds_count";
const HELP: &str = "Time from request to response end.";

/// Upper bounds of the buckets, in seconds (the `le` labels).
const BOUNDS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The same bounds in nanoseconds, for comparing without floating point.
const BOUNDS_NANOS: [u64; 15] = {
    let mut nanos = [0; 15];
    let mut i = 0;
    while i < BOUNDS.len() {
        nanos[i] = (BOUNDS[i] * 1e9) as u64;
        i += 1;
    }
    nanos
};

/// One (kind, action): requests per bucket (each counted in its own bucket only, the last
/// one past every bound) and the sum of their durations.
#[derive(Default)]
struct Series {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Series {
    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Writes the `_bucket` (cumulative), `_sum` and `_count` lines; nothing if empty.
    fn write_text(&self, kind: &str, action: &str, out: &mut Vec<u8>) {
        let counts = self.buckets.each_ref().map(|b| b.load(Ordering::Relaxed));
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return;
        }
        let mut below = 0;
        for (bound, n) in BOUNDS.iter().zip(counts) {
            below += n;
            let le = bound.to_string();
            let labels = [("action", action), ("kind", kind), ("le", &le)];
            exposition::sample(out, BUCKET, &labels, below);
        }
        let labels = [("action", action), ("kind", kind), ("le", "+Inf")];
        exposition::sample(out, BUCKET, &labels, count);
        let labels = [("action", action), ("kind", kind)];
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        exposition::sample(out, SUM, &labels, sum);
        exposition::sample(out, COUNT, &labels, count);
    }
}

type ByAction = [Series; ACTIONS.len()];

/// The histogram.
pub struct Durations {
    /// By kind number: that kind's series, made by its first request.
    numbered: Box<[OnceLock<Box<ByAction>>]>,
    /// Kinds past the numbered ones (a config that names thousands): rare, under a lock.
    others: Mutex<HashMap<Arc<str>, Box<ByAction>>>,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            numbered: (0..MAX_KINDS).map(|_| OnceLock::new()).collect(),
            others: Mutex::default(),
        }
    }
}

impl Durations {
    /// Counts one request of `kind` whose outcome was `action` (one of [`ACTIONS`]).
    pub fn observe(&self, kind: &Kind, action: &str, elapsed: Duration) {
        let Some(action) = action_number(action) else {
            return;
        };
        match kind.number().and_then(|n| self.numbered.get(n)) {
            Some(series) => series.get_or_init(Box::default)[action].observe(elapsed),
            None => {
                let mut others = self.others.lock().unwrap_or_else(|e| e.into_inner());
                match others.get(&kind.name) {
                    Some(series) => series[action].observe(elapsed),
                    None => {
                        let series = Box::<ByAction>::default();
                        series[action].observe(elapsed);
                        others.insert(kind.name.clone(), series);
                    }
                }
            }
        }
    }

    /// The family in the Prometheus text format, a series for each (kind, action) counted.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        exposition::family(out, NAME, HELP, "histogram");
        let names = Kind::names();
        let numbered = self.numbered.iter().zip(names.iter());
        for (series, kind) in numbered.filter_map(|(s, k)| Some((s.get()?, k))) {
            write_kind(series, kind, out);
        }
        let others = self.others.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, series) in others.iter() {
            write_kind(series, kind, out);
        }
    }
}

fn write_kind(series: &ByAction, kind: &str, out: &mut Vec<u8>) {
    for (series, action) in series.iter().zip(ACTIONS) {
        series.write_text(kind, action, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_counts_in_its_bucket_and_every_one_above() {
        let durations = Durations::default();
        let kind = Kind::new("timeclock");
        durations.observe(&kind, "redirect", Duration::from_micros(700));
        durations.observe(&kind, "redirect", Duration::from_millis(3));
        durations.observe(&kind, "redirect", Duration::from_secs(40));
        durations.observe(&kind, "gone", Duration::from_micros(10));
        let mut out = Vec::new();
        durations.write_text(&mut out);
        let text = String::from_utf8(out).unwrap();
        let series = r#"{action="redirect",kind="timeclock""#;
        for (le, n) in [("0.0005", 0), ("0.001", 1), ("0.0025", 1), ("0.005", 2)] {
            let line = format!("{BUCKET}{series},le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} not in:\n{text}");
        }
        for line in [
            format!("{BUCKET}{series},le=\"30\"}} 2\n"),
            format!("{BUCKET}{series},le=\"+Inf\"}} 3\n"),
            format!("{SUM}{series}}} 40.0037\n"),
            format!("{COUNT}{series}}} 3\n"),
            format!("{COUNT}{{action=\"gone\",kind=\"timeclock\"}} 1\n"),
        ] {
            assert!(text.contains(&line), "{line} not in:\n{text}");
        }
        // Nothing for the combinations no request had.
        assert!(!text.contains(r#"action="forward""#), "{text}");
    }
}
