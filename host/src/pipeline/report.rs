//! What a run shows of itself while it runs: the progress line on stderr, and the status
//! the admin API serves.

use std::time::Instant;

use super::breaker::Breaker;
use super::build::Pipeline;
use super::run::Timing;
use crate::admin::Shared;
use crate::source::Source;

/// The progress line on stderr.
pub(super) fn show(
    pipeline: &Pipeline,
    source: &mut dyn Source,
    started: Instant,
    last: &mut (Instant, u64),
    breaker: &Breaker,
) {
    let now = Instant::now();
    let records = pipeline.stats.records;
    let rate = (records - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
    *last = (now, records);
    let mark = pipeline.watermark().map_or("-".to_string(), weir_sdk::time::format_iso8601);
    let lag = source.lag().map_or("-".to_string(), |l| l.to_string());
    eprint!(
        "\r{:>7.1}s {:>10} events {:>9.0}/s  lag {lag}  watermark {mark}  open windows {:>5}  dead letters {:>6}  late {:>6}   ",
        started.elapsed().as_secs_f64(),
        records,
        rate,
        pipeline.open_windows(),
        pipeline.stats.dead_letters + pipeline.dead_letters.len() as u64,
        pipeline.stats.late + pipeline.late_events.len() as u64,
    );
    if let Some(open_for) = breaker.open_for(now) {
        eprint!(" BREAKER OPEN {:.0}s ", open_for.as_secs_f64());
    }
}

/// Publishes the run's state to the admin API.
pub(super) fn publish(
    admin: &Shared,
    pipeline: &Pipeline,
    source: &mut dyn Source,
    breaker: &Breaker,
    held: &Option<String>,
    timing: &Timing,
) {
    let mut status = admin.status();
    status.measured.clone_from(&pipeline.measured);
    // Stage names and versions come from what runs now, not from the counters.
    for (stage, plan) in status.measured.stages.iter_mut().zip(pipeline.plans()) {
        stage.stage = plan.id.to_string();
        stage.version = plan.version();
    }
    status.measured.checkpoints.clone_from(&timing.commits);
    status.swaps = pipeline.stats.swaps;
    status.shadow = pipeline.shadow_plan().map(|plan| (plan.id.to_string(), plan.version()));
    status.latency_ms = timing.latency.recent();
    status.source_error = source.trouble();
    status.lags = source.lags().unwrap_or_default().into_iter().map(|(p, n)| (source.label(p), n)).collect();
    let last_commit = timing.last_commit_ms;
    status.pipeline.clone_from(&pipeline.name);
    status.records = pipeline.stats.records;
    status.windowed = pipeline.stats.windowed;
    status.events_windowed = pipeline.stats.events_windowed;
    status.dead_letters = pipeline.stats.dead_letters + pipeline.dead_letters.len() as u64;
    status.late = pipeline.stats.late + pipeline.late_events.len() as u64;
    status.late_records = pipeline.stats.late_records;
    status.checkpoints = pipeline.stats.checkpoints;
    status.watermark_ms = pipeline.watermark();
    status.last_checkpoint_ms = last_commit;
    status.held.clone_from(held);
    status.breaker_trips = breaker.trips;
    admin.publish(status);
}
