//! Wiring a pipeline from its file: load each plugin, check that every column a stage
//! reads is produced upstream with the same type, and derive the output table.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use weir_sdk::{ColumnDef, ColumnType};

use super::windows::OpenWindows;
use crate::config::{PipelineConfig, StageConfig};
use crate::plugin::{
    AggregatorStage, Grants, Limits, ParserStage, Plugin, PluginKind, PluginRuntime, TransformStage, ValidatorStage,
};
use crate::sink::{Cell, DeadLetter, LateEvent, TableSchema};
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
}

/// Counters over the whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Raw records in.
    pub records: u64,
    /// Events folded into windows (once per window for hopping windows).
    pub windowed: u64,
    /// Dead letters written.
    pub dead_letters: u64,
    /// Late events written.
    pub late: u64,
    /// Checkpoints committed.
    pub checkpoints: u64,
    /// Times the circuit breaker opened.
    pub breaker_trips: u64,
}

/// A wired pipeline and its in-memory state between checkpoints.
pub struct Pipeline {
    pub(super) name: String,
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
    /// Session windows replaced by a merged one since the last checkpoint, by window and key.
    pub(super) retracted: Vec<(Window, Vec<Cell>)>,
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
}

/// Where a plugin's component file is.
fn plugin_path(stage: &StageConfig, base: &Path, plugin_dir: &Path) -> PathBuf {
    if stage.plugin.ends_with(".wasm") {
        base.join(&stage.plugin)
    } else {
        plugin_dir.join(format!("{}.wasm", stage.plugin))
    }
}

fn start(
    runtime: &PluginRuntime,
    stage: &StageConfig,
    what: &str,
    kind: PluginKind,
    base: &Path,
    plugin_dir: &Path,
) -> Result<Plugin> {
    let path = plugin_path(stage, base, plugin_dir);
    let component =
        runtime.load(&path, &Grants { allow: stage.grants.clone() }).with_context(|| format!("{what}.plugin"))?;
    let limits = Limits { max_memory_bytes: stage.limits.memory_mib * 1024 * 1024, deadline: stage.limits.deadline };
    Plugin::new(component, kind, &serde_json::to_string(&stage.config)?, limits)
        .with_context(|| format!("{what}.config"))
}

/// Finds each column a stage reads among the columns that reach it, by name and type.
pub fn wire(stage: &str, wanted: &[ColumnDef], available: &[ColumnDef]) -> Result<Vec<usize>> {
    wanted
        .iter()
        .map(|want| match available.iter().position(|c| c.name == want.name) {
            Some(i) if available[i].ty == want.ty => Ok(i),
            Some(i) => bail!(
                "{stage} reads column {:?} as {}, but it arrives as {}",
                want.name,
                want.ty.name(),
                available[i].ty.name()
            ),
            None => bail!(
                "{stage} reads column {:?}, which does not arrive there (available: {})",
                want.name,
                available.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })
        .collect()
}

impl Pipeline {
    /// Loads the plugins and wires the stages. `base` is the pipeline file's directory.
    pub fn build(
        config: &PipelineConfig,
        base: &Path,
        runtime: &PluginRuntime,
        options: &PipelineOptions,
    ) -> Result<Self> {
        let dir = &options.plugin_dir;
        let parser = start(runtime, &config.parser, "parser", PluginKind::Parser, base, dir)?;
        let info = ParserStage::info(&parser).clone();
        let time_column =
            info.outputs.iter().position(|c| c.name == info.event_time_column).context("parser event-time column")?;
        let mut schema = info.outputs;
        let mut validators = Vec::new();
        for (i, stage) in config.validators.iter().enumerate() {
            let what = format!("validators[{i}]");
            let plugin = start(runtime, stage, &what, PluginKind::Validator, base, dir)?;
            let columns = wire(&what, plugin.inputs(), &schema)?;
            validators.push((plugin, columns));
        }
        let mut transforms = Vec::new();
        for (i, stage) in config.transforms.iter().enumerate() {
            let what = format!("transforms[{i}]");
            let plugin = start(runtime, stage, &what, PluginKind::Transform, base, dir)?;
            let columns = wire(&what, &TransformStage::info(&plugin).inputs, &schema)?;
            schema = TransformStage::info(&plugin).outputs.clone();
            transforms.push((plugin, columns));
        }
        let mut aggregator = start(runtime, &config.aggregator, "aggregator", PluginKind::Aggregator, base, dir)?;
        let aggregator_columns = wire("aggregator", &AggregatorStage::info(&aggregator).inputs, &schema)?;
        let mut key_columns = Vec::new();
        let mut keys = Vec::new();
        for name in &config.window.key {
            let column = schema.iter().position(|c| &c.name == name).with_context(|| {
                let names: Vec<&str> = schema.iter().map(|c| c.name.as_str()).collect();
                format!("window.key: column {name:?} does not reach the aggregator (available: {})", names.join(", "))
            })?;
            if schema[column].ty == ColumnType::Float64 {
                bail!("window.key: column {name:?} is float64; key windows by text, integer, boolean or timestamp columns");
            }
            key_columns.push(column);
            keys.push(ColumnDef::new(name.clone(), schema[column].ty));
        }
        let values = AggregatorStage::info(&aggregator).outputs.clone();
        if let Some(clash) = values.iter().find(|v| {
            keys.iter().any(|k| k.name == v.name)
                || ["window_start", "window_end", "is_final", "revision", "updated_at"].contains(&v.name.as_str())
        }) {
            bail!(
                "aggregator output column {:?} clashes with a key or bookkeeping column of {}",
                clash.name,
                config.sink.table
            );
        }
        let empty_state =
            aggregator.create().map_err(|e| anyhow::anyhow!("aggregator failed to create a state: {e}"))?;
        let spec = config.window.spec()?;
        let tracker = WatermarkTracker::new(
            config.watermark.lateness.as_millis() as i64,
            config.watermark.idle_timeout.as_millis() as i64,
        );
        Ok(Pipeline {
            name: config.name.clone(),
            parser,
            time_column,
            validators,
            transforms,
            aggregator,
            aggregator_columns,
            key_columns,
            spec,
            tracker,
            windows: OpenWindows::default(),
            empty_state,
            table: TableSchema { name: config.sink.table.clone(), keys, values },
            dead_letters: Vec::new(),
            late_events: Vec::new(),
            retracted: Vec::new(),
            critical: None,
            stats: RunStats::default(),
            source: String::new(),
            replaying: false,
            replayed_late: Vec::new(),
            replayed_dead: Vec::new(),
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

    /// The watermark.
    pub fn watermark(&self) -> Option<i64> {
        self.tracker.current()
    }

    /// How many windows are open.
    pub fn open_windows(&self) -> usize {
        self.windows.groups.len()
    }
}
