//! A pipeline built from its file: an instance of each stage's plugin, wired, with the
//! in-memory state it keeps between checkpoints.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use weir_sdk::ColumnType;

use super::stages::{self, StagePlan};
use super::windows::OpenWindows;
use crate::config::PipelineConfig;
use crate::plugin::{AggregatorStage, ParserStage, Plugin, PluginRuntime};
use crate::sink::{Cell, DeadLetter, Deployment, LateEvent, TableSchema};
use crate::window::{WatermarkTracker, Window, WindowSpec};

/// Process behaviour, from the command line.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Where plugins named without a path are found (`<name>.wasm`).
    pub plugin_dir: PathBuf,
    /// Exit once the source has been drained and idle this long.
    pub until_idle: Option<std::time::Duration>,
    /// Records per batch.
    pub batch_size: usize,
    /// Print progress to stderr.
    pub progress: bool,
    /// Serve the admin API (`weir run` only).
    pub admin: Option<crate::admin::AdminOptions>,
    /// Registry references, the host config's trust, and the store of pulled plugins.
    pub sharing: crate::share::Sharing,
    /// Enrich with the lookup versions the sink recorded for the last checkpoint at or
    /// before this time (ms since the epoch), instead of loading the sources (`weir replay`).
    pub lookups_as_of: Option<i64>,
}

/// Counters over the whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Raw records in.
    pub records: u64,
    /// Events folded into at least one window.
    pub events_windowed: u64,
    /// Folds into windows: an event once per window it counts in (several for hopping windows).
    pub windowed: u64,
    /// Dead letters written.
    pub dead_letters: u64,
    /// Late events written: a row per (record, window) it was late for.
    pub late: u64,
    /// Records late for every window they belong to, so folded nowhere. Every record read
    /// is windowed, a dead letter or late: `records = events_windowed + dead_letters +
    /// late_records` (plus any a transform filtered out).
    pub late_records: u64,
    /// Checkpoints committed.
    pub checkpoints: u64,
    /// Times the circuit breaker opened.
    pub breaker_trips: u64,
    /// Plugin versions switched in while running.
    pub swaps: u64,
}

/// A wired pipeline and its in-memory state between checkpoints.
pub struct Pipeline {
    pub(super) name: String,
    /// The pipeline file.
    pub(super) config: PipelineConfig,
    /// What runs in each stage, in pipeline order.
    pub(super) plans: Vec<StagePlan>,
    pub(super) parser: Plugin,
    pub(super) time_column: usize,
    pub(super) validators: Vec<(Plugin, Vec<usize>)>,
    pub(super) transforms: Vec<(Plugin, Vec<usize>)>,
    pub(super) aggregator: Plugin,
    pub(super) aggregator_columns: Vec<usize>,
    pub(super) key_columns: Vec<usize>,
    pub(super) spec: WindowSpec,
    pub(super) tracker: WatermarkTracker,
    pub(super) windows: OpenWindows,
    pub(super) empty_state: Vec<u8>,
    /// The output table.
    pub table: TableSchema,
    pub(super) dead_letters: Vec<DeadLetter>,
    pub(super) late_events: Vec<LateEvent>,
    /// The raw bytes of `dead_letters` and `late_events`, counted as they arrive.
    pub(super) held: Held,
    /// Session windows replaced by a merged one since the last checkpoint, by window and key.
    pub(super) retracted: Vec<(Window, Vec<Cell>)>,
    /// With partials: this host's partial sessions replaced by a merged one, by window,
    /// key and partition.
    pub(super) retracted_partials: Vec<(Window, Vec<Cell>, i32)>,
    /// The first critical rule violation not yet seen by the breaker.
    pub(super) critical: Option<String>,
    /// Counters.
    pub stats: RunStats,
    /// The source's description, stored with each checkpoint.
    pub source: String,
    /// Replaying stored records: nothing is late, closed windows stay in memory to be
    /// corrected, and the replayed rows leave their lane in the checkpoint that uses them.
    pub(super) replaying: bool,
    pub(super) replayed_late: Vec<i64>,
    pub(super) replayed_dead: Vec<i64>,
    /// During a replay of the late lane: the windows each record (by partition and
    /// offset) was late for, the only ones it is folded into.
    pub(super) replay_windows: Option<rustc_hash::FxHashMap<(i32, i64), Vec<Window>>>,
    /// Partitions assigned since the last checkpoint, with what they stand for.
    pub(super) labels: Vec<(i32, String)>,
    /// Reads final windows back from the sink, to correct them (see `reopen.rs`).
    pub(super) lookup: Option<super::reopen::WindowLookup>,
    /// Fetches the writer schemas a batch names before its parse (`[schemas]`).
    pub(super) schemas: Option<crate::schemas::Fetcher>,
    /// The output table a switch changed, for the next checkpoint: with new columns
    /// (`false`), or as a new version of a versioned table (`true`).
    pub(super) table_changed: Option<(TableSchema, bool)>,
    /// The lookup tables (`[[lookup]]`), refreshed at checkpoint boundaries.
    pub(super) lookups: Option<crate::lookup::Lookups>,
    /// The highest watermark the sink stored for this pipeline's partitions.
    pub(super) stored_watermark: Option<i64>,
    /// The digest of the file the pipeline names for each stage.
    pub(super) configured: std::collections::HashMap<super::stages::StageId, String>,
    /// The state version of the aggregator that wrote the stored window states, if the
    /// sink knows: restored states of another version are migrated.
    pub(super) stored_state_version: Option<u32>,
    /// Window rows are merged in the sink from a partial state per window, key and source
    /// partition ([`PipelineConfig::merges_partials`]): any keying scales out.
    pub(super) partials: bool,
    /// Checkpoints put their rows in the sink's outbox for outputs (`sink/output.rs`).
    pub(super) outbox: bool,
    /// The aggregator changed since the sink's merger was made: the next checkpoint
    /// hands the sink a new one ([`Pipeline::merger`]).
    pub(super) merger_stale: bool,
    /// With `[scale] keyed`: the partition each window key arrived on, to catch a topic
    /// that is not keyed by the window key after all.
    pub(super) key_partitions: Option<rustc_hash::FxHashMap<u32, i32>>,
    /// Set when a window key arrived on a second partition: the run stops with it.
    pub(super) miskeyed: Option<String>,
    /// Counters and timings for `/metrics`.
    pub(super) measured: super::metrics::Measured,
    /// Versions switched in since the last checkpoint, committed with the first records they process.
    pub(super) deployments: Vec<Deployment>,
    /// A candidate version running beside this pipeline on the same records.
    pub(super) shadow: Option<Box<super::shadow::Shadow>>,
    /// Counts what became of each record for `weir_quality` (`[quality]`; not in a replay).
    pub(super) meter: Option<super::quality::Meter>,
}

impl Pipeline {
    /// Loads the plugins and wires the stages. `base` is the pipeline file's directory.
    /// With `quickly`, plugins not compiled on this machine yet start on baseline code
    /// ([`PluginRuntime::load_bytes_quickly`]).
    pub fn build(
        config: &PipelineConfig,
        base: &Path,
        runtime: &PluginRuntime,
        options: &PipelineOptions,
        quickly: bool,
    ) -> Result<Self> {
        Self::assemble(config, stages::plan(config, base, &options.plugin_dir, &options.sharing, runtime, quickly)?)
    }

    /// Starts an instance of every stage's plugin and wires them.
    pub fn assemble(config: &PipelineConfig, plans: Vec<StagePlan>) -> Result<Self> {
        let plugins: Vec<Plugin> = plans.iter().map(StagePlan::start).collect::<Result<_>>()?;
        let wiring = stages::wiring(config, &plugins.iter().collect::<Vec<_>>())?;
        let mut plugins = plugins.into_iter();
        let parser = plugins.next().context("a pipeline has a parser")?;
        let validators: Vec<(Plugin, Vec<usize>)> =
            plugins.by_ref().take(config.validators.len()).zip(wiring.validators).collect();
        let transforms: Vec<(Plugin, Vec<usize>)> =
            plugins.by_ref().take(config.transforms.len()).zip(wiring.transforms).collect();
        let mut aggregator = plugins.next().context("a pipeline has an aggregator")?;
        let empty_state =
            aggregator.create().map_err(|e| anyhow::anyhow!("aggregator failed to create a state: {e}"))?;
        let spec = config.window.spec()?;
        let quality_window = match spec {
            WindowSpec::Tumbling { size_ms } => size_ms,
            WindowSpec::Hopping { slide_ms, .. } => slide_ms,
            WindowSpec::Session { .. } => 60_000,
        };
        let meter = config
            .quality
            .as_ref()
            .map(|q| super::quality::Meter::new(q, &ParserStage::info(&parser).outputs, quality_window));
        let tracker = WatermarkTracker::new(
            config.watermark.lateness.as_millis() as i64,
            config.watermark.idle_timeout.as_millis() as i64,
        );
        Ok(Pipeline {
            name: config.name.clone(),
            config: config.clone(),
            parser,
            time_column: wiring.time_column,
            validators,
            transforms,
            aggregator,
            aggregator_columns: wiring.aggregator,
            key_columns: wiring.keys,
            spec,
            tracker,
            windows: OpenWindows::default(),
            empty_state,
            table: wiring.table,
            dead_letters: Vec::new(),
            late_events: Vec::new(),
            held: Held::default(),
            retracted: Vec::new(),
            retracted_partials: Vec::new(),
            critical: None,
            stats: RunStats::default(),
            source: String::new(),
            replaying: false,
            replayed_late: Vec::new(),
            replayed_dead: Vec::new(),
            replay_windows: None,
            lookup: None,
            schemas: None,
            table_changed: None,
            lookups: None,
            labels: Vec::new(),
            stored_watermark: None,
            deployments: Vec::new(),
            shadow: None,
            configured: plans.iter().map(|p| (p.id, p.component.digest.clone())).collect(),
            stored_state_version: None,
            partials: config.merges_partials(),
            outbox: false,
            merger_stale: true,
            key_partitions: config.scale.keyed.then(Default::default),
            miskeyed: None,
            measured: super::metrics::Measured { stages: vec![Default::default(); plans.len()], ..Default::default() },
            plans,
            meter,
        })
    }

    /// `name@digest` of every plugin, for the checkpoint record.
    pub fn plugin_versions(&self) -> String {
        let all = std::iter::once(&self.parser)
            .chain(self.validators.iter().map(|(p, _)| p))
            .chain(self.transforms.iter().map(|(p, _)| p))
            .chain(std::iter::once(&self.aggregator));
        all.map(|p| format!("{}@{}", p.component().name, p.component().digest)).collect::<Vec<_>>().join(",")
    }

    /// The columns the parser emits, by name: how a CSV source types its cells.
    pub fn parser_columns(&self) -> std::collections::HashMap<String, ColumnType> {
        ParserStage::info(&self.parser).outputs.iter().map(|c| (c.name.clone(), c.ty)).collect()
    }

    /// The Kafka consumer group the pipeline reads in, for a Kafka source.
    pub fn consumer_group(&self) -> Option<String> {
        match &self.config.source {
            crate::config::SourceConfig::Kafka { group, .. } => {
                Some(group.clone().unwrap_or_else(|| format!("weir-{}", self.config.name)))
            }
            _ => None,
        }
    }

    /// The watermark.
    pub fn watermark(&self) -> Option<i64> {
        self.tracker.current()
    }

    /// How many windows are open.
    pub fn open_windows(&self) -> usize {
        self.windows.groups.len()
    }
}

/// What the next checkpoint holds of raw records: a run reading bad input faster than the
/// sink stores its dead letters checkpoints early on it, rather than hold a whole interval
/// of them (each up to `max_record_bytes`) in memory.
#[derive(Debug, Default)]
pub(super) struct Held {
    dead_letters: usize,
    late_events: usize,
    bytes: usize,
}

/// Past this, the run checkpoints without waiting for the interval.
pub(super) const HELD_BYTES: usize = 64 << 20;

impl Pipeline {
    /// The raw bytes the dead letters and late events waiting for the next checkpoint hold;
    /// counts only what arrived since it last looked.
    pub(super) fn held_bytes(&mut self) -> usize {
        let h = &mut self.held;
        if h.dead_letters > self.dead_letters.len() || h.late_events > self.late_events.len() {
            *h = Held::default();
        }
        h.bytes += self.dead_letters[h.dead_letters..].iter().map(|d| d.raw.len()).sum::<usize>();
        h.bytes += self.late_events[h.late_events..].iter().map(|l| l.raw.len()).sum::<usize>();
        (h.dead_letters, h.late_events) = (self.dead_letters.len(), self.late_events.len());
        h.bytes
    }
}
