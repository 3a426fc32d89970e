//! `weir run`: poll the source, process batches, checkpoint on an interval, show
//! progress, and stop cleanly on SIGINT/SIGTERM or once idle.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::build::{Pipeline, PipelineOptions, RunStats};
use crate::config::{FileFormat, PipelineConfig, SourceConfig};
use crate::plugin::{PluginRuntime, RuntimeOptions};
use crate::rides::TripOptions;
use crate::sink::{Sink, SqliteSink};
use crate::source::{FileSource, ProducerSource, Source};

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// The counters.
    pub stats: RunStats,
    /// The final watermark.
    pub watermark: Option<i64>,
    /// How long it ran.
    pub elapsed: Duration,
    /// Where the results are: the sink URL and table.
    pub sink: String,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn open_source(config: &PipelineConfig, base: &Path) -> Result<Box<dyn Source>> {
    Ok(match &config.source {
        SourceConfig::Producer { events, rate, seed, late_share, malformed_share } => {
            let options = TripOptions {
                seed: *seed,
                events_per_second: *rate,
                late_share: *late_share,
                malformed_share: *malformed_share,
                ..TripOptions::default()
            };
            Box::new(ProducerSource::new(options, *events))
        }
        SourceConfig::Files { path, format, follow } => {
            if *format != FileFormat::Jsonl || *follow {
                bail!("source: `weir run` reads JSON-lines files without follow mode so far (format = \"jsonl\", follow = false)");
            }
            Box::new(FileSource::open(&base.join(path))?)
        }
        SourceConfig::Kafka { .. } => bail!("source.kind = \"kafka\" is not supported by this build of `weir run` yet"),
    })
}

fn open_sink(config: &PipelineConfig, base: &Path) -> Result<Box<dyn Sink>> {
    match config.sink.url.strip_prefix("sqlite://") {
        Some(path) => Ok(Box::new(SqliteSink::open(&base.join(path))?)),
        None => bail!("sink.url {:?}: only sqlite:// is supported by this build of `weir run` yet", config.sink.url),
    }
}

fn show(pipeline: &Pipeline, started: Instant, last: &mut (Instant, u64)) {
    let now = Instant::now();
    let records = pipeline.stats.records;
    let rate = (records - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
    *last = (now, records);
    let mark = pipeline.watermark().map_or("-".to_string(), weir_sdk::time::format_iso8601);
    eprint!(
        "\r{:>7.1}s {:>10} events {:>9.0}/s  watermark {mark}  open windows {:>5}  dead letters {:>6}  late {:>6}   ",
        started.elapsed().as_secs_f64(),
        records,
        rate,
        pipeline.open_windows(),
        pipeline.stats.dead_letters + pipeline.dead_letters.len() as u64,
        pipeline.stats.late + pipeline.late_events.len() as u64,
    );
}

/// Runs the pipeline at `path` until stopped or idle.
pub fn run(path: &Path, options: &PipelineOptions, runtime_options: RuntimeOptions) -> Result<RunSummary> {
    let config = PipelineConfig::load(path)?;
    let base: PathBuf = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let runtime = PluginRuntime::new(runtime_options)?;
    let mut pipeline =
        Pipeline::build(&config, &base, &runtime, options).with_context(|| format!("pipeline {}", config.name))?;
    let mut sink = open_sink(&config, &base)?;
    sink.prepare(&pipeline.table)?;
    let mut source = open_source(&config, &base)?;
    let started_ms = now_ms();
    for partition in source.partitions() {
        pipeline.tracker.assign(partition, started_ms);
    }
    if let Some(restored) = sink.restore(&config.name)? {
        // The sink's offsets are the truth: resume exactly after the last committed record.
        let at: Vec<String> = restored.offsets.iter().map(|(p, o)| format!("partition {p} at {o}")).collect();
        eprintln!("resuming pipeline {} from its checkpoint in {}: {}", config.name, config.sink.url, at.join(", "));
        source.seek(&restored.offsets)?;
        pipeline.restore(restored);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A second handler cannot be installed in the same process (tests run several pipelines).
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));

    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut last_progress = (Instant::now(), 0u64);
    let mut idle_since: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let polled = source.poll(options.batch_size)?;
        match &polled {
            Some(batch) if !batch.is_empty() => {
                idle_since = None;
                pipeline.process(batch, now_ms());
            }
            _ => {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if options.until_idle.is_some_and(|limit| since.elapsed() >= limit) {
                    break;
                }
                // Nothing to read: wait a poll interval rather than spin.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if last_checkpoint.elapsed() >= config.checkpoint.interval {
            // The source's positions stand just after the last processed batch.
            pipeline.checkpoint(sink.as_mut(), source.positions(), now_ms())?;
            last_checkpoint = Instant::now();
        }
        if options.progress && last_progress.0.elapsed() >= Duration::from_secs(1) {
            show(&pipeline, started, &mut last_progress);
        }
    }
    pipeline.checkpoint(sink.as_mut(), source.positions(), now_ms()).context("writing the final checkpoint")?;
    if options.progress {
        show(&pipeline, started, &mut last_progress);
        eprintln!();
    }
    let sink = format!("table {} of {} (relative to {})", config.sink.table, config.sink.url, base.display());
    Ok(RunSummary { stats: pipeline.stats.clone(), watermark: pipeline.watermark(), elapsed: started.elapsed(), sink })
}
