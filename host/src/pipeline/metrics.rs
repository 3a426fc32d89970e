//! What the run loop measures for `/metrics` and the dashboard: events in and out of
//! each stage, plugin call times, dead letters by kind and plugin, checkpoint durations.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Upper bounds of the histogram buckets, in seconds (Prometheus' `le`).
pub const BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// A histogram of durations with the fixed [`BUCKETS`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// Observations per bucket (not cumulative), the last one above every bound.
    pub counts: [u64; BUCKETS.len() + 1],
    /// The sum of the observations, in seconds.
    pub sum: f64,
    /// How many.
    pub count: u64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = BUCKETS.iter().position(|&le| secs <= le).unwrap_or(BUCKETS.len());
        self.counts[bucket] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

/// One stage's counters; its name and version are filled in when published.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageMetrics {
    /// The stage, as the pipeline file names it.
    pub stage: String,
    /// The version running now, `name@digest`.
    pub version: String,
    /// Events handed to it (raw records for the parser).
    pub events_in: u64,
    /// Events it passed on (window rows emitted, for the aggregator).
    pub events_out: u64,
    /// How long its calls took.
    pub calls: Histogram,
}

/// Everything measured so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Measured {
    /// Per stage, in pipeline order.
    pub stages: Vec<StageMetrics>,
    /// Committed dead letters by kind, then plugin.
    pub dead_letters: BTreeMap<String, BTreeMap<String, u64>>,
    /// How long checkpoints took to commit on the sink thread.
    pub checkpoints: Histogram,
}

impl Measured {
    /// Counts one call of stage `i`.
    pub fn call(&mut self, i: usize, took: Duration, events_in: usize, events_out: usize) {
        if let Some(stage) = self.stages.get_mut(i) {
            stage.calls.observe(took);
            stage.events_in += events_in as u64;
            stage.events_out += events_out as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[BUCKETS.iter().position(|&b| b == 0.005).unwrap()], 1);
        assert_eq!(h.counts[BUCKETS.len()], 1);
        assert_eq!(h.count, 4);
        assert!((h.sum - 10.00315).abs() < 1e-9);
    }
}
