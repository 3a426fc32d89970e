//! `/metrics` in the Prometheus text exposition format.

use std::fmt::Write;

use super::Status;
use crate::pipeline::{Histogram, BUCKETS};

/// Escapes a label value.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Writes families, each a `# HELP`/`# TYPE` header over its samples.
struct Families {
    out: String,
    pipeline: String,
}

impl Families {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample; `labels` are `key="value"` pairs after the pipeline's.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let mut all = format!("pipeline=\"{}\"", self.pipeline);
        for (k, v) in labels {
            let _ = write!(all, ",{k}=\"{}\"", label(v));
        }
        let _ = writeln!(self.out, "{name}{{{all}}} {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: Option<impl std::fmt::Display>) {
        if let Some(value) = value {
            self.family(name, kind, help);
            self.sample(name, &[], value);
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().map(|b| b.to_string()).chain(["+Inf".to_string()]).enumerate() {
            cumulative += h.counts[i];
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with_le, cumulative);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count);
    }
}

/// The quality scores, rules, SLAs and anomalies.
fn quality(f: &mut Families, q: &super::QualityView) {
    let over = format!("{}s", q.over_ms / 1000);
    f.family(
        "weir_quality_score",
        "gauge",
        "A share-valued quality score over the latest quality windows (see docs/QUALITY.md).",
    );
    for (score, value) in q.scores.iter().filter(|(s, _)| !s.is_duration()) {
        if let Some(v) = value {
            f.sample("weir_quality_score", &[("score", score.name()), ("over", &over)], v);
        }
    }
    f.family("weir_quality_seconds", "gauge", "A time-valued quality score: event-to-row delay p50/p99, freshness.");
    for (score, value) in q.scores.iter().filter(|(s, _)| s.is_duration()) {
        if let Some(v) = value {
            f.sample("weir_quality_seconds", &[("score", score.name()), ("over", &over)], v / 1000.0);
        }
    }
    f.family(
        "weir_quality_rule_ok",
        "gauge",
        "1 while a quality rule holds, 0 while it is broken; absent without data.",
    );
    for r in &q.rules {
        if let Some(ok) = r.ok {
            let labels = [("rule", r.rule.as_str()), ("severity", r.severity.name()), ("score", r.score.name())];
            f.sample("weir_quality_rule_ok", &labels, u8::from(ok));
        }
    }
    type Field = fn(&crate::pipeline::SlaState) -> f64;
    let slas: [(&str, &str, Field); 2] = [
        ("weir_sla_compliance", "The share of an SLA's minutes in its period that held.", |s| s.compliance),
        ("weir_sla_error_budget_remaining", "What is left of an SLA's error budget: 1 untouched, 0 spent.", |s| {
            s.budget_remaining
        }),
    ];
    for (series, help, value) in slas {
        f.family(series, "gauge", help);
        for r in &q.rules {
            if let Some(sla) = &r.sla {
                f.sample(series, &[("rule", &r.rule)], value(sla));
            }
        }
    }
    f.single(
        "weir_anomalies_total",
        "counter",
        "Window values flagged as anomalies by this host.",
        Some(q.anomalies_flagged),
    );
}

/// The metrics of `status`, at wall time `now_ms`.
pub fn render(status: &Status, now_ms: i64) -> String {
    let seconds_since = |ms: Option<i64>| ms.map(|ms| (now_ms - ms) as f64 / 1000.0);
    let mut f = Families { out: String::new(), pipeline: label(&status.pipeline) };
    f.single("weir_records_in_total", "counter", "Raw records read from the source.", Some(status.records));
    f.single(
        "weir_events_windowed_total",
        "counter",
        "Events folded into at least one window.",
        Some(status.events_windowed),
    );
    let folds = "Folds into windows: an event once per window it counts in (several for hopping windows).";
    f.single("weir_window_folds_total", "counter", folds, Some(status.windowed));
    f.single("weir_checkpoints_total", "counter", "Checkpoints committed to the sink.", Some(status.checkpoints));
    f.single("weir_breaker_trips_total", "counter", "Times the circuit breaker opened.", Some(status.breaker_trips));
    f.single("weir_plugin_swaps_total", "counter", "Plugin versions switched in while running.", Some(status.swaps));
    f.single(
        "weir_reading_held",
        "gauge",
        "1 while the breaker or a pause holds reading.",
        Some(u8::from(status.held.is_some())),
    );
    f.single(
        "weir_sink_failing",
        "gauge",
        "1 while checkpoints are being retried.",
        Some(u8::from(status.sink_error.is_some())),
    );
    f.single(
        "weir_watermark_delay_seconds",
        "gauge",
        "Wall time minus the watermark.",
        seconds_since(status.watermark_ms),
    );
    f.single(
        "weir_checkpoint_age_seconds",
        "gauge",
        "Time since the last committed checkpoint.",
        seconds_since(status.last_checkpoint_ms),
    );

    let m = &status.measured;
    f.family("weir_dead_letters_total", "counter", "Records sent to the dead-letter store, by kind and plugin.");
    for (kind, by_plugin) in &m.dead_letters {
        for (plugin, n) in by_plugin {
            f.sample("weir_dead_letters_total", &[("kind", kind), ("plugin", plugin)], n);
        }
    }
    f.family("weir_late_events_total", "counter", "Events sent to the late lane, by reason.");
    f.sample("weir_late_events_total", &[("reason", "window_closed")], status.late);
    f.single(
        "weir_late_records_total",
        "counter",
        "Records late for every window they belong to: records in = windowed + dead letters + late records.",
        Some(status.late_records),
    );
    f.family("weir_stage_events_in_total", "counter", "Events handed to a stage (raw records for the parser).");
    for s in &m.stages {
        f.sample("weir_stage_events_in_total", &[("stage", &s.stage)], s.events_in);
    }
    f.family("weir_stage_events_out_total", "counter", "Events a stage passed on (window rows for the aggregator).");
    for s in &m.stages {
        f.sample("weir_stage_events_out_total", &[("stage", &s.stage)], s.events_out);
    }
    f.family("weir_plugin_version_info", "gauge", "The plugin version running in each stage.");
    for s in &m.stages {
        f.sample("weir_plugin_version_info", &[("stage", &s.stage), ("version", &s.version)], 1);
    }
    f.family("weir_plugin_call_seconds", "histogram", "How long one call into a stage's plugin took.");
    for s in &m.stages {
        f.histogram("weir_plugin_call_seconds", &[("stage", &s.stage)], &s.calls);
    }
    f.family("weir_checkpoint_duration_seconds", "histogram", "From handing a checkpoint to the sink to its commit.");
    f.histogram("weir_checkpoint_duration_seconds", &[], &m.checkpoints);
    if let Some(q) = &status.quality {
        quality(&mut f, q);
    }
    if !status.lags.is_empty() {
        f.family("weir_consumer_lag", "gauge", "Records not yet read, per partition.");
        for (partition, lag) in &status.lags {
            f.sample("weir_consumer_lag", &[("partition", partition)], lag);
        }
    }
    f.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Measured, StageMetrics};

    #[test]
    fn renders_counters_gauges_and_histograms_with_their_labels() {
        let mut parser = StageMetrics { stage: "parser".into(), version: "p@sha256:1".into(), ..Default::default() };
        parser.calls.observe(std::time::Duration::from_micros(300));
        let mut measured = Measured { stages: vec![parser], ..Default::default() };
        measured.dead_letters.entry("malformed".into()).or_default().insert("json_parser".into(), 3);
        let status = Status {
            pipeline: "rides".into(),
            records: 10,
            watermark_ms: Some(1_000),
            held: Some("breaker".into()),
            lags: vec![("partition 2".into(), 7)],
            measured,
            ..Status::default()
        };
        let text = render(&status, 3_500);
        assert!(text.contains("# TYPE weir_records_in_total counter\nweir_records_in_total{pipeline=\"rides\"} 10\n"));
        assert!(text.contains("weir_watermark_delay_seconds{pipeline=\"rides\"} 2.5\n"));
        assert!(text.contains("weir_reading_held{pipeline=\"rides\"} 1\n"));
        assert!(!text.contains("weir_checkpoint_age_seconds"), "no checkpoint yet");
        assert!(
            text.contains("weir_dead_letters_total{pipeline=\"rides\",kind=\"malformed\",plugin=\"json_parser\"} 3\n")
        );
        assert!(
            text.contains("weir_plugin_call_seconds_bucket{pipeline=\"rides\",stage=\"parser\",le=\"0.00025\"} 0\n")
        );
        assert!(text.contains("weir_plugin_call_seconds_bucket{pipeline=\"rides\",stage=\"parser\",le=\"0.0005\"} 1\n"));
        assert!(text.contains("weir_plugin_call_seconds_bucket{pipeline=\"rides\",stage=\"parser\",le=\"+Inf\"} 1\n"));
        assert!(text.contains("weir_consumer_lag{pipeline=\"rides\",partition=\"partition 2\"} 7\n"));
    }
}
