//! `/metrics` in the Prometheus text exposition format.

use std::fmt::Write;

use super::Status;

/// The metrics of `status`, at wall time `now_ms`.
pub fn render(status: &Status, now_ms: i64) -> String {
    let seconds_since = |ms: Option<i64>| ms.map(|ms| ((now_ms - ms) as f64 / 1000.0).to_string());
    let families: [(&str, &str, &str, Option<String>); 10] = [
        ("weir_records_in_total", "counter", "Raw records read from the source.", Some(status.records.to_string())),
        ("weir_events_windowed_total", "counter", "Events folded into windows.", Some(status.windowed.to_string())),
        (
            "weir_dead_letters_total",
            "counter",
            "Records sent to the dead-letter store.",
            Some(status.dead_letters.to_string()),
        ),
        ("weir_late_events_total", "counter", "Events sent to the late lane.", Some(status.late.to_string())),
        (
            "weir_checkpoints_total",
            "counter",
            "Checkpoints committed to the sink.",
            Some(status.checkpoints.to_string()),
        ),
        (
            "weir_breaker_trips_total",
            "counter",
            "Times the circuit breaker opened.",
            Some(status.breaker_trips.to_string()),
        ),
        (
            "weir_reading_held",
            "gauge",
            "1 while the breaker or a pause holds reading.",
            Some(u8::from(status.held.is_some()).to_string()),
        ),
        (
            "weir_sink_failing",
            "gauge",
            "1 while checkpoints are being retried.",
            Some(u8::from(status.sink_error.is_some()).to_string()),
        ),
        ("weir_watermark_delay_seconds", "gauge", "Wall time minus the watermark.", seconds_since(status.watermark_ms)),
        (
            "weir_checkpoint_age_seconds",
            "gauge",
            "Time since the last committed checkpoint.",
            seconds_since(status.last_checkpoint_ms),
        ),
    ];
    let pipeline = status.pipeline.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    for (name, kind, help, value) in families {
        if let Some(value) = value {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{pipeline=\"{pipeline}\"}} {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges_with_the_pipeline_label() {
        let status = Status {
            pipeline: "rides".into(),
            records: 10,
            watermark_ms: Some(1_000),
            held: Some("breaker".into()),
            ..Status::default()
        };
        let text = render(&status, 3_500);
        assert!(text.contains("# TYPE weir_records_in_total counter\nweir_records_in_total{pipeline=\"rides\"} 10\n"));
        assert!(text.contains("weir_watermark_delay_seconds{pipeline=\"rides\"} 2.5\n"));
        assert!(text.contains("weir_reading_held{pipeline=\"rides\"} 1\n"));
        assert!(!text.contains("weir_checkpoint_age_seconds"), "no checkpoint yet");
    }
}
