//! A plugin chain over batches: parser → validators → aggregator, grouping events into
//! tumbling event-time windows per key. This is the in-memory core the benchmark and
//! its tests drive; native and WASM stages plug into it alike.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
// Per-row key lookups on the hot path; SipHash's DoS resistance buys nothing here.
use rustc_hash::FxHashMap as HashMap;
use weir_sdk::{ColumnDef, ColumnType, EventBatch, RawBatch, Severity};

use crate::pipeline::wire;
use crate::plugin::{AggregatorStage, ParserStage, ValidatorStage};

/// Counts of what happened to the records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainStats {
    /// Raw records in.
    pub records: u64,
    /// Records the parser could not parse.
    pub malformed: u64,
    /// Events a validator rejected (severity reject or critical).
    pub rejected: u64,
    /// Events with only warnings.
    pub warned: u64,
    /// Records or events a plugin failed on (trap, timeout, memory).
    pub failed: u64,
    /// Events folded into a window.
    pub aggregated: u64,
}

/// Time spent in each stage.
#[derive(Clone, Debug, Default)]
pub struct StageTimes {
    /// In the parser.
    pub parse: Duration,
    /// In the validators.
    pub validate: Duration,
    /// Grouping and folding.
    pub aggregate: Duration,
}

/// Which window and key an output row belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowKey {
    /// The window's start, ms since the epoch.
    pub window_start: i64,
    /// The key value.
    pub key: String,
}

/// The wired chain and its open windows.
pub struct PluginChain {
    parser: Box<dyn ParserStage>,
    validators: Vec<(Box<dyn ValidatorStage>, Vec<usize>)>,
    aggregator: Box<dyn AggregatorStage>,
    aggregator_columns: Vec<usize>,
    time_column: usize,
    key_column: usize,
    window_ms: i64,
    empty_state: Vec<u8>,
    key_ids: HashMap<String, usize>,
    key_names: Vec<String>,
    groups: HashMap<(i64, usize), usize>,
    group_keys: Vec<(i64, usize)>,
    states: Vec<Vec<u8>>,
    /// What happened to the records so far.
    pub stats: ChainStats,
    /// Where the time went.
    pub times: StageTimes,
}

impl PluginChain {
    /// Wires the stages: every column a stage reads must be emitted by the parser with the same type.
    pub fn new(
        parser: Box<dyn ParserStage>,
        validators: Vec<Box<dyn ValidatorStage>>,
        mut aggregator: Box<dyn AggregatorStage>,
        key: &str,
        window_ms: i64,
    ) -> Result<Self> {
        let outputs = parser.info().outputs.clone();
        let time_column =
            outputs.iter().position(|c| c.name == parser.info().event_time_column && c.ty == ColumnType::TimestampMs);
        let time_column =
            time_column.context("the parser's event-time column is missing from its outputs or is not a timestamp")?;
        let key_column = wire("the window key", &[ColumnDef::new(key, ColumnType::Text)], &outputs)?[0];
        let validators = validators
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let columns = wire(&format!("validator {i}"), v.inputs(), &outputs)?;
                Ok((v, columns))
            })
            .collect::<Result<Vec<_>>>()?;
        let aggregator_columns = wire("the aggregator", &aggregator.info().inputs, &outputs)?;
        let empty_state = aggregator.create().context("the aggregator failed to create a state")?;
        if window_ms <= 0 {
            bail!("the window size must be positive, got {window_ms} ms");
        }
        Ok(PluginChain {
            parser,
            validators,
            aggregator,
            aggregator_columns,
            time_column,
            key_column,
            window_ms,
            empty_state,
            key_ids: HashMap::default(),
            key_names: Vec::new(),
            groups: HashMap::default(),
            group_keys: Vec::new(),
            states: Vec::new(),
            stats: ChainStats::default(),
            times: StageTimes::default(),
        })
    }

    /// Runs one batch through the chain.
    pub fn process(&mut self, batch: &RawBatch) {
        self.stats.records += batch.len() as u64;
        let started = Instant::now();
        let parsed = self.parser.parse(batch);
        self.stats.malformed += parsed.output.errors.len() as u64;
        self.stats.failed += parsed.failures.len() as u64;
        let events = parsed.output.events;
        let validating = Instant::now();
        self.times.parse += validating - started;

        let mut verdict = vec![None::<Severity>; events.len()];
        for (validator, columns) in &mut self.validators {
            let validated = validator.validate(&events.project(columns));
            for v in validated.violations {
                let worst = &mut verdict[v.row as usize];
                *worst = (*worst).max(Some(v.severity));
            }
            for f in validated.failures {
                verdict[f.index as usize] = Some(Severity::Critical);
                self.stats.failed += 1;
            }
        }
        let kept: Vec<u32> =
            (0..events.len() as u32).filter(|&r| verdict[r as usize].is_none_or(|s| s == Severity::Warn)).collect();
        self.stats.warned += verdict.iter().filter(|v| **v == Some(Severity::Warn)).count() as u64;
        self.stats.rejected += (events.len() - kept.len()) as u64;
        let aggregating = Instant::now();
        self.times.validate += aggregating - validating;

        self.fold(&events, &kept);
        self.times.aggregate += aggregating.elapsed();
    }

    fn fold(&mut self, events: &EventBatch, kept: &[u32]) {
        let (Some(times), Some(keys)) =
            (events.columns[self.time_column].values.i64_slice(), events.columns[self.key_column].values.text())
        else {
            return;
        };
        // Map each kept row to a batch-local group; only touched states cross the boundary.
        let mut local_of: HashMap<usize, u32> = HashMap::default();
        let mut touched: Vec<usize> = Vec::new();
        let mut groups = Vec::with_capacity(kept.len());
        for &row in kept {
            let window = times[row as usize].div_euclid(self.window_ms) * self.window_ms;
            let name = keys.str(row as usize);
            let key = match self.key_ids.get(name) {
                Some(&id) => id,
                None => {
                    self.key_names.push(name.to_string());
                    self.key_ids.insert(name.to_string(), self.key_names.len() - 1);
                    self.key_names.len() - 1
                }
            };
            let group = *self.groups.entry((window, key)).or_insert_with(|| {
                self.group_keys.push((window, key));
                self.states.push(self.empty_state.clone());
                self.states.len() - 1
            });
            let local = *local_of.entry(group).or_insert_with(|| {
                touched.push(group);
                touched.len() as u32 - 1
            });
            groups.push(local);
        }
        let input = events.project(&self.aggregator_columns);
        let input = if kept.len() == events.len() { input } else { input.take(kept) };
        let mut states: Vec<Vec<u8>> = touched.iter().map(|&g| std::mem::take(&mut self.states[g])).collect();
        let failures = self.aggregator.fold(&mut states, &input, &groups);
        self.stats.failed += failures.len() as u64;
        self.stats.aggregated += (kept.len() - failures.len()) as u64;
        for (g, state) in touched.into_iter().zip(states) {
            self.states[g] = state;
        }
    }

    /// The output rows of every window so far, ordered by window then key.
    pub fn results(&mut self) -> Result<(Vec<WindowKey>, EventBatch, Vec<ColumnDef>)> {
        let mut order: Vec<usize> = (0..self.states.len()).collect();
        order.sort_by(|&a, &b| {
            let (wa, ka) = self.group_keys[a];
            let (wb, kb) = self.group_keys[b];
            (wa, &self.key_names[ka]).cmp(&(wb, &self.key_names[kb]))
        });
        let states: Vec<Vec<u8>> = order.iter().map(|&g| self.states[g].clone()).collect();
        let rows = self.aggregator.emit(&states).map_err(|e| anyhow::anyhow!("the aggregator failed to emit: {e}"))?;
        let keys = order
            .iter()
            .map(|&g| WindowKey {
                window_start: self.group_keys[g].0,
                key: self.key_names[self.group_keys[g].1].clone(),
            })
            .collect();
        Ok((keys, rows, self.aggregator.info().outputs.clone()))
    }

    /// The window size.
    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }
}
