//! The plugin-throughput benchmark: the rides chain (parser → validator → aggregator)
//! over the same pre-generated batches, once through the WASM components with their
//! limits on and once through the same plugin code compiled natively. It drives its own
//! in-memory chain (`chain.rs`), not the pipeline: no source, sink or checkpoint, only the
//! plugins and the windowing that separates their costs.

pub mod chain;
mod formats;
mod languages;

pub use formats::{schema_bench, SchemaBench};
pub use languages::{validator_languages, LanguageRun};

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use weir_sdk::{AggregatorInfo, ParserInfo, RawBatch};

use self::chain::{ChainStats, PluginChain, StageTimes};
use crate::plugin::{Limits, Native, Plugin, PluginKind, PluginRuntime, Policy, RuntimeOptions};
use crate::rides::{RidesChainConfig, TripGenerator, TripOptions};

/// One run's figures.
#[derive(Clone, Debug)]
pub struct RunFigures {
    /// Wall time over all batches (excluding generation and load).
    pub elapsed: Duration,
    /// Raw records per second.
    pub events_per_second: f64,
    /// Per-stage time.
    pub times: StageTimes,
    /// What happened to the records.
    pub stats: ChainStats,
}

/// Both runs and their ratio.
#[derive(Clone, Debug)]
pub struct PluginBenchReport {
    /// Records per run.
    pub events: usize,
    /// Records per batch.
    pub batch_size: usize,
    /// The native baseline.
    pub native: RunFigures,
    /// Through the WASM components, limits on.
    pub wasm: RunFigures,
    /// Through the WASM components without epoch interruption (no CPU deadline), to
    /// show what the deadline costs.
    pub wasm_no_deadline: RunFigures,
}

impl PluginBenchReport {
    /// WASM events/s over native events/s.
    pub fn ratio(&self) -> f64 {
        self.wasm.events_per_second / self.native.events_per_second
    }
}

/// Generates `events` rides records in batches of `batch_size`.
pub fn rides_batches(events: usize, batch_size: usize, seed: u64) -> Vec<RawBatch> {
    let mut generator = TripGenerator::new(TripOptions { seed, ..Default::default() });
    let mut batches = Vec::with_capacity(events.div_ceil(batch_size));
    let mut offset = 0i64;
    let mut payload = Vec::with_capacity(256);
    while (offset as usize) < events {
        let mut batch = RawBatch::default();
        for _ in 0..batch_size.min(events - offset as usize) {
            payload.clear();
            generator.next_into(&mut payload);
            batch.push(&payload, b"", -1, 0, offset);
            offset += 1;
        }
        batches.push(batch);
    }
    batches
}

/// The rides chain through the WASM components in `plugin_dir`.
pub fn wasm_chain(
    runtime: &PluginRuntime,
    plugin_dir: &Path,
    config: &RidesChainConfig,
    limits: &Limits,
) -> Result<PluginChain> {
    let load = |(stem, config): &(String, String), kind| -> Result<Plugin> {
        let path = plugin_dir.join(format!("{stem}.wasm"));
        let component = runtime.load(&path, &Policy::none()).context("build the plugins with `cargo xtask plugins`")?;
        Plugin::new(component, kind, config, limits.clone())
    };
    PluginChain::new(
        Box::new(load(&config.parser, PluginKind::Parser)?),
        vec![Box::new(load(&config.validator, PluginKind::Validator)?)],
        Box::new(load(&config.aggregator, PluginKind::Aggregator)?),
        &config.key,
        config.size_ms,
    )
}

/// The same chain with the reference plugins compiled into the host.
pub fn native_chain(config: &RidesChainConfig) -> Result<PluginChain> {
    let parser: Native<json_parser::JsonParser, ParserInfo> = Native::parser(&config.parser.1)?;
    let validator: Native<rules_validator::RulesValidator, Vec<weir_sdk::ColumnDef>> =
        Native::validator(&config.validator.1)?;
    let aggregator: Native<window_stats::WindowStats, AggregatorInfo> = Native::aggregator(&config.aggregator.1)?;
    PluginChain::new(Box::new(parser), vec![Box::new(validator)], Box::new(aggregator), &config.key, config.size_ms)
}

fn run(mut chain: PluginChain, batches: &[RawBatch]) -> Result<(RunFigures, Vec<u8>)> {
    let started = Instant::now();
    for batch in batches {
        chain.process(batch);
    }
    let elapsed = started.elapsed();
    let records: usize = batches.iter().map(RawBatch::len).sum();
    let (keys, rows, _) = chain.results()?;
    // A fingerprint of the results, to check both runs computed the same windows.
    let fingerprint = format!("{keys:?}{rows:?}").into_bytes();
    let figures = RunFigures {
        elapsed,
        events_per_second: records as f64 / elapsed.as_secs_f64(),
        times: chain.times.clone(),
        stats: chain.stats.clone(),
    };
    Ok((figures, fingerprint))
}

/// Runs the benchmark.
pub fn plugin_throughput(
    plugin_dir: &Path,
    events: usize,
    batch_size: usize,
    limits: Limits,
) -> Result<PluginBenchReport> {
    let config = RidesChainConfig::builtin()?;
    let batches = rides_batches(events, batch_size, 42);
    let runtime = PluginRuntime::new(RuntimeOptions::default())?;
    let no_deadline = PluginRuntime::new(RuntimeOptions { epoch_interruption: false, ..RuntimeOptions::default() })?;

    // Warm each up on one batch so none pays first-touch costs in the timed run.
    let warm = &batches[..1.min(batches.len())];
    run(native_chain(&config)?, warm)?;
    run(wasm_chain(&runtime, plugin_dir, &config, &limits)?, warm)?;
    run(wasm_chain(&no_deadline, plugin_dir, &config, &limits)?, warm)?;

    let (native, native_result) = run(native_chain(&config)?, &batches)?;
    let (wasm, wasm_result) = run(wasm_chain(&runtime, plugin_dir, &config, &limits)?, &batches)?;
    let (wasm_no_deadline, _) = run(wasm_chain(&no_deadline, plugin_dir, &config, &limits)?, &batches)?;
    ensure!(native.stats == wasm.stats, "native and WASM runs disagree: {:?} vs {:?}", native.stats, wasm.stats);
    ensure!(native_result == wasm_result, "native and WASM runs computed different windows");
    Ok(PluginBenchReport { events, batch_size, native, wasm, wasm_no_deadline })
}
