//! `weir bench languages`: one validator, the rides rules, written in Rust and in Python,
//! over the same parsed trips: natively, as the Rust component and as the Python one
//! (componentize-py). Events per second, the ratio to Rust, the component's size, the
//! time to load it from the compile cache and to instantiate and configure it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use weir_sdk::{ColumnDef, EventBatch, ParserInfo};

use super::rides_batches;
use crate::plugin::ValidatorStage;
use crate::plugin::{Limits, Native, ParserStage, Plugin, PluginKind, PluginRuntime, Policy, RuntimeOptions};
use crate::rides::RidesChainConfig;

/// One implementation's figures.
pub struct LanguageRun {
    pub label: &'static str,
    pub events_per_second: f64,
    /// The component file's size (none for native code).
    pub size: Option<u64>,
    /// Loading the component from the warm compile cache.
    pub load: Option<Duration>,
    /// Instantiating and configuring it (`init`).
    pub instantiate: Option<Duration>,
    /// Violations found over all events: each run must find the same.
    pub violations: usize,
}

/// The trips parsed once, natively, as the validator's input columns.
fn parsed_inputs(
    config: &RidesChainConfig,
    inputs: &[ColumnDef],
    events: usize,
    batch: usize,
) -> Result<Vec<EventBatch>> {
    let mut parser: Native<json_parser::JsonParser, ParserInfo> = Native::parser(&config.parser.1)?;
    let outputs = parser.info().outputs.clone();
    let picks: Vec<usize> = inputs
        .iter()
        .map(|c| outputs.iter().position(|o| o.name == c.name).with_context(|| format!("the parser has no {}", c.name)))
        .collect::<Result<_>>()?;
    Ok(rides_batches(events, batch, 42)
        .iter()
        .map(|raw| {
            let events = parser.parse(raw).output.events;
            EventBatch { len: events.len, columns: picks.iter().map(|&i| events.columns[i].clone()).collect() }
        })
        .collect())
}

/// Validates every batch once to warm up, then again timed.
fn timed(stage: &mut dyn ValidatorStage, batches: &[EventBatch]) -> Result<(f64, usize)> {
    if let Some(first) = batches.first() {
        stage.validate(first);
    }
    let (started, mut violations, mut events) = (Instant::now(), 0, 0);
    for batch in batches {
        let judged = stage.validate(batch);
        ensure!(judged.failures.is_empty(), "the validator failed: {:?}", judged.failures.first());
        violations += judged.violations.len();
        events += batch.len as usize;
    }
    Ok((events as f64 / started.elapsed().as_secs_f64(), violations))
}

fn component(
    runtime: &PluginRuntime,
    label: &'static str,
    path: &Path,
    config: &str,
    batches: &[EventBatch],
) -> Result<LanguageRun> {
    let limits = Limits { max_memory_bytes: 256 << 20, deadline: Duration::from_secs(5) };
    // The first load compiles (or reads the cache); the timed one reads the warm cache.
    runtime.load(path, &Policy::none()).with_context(|| format!("loading {}", path.display()))?;
    let started = Instant::now();
    let loaded = runtime.load(path, &Policy::none())?;
    let load = started.elapsed();
    let started = Instant::now();
    let mut plugin = Plugin::new(loaded, PluginKind::Validator, config, limits)?;
    let instantiate = started.elapsed();
    let (events_per_second, violations) = timed(&mut plugin, batches)?;
    let size = std::fs::metadata(path)?.len();
    Ok(LanguageRun {
        label,
        events_per_second,
        size: Some(size),
        load: Some(load),
        instantiate: Some(instantiate),
        violations,
    })
}

/// Runs the benchmark: native Rust, the Rust component in `plugin_dir`, and the Python
/// component at `python`.
pub fn validator_languages(plugin_dir: &Path, python: &Path, events: usize, batch: usize) -> Result<Vec<LanguageRun>> {
    let config = RidesChainConfig::builtin()?;
    let mut native: Native<rules_validator::RulesValidator, Vec<ColumnDef>> = Native::validator(&config.validator.1)?;
    let batches = parsed_inputs(&config, native.inputs(), events, batch)?;
    let (events_per_second, violations) = timed(&mut native, &batches)?;
    let mut runs = vec![LanguageRun {
        label: "Rust, native",
        events_per_second,
        size: None,
        load: None,
        instantiate: None,
        violations,
    }];
    let runtime = PluginRuntime::new(RuntimeOptions::default())?;
    let rust = plugin_dir.join(format!("{}.wasm", config.validator.0));
    runs.push(component(&runtime, "Rust, WASM", &rust, &config.validator.1, &batches)?);
    runs.push(component(&runtime, "Python, WASM", python, &config.validator.1, &batches)?);
    ensure!(
        runs.iter().all(|r| r.violations == runs[0].violations),
        "the validators disagree: {:?}",
        runs.iter().map(|r| (r.label, r.violations)).collect::<Vec<_>>()
    );
    Ok(runs)
}
