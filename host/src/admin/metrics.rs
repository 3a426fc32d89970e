//! `/metrics` in the Prometheus text exposition format.

use std::fmt::Write;

use super::Status;

fn family(out: &mut String, name: &str, kind: &str, help: &str, pipeline: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{pipeline=\"{pipeline}\"}} {value}");
}

/// The metrics of `status`, at wall time `now_ms`.
pub fn render(status: &Status, now_ms: i64) -> String {
    let mut out = String::new();
    let p = status.pipeline.replace('\\', "\\\\").replace('"', "\\\"");
    family(&mut out, "weir_records_in_total", "counter", "Raw records read from the source.", &p, status.records);
    family(&mut out, "weir_events_windowed_total", "counter", "Events folded into windows.", &p, status.windowed);
    family(
        &mut out,
        "weir_dead_letters_total",
        "counter",
        "Records sent to the dead-letter store.",
        &p,
        status.dead_letters,
    );
    family(&mut out, "weir_late_events_total", "counter", "Events sent to the late lane.", &p, status.late);
    family(&mut out, "weir_checkpoints_total", "counter", "Checkpoints committed to the sink.", &p, status.checkpoints);
    family(
        &mut out,
        "weir_breaker_trips_total",
        "counter",
        "Times the circuit breaker opened.",
        &p,
        status.breaker_trips,
    );
    let held = u8::from(status.held.is_some());
    family(&mut out, "weir_reading_held", "gauge", "1 while the breaker or a pause holds reading.", &p, held);
    let failing = u8::from(status.sink_error.is_some());
    family(&mut out, "weir_sink_failing", "gauge", "1 while checkpoints are being retried.", &p, failing);
    if let Some(mark) = status.watermark_ms {
        let delay = (now_ms - mark) as f64 / 1000.0;
        family(&mut out, "weir_watermark_delay_seconds", "gauge", "Wall time minus the watermark.", &p, delay);
    }
    if let Some(at) = status.last_checkpoint_ms {
        let age = (now_ms - at) as f64 / 1000.0;
        family(&mut out, "weir_checkpoint_age_seconds", "gauge", "Time since the last committed checkpoint.", &p, age);
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
